"""Start `python -m celery ...` and `python -m labs.harness.services.runserver ...` without paying for
Python's imports every time: fork them from a Python that has imported Celery, Kombu and Django once.

Why: a lab run starts a fresh stack often (a module of its own, every test of the integrity check's
"alone" run), and a fresh `celery worker` spends about 1 s of CPU importing Celery, Click, Kombu and
Django before it does anything, the web server about 0.5 s. Forked from a Python that holds those
modules already, the same worker costs about a third of that. The service is still a real process:
it runs Celery's (or Django's) own command line as `python -m` would, in a process of its own, with
its own environment, folder, log and session, and dies with the run.

How, with the run's pytest as the client (plugin/options.py turns this on for lab runs that are the
subreaper of their services, sweep.py, and that do not confine the app, confine.py):
- the client starts this file as a script: ``python prewarmed.py``. It imports PRELOAD (never the
  learner's code, nor the lab's: both are found the way `python -m` finds them, after the fork) and
  then reads one JSON request per line on stdin: module, args, env, cwd, log;
- for each request it forks twice; the middle process exits at once, so the service is re-parented
  to the nearest subreaper, the client, which can wait for it and read its exit code as its own
  child's. The service's pid is the answer, one JSON line on stdout;
- the service then becomes what `python -m MODULE ARGS` started with ENV in CWD would be: a session
  of its own, SIGKILL when the client dies (as processes._die_with_parent), stdin from /dev/null,
  stdout and stderr to the log, no other file open, the environment replaced, sys.path built as
  `-m` builds it (CWD, then PYTHONPATH, then the interpreter's own), PYTHONUNBUFFERED and
  PYTHONDONTWRITEBYTECODE applied; it runs the module with runpy as `-m` does, and exits as
  Python's own shutdown would (threads joined, atexit handlers run, streams flushed).

What differs from a fresh `python -m`: the modules of PRELOAD are imported before the service's
environment is set (none of them reads the HANDSON_* variables, nor PYTHONPATH), and their objects are
frozen out of the garbage collector's sight (gc.freeze: they live as long as the process anyway);
every service shares the server's string-hash seed; /proc/PID/environ shows the server's first
environment (os.environ, and what the service's own children get, are the service's).
tests/test_stack.py checks that a prewarmed worker and web server see what a fresh one sees.
"""
import json
import os
import sys

PRELOAD = (
    "celery.bin.celery", "celery.apps.worker", "celery.worker.consumer", "celery.worker.strategy",
    "celery.concurrency.prefork", "celery.backends.redis", "celery.contrib.django.task", "kombu.transport.redis",
    "django.core.management", "django.core.management.commands.migrate",
    "django.core.management.commands.runserver", "django.core.servers.basehttp", "django.db.backends.sqlite3.base",
)
PR_SET_PDEATHSIG = 1
TITLE_ROOM = 4096  # bytes of the server's command line that its services' command lines are written over
ANSWER_TIMEOUT = 30  # seconds for the server's answer: its imports take about 1 s, a fork milliseconds


# -- the server (this file run as a script) ----------------------------------------------------
def _serve():
    import gc
    import importlib

    del sys.path[0]  # this script's folder (labs/harness/services, whose redis/ would hide redis-py)
    interpreter_path = list(sys.path)
    for name in PRELOAD:
        importlib.import_module(name)
    # What is loaded now lives as long as any service: out of the collector's sight (the docs' advice for
    # a server that forks). Celery's pool runs gc.collect() before it forks each pool process (asynpool.py,
    # _create_worker_process): over the preloaded modules that took 0.1 s of CPU each time.
    gc.freeze()
    requests, replies = sys.stdin.buffer, sys.stdout.fileno()
    for line in requests:
        request = json.loads(line)
        pid_reader, pid_writer = os.pipe()
        middle = os.fork()
        if middle == 0:
            os.close(pid_reader)
            try:
                middle = os.getpid()
                service = os.fork()
                if service == 0:
                    os.close(pid_writer)
                    _become(request, interpreter_path, middle)  # never returns
                answer = {"pid": service}
            except BaseException as error:  # noqa: BLE001 - the client must get an answer
                answer = {"error": f"{type(error).__name__}: {error}"}
            os.write(pid_writer, json.dumps(answer).encode())
            os._exit(0)
        os.close(pid_writer)
        with open(pid_reader, "rb") as reader:
            answer = reader.read() or b'{"error": "no answer"}'
        # Answered once the middle process has gone: by then the service is the client's child.
        os.waitpid(middle, 0)
        os.write(replies, answer + b"\n")


