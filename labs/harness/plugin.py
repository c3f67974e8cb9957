"""The pytest side of the lab: options, the header line, and the fixtures.

Fixtures start real services, each once per run and on free ports of 127.0.0.1:
``redis_server`` -> ``celery_worker`` and ``django_server`` (both need Redis).
A test (or a conftest.py) can override any of them by defining a fixture of the
same name. Teardown stops the web server, the worker, then Redis, whatever
happened; the process module also kills them if pytest itself dies.
"""
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from .app_env import app_env
from .backend import BrokerControl, ResultBackend
from .i18n import say
from .redis import RedisUnavailable, choose_redis
from .solutions import LAST_STEP, ROOT, materialize
from .web import DjangoServer
from .worker import CeleryWorker

LAB_SLEEP = "1"  # seconds the slow work takes in the labs, unless HANDSON_SLEEP says otherwise
_lab_key = pytest.StashKey[dict]()


def pytest_addoption(parser):
    group = parser.getgroup("celery-handson")
    group.addoption("--solution", action="store_true",
                    help="run the labs against the reference solution instead of your handson/")
    group.addoption("--reference", type=int, metavar="N", default=None,
                    help=f"run against the reference of step N (1 = the untouched starter, {LAST_STEP} = --solution)")
    group.addoption("--workspace", metavar="DIR", default=None,
                    help="grade the handson/ inside DIR instead of this repository's (e.g. a learner's clone)")
    group.addoption("--redis", default=os.environ.get("HANDSON_REDIS", "auto"), metavar="KIND",
                    help="auto (default), local, docker, or a redis:// URL (also HANDSON_REDIS)")
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


def pytest_configure(config):
    config.addinivalue_line("markers", "lab: a lesson's check")
    # A grader's timeout sends SIGTERM: treat it like Ctrl-C, so that the fixtures
    # tear down (containers included) instead of the process just vanishing.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    reference = config.getoption("reference")
    if config.getoption("solution"):
        reference = LAST_STEP
    if reference is not None and not 1 <= reference <= LAST_STEP:
        raise pytest.UsageError(f"--reference={reference}: choose a step from 1 to {LAST_STEP}.")
    workspace = config.getoption("workspace")
    if workspace and not (Path(workspace) / "handson").is_dir():
        raise pytest.UsageError(f"--workspace={workspace}: no handson/ folder there.")
    sleep = _sleep_seconds()  # before anything is created: a bad value leaves nothing behind
    _prune_old_run_dirs()
    # The pid in the name tells whose services these are (redis-server rewrites its
    # own command line, but keeps this folder as its working directory).
    run_dir = Path(tempfile.mkdtemp(prefix=f"celery-handson-{os.getpid()}-"))
    try:
        redis, redis_note = choose_redis(config.getoption("redis"), run_dir)
    except RedisUnavailable as problem:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise pytest.UsageError(str(problem)) from None
    config.stash[_lab_key] = {
        "reference": reference, "workspace": Path(workspace).resolve() if workspace else ROOT,
        "run_dir": run_dir, "redis": redis, "redis_note": redis_note, "sleep": sleep, "failed": False,
    }


def pytest_report_header(config):
    lab = config.stash[_lab_key]
    if lab["reference"] is None:
        workspace = say(f"{lab['workspace'] / 'handson'} (your code)", f"{lab['workspace'] / 'handson'} (あなたのコード)")
    elif lab["reference"] == 1:
        workspace = say("the untouched starter (labs/solutions)", "手を加えていないスターター (labs/solutions)")
    else:
        workspace = say(f"reference of step {lab['reference']} (labs/solutions)",
                        f"ステップ {lab['reference']} の模範解答 (labs/solutions)")
    return [
        say(f"celery-handson: workspace {workspace}; sleep {lab['sleep']:g} s; language en",
            f"celery-handson: ワークスペース {workspace}、sleep {lab['sleep']:g} 秒、言語 ja"),
        f"celery-handson: redis {lab['redis'].describe()} {lab['redis_note']}".rstrip(),
        say(f"celery-handson: logs in {lab['run_dir']} (kept when a test fails, or with --keep-logs)",
            f"celery-handson: ログは {lab['run_dir']} (テスト失敗時または --keep-logs で保存)"),
    ]


