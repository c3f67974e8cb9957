"""The app's own list of the tasks it has enqueued. You do not need to edit this file.

Why the app keeps a list: Celery's result backend learns about a task only when
a worker starts or finishes it, and it answers PENDING for any id it does not
know. A task still waiting in the queue and an id nobody ever sent look the
same. So the app writes down every task it sends (a signal handler below does
it on every ``.delay()``), and asks the result backend for the state of those
only (``AsyncResult(id).state``).

The list lives in the same Redis as the results and expires with them.
"""
import datetime
import functools

import redis
from celery import current_app, states
from celery.backends.base import DisabledBackend
from celery.result import AsyncResult
from celery.signals import before_task_publish, task_prerun
from django.conf import settings

KEEP_SECONDS = 24 * 3600  # Celery keeps results one day (result_expires)
SHOWN = 50  # the page shows the newest tasks only
INDEX = "handson:tasks"  # sorted set: task id -> time it was sent


class TaskLogUnavailable(Exception):
    """The list cannot be read: Celery is not configured yet, or Redis is down."""


def _record_key(task_id):
    return f"handson:task:{task_id}"


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _redis():
    url = getattr(settings, "CELERY_RESULT_BACKEND", None)
    if not url:
        raise TaskLogUnavailable("CELERY_RESULT_BACKEND is not set yet (step 2).")
    return _client(url)


@functools.lru_cache(maxsize=4)
def _client(url):
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _celery_app():
    """The Celery app the web server uses, once it can read results (step 2)."""
    if isinstance(current_app.backend, DisabledBackend):
        raise TaskLogUnavailable(
            "Celery has no result backend in the web server: handson/__init__.py should load the "
            "Celery app (`from .celery import app as celery_app`) and handson/settings.py set "
            "CELERY_RESULT_BACKEND (step 2).")
    return current_app


@before_task_publish.connect
def _note_sent(sender=None, headers=None, **_):
    # Runs in whichever process sends a task (the web server, on .delay()), just
    # before the message goes to the broker, so the record exists before any
    # worker can start the task.
    task_id, sent = headers["id"], _now()
    record = {"name": sender or "", "args": headers.get("argsrepr", ""), "sent": sent.isoformat()}
    try:
        with _redis().pipeline() as pipe:
            pipe.hset(_record_key(task_id), mapping=record)
            pipe.expire(_record_key(task_id), KEEP_SECONDS)
            pipe.zadd(INDEX, {task_id: sent.timestamp()})
            pipe.expire(INDEX, KEEP_SECONDS)
            pipe.execute()
    except (TaskLogUnavailable, redis.RedisError):
        pass  # the list is a convenience: it must never stop a task being sent


@task_prerun.connect
def _note_start(task_id=None, **_):
    # Runs in the worker just before a task starts: the result backend keeps no
    # start time, so the app notes its own.
    try:
        with _redis().pipeline() as pipe:
            pipe.hset(_record_key(task_id), "started", _now().isoformat())
            pipe.expire(_record_key(task_id), KEEP_SECONDS)
            pipe.execute()
    except (TaskLogUnavailable, redis.RedisError):
        pass  # a missing start time must never stop the task itself


def _describe(task_id, record):
    """One task as the page and the API show it."""
    result = AsyncResult(task_id, app=_celery_app())  # a fresh object: states are cached
    state, value = result.state, result.result
    if isinstance(value, BaseException):
        value = f"{type(value).__name__}: {value}"
    finished = result.date_done
    return {
        "id": task_id,
        "name": record.get("name", ""),
        "args": record.get("args", ""),
        "state": state,
        "result": value,
        "sent": record.get("sent"),
        "started": record.get("started"),
        "finished": finished.isoformat() if finished else None,
        "ready": state in states.READY_STATES,
    }


def _read(client, task_id):
    raw = client.hgetall(_record_key(task_id))
    return {key.decode(): value.decode() for key, value in raw.items()}


def recent():
    """The newest tasks the app sent, newest first."""
    try:
        client = _redis()
        ids = [raw.decode() for raw in client.zrevrange(INDEX, 0, SHOWN - 1)]
        return [_describe(task_id, _read(client, task_id)) for task_id in ids]
    except redis.RedisError as error:
        raise TaskLogUnavailable(f"Redis did not answer: {error}") from error


def find(task_id):
    """One task by id, or None when this app never sent a task with that id."""
    try:
        client = _redis()
        if client.zscore(INDEX, task_id) is None:
            return None
        return _describe(task_id, _read(client, task_id))
    except redis.RedisError as error:
        raise TaskLogUnavailable(f"Redis did not answer: {error}") from error


def unfinished():
    """Ids of every task this app sent that is still queued or running."""
    try:
        client = _redis()
        ids = [raw.decode() for raw in client.zrange(INDEX, 0, -1)]
    except redis.RedisError as error:
        raise TaskLogUnavailable(f"Redis did not answer: {error}") from error
    app = _celery_app()
    return [task_id for task_id in ids if AsyncResult(task_id, app=app).state not in states.READY_STATES]
