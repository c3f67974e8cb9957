"""The lab's command-line options and the run they describe (workspace, Redis, sleep, log folder).

``pytest_configure`` turns the options into a ``LabRun`` kept in the config's
stash; the header and the fixtures read it from there. Under pytest-xdist every
process (the controller and each worker) makes its own: each worker starts a
stack of its own.
"""
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..i18n import say
from ..paths import LABS, ROOT
from ..services import confine, processes, sweep
from ..services.redis import RedisUnavailable, choose_redis, wanted_kind
from ..steps import last_step

LAB_SLEEP = "1"  # seconds the slow work takes in the labs, unless HANDSON_SLEEP says otherwise


@dataclass
class LabRun:
    reference: int | None  # a reference step to run against, or None for the workspace
    workspace: Path  # the folder holding the handson/ under test (when reference is None)
    run_dir: Path  # this process's log folder
    redis: object  # a services.redis.RedisService, not started
    redis_note: str
    sleep: float
    failed: bool = False


LAB = pytest.StashKey[LabRun]()
SUBREAPER = pytest.StashKey[bool]()  # this run became the subreaper of what its services start
APP_CGROUP = pytest.StashKey[Path]()  # the cgroup of this run's app (confine.app_cgroup)
PRIVATE_RUN_DIR = pytest.StashKey[bool]()  # the run folder is a tmpfs of this run's (confine.private_run_folder)


def pytest_addoption(parser):
    group = parser.getgroup("celery-handson")
    group.addoption("--solution", action="store_true",
                    help="run the labs against the reference solution instead of your handson/")
    group.addoption("--reference", type=int, metavar="N", default=None,
                    help="run against the reference of step N (1 = the untouched starter, the last = --solution)")
    group.addoption("--workspace", metavar="DIR", default=None,
                    help="grade the handson/ inside DIR instead of this repository's (e.g. a learner's clone)")
    group.addoption("--redis", default=wanted_kind(), metavar="KIND",
                    help="local (default: the embedded redis-server, as `make run`), docker, auto (docker when an "
                         "engine answers), or a redis:// URL (also HANDSON_REDIS)")
    group.addoption("--keep-logs", action="store_true",
                    help="keep the services' logs even when every test passes")


def _sleep_seconds():
    raw = os.environ.get("HANDSON_SLEEP", LAB_SLEEP)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1
    if not 0.2 <= seconds <= 60:
        raise pytest.UsageError(say(
            f"HANDSON_SLEEP={raw!r}: give a number of seconds from 0.2 to 60.",
            f"HANDSON_SLEEP={raw!r}: 0.2〜60 の秒数を指定してください。",
        ))
    return seconds


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _prune_old_run_dirs(days=7):
    # Logs of failed runs are kept for reading; a week later nobody will.
    cutoff = time.time() - days * 86400
    for old in Path(tempfile.gettempdir()).glob("celery-handson-*"):
        try:
            if old.is_dir() and old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


def xdist_index(config):
    """0 for a plain run or the first pytest-xdist worker (gw0), 1 for gw1, ..."""
    worker = getattr(config, "workerinput", {}).get("workerid", "gw0")
    return int(worker[2:]) if worker[2:].isdigit() else 0


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: a lesson's check")
    config.addinivalue_line("markers", "stack(workers=[WorkerSpec(...)], web=True): the services a lab module needs")
    # A grader's timeout sends SIGTERM: treat it like Ctrl-C, so that the fixtures
    # tear down (containers included) instead of the process just vanishing.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    final = last_step()
    reference = final if config.getoption("solution") else config.getoption("reference")
    if reference is not None and not 1 <= reference <= final:
        raise pytest.UsageError(f"--reference={reference}: choose a step from 1 to {final}.")
    workspace = config.getoption("workspace")
    if workspace and not (Path(workspace) / "handson").is_dir():
        raise pytest.UsageError(f"--workspace={workspace}: no handson/ folder there.")
    sleep = _sleep_seconds()  # before anything is created: a bad value leaves nothing behind
    if _runs_lab_modules(config):  # every orphan of this run's services comes back here (see pytest_unconfigure)
        config.stash[SUBREAPER] = sweep.become_subreaper()
        # Its services are forked from a Python with Celery and Django imported (HANDSON_PREWARM=0: not).
        if config.stash[SUBREAPER] and not confine.confining_user() and os.environ.get("HANDSON_PREWARM") != "0":
            processes.prewarm()
    _prune_old_run_dirs()
    # The pid in the name tells whose services these are (redis-server rewrites its
    # own command line, but keeps this folder as its working directory).
    run_dir = Path(tempfile.mkdtemp(prefix=f"celery-handson-{os.getpid()}-"))
    if confine.confining_user():
        # The services' folder (their logs, the app's data) on a small tmpfs of this run's own: the app
        # cannot fill the disk through its data folder, nor the grader's reports with it.
        config.stash[PRIVATE_RUN_DIR] = confine.private_run_folder(run_dir)
        run_dir.chmod(0o755)  # the confined services enter it (each sees only the part it needs)
        # The app's processes of this run share one memory bound (their tmpfs included): whatever they do,
        # the kernel's out-of-memory killer stops one of theirs, never this pytest.
        cgroup = confine.app_cgroup(f"{confine.CGROUP_PREFIX}{os.getpid()}")
        if cgroup is not None:
            config.stash[APP_CGROUP] = cgroup
            os.environ[confine.CGROUP_VARIABLE] = str(cgroup)
    try:
        redis, redis_note = choose_redis(config.getoption("redis"), run_dir, offset=xdist_index(config))
    except RedisUnavailable as problem:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise pytest.UsageError(str(problem)) from None
    config.stash[LAB] = LabRun(reference, Path(workspace).resolve() if workspace else ROOT,
                               run_dir, redis, redis_note, sleep)


def _runs_lab_modules(config):
    """Whether this pytest runs the lab's modules (not the project's own tests, whose child runs
    are killed on purpose: the orphans they leave are init's to reap, as a learner's would be)."""
    for arg in config.args:
        path = (Path(config.invocation_params.dir) / arg.split("::", 1)[0]).resolve()
        if path == LABS or LABS in path.parents:
            return True
    return False


def pytest_unconfigure(config):
    # What the learner's code started and left running (a daemon, a fork bomb) ends with this run:
    # it would otherwise go on into the next step's, or the next test's, and change its verdict.
    if config.stash.get(SUBREAPER, False):
        sweep.kill_descendants()
    if config.stash.get(APP_CGROUP, None) is not None:
        confine.remove_cgroup(config.stash[APP_CGROUP])
    lab = config.stash.get(LAB, None)
    # Logs are kept for a failed run, for the learner to read, unless the caller expects
    # failures and reads the outcome elsewhere (HANDSON_DISCARD_LOGS=1, the project's own tests).
    discard = os.environ.get("HANDSON_DISCARD_LOGS") == "1"
    if lab and config.stash.get(PRIVATE_RUN_DIR, False):
        confine.leave_run_folder(lab.run_dir)  # what was on it goes with it; the empty folder below stays
        discard = True
    if lab and (discard or not lab.failed) and not config.getoption("keep_logs"):
        shutil.rmtree(lab.run_dir, ignore_errors=True)
