"""Redis in a Docker container through testcontainers: the container (container.py), the image it
runs, built offline when no registry answers (image.py), and the reaping of leftovers (cleanup.py)."""
from .container import DockerRedis, engine_client, engine_problem, redis_problem

__all__ = ["DockerRedis", "engine_client", "engine_problem", "redis_problem"]
