"""What the Python test scripts share: one line per check, a summary, free ports, stopping."""
import socket
import subprocess

results = {"passed": 0, "failed": 0}


def check(name, condition, detail=""):
    if condition:
        results["passed"] += 1
        print(f"ok   {name}")
    else:
        results["failed"] += 1
        print(f"FAIL {name} {str(detail)[:600]}")


def summary(suite):
    """Prints "SUITE: N passed, N failed"; the exit status for the script."""
    print(f"{suite}: {results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process, timeout=10):
    """SIGTERM, then SIGKILL after `timeout` seconds; the exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
