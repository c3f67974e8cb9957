"""Redis in a Docker container through testcontainers (--redis=docker, or auto with an engine).

The container publishes Redis on 127.0.0.1 only, on a port the engine picks,
and the worker and the web server are pointed at that port. The image is
HANDSON_REDIS_IMAGE (default the official Redis image) or, when no registry
can be reached, one built from the embedded redis-server (docker_image.py).
Cleanup is ours, not Ryuk's (docker_cleanup.py says why and how).
"""
import atexit
import os
import sys
import time
from pathlib import Path

from ....i18n import say
from ..base import START_TIMEOUT, RedisService, RedisUnavailable, db_url, wait_for_ping
from . import cleanup as docker_cleanup
from . import image as docker_image

ENGINE_TIMEOUT = 3  # seconds; an engine that does not answer a ping by then is not there
API_TIMEOUT = 30  # seconds for one engine call (create, start, remove) on a busy machine
REDIS_PORT = 6379


def engine_host():
    """The engine address testcontainers uses (DOCKER_HOST, ~/.testcontainers.properties or the
    docker context), else the platform's default socket."""
    try:
        from testcontainers.core.docker_client import get_docker_host

        host = get_docker_host()
    except (ImportError, OSError, ValueError):  # no testcontainers, or a broken context file
        host = None
    if host:
        return host
    return "npipe:////./pipe/docker_engine" if sys.platform == "win32" else "unix:///var/run/docker.sock"


def engine_client(timeout=API_TIMEOUT):
    """A docker SDK client for the engine testcontainers will use."""
    import docker

    return docker.from_env(timeout=timeout, environment=dict(os.environ, DOCKER_HOST=engine_host()))


def engine_problem():
    """None when a Docker engine answers, else a short reason why not."""
    host = engine_host()
    try:
        import docker
    except ImportError:
        return "the docker Python package is missing (pip install -e .)"
    try:
        client = engine_client(ENGINE_TIMEOUT)
        try:
            client.ping()
        finally:
            client.close()
        return None
    # No socket, permission denied, engine down, timeout (requests' errors are OSErrors).
    except (docker.errors.DockerException, OSError) as problem:
        return f"no Docker engine at {host}{_why(problem)}"


def redis_problem():
    """None when Docker can run a Redis here (the engine answers, and has the image, can pull it, or can build one
    from an embedded redis-server), else a short reason why not: what the Redis chain asks before it picks Docker."""
    problem = engine_problem()
    if problem is not None:
        return problem
    import docker

    client = engine_client(ENGINE_TIMEOUT)
    try:
        docker_image.resolve(client)
        return None
    except RedisUnavailable as unavailable:
        return f"Docker answers, but {unavailable}"
    except (docker.errors.DockerException, OSError) as error:
        return f"Docker answers, but {docker_image.short_reason(error)}"
    finally:
        client.close()


def _why(problem):
    # The SDK wraps the cause several layers deep; its repr is long. One word is enough.
    text = repr(problem)
    for needle, why in (("FileNotFoundError", "no such socket"), ("PermissionError", "permission denied"),
                        ("Connection refused", "connection refused"), ("ConnectionRefused", "connection refused"),
                        ("timed out", f"no answer within {ENGINE_TIMEOUT} s"),
                        ("Timeout", f"no answer within {ENGINE_TIMEOUT} s")):
        if needle in text:
            return f": {why}"
    return f": {docker_image.short_reason(problem)}"


def _redis_container_class():
    try:  # testcontainers >= 4.14 moved it; the old path still works there, with a warning
        from testcontainers.community.redis import RedisContainer
    except ImportError:
        from testcontainers.redis import RedisContainer
    return RedisContainer


