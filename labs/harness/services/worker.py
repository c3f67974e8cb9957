"""A real `celery -A handson worker` process (prefork pool by default) and its log.

What the worker runs is declared with a ``WorkerSpec`` (a step asks for its
workers in its module, see services/stack.py). By default it is started the way
the original hands-on starts it, with one pool process, and without the start-up
chatter with other workers (mingle, gossip) that only slows a lone worker down.
A worker that cannot start because of the learner's code does not raise here: it
keeps what it saw in ``problem`` (a Cause), and a test that needs the worker
fails with it (``require_running``).
"""
import os
import re
import shlex
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..tracebacks import headline
from .app_env import data_folders
from .beat import schedule_file
from .causes import CeleryProcess
from .processes import ServiceProcess

READY_TIMEOUT = 30  # seconds; a cold start takes about 1-2 s, a busy machine more


@dataclass(frozen=True)
class WorkerSpec:
    """One `celery worker` node a step needs. Frozen, so equal declarations share a stack."""

    node: str = "default"  # the node name's first part: "<node>-<random>@<host>"
    concurrency: int = 1
    pool: str = "prefork"  # prefork is the pool that can terminate a task and enforce time limits
    queues: tuple = ()  # -Q: empty means Celery's default queue
    events: bool = False  # -E: send task events (Flower, `celery events`)
    beat: bool = False  # -B: run the beat scheduler inside this worker
    options: tuple = ()  # any other command-line options, e.g. ("--prefetch-multiplier=1",)
    execs: bool = False  # its Procfile line starts with `exec` (step 12: what a shell-form start does with it)
    env: tuple = ()  # (name, value) pairs the lab sets for this worker alone, e.g. Celery's CELERY_WORKER_REVOKES_MAX

    def argv(self, node_name):
        argv = [sys.executable, "-m", "celery", "-A", "handson", "worker", f"--pool={self.pool}",
                f"--concurrency={self.concurrency}", "--loglevel=INFO", "--without-mingle",
                "--without-gossip", "-n", node_name]
        if self.queues:
            argv += ["-Q", ",".join(self.queues)]
        if self.events:
            argv.append("-E")
        if self.beat:
            argv.append("-B")
        return argv + list(self.options)


