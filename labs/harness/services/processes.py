"""Start a service as a child process, wait until it is ready, and stop it for sure.

Every child runs in a session (process group) of its own, so stopping it also
stops whatever it forked (Celery's pool processes), and it gets SIGKILL from the
kernel if the process that started it dies without cleaning up (kill -9,
a crashed pytest). An atexit hook stops whatever is still running at exit.
"""
import atexit
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import portpicker
import psutil

from . import confine
from .prewarmed import PrewarmedPython

_PR_SET_PDEATHSIG = 1
LOG_READ_LIMIT = 8 << 20  # bytes of a service's log read at once
_running = []
_prewarmed = None  # set by prewarm(): Python services are forked from a Python that has imported them


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return portpicker.pick_unused_port()


def _die_with_parent():
    # Runs in the child between fork and exec (Linux only; elsewhere the
    # process group and the atexit hook do the work).
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def prewarm():
    """From now on, start `python -m ...` services from a pre-warmed Python (services/prewarmed.py).
    Only for a process that is the subreaper of what it starts (sweep.become_subreaper): the services
    become its children there."""
    global _prewarmed
    if _prewarmed is None:
        _prewarmed = PrewarmedPython(_die_with_parent).start()
        atexit.register(_prewarmed.close)


class ServiceProcess:
    """One long-running child process whose output goes to a log file."""

    def __init__(self, name, argv, *, env, cwd, log_path, writable=(), fresh_python=False):
        self.name, self.argv, self.env, self.cwd = name, list(argv), env, cwd
        # A fresh Python, not one forked from the pre-warmed server: for settings a module reads from the
        # environment as it is imported (celery.worker.state's CELERY_WORKER_REVOKES_MAX).
        self.fresh_python = fresh_python
        self.writable = list(writable)  # confined (services/confine.py), the only folders it may write
        self.log_path = Path(log_path)
        self.popen = None

    def start(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = confine.wrap(self.argv, self.cwd, writable=self.writable)
        with open(self.log_path, "wb") as log:
            started = None
            # Confined services start through confine's launcher (argv differs), never pre-warmed.
            if _prewarmed is not None and argv == self.argv and not self.fresh_python:
                started = _prewarmed.spawn(argv, env=self.env or os.environ, cwd=self.cwd, log_path=self.log_path)
            self.popen = started or subprocess.Popen(
                argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        _running.append(self)
        return self

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    def log_text(self, start=0):
        """The log from byte ``start`` on; at most its last LOG_READ_LIMIT bytes (a log the app floods
        is read within limits: what the lab looks for is what the app wrote last)."""
        try:
            with open(self.log_path, "rb") as log:
                end = os.fstat(log.fileno()).st_size
                log.seek(max(start, end - LOG_READ_LIMIT))
                return log.read(LOG_READ_LIMIT).decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_size(self):
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_until(self, ready, *, timeout, interval=0.05):
        """Poll ``ready()`` until it is true (True), the process exits or time runs out (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return True
            if not self.running():
                return bool(ready())
            time.sleep(interval)
        return bool(ready())

    def stop(self, first_signal=signal.SIGTERM, grace=5.0):
        """Signal the whole group, wait up to ``grace`` seconds, then SIGKILL whatever is left."""
        if self.popen is None:
            return
        group = self._group_members()
        try:
            os.killpg(self.popen.pid, first_signal)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        # Anything of the group still alive (a stuck pool process) is killed outright.
        for proc in group + self._group_members():
            try:
                proc.kill()
            except psutil.Error:
                pass
        _wait_until_dead(group, timeout=grace)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        if self in _running:
            _running.remove(self)

    def _group_members(self):
        members = []
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(proc.pid) == self.popen.pid:
                    members.append(proc)
            except (ProcessLookupError, psutil.Error, OSError):
                pass
        return members


def _dead(proc):
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _wait_until_dead(procs, timeout):
    # A zombie counts as dead: the pool processes of a killed worker are reparented to init,
    # which may take a second or more to reap them (psutil.wait_procs would wait for that).
    deadline = time.monotonic() + timeout
    while not all(_dead(proc) for proc in procs) and time.monotonic() < deadline:
        time.sleep(0.01)


@atexit.register
def _stop_everything():
    for service in reversed(list(_running)):
        service.stop(first_signal=signal.SIGKILL, grace=2.0)
