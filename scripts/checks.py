"""What the Python test scripts share: one line per check, a summary, free ports."""
import socket

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
