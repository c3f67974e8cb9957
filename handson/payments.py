"""A slow payment provider the app calls (step 9). You do not need to edit this file.

``charge(order)`` asks the provider to take ``order.amount`` and waits for its answer,
as a call to a real payment API does. It returns a receipt number, or raises
``Declined`` for an amount over ``CARD_LIMIT``: the order must then be undone.

The provider answers after HANDSON_SLEEP seconds. In the labs the lab answers instead
(HANDSON_PAYMENTS=lab): it holds its answer until it has seen what the worker did while
the order's transaction was still open, so no verdict depends on which process is faster.
"""
import functools
import time
import uuid

import redis
from django.conf import settings

CARD_LIMIT = 10_000  # yen: a larger amount is declined
WAITING = "handson:payments:waiting"  # the labs: a set of the charges waiting for an answer
LAB_ANSWERS_WITHIN = 60  # seconds the lab has to answer a charge before it is declined


class Declined(Exception):
    """The provider refused the payment."""


def answer_key(charge_id):
    """Where the lab puts its answer to charge ``charge_id`` ("order-<pk>-<random>")."""
    return f"handson:payments:answer:{charge_id}"


@functools.lru_cache(maxsize=4)
def _client(url):
    return redis.Redis.from_url(url, socket_timeout=LAB_ANSWERS_WITHIN + 5, socket_connect_timeout=2)


def _lab_answers(order):
    client = _client(settings.HANDSON_RESULT_BACKEND)
    charge_id = f"order-{order.pk}-{uuid.uuid4().hex[:8]}"
    client.sadd(WAITING, charge_id)
    try:
        if client.blpop([answer_key(charge_id)], timeout=LAB_ANSWERS_WITHIN) is None:
            raise Declined(f"the lab did not answer charge {charge_id} within {LAB_ANSWERS_WITHIN} s")
    finally:
        client.srem(WAITING, charge_id)


def charge(order):
    """Take ``order.amount``: a receipt number, or Declined (after a while, as a real provider)."""
    if settings.HANDSON_PAYMENTS == "lab":
        _lab_answers(order)
    else:
        time.sleep(settings.HANDSON_SLEEP)
    if order.amount > CARD_LIMIT:
        raise Declined(f"{order.amount} yen is over the card's limit ({CARD_LIMIT} yen)")
    return f"receipt-{order.pk}"
