"""Redis in a Docker container through testcontainers (--redis=docker, or auto with an engine)."""


def engine_problem():
    """None when a Docker engine answers, else a short reason why not."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
        return None
    except Exception as problem:  # no socket, permission denied, engine down, no SDK...
        return f"{type(problem).__name__}: {problem}".splitlines()[0][:200]


class DockerRedis:
    def __init__(self, log_dir):
        raise NotImplementedError("the Docker path is not built yet")
