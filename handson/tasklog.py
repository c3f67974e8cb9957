"""The app's own list of the tasks it has enqueued. You do not need to edit this file.

Why the app keeps a list: Celery's result backend learns about a task only when
a worker starts or finishes it, and it answers PENDING for any id it does not
know. A task still waiting in the queue and an id nobody ever sent look the
same. So the app writes down every task it sends (a signal handler below does
it on every ``.delay()``), and asks the result backend for the state of those
only: the entry ``AsyncResult(id).state`` reads (``celery-task-meta-<id>``),
fetched for a whole page of tasks in one round trip (a pipeline with MGET).

The list lives in the same Redis as the results and expires with them.
"""
import datetime
import functools
import json

import redis
from celery import current_app, states
from celery.backends.base import DisabledBackend
from celery.signals import before_task_publish, task_prerun
from django.conf import settings

DEFAULT_KEEP_SECONDS = 24 * 3600  # Celery keeps results one day unless result_expires says otherwise
SHOWN = 50  # tasks per page of the list, newest first
INDEX = "handson:tasks"  # sorted set: task id -> time it was sent


class TaskLogUnavailable(Exception):
    """The list cannot be read: Celery is not configured yet, or Redis is down."""


def keep_seconds():
    """How long Celery keeps a result: CELERY_RESULT_EXPIRES (seconds, or a timedelta), else one day.
    The list keeps its records as long (step 11 sets it)."""
    expires = getattr(settings, "CELERY_RESULT_EXPIRES", None)
    if not expires:
        return DEFAULT_KEEP_SECONDS
    return int(expires.total_seconds() if hasattr(expires, "total_seconds") else expires)


def _periodic_tasks():
    """Names of the tasks the beat schedule sends (CELERY_BEAT_SCHEDULE, step 11)."""
    schedule = getattr(settings, "CELERY_BEAT_SCHEDULE", None) or {}
    return {entry.get("task") for entry in schedule.values() if isinstance(entry, dict)}


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
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def celery_app():
    """The Celery app the web server uses, once it can read results (step 2)."""
    if isinstance(current_app.backend, DisabledBackend):
        raise TaskLogUnavailable(
            "Celery has no result backend in the web server: handson/__init__.py should load the "
            "Celery app (`from .celery import app as celery_app`) and handson/settings.py set "
            "CELERY_RESULT_BACKEND (step 2).")
    return current_app


def _args_json(body):
    # The message body (protocol 2) is (args, kwargs, embed); with the json serializer the
    # arguments are JSON already. Anything else is kept as its repr, never dropped.
    try:
        args = body[0] if isinstance(body, (list, tuple)) and body else []
        return json.dumps(list(args), default=repr)
    except (TypeError, ValueError):
        return "[]"


@before_task_publish.connect
def _note_sent(sender=None, headers=None, body=None, **_):
    # Runs in whichever process sends a task (the web server, on .delay()), just
    # before the message goes to the broker, so the record exists before any
    # worker can start the task.
    if sender and sender in _periodic_tasks():
        return  # sent by the scheduler (step 11), on nobody's request: not one of the app's tasks to list
    task_id, sent = headers["id"], _now()
    # parent_id: the task that sent it, when a task did (Celery sets it from the task running then); none
    # when a view sent it.
    record = {"name": sender or "", "args": headers.get("argsrepr", ""), "args_json": _args_json(body),
              "sent": sent.isoformat(), "parent": headers.get("parent_id") or ""}
    try:
        with _redis().pipeline() as pipe:
            pipe.hset(_record_key(task_id), mapping=record)
            pipe.expire(_record_key(task_id), keep_seconds())
            pipe.zadd(INDEX, {task_id: sent.timestamp()})
            pipe.expire(INDEX, keep_seconds())
            pipe.execute()
    except (TaskLogUnavailable, redis.RedisError):
        pass  # the list is a convenience: it must never stop a task being sent


@task_prerun.connect
def _note_start(sender=None, task_id=None, **_):
    # Runs in the worker just before a task starts: the result backend keeps no
    # start time, so the app notes its own.
    if sender is not None and sender.name in _periodic_tasks():
        return  # not in the list (see _note_sent): a start noted for it would be one more key every run
    try:
        with _redis().pipeline() as pipe:
            pipe.hset(_record_key(task_id), "started", _now().isoformat())
            pipe.expire(_record_key(task_id), keep_seconds())
            pipe.execute()
    except (TaskLogUnavailable, redis.RedisError):
        pass  # a missing start time must never stop the task itself


def _message(args):
    """An exception's message as ``str(exception)`` would print it, from the args the backend stores."""
    if not isinstance(args, (list, tuple)):
        return str(args)
    if len(args) == 1:
        return str(args[0])
    return "" if not args else str(tuple(args))


