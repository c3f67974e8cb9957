"""The environment the hands-on app runs in: one definition for the labs, `make run` and the tests."""
import os
import sys
from pathlib import Path

# While grading (HANDSON_GRADING=1, set by tools/grade.py), the app gets only what Python, Django,
# Celery and the lab need: never the grader's secrets or tokens (SECRET, GITHUB_TOKEN, ACTIONS_*,
# cloud credentials), which the graded code could otherwise read and send or print.
GRADING_KEEPS = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "TMP", "TEMP",
                 "VIRTUAL_ENV", "SYSTEMROOT", "DOCKER_HOST")  # DOCKER_HOST: --redis=docker on a remote engine
GRADING_KEEPS_PREFIXES = ("LC_", "HANDSON_", "TESTCONTAINERS_")


def minimal_env(base):
    """``base`` reduced to the variables a graded run needs (the lab's own HANDSON_* among them)."""
    return {key: value for key, value in base.items()
            if key in GRADING_KEEPS or key.startswith(GRADING_KEEPS_PREFIXES)}


def restart_without_secrets(module, argv, keep=(), as_root=None):
    """Run ``python -m module argv`` again in this process with only ``minimal_env`` (and ``keep``)
    when the environment holds more. The graded code could otherwise read the grader's secrets in
    /proc/<grader's pid>/environ whenever it runs as the grader's user: that file shows the environment
    the process started with, whatever it later removes from os.environ. With ``as_root`` (a command
    such as ["sudo", "-n", "--"]) it starts again through it, told whose the reports are
    (HANDSON_GRADE_OWNER). Returns when nothing is to drop and nothing is to gain."""
    env = dict(minimal_env(os.environ), **{key: os.environ[key] for key in keep if key in os.environ})
    sys.stdout.flush()
    sys.stderr.flush()
    if as_root:
        env.update(HANDSON_GRADE_OWNER=f"{os.getuid()}:{os.getgid()}", PYTHONDONTWRITEBYTECODE="1")
        command = [*as_root, "env", "-i", *(f"{key}={value}" for key, value in env.items()),
                   sys.executable, "-m", module, *argv]
        os.execvp(command[0], command)
    if env != dict(os.environ):
        os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)


def app_env(workspace, redis, sleep, base=None, database=None, payments="clock"):
    """``base`` (os.environ) with the workspace on the path, the run's Redis, sleep and database (a SQLite
    file), who answers the app's payments ("clock", or "lab": handson/payments.py), and no
    CELERY_* variables: Celery would let those override handson/settings.py, which is what the lab grades.
    While grading, only the variables of ``minimal_env`` are kept."""
    base = os.environ if base is None else base
    if base.get("HANDSON_GRADING") == "1":
        base = minimal_env(base)
    env = {key: value for key, value in base.items()
           if not key.startswith("CELERY_") and key not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    env.update({
        "PYTHONPATH": str(workspace),
        "DJANGO_SETTINGS_MODULE": "handson.settings",
        "HANDSON_BROKER_URL": redis.broker_url,
        "HANDSON_RESULT_BACKEND": redis.result_backend_url,
        "HANDSON_SLEEP": f"{float(sleep):g}",
        "HANDSON_PAYMENTS": payments,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    if database is not None:
        env["HANDSON_DATABASE"] = str(database)
    return env


def data_folders(env):
    """The folders the app writes its data in (the SQLite database's: SQLite puts its -wal and -shm
    files beside it): the only ones it may write while confined (services/confine.py)."""
    return [Path(env["HANDSON_DATABASE"]).parent] if env.get("HANDSON_DATABASE") else []
