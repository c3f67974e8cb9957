"""A mail service that sends receipts (step 6). You do not need to edit this file.

It stands for any call with an effect outside your app that must not happen
twice: an e-mail, a charge on a card, a message to a partner. Every receipt it
sends is counted in Redis per order (the result backend's database): that count
is what the customer finds in their mailbox.

Like real payment and mail APIs, it accepts an *idempotency key*: the first
call with a given key sends the receipt, any later call with the same key sends
nothing and answers as the first did. A task that may run twice passes a key
that stays the same when it runs again.
"""
import functools

import redis
from django.conf import settings

KEEP_SECONDS = 24 * 3600


def sent_key(order):
    """The Redis key that counts the receipts sent for ``order``."""
    return f"handson:receipts:{order}"


@functools.lru_cache(maxsize=4)
def _client(url):
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def send(order, idempotency_key=None):
    """Send the receipt of ``order``, unless a call with the same ``idempotency_key`` sent it already."""
    client = _client(settings.HANDSON_RESULT_BACKEND)
    if idempotency_key is not None:
        first = client.set(f"handson:receipts:key:{idempotency_key}", order, nx=True, ex=KEEP_SECONDS)
        if not first:
            return f"receipt for {order} already sent (key {idempotency_key})"
    count = client.incr(sent_key(order))
    client.expire(sent_key(order), KEEP_SECONDS)
    return f"receipt {count} for {order} sent"