def typed_result(state, raw):
    """The result as the API shows it: one JSON shape per state (see handson/api.py)."""
    exception = isinstance(raw, dict) and "exc_type" in raw
    if state == states.PENDING:
        return None
    if state == states.STARTED:
        raw = raw if isinstance(raw, dict) else {}
        return {"pid": raw.get("pid"), "hostname": raw.get("hostname")}
    if state == states.REVOKED:
        return {"reason": _message(raw.get("exc_message", [])) if exception else str(raw or "revoked")}
    if state in (states.FAILURE, states.RETRY):
        if exception:
            return {"exc_type": raw["exc_type"], "exc_message": _message(raw.get("exc_message", []))}
        return {"exc_type": "unknown", "exc_message": "" if raw is None else str(raw)}
    return {"value": raw}


def _finished(state, meta):
    stamp = meta.get("date_done") if state in states.READY_STATES else None
    if not stamp:
        return None
    try:
        when = datetime.datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.isoformat()


def _args(record):
    try:
        args = json.loads(record.get("args_json", ""))
    except ValueError:
        # a task sent before the app stored its arguments as JSON: keep the text it noted
        args = [record["args"]] if record.get("args") else []
    return args if isinstance(args, list) else [args]


def _describe(task_id, record, meta):
    """One task as the page and the API show it, from its record and its result-backend entry."""
    state = meta.get("status", states.PENDING) if meta else states.PENDING
    return {
        "id": task_id,
        "name": record.get("name", ""),
        "args": _args(record),
        "state": state,
        "result": typed_result(state, meta.get("result") if meta else None),
        "sent": record.get("sent"),
        "started": record.get("started"),
        "finished": _finished(state, meta or {}),
        "ready": state in states.READY_STATES,
        "parent": record.get("parent") or None,
    }


def _decode(app, raw):
    if raw is None:
        return None
    try:
        meta = app.backend.decode(raw)
    except Exception:  # noqa: BLE001 - an entry the app cannot read is shown as unknown, not a crash
        return None
    return meta if isinstance(meta, dict) else None


def _metas(client, app, task_ids):
    """The backend's entries of many tasks, in one MGET per thousand ids."""
    metas = []
    for first in range(0, len(task_ids), 1000):
        keys = [app.backend.get_key_for_task(task_id) for task_id in task_ids[first:first + 1000]]
        metas.extend(_decode(app, raw) for raw in client.mget(keys))
    return metas


def _records(client, app, task_ids):
    """[(task id, record, backend entry)] of many tasks in one round trip (a pipeline)."""
    if not task_ids:
        return []
    with client.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.hgetall(_record_key(task_id))
        pipe.mget([app.backend.get_key_for_task(task_id) for task_id in task_ids])
        answers = pipe.execute()
    records = [{key.decode(): value.decode() for key, value in raw.items()} for raw in answers[:-1]]
    return [_describe(task_id, record, _decode(app, raw))
            for task_id, record, raw in zip(task_ids, records, answers[-1])]


def page(number=1):
    """One page of the tasks the app sent, newest first:
    {"tasks": [...], "page": number, "pages": count, "total": tasks, "per_page": SHOWN, "now": time}."""
    try:
        client = _redis()
        app = celery_app()
        total = client.zcard(INDEX)
        pages = max(1, -(-total // SHOWN))
        first = (number - 1) * SHOWN
        ids = [raw.decode() for raw in client.zrevrange(INDEX, first, first + SHOWN - 1)]
        tasks = _records(client, app, ids)
    except redis.RedisError as error:
        raise TaskLogUnavailable(f"Redis did not answer: {error}") from error
    return {"tasks": tasks, "page": number, "pages": pages, "total": total, "per_page": SHOWN,
            "now": _now().isoformat()}


def recent():
    """The newest tasks the app sent, newest first (the first page)."""
    return page(1)["tasks"]


def find(task_id):
    """One task by id, or None when this app never sent a task with that id."""
    try:
        client = _redis()
        if client.zscore(INDEX, task_id) is None:
            return None
        app = celery_app()
        [task] = _records(client, app, [task_id])
        return task
    except redis.RedisError as error:
        raise TaskLogUnavailable(f"Redis did not answer: {error}") from error


def unfinished():
    """Ids of every task this app sent that is still queued or running (states read with MGET)."""
    try:
        client = _redis()
        ids = [raw.decode() for raw in client.zrange(INDEX, 0, -1)]
        app = celery_app()
        metas = _metas(client, app, ids)
    except redis.RedisError as error:
        raise TaskLogUnavailable(f"Redis did not answer: {error}") from error
    return [task_id for task_id, meta in zip(ids, metas)
            if (meta or {}).get("status", states.PENDING) not in states.READY_STATES]


def forget_older_than(seconds):
    """Remove from the list every task sent more than ``seconds`` ago (its result is gone by then), and
    say how many. The list's index is one Redis key that every new task keeps alive: without this, a
    busy app's index only grows. Step 11's housekeeping task calls it."""
    cutoff = _now().timestamp() - float(seconds)
    try:
        return _redis().zremrangebyscore(INDEX, "-inf", cutoff)
    except redis.RedisError as error:
        raise TaskLogUnavailable(f"Redis did not answer: {error}") from error