class DockerRedis(RedisService):
    """A Redis container of this run, removed when the run ends however it ends."""

    kind = "docker"

    def __init__(self, log_dir):
        from docker.errors import DockerException

        self.log_dir = Path(log_dir)
        # Resolved now, so that the header can name the image and auto can still
        # fall back to the embedded server when no image can be had.
        try:
            self.engine = engine_client()
            self.image = docker_image.resolve(self.engine)
        except (DockerException, OSError) as problem:  # the engine went away, or failed a call
            reason = docker_image.short_reason(problem)
            raise RedisUnavailable(say(
                f"the Docker engine failed while looking for the Redis image: {reason}",
                f"Redis イメージの確認中に Docker エンジンがエラーを返しました: {reason}",
            )) from None
        self.labels = self.watchdog = self._container = None
        self.port = self.started_in = None

    def describe(self):
        where = f"127.0.0.1:{self.port}" if self.port else "a port of 127.0.0.1 that the engine picks"
        note = f" ({self.image.origin})" if self.image.origin else ""
        return f"docker container of {self.image.name} on {where} via testcontainers{note}"

    def start(self):
        from testcontainers.core.config import testcontainers_config

        # Ryuk is an image to pull, impossible offline; docker_cleanup does its job.
        testcontainers_config.ryuk_disabled = True
        began = time.monotonic()
        try:
            docker_cleanup.remove_orphans(self.engine)
            self.labels = docker_cleanup.new_run_labels()
            self.watchdog = docker_cleanup.Watchdog(self.labels[docker_cleanup.RUN], engine_host())
            atexit.register(self.stop)
            container = self._container = _redis_container_class()(self.image.name, labels=self.labels)
            container.image = self.image.name  # exactly the image resolved above, no hub prefix
            # Loopback only, on a port the engine picks: nothing outside this machine reaches it.
            container.ports[str(REDIS_PORT)] = ("127.0.0.1", None)
            # testcontainers would ping the address it guesses for the engine (inside a
            # container: the gateway), polling once a second; the published loopback
            # port is pinged below instead, every 50 ms.
            container.waiting_for(None)
            container.start()
            self.port = self._published_port(container.get_container_id())
        except Exception as problem:  # noqa: BLE001 -- whatever it is, remove what was made, then say why
            self.stop()
            reason = docker_image.short_reason(problem)
            raise RedisUnavailable(say(f"the Redis container ({self.image.name}) did not start: {reason}",
                                       f"Redis コンテナ ({self.image.name}) が起動しませんでした: {reason}")) from None
        base = f"redis://127.0.0.1:{self.port}"
        # Two databases, as in the original hands-on: the queue in 1, results in 0.
        self.broker_url, self.result_backend_url = db_url(base, 1), db_url(base, 0)
        error = wait_for_ping(self.broker_url, START_TIMEOUT)
        if error is not None:
            self.stop()
            raise RedisUnavailable(say(
                f"the Redis container ({self.image.name}) did not answer on 127.0.0.1:{self.port} within "
                f"{START_TIMEOUT} s: {error}. A remote Docker engine publishes the port on its own "
                f"machine: use --redis=local there. Container log in {self.log_dir / 'redis.log'}",
                f"Redis コンテナ ({self.image.name}) が {START_TIMEOUT} 秒以内に 127.0.0.1:{self.port} で"
                f"応答しませんでした: {error}。リモートの Docker エンジンはポートをそのマシン上に公開するので、"
                f"その場合は --redis=local を使ってください。コンテナのログ: {self.log_dir / 'redis.log'}",
            ))
        self.started_in = time.monotonic() - began
        return self

    def _published_port(self, container_id):
        for binding in self.engine.api.port(container_id, REDIS_PORT) or []:
            if binding.get("HostIp") in ("127.0.0.1", "") and binding.get("HostPort"):
                return int(binding["HostPort"])
        raise RuntimeError(f"port {REDIS_PORT} of the container is not published on 127.0.0.1")

    def stop(self):
        """Remove the run's container (idempotent: the fixture and atexit may both call it)."""
        from docker.errors import DockerException

        atexit.unregister(self.stop)
        if self.labels is not None:
            run_id, self.labels = self.labels[docker_cleanup.RUN], None
            self._save_logs(run_id)
            try:
                docker_cleanup.remove_run(self.engine, run_id)
            except (DockerException, OSError):
                pass  # engine gone mid-run: the watchdog, then the next run, retry
        if self.watchdog is not None:
            self.watchdog.release()
            self.watchdog = None
        if self._container is not None:
            self._container.get_docker_client().client.close()  # testcontainers' own connection
            self._container = None

    def _save_logs(self, run_id):
        from docker.errors import DockerException

        # The server's own words stay in the run folder, which is kept when a test fails.
        try:
            for container in docker_cleanup.listed_containers(self.engine, {"label": f"{docker_cleanup.RUN}={run_id}"}):
                (self.log_dir / "redis.log").write_bytes(container.logs())
        except (DockerException, OSError):
            pass  # the log is a help for a failed run, never a reason to fail one
