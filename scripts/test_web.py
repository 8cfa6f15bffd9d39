#!/usr/bin/env python3
"""Secure scraping with real clients: the exporter binary with a web config (exporter-toolkit's
format), certificates made here with openssl, passwords hashed with htpasswd -B, requests made
with curl and openssl s_client.

Run by `make test` and `make web-test`, which set BINARY. Prints one line per check and
"web: N passed, N failed".
"""
import base64
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

from checks import check, free_port, stop, summary

BINARY = os.path.abspath(os.environ.get("BINARY", ".build/debug/prometheus-barman-exporter"))


def run(*command, **kwargs):
    return subprocess.run(list(command), capture_output=True, text=True, **kwargs)


def openssl(*arguments):
    result = run("openssl", *arguments)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(arguments)}: {result.stderr}")


class CA:
    """A certificate authority made with openssl; `openssl ca` so that validity dates in the
    past (an expired certificate) can be given."""

    def __init__(self, directory, name):
        self.dir = os.path.join(directory, name)
        os.makedirs(self.dir)
        self.key = os.path.join(self.dir, "ca.key")
        self.cert = os.path.join(self.dir, "ca.crt")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key,
                "-out", self.cert, "-days", "3650", "-subj", f"/CN={name}")
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        self.config = os.path.join(self.dir, "ca.cnf")
        with open(self.config, "w") as f:
            f.write(f"""[ca]
default_ca = this
[this]
dir = {self.dir}
database = {self.dir}/index.txt
serial = {self.dir}/serial
new_certs_dir = {self.dir}
certificate = {self.cert}
private_key = {self.key}
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = copy
[anything]
commonName = supplied
[server]
subjectAltName = IP:127.0.0.1,DNS:localhost
extendedKeyUsage = serverAuth
[client]
extendedKeyUsage = clientAuth
""")

    def issue(self, name, kind, start="20250101000000Z", end="20991231000000Z"):
        key = os.path.join(self.dir, f"{name}.key")
        request = os.path.join(self.dir, f"{name}.csr")
        cert = os.path.join(self.dir, f"{name}.crt")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", request,
                "-subj", f"/CN={name}")
        openssl("ca", "-batch", "-config", self.config, "-extensions", kind, "-in", request, "-out", cert,
                "-startdate", start, "-enddate", end, "-notext")
        return cert, key


class Exporter:
    def __init__(self, work, web_config, name):
        self.port = free_port()
        self.work = work
        self.web_path = os.path.join(work, f"{name}-web.yml")
        with open(self.web_path, "w") as f:
            f.write(web_config)
        self.config_path = os.path.join(work, f"{name}.yaml")
        with open(self.config_path, "w") as f:
            f.write(f"address: 127.0.0.1\nport: {self.port}\nintegration_type: mock\nlog_level: info\n")
        self.stderr_path = os.path.join(work, f"{name}.stderr")
        self.stderr = open(self.stderr_path, "w")
        self.process = subprocess.Popen([BINARY, "-config", self.config_path, "--web.config.file", self.web_path], stderr=self.stderr)
        deadline = time.time() + 10
        while time.time() < deadline and "listening" not in self.log():
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(0.2)

    def url(self, scheme="https", path="/metrics"):
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def log(self):
        with open(self.stderr_path) as f:
            return f.read()

    def reload(self, web_config=None):
        if web_config is not None:
            with open(self.web_path, "w") as f:
                f.write(web_config)
        before = self.log().count("reload")
        self.process.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline and self.log().count("reload") == before:
            time.sleep(0.05)
        time.sleep(0.3)

    def stop(self):
        stop(self.process)
        self.stderr.close()


def curl(url, *options):
    """(HTTP status or None, headers, body, curl's exit code and error)."""
    result = run("curl", "-sS", "-D", "-", "--max-time", "10", *options, url)
    status = None
    headers = {}
    body = result.stdout
    if result.stdout.startswith("HTTP/"):
        # text mode has turned CRLF into LF
        head, _, body = result.stdout.partition("\n\n")
        lines = head.split("\n")
        status = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers, body, result.returncode, result.stderr.strip()


def server_subject(port):
    result = subprocess.run(f"openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -subject",
                            shell=True, capture_output=True, text=True)
    return result.stdout.strip()


def negotiated_cipher(port, *options):
    result = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *options], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=10)
    match = re.search(r"Cipher is (\S+)", result.stdout)
    return match.group(1) if match else result.stdout[-300:] + result.stderr[-300:]


