"""The environment the hands-on app runs in: one definition for the labs, `make run` and the tests."""
import os
import sys
from pathlib import Path

# While grading (HANDSON_GRADING=1, set by tools/grade.py) every process gets an allow-list of variables,
# never the grader's secrets or tokens (SECRET, GITHUB_TOKEN, ACTIONS_*, cloud credentials), which the
# graded code could otherwise read and send or print. Two lists, by reader:
# - the app (the learner's code, and Redis, which it can command) gets what Python, Django and Celery
#   need, and the HANDSON_* values app_env sets itself: nothing else of the grader's, so not a
#   HANDSON_LAB_REPO with a token in its URL, not DOCKER_HOST, TESTCONTAINERS_* nor a proxy;
# - the grader's own processes (the re-executed grade, each step's pytest) get that, and the
#   HANDSON_* settings the lab reads (named one by one), and what the Docker kind of Redis needs.
APP_KEEPS = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "TMP", "TEMP",
             "VIRTUAL_ENV", "SYSTEMROOT",
             "HANDSON_RUN_MARK")  # the project's own tests find a run's processes by it
APP_KEEPS_PREFIXES = ("LC_",)
DOCKER_KEEPS = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")  # --redis=docker on a remote or TLS engine
DOCKER_PREFIXES = ("TESTCONTAINERS_",)
GRADER_KEEPS = (*APP_KEEPS,
                # The lab's own settings (what a learner or teacher may set for a grade).
                "HANDSON_REDIS", "HANDSON_REDIS_IMAGE", "HANDSON_LANG", "HANDSON_SLEEP", "HANDSON_LAB_DIR",
                "HANDSON_START", "HANDSON_PREWARM", "HANDSON_GRADE_USER", "HANDSON_GRADE_SUDO",
                "HANDSON_GRADE_APP_MEMORY",
                # What grading passes to its own children.
                "HANDSON_GRADING", "HANDSON_DISCARD_LOGS", "HANDSON_GRADE_OWNER", "HANDSON_CONFINE_USER",
                "HANDSON_COLLECTED", "HANDSON_TESTS_TMPDIR",
                *DOCKER_KEEPS)
GRADER_KEEPS_PREFIXES = (*APP_KEEPS_PREFIXES, *DOCKER_PREFIXES)


def minimal_env(base, docker=True):
    """``base`` reduced to the variables a grader's own process needs (GRADER_KEEPS); without ``docker``
    (Redis is not the Docker kind) not even the engine's: a grader the app could read holds none of them."""
    return {key: value for key, value in base.items()
            if (key in GRADER_KEEPS or key.startswith(GRADER_KEEPS_PREFIXES))
            and (docker or not (key in DOCKER_KEEPS or key.startswith(DOCKER_PREFIXES)))}


def uses_docker(kind):
    """Whether the Redis kind ``kind`` (--redis) may start a container: docker, auto, and local where
    no redis-server is here (services/redis/__init__.choose_redis then takes a container)."""
    kind = kind.strip()
    if kind == "local":
        from .redis.embedded import embedded_redis_binary

        return embedded_redis_binary() is None
    return kind in ("docker", "auto")


def app_only_env(base):
    """``base`` reduced to what the graded app may see (APP_KEEPS): for the app's processes and Redis."""
    return {key: value for key, value in base.items() if key in APP_KEEPS or key.startswith(APP_KEEPS_PREFIXES)}


def restart_without_secrets(module, argv, keep=(), as_root=None, docker=True):
    """Run ``python -m module argv`` again in this process with only ``minimal_env`` (and ``keep``)
    when the environment holds more. The graded code could otherwise read the grader's secrets in
    /proc/<grader's pid>/environ whenever it runs as the grader's user: that file shows the environment
    the process started with, whatever it later removes from os.environ. With ``as_root`` (a command
    such as ["sudo", "-n", "--"]) it starts again through it, told whose the reports are
    (HANDSON_GRADE_OWNER). Returns when nothing is to drop and nothing is to gain."""
    env = dict(minimal_env(os.environ, docker), **{key: os.environ[key] for key in keep if key in os.environ})
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
    While grading, only the variables of ``app_only_env`` are kept."""
    base = os.environ if base is None else base
    if base.get("HANDSON_GRADING") == "1":
        base = app_only_env(base)
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
