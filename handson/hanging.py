"""A data source that can hang (step 7). You do not need to edit this file.

It stands for a call that sometimes never returns: a server that accepts the
connection and then says nothing, a query stuck on a lock. ``fetch(source)``
writes what it has received so far to a partial file (a key in Redis, the
result backend's database) and never finishes. ``discard(source)`` removes that
partial file: the clean-up a task does when it gives up.

With ``swallow_errors=True`` it behaves like a badly written client library that
retries forever and catches every exception on the way, so no exception raised
inside it ever gets out.
"""
import functools
import time

import redis
from django.conf import settings

KEEP_SECONDS = 24 * 3600


def partial_key(source):
    """The Redis key holding what was received so far from ``source`` (the partial file)."""
    return f"handson:hanging:partial:{source}"


@functools.lru_cache(maxsize=4)
def _client(url):
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def fetch(source, swallow_errors=False):
    """Receive data from ``source``: it never ends."""
    client = _client(settings.HANDSON_RESULT_BACKEND)
    while True:
        try:
            client.append(partial_key(source), ".")
            client.expire(partial_key(source), KEEP_SECONDS)
            time.sleep(0.1)  # waiting for the next bytes, which never come
        except Exception:  # the badly written library: it swallows everything
            if not swallow_errors:
                raise


def discard(source):
    """Remove the partial file of ``source``."""
    _client(settings.HANDSON_RESULT_BACKEND).delete(partial_key(source))
