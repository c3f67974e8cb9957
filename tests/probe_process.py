"""`python -m tests.probe_process CODE`: prints, as one JSON line, what a Python service sees of its
process (tests/test_prewarmed.py compares a fresh start with a pre-warmed one), then exits with CODE."""
import ctypes
import json
import os
import signal
import sys
import tempfile

PR_GET_PDEATHSIG = 2


def seen():
    death = ctypes.c_int()
    ctypes.CDLL(None).prctl(PR_GET_PDEATHSIG, ctypes.byref(death))
    return {
        "argv": sys.argv, "cmdline": open("/proc/self/cmdline", "rb").read().rstrip(b"\0").decode().split("\0"), "cwd": os.getcwd(), "path_start": sys.path[:3], "env": dict(os.environ),
        "dont_write_bytecode": sys.dont_write_bytecode, "main": sys.modules["__main__"].__name__,
        "main_file": getattr(sys.modules["__main__"], "__file__", None),
        "stdout_write_through": sys.stdout.write_through, "stderr_errors": sys.stderr.errors,
        "stdin": os.readlink("/proc/self/fd/0"), "stdout_is_stderr": os.path.samestat(os.fstat(1), os.fstat(2)),
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "own_session": os.getsid(0) == os.getpid(), "parent": os.getppid(), "death_signal": death.value,
        "tempdir": tempfile.gettempdir(), "learner_code_loaded": "handson" in sys.modules,
        "handlers": {name: str(signal.getsignal(getattr(signal, name))) for name in ("SIGINT", "SIGTERM", "SIGPIPE", "SIGCHLD")},
    }


if __name__ == "__main__":
    print(json.dumps(seen()))
    sys.exit(int(sys.argv[1]))