def _become(request, interpreter_path, middle):
    """In the forked service: the process `python -m MODULE ARGS` would be, then run it."""
    import ctypes
    import io
    import runpy
    import signal
    import time

    code = 1
    try:
        os.setsid()
        while os.getppid() == middle:  # until the middle process has gone and the client adopted this one
            time.sleep(0.0002)
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != request["client"]:
            os._exit(70)  # the client died meanwhile (or is no subreaper): nothing may run unwatched

        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
            if fd > 2:
                try:
                    os.close(fd)
                except OSError:
                    pass

        env = request["env"]
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(env)
        search = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
        sys.path[:] = [os.getcwd(), *search, *interpreter_path]
        sys.path_importer_cache.clear()
        sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
        unbuffered = bool(env.get("PYTHONUNBUFFERED"))
        sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.open(0, "rb", closefd=False))
        sys.stdout = sys.__stdout__ = _output(1, unbuffered, "strict")
        sys.stderr = sys.__stderr__ = _output(2, unbuffered, "backslashreplace")
        import tempfile

        tempfile.tempdir = None  # found again from this environment's TMPDIR

        _retitle([sys.executable, "-m", request["module"], *request["args"]])
        sys.argv = [request["module"], *request["args"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit:
        code = _exit_code(exit.code)
    except KeyboardInterrupt:
        code = -signal.SIGINT
    except BaseException:  # noqa: BLE001 - printed as Python prints an uncaught exception
        sys.excepthook(*sys.exc_info())
        code = 1
    _shut_down(code)


def _retitle(argv):
    """Show ``argv`` as this process's command line (/proc/PID/cmdline, ps, psutil), as the process
    started with it would: written over the server's own arguments, which TITLE_ROOM leaves room for.
    The kernel reads the command line from that memory (its bounds are in /proc/self/stat)."""
    import ctypes

    fields = open("/proc/self/stat", "rb").read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: fields 48 and 49 of proc(5)
    title = b"".join(arg.encode() + b"\0" for arg in argv)
    if len(title) <= end - start:
        ctypes.memmove(start, title.ljust(end - start, b"\0"), end - start)


def _output(fd, unbuffered, errors):
    import io

    if unbuffered:  # as CPython's own start-up makes them with PYTHONUNBUFFERED=1
        return io.TextIOWrapper(io.open(fd, "wb", buffering=0, closefd=False), errors=errors, write_through=True)
    return io.TextIOWrapper(io.open(fd, "wb", closefd=False), errors=errors, line_buffering=False)


def _exit_code(value):
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def _shut_down(code):
    """As Python ends: non-daemon threads joined, atexit handlers run, the streams flushed."""
    import atexit
    import signal
    import threading

    try:
        threading._shutdown()  # noqa: SLF001 - what the interpreter itself calls at exit
        atexit._run_exitfuncs()  # noqa: SLF001
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110 - a closed stream has nothing to flush
                pass
        if code < 0:  # an uncaught KeyboardInterrupt: Python dies of SIGINT
            signal.signal(-code, signal.SIG_DFL)
            os.kill(os.getpid(), -code)
        os._exit(code & 0xFF)


# -- the client (the run's pytest) -----------------------------------------------------------
class AdoptedProcess:
    """A service the server forked and this process adopted (as its subreaper): what the stack uses
    of subprocess.Popen, read with waitpid as Popen reads its own children."""

    def __init__(self, pid, args):
        self.pid, self.args, self.returncode = pid, args, None

    def poll(self):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone, its code unknown
                self.returncode = -255
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        import subprocess
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(0.005)
        return self.returncode

    def send_signal(self, number):
        if self.poll() is None:
            os.kill(self.pid, number)

    def terminate(self):
        import signal

        self.send_signal(signal.SIGTERM)

    def kill(self):
        import signal

        self.send_signal(signal.SIGKILL)


class PrewarmedPython:
    """The server of this process (started on first use) and the requests to it."""

    def __init__(self, die_with_parent):
        import threading

        self._die_with_parent, self._server, self._lock = die_with_parent, None, threading.Lock()

    def start(self):
        """Start the server now (it imports for about a second, while the run does other things)."""
        with self._lock:
            self._running_server()
        return self

    def spawn(self, argv, *, env, cwd, log_path):
        """An AdoptedProcess running ``argv`` (``[sys.executable, "-m", MODULE, *ARGS]``), or None when
        ``argv`` is another command or no server can serve (the caller starts it the usual way)."""
        if len(argv) < 3 or argv[0] != sys.executable or argv[1] != "-m":
            return None
        request = {"module": argv[2], "args": list(argv[3:]), "env": dict(env), "cwd": str(cwd),
                   "log": str(log_path), "client": os.getpid()}
        with self._lock:
            server = self._running_server()
            if server is None:
                return None
            try:
                server.stdin.write((json.dumps(request) + "\n").encode())
                server.stdin.flush()
                answer = json.loads(self._answer(server) or b"{}")
            except (OSError, ValueError):
                answer = {}
        if "pid" not in answer:
            self.close()
            return None
        return AdoptedProcess(answer["pid"], argv)

    @staticmethod
    def _answer(server, timeout=ANSWER_TIMEOUT):
        import select

        ready, _, _ = select.select([server.stdout], [], [], timeout)
        return server.stdout.readline() if ready else b""

    def _running_server(self):
        import subprocess

        if self._server is not None and self._server.poll() is None:
            return self._server
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("CELERY_") and key not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # as the services' own environment has it (app_env)
        try:
            self._server = subprocess.Popen([sys.executable, os.path.abspath(__file__), " " * TITLE_ROOM], env=env,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                            start_new_session=True, preexec_fn=self._die_with_parent)
        except OSError:
            self._server = None
        return self._server

    def close(self):
        """Stop the server (the services it started are this process's own, and stay)."""
        server, self._server = self._server, None
        if server is not None:
            try:
                server.stdin.close()
                server.wait(timeout=5)
            except Exception:  # noqa: BLE001 - closed or stuck: it is killed below
                server.kill()
                server.wait()
            server.stdout.close()


if __name__ == "__main__":
    _serve()
