"""The app's way to Redis, through a relay the lab can cut (step 13: when Redis goes away).

The app (its web server and workers) is given the relay's address instead of Redis's; the relay
passes every byte on, both ways, to the real Redis. The lab's own clients (the result backend it
reads, its remote control) keep talking to Redis directly, so the lab still sees everything while
the app is cut off, and nothing of the lab waits on the outage.

Two outages, the two a production Redis has:

- ``go_down()``: every connection is closed at once and every new one is closed as soon as it is
  made, as when Redis crashed or restarts. A client learns it at its next command.
- ``go_silent()``: nothing is closed and nothing gets through: bytes are held, as when a network
  partition, a failover or a frozen host leaves connections open that no one answers. A client
  learns it only from its own timeouts, if it has any.

``restore()`` ends either; what was held in a silent outage is then delivered, as TCP does when
a partition heals. The Redis behind the relay never stops: no data is lost, whatever its kind.
"""
import socket
import threading
from urllib.parse import urlsplit, urlunsplit

from .processes import free_port
from .redis.base import RedisService

CHUNK = 65536


def _with_port(url, port):
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials + '@' if credentials else ''}127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class RedisLink(RedisService):
    """A TCP relay on 127.0.0.1 (a free port) to ``redis``; its URLs are the app's way to Redis."""

    def __init__(self, redis):
        self.redis = redis
        self.kind = redis.kind
        upstream = urlsplit(redis.broker_url)
        self.upstream = (upstream.hostname or "127.0.0.1", upstream.port or 6379)
        self.port = free_port()
        self.broker_url = _with_port(redis.broker_url, self.port)
        self.result_backend_url = _with_port(redis.result_backend_url, self.port)
        self._flowing = threading.Event()
        self._flowing.set()
        self._down = False
        self._lock = threading.Lock()
        self._sockets = set()
        self._listener = None
        self.state = "up"  # "up", "down" or "silent"

    def describe(self):
        return f"{self.redis.describe()} (the app through a relay on 127.0.0.1:{self.port})"

    # -- the relay -------------------------------------------------------------------
    def start(self):
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, name="redis-link", daemon=True).start()
        return self

    def stop(self):
        self.restore()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._close_all()

    def _accept(self):
        listener = self._listener
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed: the relay stops
            if self._down:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()  # Redis itself is gone: the client sees it as such
                continue
            with self._lock:
                self._sockets.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pass_on, args=(source, target), daemon=True).start()

    def _pass_on(self, source, target):
        try:
            while True:
                data = source.recv(CHUNK)
                if not data:
                    break
                self._flowing.wait()  # a silent outage holds what was read until restore()
                if self._down:
                    break
                target.sendall(data)
        except OSError:
            pass
        self._close(source, target)

    def _close(self, *sockets):
        with self._lock:
            for sock in sockets:
                self._sockets.discard(sock)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _close_all(self):
        with self._lock:
            sockets = list(self._sockets)
        self._close(*sockets)

    # -- outages -----------------------------------------------------------------------
    def go_down(self):
        """Redis crashed: every connection closed now, every new one closed as it is made."""
        self._down, self.state = True, "down"
        self._flowing.set()  # held bytes are dropped, not delivered: their connections close
        self._close_all()

    def go_silent(self):
        """Redis stopped answering: connections stay open, and nothing gets through either way."""
        self._flowing.clear()
        self.state = "silent"

    def restore(self):
        """Redis is back: new connections are passed on again, held bytes delivered."""
        self._down, self.state = False, "up"
        self._flowing.set()
