"""What the tests read and send through Celery's own doors, never through the learner's modules.

- The result backend is read straight from Redis (`celery-task-meta-<id>` keys,
  JSON), which is what every Celery client sees. Celery's Redis backend also
  publishes every write on a channel named like the key: ``recording()`` listens
  there, so a state that lasts a few milliseconds (RETRY between two quick tries)
  is seen too, which polling the key can miss.
- A revoke without terminate is sent as a broadcast on the broker, the same
  message `AsyncResult(id).revoke()` sends.
"""
import contextlib
import functools
import itertools
import json
import re
import threading

import redis as redis_client

META_PREFIX = "celery-task-meta-"
META_LIMIT = 4 << 20  # bytes of one stored result the lab reads
LIST_LIMIT = 100_000  # entries of a queue or of the unacked hash the lab reads


class ResultBackend:
    def __init__(self, redis):
        self.redis = redis
        self.client = redis.client(redis.result_backend_url)

    def meta(self, task_id):
        """The stored meta of a task (status, result, date_done, ...), or None if none is stored. Read
        within META_LIMIT bytes (a task may return anything): a larger one gives its status alone, with
        "too_large" set."""
        raw = self.client.getrange(f"{META_PREFIX}{task_id}", 0, META_LIMIT)
        if not raw:
            return None
        if len(raw) > META_LIMIT:
            status = re.search(rb'"status": ?"(\w+)"', raw[:4096])  # Celery writes the status first
            return {"status": status.group(1).decode() if status else None, "result": None, "too_large": True}
        return json.loads(raw)

    def seconds_left(self, task_id):
        """How long Redis keeps the task's result (the key's TTL), or None (no such key, or no TTL)."""
        ttl = self.client.ttl(f"{META_PREFIX}{task_id}")
        return ttl if ttl is not None and ttl >= 0 else None

    def state(self, task_id):
        meta = self.meta(task_id)
        return meta["status"] if meta else None

    def task_ids(self):
        return {key.decode()[len(META_PREFIX):] for key in self.client.scan_iter(META_PREFIX + "*")}

    @contextlib.contextmanager
    def recording(self):
        """Every state the backend stores while the block runs: yields a StateRecorder."""
        recorder = StateRecorder(self.client)
        try:
            yield recorder
        finally:
            recorder.close()


class StateRecorder:
    """The states the result backend publishes, in order, from a thread listening on its channels."""

    def __init__(self, client):
        self.pubsub = client.pubsub()
        self.pubsub.psubscribe(META_PREFIX + "*")
        # Wait for Redis to confirm, so that no write made after this returns is missed.
        for _ in range(50):
            if (self.pubsub.get_message(timeout=0.1) or {}).get("type") == "psubscribe":
                break
        self.seen, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self):
        while not self._stop.is_set():
            try:
                message = self.pubsub.get_message(timeout=0.05)
            except (redis_client.RedisError, OSError, ValueError):
                return
            if message and message.get("type") == "pmessage":
                try:
                    status = json.loads(message["data"]).get("status")
                except (ValueError, AttributeError):
                    continue
                self.seen.append((message["channel"].decode()[len(META_PREFIX):], status))

    def states(self, task_id):
        """The states stored for ``task_id`` so far, in order (repeats kept: RETRY, STARTED, RETRY ...)."""
        return [status for seen_id, status in list(self.seen) if seen_id == task_id]

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.pubsub.close()


