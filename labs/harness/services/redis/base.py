"""What every kind of Redis gives the other services, and the helpers the kinds share."""
import time
from urllib.parse import urlsplit, urlunsplit

import redis as redis_py

START_TIMEOUT = 10  # seconds; a Redis we start that is not answering by then is not coming
REACH_TIMEOUT = 5  # seconds; a server that is already running answers at once or not at all


class RedisUnavailable(RuntimeError):
    """Redis could not be started or reached; the message names the cause."""


class RedisService:
    """What the other services need from Redis, whichever kind it is: the broker and
    result-backend URLs the app is started with, and clients for them."""

    kind = "?"
    broker_url = result_backend_url = None

    def describe(self):
        raise NotImplementedError

    def start(self):
        return self

    def stop(self):
        pass

    def client(self, url=None):
        return redis_py.Redis.from_url(url or self.result_backend_url, socket_timeout=5, socket_connect_timeout=5)


def db_url(base_url, db):
    """``base_url`` pointed at database ``db``."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


def wait_for_ping(url, timeout, process=None):
    """The error of the last try, or None once Redis answers PING. With ``process`` (the
    ServiceProcess of our redis-server), the answer must come from it, not from the server of
    another run that took the port first, and the wait ends as soon as it has exited."""
    deadline, error = time.monotonic() + timeout, None
    client = redis_py.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        while time.monotonic() < deadline:
            try:
                client.ping()
                answering = client.info("server").get("process_id") if process else None
                if process is None or answering == process.pid:
                    return None
                error = ConnectionError(f"process {answering} answers there, not our redis-server")
            except redis_py.RedisError as problem:
                error = problem
            if process is not None and not process.running():
                return error or ConnectionError("redis-server exited")
            time.sleep(0.05)
        return error or TimeoutError("no answer")
    finally:
        client.close()
