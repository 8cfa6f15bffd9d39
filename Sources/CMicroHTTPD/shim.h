#ifndef CMICROHTTPD_SHIM_H
#define CMICROHTTPD_SHIM_H
/* microhttpd.h expects these to be included first (it does not include them itself). */
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <microhttpd.h>
/* libmicrohttpd's TLS is GnuTLS; these helpers reach it where libmicrohttpd stops: it asks for
 * a client certificate but does not verify one, and it reports a bad key only to its log. */
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <arpa/inet.h>
#include <netinet/in.h>

static inline void cmhd_copy_reason(char *reason, size_t size, const char *text) {
    if (reason != NULL && size > 0) snprintf(reason, size, "%s", text);
}

/* A connection's GnuTLS session, or NULL when it does not speak TLS. MHD_get_connection_info is
 * variadic, so Swift cannot call it. */
static inline gnutls_session_t cmhd_tls_session(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    return info == NULL ? NULL : (gnutls_session_t) info->tls_session;
}

/* The TLS client certificate of a connection: -2 not a TLS connection, 0 none presented,
 * 1 presented and verified against the trusted CAs given to libmicrohttpd (signature, validity
 * dates), -1 presented and not verified (why in `reason`). */
static inline int cmhd_client_certificate(struct MHD_Connection *connection, char *reason, size_t reason_size) {
    gnutls_session_t session = cmhd_tls_session(connection);
    if (session == NULL) return -2;
    unsigned int count = 0;
    if (gnutls_certificate_get_peers(session, &count) == NULL || count == 0) return 0;
    unsigned int status = 0;
    int result = gnutls_certificate_verify_peers2(session, &status);
    if (result < 0) {
        cmhd_copy_reason(reason, reason_size, gnutls_strerror(result));
        return -1;
    }
    if (status == 0) return 1;
    gnutls_datum_t text = { NULL, 0 };
    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) == 0 && text.data != NULL) {
        cmhd_copy_reason(reason, reason_size, (const char *) text.data);
        gnutls_free(text.data);
    } else {
        cmhd_copy_reason(reason, reason_size, "the certificate is not trusted");
    }
    return -1;
}

/* The connection's socket, or -1 when not known. MHD_get_connection_info is variadic, so Swift
 * cannot call it. */
static inline int cmhd_connection_socket(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info == NULL ? -1 : info->connect_fd;
}

/* The epoll descriptor of a daemon started with MHD_USE_EPOLL and no threads of its own, which
 * its driver waits on; -1 when there is none. MHD_get_daemon_info is variadic, so Swift cannot
 * call it. */
static inline int cmhd_daemon_epoll_fd(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD);
    return info == NULL ? -1 : info->epoll_fd;
}

/* The client's IP address as text (inet_ntop): 0, or -1 when it is not known.
 * MHD_get_connection_info is variadic, so Swift cannot call it. */
static inline int cmhd_client_address(struct MHD_Connection *connection, char *text, size_t size) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (info == NULL || info->client_addr == NULL || size == 0) return -1;
    const struct sockaddr *address = info->client_addr;
    const void *raw = NULL;
    if (address->sa_family == AF_INET) raw = &((const struct sockaddr_in *) address)->sin_addr;
    else if (address->sa_family == AF_INET6) raw = &((const struct sockaddr_in6 *) address)->sin6_addr;
    else return -1;
    return inet_ntop(address->sa_family, raw, text, (socklen_t) size) == NULL ? -1 : 0;
}

/* Loads PEM certificate chain + key (and trusted client CAs when `ca` is not NULL) the way
 * libmicrohttpd will, to report a problem before the server is replaced: 0 fine; -1 the
 * certificate or key (why in `reason`); -2 the CA file. `not_after` gets the expiry time of the
 * first certificate (-1 if unknown). All strings are NUL-terminated PEM. */
static inline int cmhd_check_tls_material(const char *cert, const char *key, const char *ca, char *reason, size_t reason_size, long long *not_after) {
    *not_after = -1;
    gnutls_certificate_credentials_t credentials;
    int result = gnutls_certificate_allocate_credentials(&credentials);
    if (result < 0) {
        cmhd_copy_reason(reason, reason_size, gnutls_strerror(result));
        return -1;
    }
    gnutls_datum_t cert_datum = { (unsigned char *) cert, (unsigned int) strlen(cert) };
    gnutls_datum_t key_datum = { (unsigned char *) key, (unsigned int) strlen(key) };
    result = gnutls_certificate_set_x509_key_mem2(credentials, &cert_datum, &key_datum, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (result < 0) {
        cmhd_copy_reason(reason, reason_size, gnutls_strerror(result));
        gnutls_certificate_free_credentials(credentials);
        return -1;
    }
    if (ca != NULL) {
        gnutls_datum_t ca_datum = { (unsigned char *) ca, (unsigned int) strlen(ca) };
        result = gnutls_certificate_set_x509_trust_mem(credentials, &ca_datum, GNUTLS_X509_FMT_PEM);
        if (result <= 0) {
            cmhd_copy_reason(reason, reason_size, result < 0 ? gnutls_strerror(result) : "no PEM certificate found");
            gnutls_certificate_free_credentials(credentials);
            return -2;
        }
    }
    gnutls_certificate_free_credentials(credentials);
    gnutls_x509_crt_t first;
    if (gnutls_x509_crt_init(&first) == 0) {
        if (gnutls_x509_crt_import(first, &cert_datum, GNUTLS_X509_FMT_PEM) == 0) {
            *not_after = (long long) gnutls_x509_crt_get_expiration_time(first);
        }
        gnutls_x509_crt_deinit(first);
    }
    return 0;
}
#endif
