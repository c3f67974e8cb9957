"""Helpers for the project's own tests: run the labs in a child pytest and find what it left."""
import contextlib
import os
import uuid

import psutil

from labs.harness.app_env import app_env
from labs.harness.redis import LocalRedis
from labs.harness.runner import run_labs
from labs.harness.solutions import LAST_STEP, materialize
from labs.harness.web import DjangoServer
from labs.harness.worker import CeleryWorker

STEP_MODULES = [f"labs/test_step{number}.py" for number in range(1, 5)]


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


def processes_marked(mark, owner_pid):
    """Live processes of one lab run: those started with HANDSON_RUN_MARK=mark (the worker, the web
    server), and those working in the run folder of pytest ``owner_pid`` (redis-server, which
    overwrites its environment when it renames itself)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("HANDSON_RUN_MARK") == mark or f"celery-handson-{owner_pid}-" in proc.cwd():
                found.append(" ".join(proc.info["cmdline"] or [])[:120])
        except psutil.Error:
            pass
    return found


def run_marked(modules, pytest_args=(), timeout=600, **env_extra):
    """run_labs with a marker; returns (run, processes still alive afterwards)."""
    mark, env = marked_env(**env_extra)
    run = run_labs(modules, pytest_args=pytest_args, env=env, timeout=timeout)
    return run, processes_marked(mark, run.pid)


@contextlib.contextmanager
def reference_app(run_dir, sleep):
    """The finished hands-on on the services `make run` uses; yields the Django server."""
    workspace = materialize(LAST_STEP, run_dir / "reference")
    redis = LocalRedis(run_dir).start()
    env = app_env(workspace, redis, sleep)
    worker = web = None
    try:
        worker = CeleryWorker(workspace, redis, env, run_dir).start()
        web = DjangoServer(workspace, env, run_dir).start()
        assert worker.problem is None and web.problem is None, (worker.problem, web.problem)
        yield web
    finally:
        for service in (web, worker, redis):
            if service is not None:
                service.stop()
