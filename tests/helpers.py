"""Helpers for the project's own tests: one way to start a child pytest, one way to find
what a run left behind, and the finished app on the stack `make run` uses."""
import contextlib
import fcntl
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

from labs.harness.lesson.waiting import wait_for
from labs.harness.paths import ROOT
from labs.harness.reference import materialize
from labs.harness.runner import run_labs
from labs.harness.services.processes import free_port
from labs.harness.services.redis import LocalRedis
from labs.harness.services.stack import Stack, StackSpec
from labs.harness.steps import last_step, modules

STEP_MODULES = modules()


def once_per_session(name, compute):
    """compute() once in the whole test session, in whichever pytest-xdist worker asks first; the
    others wait for it and get its (pickled) result. For module fixtures that grade or run the lab:
    xdist starts a module fixture in every worker that runs one of the module's tests, and xdist_group
    does not help (it no longer groups under pytest 9.2, pytest-dev/pytest-xdist#1386)."""
    folder = os.environ.get("HANDSON_TESTS_TMPDIR")
    if not folder:
        return compute()
    path = Path(folder) / "once" / name
    path.parent.mkdir(exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even if compute() raises
        if path.exists():
            return pickle.loads(path.read_bytes())
        value = compute()
        path.write_bytes(pickle.dumps(value))
        return value


def marked_env(**extra):
    """An environment carrying a fresh marker, so every process a run starts can be found by it."""
    mark = uuid.uuid4().hex
    env = {key: value for key, value in os.environ.items() if key != "HANDSON_SLEEP"}  # the labs' own default
    # The embedded Redis unless the caller says otherwise: these tests are about the lab, and
    # `auto` would switch to Docker whenever an engine happens to run (CI tests that path apart).
    env.update(HANDSON_RUN_MARK=mark, HANDSON_LANG="en", HANDSON_REDIS=os.environ.get("HANDSON_REDIS", "local"),
               HANDSON_DISCARD_LOGS="1")  # these runs fail on purpose; their outcome is read from JUnit
    env.update(extra)
    return mark, env


def processes_marked(mark, owner_pid=None, folder=None):
    """Live processes of one run: those started with HANDSON_RUN_MARK=mark (the worker, the web
    server), and those working in the run folder of pytest ``owner_pid`` or under ``folder``
    (redis-server, which overwrites its environment when it renames itself)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cwd = proc.cwd()
            if (proc.environ().get("HANDSON_RUN_MARK") == mark
                    or (owner_pid is not None and f"celery-handson-{owner_pid}-" in cwd)
                    or (folder is not None and cwd.startswith(str(folder)))):
                found.append(" ".join(proc.info["cmdline"] or [])[:120])
        except psutil.Error:
            pass
    return found


def child_pytest(*args, cwd=ROOT, env=None, background=False, timeout=120):
    """``python -m pytest args`` in ``cwd``: a CompletedProcess (text), or a Popen when ``background``."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *map(str, args)]
    env = dict(os.environ, HANDSON_LANG="en") if env is None else env
    if background:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def run_marked(modules, pytest_args=(), timeout=600, **env_extra):
    """run_labs with a marker and a TMPDIR of its own (every run folder of the child, and of its xdist
    workers, is made there); returns (run, processes still alive afterwards)."""
    scratch = tempfile.mkdtemp(prefix="celery-handson-child-")
    mark, env = marked_env(TMPDIR=scratch, **env_extra)
    try:
        run = run_labs(modules, pytest_args=pytest_args, env=env, timeout=timeout)
        return run, processes_marked(mark, run.pid, folder=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def reference_app(run_dir, sleep, spec=StackSpec()):
    """The finished hands-on on the stack `make run` uses; yields the Stack."""
    workspace = materialize(last_step(), run_dir / "reference")
    with Stack(workspace, LocalRedis(run_dir), sleep, run_dir, spec) as stack:
        assert not stack.problems(), stack.problems()
        yield stack


class Run:
    """`python -m labs.harness.tools.run --solution` as a child, its output read line by line."""

    def __init__(self, tmp_path, *args, **env_extra):
        self.folder = tmp_path / "tmp"
        self.folder.mkdir()
        self.port = free_port()
        self.mark, env = marked_env(PORT=str(self.port), HANDSON_SLEEP="1", TMPDIR=str(self.folder),
                                    HANDSON_LAB_DIR=str(tmp_path / "lab"), **env_extra)
        self.process = subprocess.Popen([sys.executable, "-m", "labs.harness.tools.run", "--solution", *args],
                                        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True)
        self.lines = []  # (monotonic time, line)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def output(self):
        return "\n".join(line for _, line in self.lines)

    def seen(self, text, after=0.0):
        """The time ``text`` was printed (after ``after``), or None."""
        return next((at for at, line in list(self.lines) if at >= after and text in line), None)

    def wait_ready(self):
        assert wait_for(lambda: self.seen("Open http://") or self.process.poll() is not None, timeout=90)
        assert self.process.poll() is None, self.output()[-3000:]
        return self

    def service_pid(self, word):
        """The pid of the service process (a child of make run) whose command line has ``word``."""
        for child in psutil.Process(self.process.pid).children():
            if word in " ".join(child.cmdline()):
                return child.pid
        raise AssertionError(f"no {word!r} among {[c.cmdline() for c in psutil.Process(self.process.pid).children()]}")

    def left_behind(self):
        return processes_marked(self.mark, folder=self.folder)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
