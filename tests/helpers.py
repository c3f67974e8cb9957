"""Helpers for the project's own tests: run the labs in a child pytest and find what it left."""
import os
import uuid

import psutil

from labs.harness.runner import run_labs

STEP_MODULES = [f"labs/test_step{number}.py" for number in range(1, 5)]


def marked_env(**extra):
    """An environment carrying a fresh marker, so every process a run starts can be found by it."""
    mark = uuid.uuid4().hex
    env = {key: value for key, value in os.environ.items() if key != "HANDSON_SLEEP"}  # the labs' own default
    # The embedded Redis unless the caller says otherwise: these tests are about the lab, and
    # `auto` would switch to Docker whenever an engine happens to run (CI tests that path apart).
    env.update(HANDSON_RUN_MARK=mark, HANDSON_LANG="en", HANDSON_REDIS=os.environ.get("HANDSON_REDIS", "local"))
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
