"""A small unreliable service the app calls (step 5). You do not need to edit this file.

It stands for what a real app calls over the network, a payment API or a mail
server, which is sometimes down for a while. ``call(key, failures)`` counts
every call per key in Redis (the result backend's database), and fails with
ConnectionError, as a network client does, for the first ``failures`` calls of
that key; ``failures=DOWN`` means it never answers that key.
"""
import functools

import redis
from django.conf import settings

DOWN = -1  # failures=DOWN: the service never answers this key
KEEP_SECONDS = 24 * 3600


def calls_key(key):
    """The Redis key that counts the calls made for ``key``."""
    return f"handson:unreliable:{key}"


@functools.lru_cache(maxsize=4)
def _client(url):
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def call(key, failures):
    """The service's answer for ``key``, or ConnectionError for its first ``failures`` calls (always if DOWN)."""
    client = _client(settings.HANDSON_RESULT_BACKEND)
    calls = client.incr(calls_key(key))
    client.expire(calls_key(key), KEEP_SECONDS)
    if failures == DOWN or calls <= failures:
        raise ConnectionError(f"the service did not answer call {calls} for {key!r}")
    return f"{key}: answered on call {calls}"