class BrokerControl:
    """Remote control of the worker through the broker, as a Celery client would do it."""

    def __init__(self, redis):
        self.redis = redis

    @functools.cached_property
    def app(self):
        # Imported when a test first revokes: most runs never do, and importing Celery takes
        # a fifth of a second of every pytest start.
        from celery import Celery

        return Celery("lab-control", broker=self.redis.broker_url, set_as_current=False)

    def connect(self):
        """Open the broker connection now, so that the next revoke leaves at once: the first one
        would import Celery and connect first, a second or more on a busy machine."""
        with self.app.connection_or_acquire() as connection:
            connection.ensure_connection(max_retries=3)
        return self

    def send_builtin(self, name, args=()):
        """Send one of the tasks every Celery app has (``celery.accumulate``, which returns its arguments)
        to the default queue; its id. The lab knows the worker can run it without knowing the app."""
        return self.app.send_task(name, args=args).id

    def revoke(self, task_ids, terminate=False):
        """Revoke one id or a list of ids, in one broadcast."""
        self.app.control.revoke(task_ids, terminate=terminate)

    def answers_ping(self, hostname, timeout=3.0):
        """Whether the worker ``hostname`` answers Celery's remote-control ping through the broker (the
        first answer ends the wait: a Celery worker answers in milliseconds)."""
        replies = self.app.control.broadcast("ping", reply=True, destination=[hostname], limit=1, timeout=timeout)
        return any(hostname in reply for reply in replies or [])

    def revoked_ids(self, hostname, timeout=3.0):
        """The revoked ids the worker ``hostname`` remembers (its `revoked` remote control, as `celery inspect
        revoked` asks it): the set it looks a task up in when the task's turn comes. None when it does not answer."""
        replies = self.app.control.inspect(destination=[hostname], timeout=timeout, limit=1).revoked()
        found = (replies or {}).get(hostname)
        return set(found) if found is not None else None

    def worker_settings(self, hostname, timeout=3.0):
        """The settings a running worker reports it was given beyond Celery's defaults (its `conf`
        remote-control command; secrets come masked): {} when it does not answer in time."""
        replies = self.app.control.inspect(destination=[hostname], timeout=timeout).conf(with_defaults=False)
        return (replies or {}).get(hostname) or {}

    def task_options(self, hostname, task_name, options, timeout=3.0):
        """{option: value as text} of the options the worker reports for one registered task, e.g.
        task_options(node, "handson.tasks.build_report", ("soft_time_limit", "time_limit")): the
        `registered` remote control, as `celery inspect registered time_limit` asks it. An option the
        task does not set is missing (None on the task: the app's setting, if any, applies)."""
        replies = self.app.control.inspect(destination=[hostname], timeout=timeout).registered(*options)
        for entry in (replies or {}).get(hostname) or []:
            name, _, fields = entry.partition(" [")
            if name == task_name:
                return dict(field.split("=", 1) for field in fields.rstrip("]").split() if "=" in field)
        return {}

    def unacknowledged(self):
        """{task id: delivery tag} of the messages a worker has taken but not acknowledged yet: Kombu's
        Redis transport keeps each in the hash ``unacked`` (and its delivery time in ``unacked_index``)."""
        client = self.redis.client(self.redis.broker_url)
        try:  # at most LIST_LIMIT of them: the lab reads a few, whatever the app put there
            held = dict(itertools.islice(client.hscan_iter("unacked", count=1000), LIST_LIMIT))
        finally:
            client.close()
        found = {}
        for tag, raw in held.items():
            try:
                found[json.loads(raw)[0]["headers"]["id"]] = tag.decode()
            except (ValueError, LookupError, TypeError):
                continue
        return found

    def queued(self, queue="celery"):
        """Ids of the task messages waiting in ``queue`` (Kombu's Redis transport keeps it as a list named
        after it), the oldest first (at most LIST_LIMIT, the oldest)."""
        client = self.redis.client(self.redis.broker_url)
        try:
            held = client.lrange(queue, -LIST_LIMIT, -1)
        finally:
            client.close()
        found = []
        for raw in reversed(held):  # Kombu pushes on the left and pops on the right
            try:
                found.append(json.loads(raw)["headers"]["id"])
            except (ValueError, LookupError, TypeError):
                continue
        return found

    def purge(self, queues):
        """Drop every message waiting in these queues (not those a worker has already reserved)."""
        client = self.redis.client(self.redis.broker_url)
        for queue in queues:
            # Redis keeps a queue as a list named after it, priorities as "<queue>\x06\x16<n>".
            client.delete(queue, *client.scan_iter(f"{queue}\x06\x16*"))
        client.close()

    def close(self):
        if "app" not in self.__dict__:
            return
        self.app.close()
        # Celery keeps the broker pool in Kombu's process-wide pools, keyed by the address: a later
        # BrokerControl on the same address (Redis started again on its port) would get this one's
        # closed connections ("Connection closed by server").
        from kombu import pools

        pools.reset()

