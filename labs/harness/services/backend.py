"""What the tests read and send through Celery's own doors, never through the learner's modules.

- The result backend is read straight from Redis (`celery-task-meta-<id>` keys,
  JSON), which is what every Celery client sees.
- A revoke without terminate is sent as a broadcast on the broker, the same
  message `AsyncResult(id).revoke()` sends.
"""
import json

from celery import Celery


class ResultBackend:
    def __init__(self, redis):
        self.redis = redis
        self.client = redis.client(redis.result_backend_url)

    def meta(self, task_id):
        """The stored meta of a task (status, result, date_done, ...), or None if none is stored."""
        raw = self.client.get(f"celery-task-meta-{task_id}")
        return json.loads(raw) if raw else None

    def state(self, task_id):
        meta = self.meta(task_id)
        return meta["status"] if meta else None

    def task_ids(self):
        return {key.decode()[len("celery-task-meta-"):] for key in self.client.scan_iter("celery-task-meta-*")}


class BrokerControl:
    """Remote control of the worker through the broker, as a Celery client would do it."""

    def __init__(self, redis):
        self.redis = redis
        self.app = Celery("lab-control", broker=redis.broker_url, set_as_current=False)

    def revoke(self, task_ids, terminate=False):
        """Revoke one id or a list of ids, in one broadcast."""
        self.app.control.revoke(task_ids, terminate=terminate)

    def purge(self, queues):
        """Drop every message waiting in these queues (not those a worker has already reserved)."""
        client = self.redis.client(self.redis.broker_url)
        for queue in queues:
            # Redis keeps a queue as a list named after it, priorities as "<queue>\x06\x16<n>".
            client.delete(queue, *client.scan_iter(f"{queue}\x06\x16*"))
        client.close()

    def close(self):
        self.app.close()

