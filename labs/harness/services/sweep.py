"""Nothing the learner's code starts outlives the run that started it.

The learner's code runs while it is graded (the worker imports handson/, the server serves it),
and it may start processes of its own. One that double-forks or calls setsid leaves its parent's
process group and session, so stopping the services' groups does not reach it: on its own it is
re-parented to init and could, say, rewrite result.json after the grader has exited.

On Linux a process can be a *child subreaper* (prctl PR_SET_CHILD_SUBREAPER, Linux 3.4+): every
orphan among its descendants is re-parented to it instead of init, however it got away. `make
grade` becomes one before the first step runs, and kills every process still below it once the
last step has ended and before it writes any report. Where that is not available (macOS, Windows)
the report says the grade ran without this guard. Every lab pytest does the same for its own
services (plugin/options.py), so a daemon started in one step's run does not live into the next.
"""
import ctypes
import ctypes.util
import os
import signal
import sys
import time

import psutil

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
ROUNDS = 20  # kill, then look again: a process may fork while its parent is being killed


def become_subreaper():
    """Make this process the subreaper of all it starts; True when the kernel agreed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _describe(process):
    try:
        return f"{process.pid} {' '.join(process.cmdline())[:200]}"
    except psutil.Error:
        return str(process.pid)


def kill_descendants(timeout=5.0):
    """SIGKILL every process below this one, again and again until none is left (or ``timeout``);
    return a line for each process that was still running ("pid command")."""
    me, stopped = psutil.Process(), []
    deadline = time.monotonic() + timeout
    for _ in range(ROUNDS):
        left = [child for child in me.children(recursive=True) if _alive(child)]
        if not left:
            break
        for process in left:
            stopped.append(_describe(process))
            try:
                # Stopped first, so that it cannot fork a replacement while it is being killed.
                process.send_signal(signal.SIGSTOP)
            except psutil.Error:
                pass
        for process in left:
            try:
                process.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=max(0.1, min(1.0, deadline - time.monotonic())))
        if time.monotonic() > deadline:
            break
    _reap()
    return list(dict.fromkeys(stopped))


def _alive(process):
    """Running, and not a zombie waiting to be reaped (a process may end while it is looked at)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap():
    """Collect the exit status of the orphans handed to us, so that none stays a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