class RecordReader:
    """A TLS client that sees record boundaries: it reads raw bytes from the socket and hands
    them to an ssl.SSLObject one record at a time, so each response arrives as a list of the
    plaintext sizes of the records that carried it."""

    def __init__(self, port, cafile, version):
        context = ssl.create_default_context(cafile=cafile)
        context.check_hostname = False
        context.minimum_version = context.maximum_version = version
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=False)
        self.raw = b""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.feed_record()
        self.flush()

    def flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def feed_record(self):
        """Hands one whole record to the TLS object; returns its plaintext (b"" for a record
        that carries none, such as a session ticket)."""
        while len(self.raw) < 5 or len(self.raw) < 5 + int.from_bytes(self.raw[3:5], "big"):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.raw += chunk
        size = 5 + int.from_bytes(self.raw[3:5], "big")
        self.incoming.write(self.raw[:size])
        self.raw = self.raw[size:]
        plaintext = b""
        while True:
            try:
                plaintext += self.tls.read(65536)
            except ssl.SSLWantReadError:
                return plaintext

    def request(self, method, path, headers):
        """Sends one request; returns (response bytes, plaintext size of each record that
        carried it)."""
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.tls.write(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{fields}\r\n".encode())
        self.flush()
        response, sizes = b"", []
        while True:
            plaintext = self.feed_record()
            if plaintext:
                response += plaintext
                sizes.append(len(plaintext))
            head, separator, body = response.partition(b"\r\n\r\n")
            if separator:
                match = re.search(rb"(?im)^content-length: *(\d+)", head)
                wanted = 0 if method == "HEAD" or not match else int(match.group(1))
                if len(body) >= wanted:
                    return response, sizes

    def data_segments_received(self):
        """TCP segments with data this connection has received (struct tcp_info's
        tcpi_data_segs_in; over loopback one segment per write the server made)."""
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        return struct.unpack_from("I", info, 152)[0]

    def close(self):
        self.sock.close()


def htpasswd(user, password):
    result = run("htpasswd", "-nbB", "-C", "10", user, password)
    return result.stdout.strip().split(":", 1)[1]


def tls_config(cert, key, extra=""):
    return f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n{extra}"


def main():
    work = tempfile.mkdtemp(prefix="barman-exporter-web-")
    ca = CA(work, "test-ca")
    other = CA(work, "untrusted-ca")
    server_cert, server_key = ca.issue("first-server", "server")
    second_cert, second_key = ca.issue("second-server", "server")
    expired_cert, expired_key = ca.issue("expired-server", "server", "20200101000000Z", "20210101000000Z")
    client_cert, client_key = ca.issue("scraper", "client")
    expired_client_cert, expired_client_key = ca.issue("expired-scraper", "client", "20200101000000Z", "20210101000000Z")
    stranger_cert, stranger_key = other.issue("stranger", "client")
    password_hash = htpasswd("prometheus", "s3cret pass")
    check("htpasswd -B makes a $2y$ hash", password_hash.startswith("$2y$10$"), password_hash)

    # TLS and basic auth, with a security header.
    web = tls_config(server_cert, server_key) + f"basic_auth_users:\n  prometheus: {password_hash}\n" \
        + "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    exporter = Exporter(work, web, "tls-auth")
    try:
        status, headers, body, code, error = curl(exporter.url(), "--cacert", ca.cert, "-u", "prometheus:s3cret pass")
        check("TLS + right password: 200 with the metrics", status == 200 and "barman_up{" in body, (status, code, error))
        check("configured header on the answer", headers.get("x-frame-options") == "deny", headers)
        status, headers, body, code, error = curl(exporter.url(), "--cacert", ca.cert, "-u", "prometheus:wrong")
        check("wrong password: 401 with WWW-Authenticate: Basic",
              status == 401 and headers.get("www-authenticate", "").startswith("Basic") and "barman_" not in body, (status, headers))
        check("configured header on the refusal too", headers.get("x-frame-options") == "deny", headers)
        status, headers, body, code, error = curl(exporter.url(), "--cacert", ca.cert)
        check("missing password: 401", status == 401 and headers.get("www-authenticate", "").startswith("Basic"), (status, headers))
        status, headers, body, code, error = curl(exporter.url(), "--cacert", ca.cert, "-u", "nobody:s3cret pass")
        check("unknown user: 401", status == 401, status)
        status, headers, body, code, error = curl(exporter.url(path="/"), "--cacert", ca.cert)
        check("every path needs the password (landing page: 401)", status == 401, status)
        status, headers, body, code, error = curl(exporter.url("http"), "-u", "prometheus:s3cret pass")
        check("plain HTTP to the TLS port: no HTTP answer", status is None and code != 0, (status, code, error))
        status, headers, body, code, error = curl(exporter.url(), "-u", "prometheus:s3cret pass")
        check("a client that does not trust the CA refuses the certificate", status is None and code == 60, (code, error))
        # Keep-alive over TLS: curl reuses one connection for two URLs.
        result = run("curl", "-sv", "-o", "/dev/null", "-o", "/dev/null", "--cacert", ca.cert, "-u", "prometheus:s3cret pass",
                     exporter.url(), exporter.url())
        check("TLS connections are kept alive", "Re-using existing connection" in result.stderr or "Reusing existing" in result.stderr,
              result.stderr[-400:])
        status, *_ = curl(exporter.url(), "--cacert", ca.cert, "-u", "prometheus:s3cret pass")
        check("still serving after the plain-HTTP client", status == 200, status)
        # OpenSSL lists AES-256-GCM first; the exporter, as Go's crypto/tls, picks AES-128-GCM.
        for version, expected in (("-tls1_3", "TLS_AES_128_GCM_SHA256"), ("-tls1_2", "ECDHE-ECDSA-AES128-GCM-SHA256")):
            cipher = negotiated_cipher(exporter.port, version)
            check(f"the server's cipher order wins ({version}): {expected}", cipher == expected, cipher)
        token = base64.b64encode(b"prometheus:s3cret pass").decode()
        # libmicrohttpd hands GnuTLS a response's header and each 16 kB of its body in calls of
        # their own, and GnuTLS wrote each record as it came (the header pushed as a segment of
        # its own); the exporter writes a response of up to three records at once. Counted by
        # the client: TCP segments with data per answer (over loopback, one per write).
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            reader = RecordReader(exporter.port, ca.cert, version)
            try:
                for name, method, headers in (("metrics", "GET", {"Authorization": f"Basic {token}"}),
                                              ("gzip metrics", "GET", {"Authorization": f"Basic {token}", "Accept-Encoding": "gzip"}),
                                              ("HEAD", "HEAD", {"Authorization": f"Basic {token}"}),
                                              ("401", "GET", {}),
                                              ("metrics again", "GET", {"Authorization": f"Basic {token}"}),
                                              ("gzip metrics again", "GET", {"Authorization": f"Basic {token}", "Accept-Encoding": "gzip"})):
                    segments_before = reader.data_segments_received()
                    response, sizes = reader.request(method, "/metrics", headers)
                    segments = reader.data_segments_received() - segments_before
                    head = response.partition(b"\r\n\r\n")[0]
                    body_length = len(response) - len(head) - 4
                    if method == "HEAD":
                        check(f"TLS ({version.name}): HEAD is answered with its header alone", body_length == 0 and b" 200 " in head[:16],
                              (head[:40], sizes))
                        continue
                    check(f"TLS ({version.name}), {name}: {len(sizes)} records ({body_length} body bytes) leave in one write",
                          body_length > 0 and sum(sizes) == len(response) and len(sizes) <= 3 and segments == 1, (segments, sizes))
            finally:
                reader.close()
        # A client that pipelines requests and reads late fills the socket: held records must
        # still all arrive, in order, once it reads.
        context = ssl.create_default_context(cafile=ca.cert)
        context.check_hostname = False
        with context.wrap_socket(socket.create_connection(("127.0.0.1", exporter.port), timeout=20)) as late:
            request = f"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {token}\r\n\r\n".encode()
            late.sendall(request * 150)
            time.sleep(2)
            data, answers = b"", 0
            while answers < 150:
                chunk = late.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
                while True:
                    head, separator, rest = data.partition(b"\r\n\r\n")
                    match = re.search(rb"(?im)^content-length: *(\d+)", head) if separator else None
                    if not match or len(rest) < int(match.group(1)):
                        break
                    body, data = rest[:int(match.group(1))], rest[int(match.group(1)):]
                    if not (head.startswith(b"HTTP/1.1 200") and body.endswith(b"\n") and b"barman_up{" in body):
                        break
                    answers += 1
            check("150 pipelined TLS requests read late: every answer arrives whole and in order", answers == 150, answers)
        status, *_ = curl(exporter.url(), "--cacert", ca.cert, "-H", f"Authorization: basic {token}")
        check("the scheme is case-insensitive (RFC 7617): 'basic' is accepted", status == 200, status)
        # Rotation: new certificate files, SIGHUP; the new certificate is served.
        check("serves the first certificate", "first-server" in server_subject(exporter.port), server_subject(exporter.port))
        exporter.reload(tls_config(second_cert, second_key) + f"basic_auth_users:\n  prometheus: {password_hash}\n")
        check("reload swaps the certificate", "second-server" in server_subject(exporter.port), server_subject(exporter.port) + exporter.log()[-500:])
        status, headers, *_ = curl(exporter.url(), "--cacert", ca.cert, "-u", "prometheus:s3cret pass")
        check("after the reload: 200, and the removed header is gone", status == 200 and "x-frame-options" not in headers, (status, headers))
        # A broken web config at reload: the running one stays.
        exporter.reload(tls_config(second_cert, server_key) + f"basic_auth_users:\n  prometheus: {password_hash}\n")
        log = exporter.log()
        check("reload with a key that does not match: error logged naming the file",
              "web config reload failed" in log and exporter.web_path in log, log[-600:])
        check("...and the previous certificate is still served", "second-server" in server_subject(exporter.port))
        status, *_ = curl(exporter.url(), "--cacert", ca.cert, "-u", "prometheus:s3cret pass")
        check("...and scrapes still succeed", status == 200, status)
        exporter.reload("basic_auth_users:\n  prometheus: {password_hash}\n  prometheus: x\n".replace("{password_hash}", password_hash))
        log = exporter.log()
        check("reload with a duplicate user: FILE:LINE:COL error", f"{exporter.web_path}:3:3: duplicate key 'prometheus'" in log, log[-600:])
        # A truncated web config (a half-written deploy) at reload: protection stays on.
        exporter.reload("")
        log = exporter.log()
        check("reload with an empty web config: error logged, 'the web config is empty'", "the web config is empty" in log, log[-600:])
        status, *_ = curl(exporter.url(), "--cacert", ca.cert)
        check("...and TLS and the password are still required (401 without it)", status == 401, status)
        status, *_ = curl(exporter.url("http"))
        check("...and plain HTTP gets no answer", status is None, status)
        # Turning protection off on purpose works, and is said at warn level.
        exporter.reload("http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
        log = exporter.log()
        check("a reload that turns TLS and basic auth off warns, naming both",
              "this reload turns off TLS" in log and "this reload turns off basic authentication" in log and "level=warn" in log, log[-800:])
        status, *_ = curl(exporter.url("http"))
        check("...and then serves plain HTTP", status == 200, status)
    finally:
        exporter.stop()

    # Client certificates.
    exporter = Exporter(work, tls_config(server_cert, server_key, f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {ca.cert}\n"),
                        "client-cert")
    try:
        status, _, body, code, error = curl(exporter.url(), "--cacert", ca.cert, "--cert", client_cert, "--key", client_key)
        check("client certificate from the trusted CA: 200", status == 200 and "barman_up{" in body, (status, code, error))
        status, _, body, code, error = curl(exporter.url(), "--cacert", ca.cert)
        check("client certificate required and missing: refused (403)", status == 403 and "barman_" not in body, (status, code, error))
        status, _, body, code, error = curl(exporter.url(), "--cacert", ca.cert, "--cert", stranger_cert, "--key", stranger_key)
        check("client certificate from another CA: refused (403)", status == 403 and "not accepted" in body, (status, body, error))
        status, _, body, code, error = curl(exporter.url(), "--cacert", ca.cert, "--cert", expired_client_cert, "--key", expired_client_key)
        check("expired client certificate: refused (403, says expired)", status == 403 and "expired" in body, (status, body, error))
    finally:
        exporter.stop()

    exporter = Exporter(work, tls_config(server_cert, server_key, f"  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: {ca.cert}\n"),
                        "verify-if-given")
    try:
        status, *_ = curl(exporter.url(), "--cacert", ca.cert)
        check("VerifyClientCertIfGiven without a certificate: 200", status == 200, status)
        status, *_ = curl(exporter.url(), "--cacert", ca.cert, "--cert", stranger_cert, "--key", stranger_key)
        check("VerifyClientCertIfGiven with an untrusted certificate: 403", status == 403, status)
    finally:
        exporter.stop()

    # TLS version bounds.
    exporter = Exporter(work, tls_config(server_cert, server_key, "  min_version: TLS13\n"), "tls13")
    try:
        status, *_ = curl(exporter.url(), "--cacert", ca.cert, "--tls-max", "1.2")
        check("min_version TLS13: a TLS 1.2 client is refused", status is None, status)
        status, *_ = curl(exporter.url(), "--cacert", ca.cert)
        check("min_version TLS13: a TLS 1.3 client is served", status == 200, status)
    finally:
        exporter.stop()

    # An expired server certificate: served as configured, with a warning; clients refuse it.
    exporter = Exporter(work, tls_config(expired_cert, expired_key), "expired")
    try:
        check("expired server certificate: warning at start", "has expired" in exporter.log(), exporter.log()[-400:])
        status, _, _, code, error = curl(exporter.url(), "--cacert", ca.cert)
        check("expired server certificate: curl refuses it (certificate has expired)", status is None and "expired" in error, error)
    finally:
        exporter.stop()

    # Errors at start: exit 2, one line per problem naming the file and position.
    web_path = os.path.join(work, "broken-web.yml")
    config_path = os.path.join(work, "broken.yaml")
    with open(config_path, "w") as f:
        f.write(f"address: 127.0.0.1\nport: {free_port()}\nintegration_type: mock\n")
    with open(web_path, "w") as f:
        f.write(f"tls_server_config:\n  cert_file: {server_cert}\n  key_file: {server_key}\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"
                "basic_auth_users:\n  prometheus: not-a-hash\nrate_limit:\n  interval: 1s\nfoo: 1\n")
    result = run(BINARY, "-config", config_path, "--web.config.file", web_path)
    lines = result.stderr.strip().split("\n")
    check("broken web config at start: exit 2, a FILE:LINE:COL line per problem",
          result.returncode == 2 and len(lines) == 4 and all(line.startswith(web_path + ":") for line in lines)
          and f"{web_path}:4:3: tls_server_config.cipher_suites is not supported" in result.stderr
          and f"{web_path}:6:15: basic_auth_users.prometheus is not a bcrypt hash" in result.stderr
          and f"{web_path}:9:1: unknown key 'foo'" in result.stderr, result.stderr)
    result = run(BINARY, "--check-config", "-config", config_path, "--web.config.file", web_path)
    check("--check-config checks the web config too", result.returncode == 2 and web_path in result.stderr, result.stderr)
    with open(web_path, "w") as f:
        f.write("")
    result = run(BINARY, "--check-config", "-config", config_path, "--web.config.file", web_path)
    check("--check-config with an empty web config: exit 2, 'the web config is empty'",
          result.returncode == 2 and f"{web_path}:1:1: the web config is empty" in result.stderr, result.stderr)
    result = run(BINARY, "-config", config_path, "--web.config.file", web_path)
    check("start with an empty web config: exit 2 (fail closed, not plain HTTP)", result.returncode == 2, (result.returncode, result.stderr))
    with open(web_path, "w") as f:
        f.write(tls_config(os.path.join(work, "missing.crt"), server_key))
    result = run(BINARY, "-config", config_path, "--web.config.file", web_path)
    check("missing certificate file at start: exit 2 naming it",
          result.returncode == 2 and "missing.crt" in result.stderr and result.stderr.count("\n") == 1, result.stderr)
    # web_config_file in the config, relative to the config file's directory.
    port = free_port()
    with open(config_path, "w") as f:
        f.write(f"address: 127.0.0.1\nport: {port}\nintegration_type: mock\nweb_config_file: relative-web.yml\n")
    with open(os.path.join(work, "relative-web.yml"), "w") as f:
        f.write(tls_config(os.path.basename(os.path.dirname(server_cert)) + "/" + os.path.basename(server_cert),
                           os.path.basename(os.path.dirname(server_key)) + "/" + os.path.basename(server_key)))
    process = subprocess.Popen([BINARY, "-config", config_path], stderr=subprocess.DEVNULL)
    try:
        status = None
        deadline = time.time() + 10
        while time.time() < deadline and status is None:
            status, *_ = curl(f"https://127.0.0.1:{port}/metrics", "--cacert", ca.cert)
            time.sleep(0.1)
        check("web_config_file in the config (relative paths): served over TLS", status == 200, status)
    finally:
        process.terminate()
        process.wait(10)

    return summary("web")


if __name__ == "__main__":
    sys.exit(main())