class CeleryWorker(CeleryProcess):
    service = "worker"

    def __init__(self, workspace, redis, env, log_dir, spec=WorkerSpec(), *, shell_form=False):
        self.workspace, self.redis, self.env, self.spec = Path(workspace), redis, env, spec
        self.node = f"{spec.node}-{uuid.uuid4().hex[:6]}@%h"
        argv = spec.argv(self.node)
        if spec.beat:  # its beat's schedule file in the run's folder, not in the workspace (services/beat.py)
            argv.append(f"--schedule={schedule_file(env, log_dir, spec.node)}")
        if shell_form:  # as a Dockerfile's `CMD <line>` starts it (step 12): /bin/sh -c, exec'ing only if told to
            argv = shell_form_argv(argv, spec.execs)
        self.process = ServiceProcess(f"worker {spec.node}", argv, env=dict(env, **dict(spec.env)), cwd=self.workspace,
                                      log_path=Path(log_dir) / f"worker-{spec.node}.log", writable=data_folders(env),
                                      fresh_python=bool(spec.env))
        self.problem = None

    # -- start and stop ----------------------------------------------------------
    def launch(self):
        """Start the process without waiting (the stack starts its services side by side)."""
        self.process.start()
        return self

    def wait_ready(self):
        ready = self.process.wait_until(self._ready_or_stuck, timeout=READY_TIMEOUT, interval=0.02)
        self.problem = self._diagnose(ready)
        return self

    def start(self):
        return self.launch().wait_ready()

    def stop(self):
        # SIGKILL to the whole group, at once. Celery's own shutdowns (SIGTERM warm, SIGQUIT cold)
        # take 1.3-1.8 s even when idle, and they put the tasks it had prefetched back on the
        # queue, where the next stack's worker would run them: neither is wanted when a run ends.
        self.process.stop(first_signal=signal.SIGKILL, grace=5.0)

    def _ready_or_stuck(self):
        log = self.log()
        return " ready." in log or "Cannot connect to" in log

    def _diagnose(self, ready):
        log = self.log()
        if "Unable to load celery application" in log:
            return self._cause("no_celery_app")
        if "Cannot connect to" in log:
            return self._cause("broker_unreachable", expected=self.redis.broker_url)
        if not ready:
            stopped = not self.process.running()
            return self._cause("crashed_on_start" if stopped else "not_ready",
                               headline=headline(log, self.workspace), seconds=READY_TIMEOUT)
        transport = self.banner("transport") or ""
        if address(transport) != address(self.redis.broker_url):
            return self._cause("wrong_broker", transport=transport, expected=self.redis.broker_url)
        return None

    def confirm(self, control):
        """Once started: a Celery worker answers the remote-control ping addressed to its node through
        the broker. One that started without a problem but does not answer keeps the cause
        "no_remote_control" (remote control turned off, or something in handson/ standing in for Celery's
        worker, whose log lines alone are cheap to print)."""
        if self.problem is not None or not self.process.running():
            return self
        hostname = self.hostname()
        if not hostname or not control.answers_ping(hostname):
            self.problem = self._cause("no_remote_control", node=hostname or self.node)
        return self

    # -- what tests use (require_running, log, mark, log_tail: causes.CeleryProcess) ----------
    def banner(self, field):
        """A value from the start-up banner, e.g. banner("transport") or banner("results")."""
        match = re.search(rf"\.> {field}:\s+(\S+)", self.log())
        return match.group(1) if match else None

    def registered_tasks(self):
        """Task names listed under [tasks] in the start-up banner."""
        block = self.log().split("[tasks]", 1)
        if len(block) < 2:
            return []
        return re.findall(r"^\s+\. (\S+)", block[1].split("\n\n", 1)[0], flags=re.M)

    def unfinished_ids(self, since=0):
        """Ids of tasks the log says this worker received and has not yet finished (succeeded,
        raised, retried, terminated or discarded), in the order received."""
        log = self.log(since)
        open_count = {}
        for task_id in _RECEIVED.findall(log):
            open_count[task_id] = open_count.get(task_id, 0) + 1
        for task_id in _ENDED.findall(log):
            task_id = next(part for part in task_id if part)
            if task_id in open_count:
                open_count[task_id] -= 1
        return [task_id for task_id, count in open_count.items() if count > 0]

    def hostname(self):
        """The node name the worker reports (``%h`` replaced), from its banner."""
        match = re.search(r"^ \S*\s*(\S+@\S+) v\d", self.log(), flags=re.M)
        return match.group(1) if match else None

    def main_pid(self):
        """The pid of the worker's main process: the process started, or, when a shell started it and
        waits for it (shell form without exec), the shell's child."""
        try:
            started = psutil.Process(self.process.pid)
            if started.name() not in SHELLS:
                return started.pid
            return next((child.pid for child in started.children() if child.name() not in SHELLS), None)
        except psutil.Error:
            return None

    def kill_pool_process(self, pid, timeout=5.0):
        """SIGKILL one pool process, as the out-of-memory killer would, with the worker's main process
        paused until the kernel has made the dead process a zombie.

        Why the pause: the main process learns of a death when the process's sentinel pipe closes, and
        reaps it with a non-blocking wait. The kernel closes a dying process's files a moment before
        the process becomes reapable; a main process that wakes in that moment finds nothing to reap,
        stops watching, and notices the death only at its pool check, up to 5 s later (billiard's
        maintain_pool timer). Paused, it always wakes after, and notices at once: the same Celery code
        path, without the lottery."""
        main = self.main_pid() or self.process.pid
        os.kill(main, signal.SIGSTOP)
        try:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and alive(pid):
                time.sleep(0.001)
        finally:
            os.kill(main, signal.SIGCONT)

    def pool_pids(self):
        try:
            return [child.pid for child in psutil.Process(self.main_pid() or self.process.pid).children()]
        except psutil.Error:
            return []


SHELLS = ("sh", "dash", "bash")


def shell_form_argv(argv, execs):
    """``argv`` the way a shell-form command line runs it: ``/bin/sh -c "[exec ]COMMAND"``."""
    return ["/bin/sh", "-c", ("exec " if execs else "") + shlex.join(argv)]


_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_RECEIVED = re.compile(rf"Task [\w.]+\[({_ID})\] received")
_ENDED = re.compile(rf"\[({_ID})\] (?:succeeded|raised|retry)|Terminating ({_ID})|Discarding revoked task: [\w.]+\[({_ID})\]")


def alive(pid):
    """Whether ``pid`` is still a running process (not yet a zombie, nor gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def address(url):
    """host:port/db of a redis:// URL, without the credentials Celery masks as ':**@' in its banner."""
    rest = url.split("://", 1)[-1].rsplit("@", 1)[-1]
    return rest if "/" in rest else rest + "/0"