def pytest_unconfigure(config):
    lab = config.stash.get(_lab_key, None)
    # Logs are kept for a failed run, for the learner to read, unless the caller expects
    # failures and reads the outcome elsewhere (HANDSON_DISCARD_LOGS=1, the project's own tests).
    discard = os.environ.get("HANDSON_DISCARD_LOGS") == "1"
    if lab and (discard or not lab["failed"]) and not config.getoption("keep_logs"):
        shutil.rmtree(lab["run_dir"], ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    lab = item.config.stash.get(_lab_key, None)
    if lab is None or not report.failed:
        return report
    lab["failed"] = True
    if call.excinfo is not None and call.excinfo.errisinstance(AssertionError) and item.get_closest_marker("lab"):
        # A lesson's assertion: its message is the lesson, pytest's introspection
        # of the expression only gets in the way. Keep the message and the line.
        message = str(call.excinfo.value).split("\nassert ", 1)[0].strip()
        entry = call.excinfo.traceback[-1] if call.excinfo.traceback else None
        where = f"{item.path.name}:{entry.lineno + 1}" if entry is not None else item.nodeid
        if message:
            report.longrepr = f"{where}\n{message}"
    # A service's own words, printed under the failure when they hold an error that
    # the failure does not quote already.
    for name in ("celery_worker", "django_server"):
        service = item.funcargs.get(name) if hasattr(item, "funcargs") else None
        if service is not None and service.process.popen is not None:
            tail = service.process.log_tail(30)
            if ("Traceback" in tail or "Error" in tail) and tail not in str(report.longrepr):
                report.sections.append((f"{name} log (last lines)", tail))
    return report


# -- fixtures --------------------------------------------------------------------
@pytest.fixture(scope="session")
def lab(pytestconfig):
    """The run's choices: workspace, Redis, sleep seconds, log folder."""
    return pytestconfig.stash[_lab_key]


@pytest.fixture(scope="session")
def sleep_seconds(lab):
    """How long the slow work takes in this run (HANDSON_SLEEP)."""
    return lab["sleep"]


@pytest.fixture(scope="session")
def workspace(lab):
    """The folder holding the handson/ package under test."""
    if lab["reference"] is not None:
        return materialize(lab["reference"], lab["run_dir"] / f"reference-step{lab['reference']}")
    if not (lab["workspace"] / "handson" / "settings.py").exists():
        pytest.fail(say("handson/settings.py is missing: restore your workspace (make reset).",
                        "handson/settings.py がありません。ワークスペースを戻してください (make reset)。"),
                    pytrace=False)
    return lab["workspace"]


@pytest.fixture(scope="session")
def redis_server(lab):
    """Redis for the broker and the result backend, started once per run."""
    redis = lab["redis"]
    try:
        redis.start()
    except RedisUnavailable as problem:
        redis.stop()
        pytest.fail(str(problem), pytrace=False)
    yield redis
    redis.stop()


@pytest.fixture(scope="session")
def lab_env(workspace, redis_server, sleep_seconds):
    """The environment the app runs in: its Redis, its sleep, and no CELERY_* overrides."""
    return app_env(workspace, redis_server, sleep_seconds)


@pytest.fixture(scope="session")
def celery_worker(workspace, redis_server, lab_env, lab):
    """A `celery -A handson worker` process: prefork pool, one child, as in the original."""
    worker = CeleryWorker(workspace, redis_server, lab_env, lab["run_dir"]).start()
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def django_server(workspace, redis_server, lab_env, lab):
    """The app on `runserver --nothreading --noreload`: one process, one thread."""
    server = DjangoServer(workspace, lab_env, lab["run_dir"]).start()
    yield server
    server.stop()


@pytest.fixture
def web(django_server):
    """A fresh browser-like client (own cookies) for the app."""
    return django_server.client()


@pytest.fixture(scope="session")
def result_backend(redis_server):
    """Reads task states straight from the result backend in Redis."""
    return ResultBackend(redis_server)


@pytest.fixture(scope="session")
def broker_control(redis_server):
    """Sends remote-control commands (revoke) to the worker through the broker."""
    control = BrokerControl(redis_server)
    yield control
    control.close()
