"""A Redis that is already running (--redis=redis://HOST:PORT/N)."""
from urllib.parse import urlsplit

import redis as redis_py

from ...i18n import say
from .base import REACH_TIMEOUT, RedisService, RedisUnavailable, db_url, wait_for_ping


class ExternalRedis(RedisService):
    """A Redis that is already running. The lab uses database N for the queue and N+1
    for results (N from the URL, 14 by default) and deletes only the keys its own
    tasks made. Parallel runs (``offset``, one per pytest-xdist worker) take the
    databases after those, two each, so that no two workers share a queue."""

    kind = "url"

    def __init__(self, url, offset=0):
        self.url = url
        db = urlsplit(url).path.strip("/") or "14"
        if not db.isdigit() or int(db) + 2 * offset > 14:
            raise RedisUnavailable(say(
                f"--redis={url}: the database number must be 0 to 14 (the lab also uses the next one"
                + (f", and {2 * offset} more for parallel runs" if offset else "") + ").",
                f"--redis={url}: データベース番号は 0〜14 にしてください (次の番号も使います"
                + (f"。並列実行ではさらに {2 * offset} 個" if offset else "") + ")。",
            ))
        first = int(db) + 2 * offset
        self.broker_url, self.result_backend_url = db_url(url, first), db_url(url, first + 1)
        self._ids_before = set()

    def describe(self):
        return f"existing Redis {self.url} (queue {self.broker_url}, results {self.result_backend_url})"

    def start(self):
        error = wait_for_ping(self.broker_url, REACH_TIMEOUT)
        if error is not None:
            raise RedisUnavailable(say(
                f"Redis at {self.url} did not answer within {REACH_TIMEOUT} s: {error}",
                f"{self.url} の Redis が {REACH_TIMEOUT} 秒以内に応答しませんでした: {error}",
            ))
        self._ids_before = set(self.client().zrange("handson:tasks", 0, -1))
        return self

    def stop(self):
        # Remove only what this run's tasks left: their results and the app's records.
        try:
            client = self.client()
            for raw in set(client.zrange("handson:tasks", 0, -1)) - self._ids_before:
                task_id = raw.decode()
                client.delete(f"celery-task-meta-{task_id}", f"handson:task:{task_id}")
                client.zrem("handson:tasks", task_id)
        except redis_py.RedisError:
            pass
