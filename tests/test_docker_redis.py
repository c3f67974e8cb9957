"""The Docker path (--redis=docker): it fails fast and clearly without an engine,
and with one it runs Redis in a container that is gone after the run, however
the run ends (pass, failure, pytest-timeout, Ctrl-C, SIGKILL).

Each run is a real pytest in a subprocess on a tiny lab test, with the lab's
plugin. Tests that need a Docker engine skip without one, saying how to get
one; with HANDSON_REQUIRE_DOCKER=1 (the Docker phase of .ci/run) they fail
instead, so CI cannot pass by skipping them.
"""
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import time
import tomllib
from io import BytesIO
from pathlib import Path

import docker
import pytest

from labs.harness.lesson.waiting import wait_for
from labs.harness.services.redis import embedded_redis_binary
from labs.harness.services.redis.docker import cleanup as docker_cleanup
from labs.harness.services.redis.docker import engine_client, engine_problem
from labs.harness.services.redis.docker import image as docker_image

from .helpers import child_pytest

ROOT = Path(__file__).resolve().parents[1]
USAGE_ERROR = 4  # pytest's exit code for a usage error
NO_ENGINE = "unix:///nonexistent/docker.sock"

TINY_LAB = '''
import json, os, time
from pathlib import Path

def test_redis(redis_server, lab):
    assert redis_server.client().ping()
    owner = getattr(redis_server, "labels", None) or {}
    watchdog = getattr(redis_server, "watchdog", None)
    Path(os.environ["TINY_STATE"]).write_text(json.dumps({
        "kind": redis_server.kind, "url": redis_server.broker_url,
        "run": owner.get("celery-handson.run"),
        "watchdog": watchdog.popen.pid if watchdog else None}))
    mode = os.environ.get("TINY_MODE", "pass")
    assert mode != "fail", "failing on purpose"
    if mode == "hang":
        time.sleep(120)
'''


PLUGINS = ("labs.harness.plugin.options", "labs.harness.plugin.header", "labs.harness.plugin.fixtures")


def tiny_lab(tmp_path, *options, mode="pass", docker_host=None, extra_env=None, background=False, timeout=90):
    """pytest on TINY_LAB with the lab's plugin: (CompletedProcess or Popen, state file)."""
    (tmp_path / "test_tiny.py").write_text(TINY_LAB)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    state = tmp_path / "state.json"
    env = {key: value for key, value in os.environ.items() if key not in ("HANDSON_REDIS", "PYTHONPATH")}
    env.update(PYTHONPATH=str(ROOT), HANDSON_LANG="en", TINY_MODE=mode, TINY_STATE=str(state))
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    env.update(extra_env or {})
    plugins = [arg for name in PLUGINS for arg in ("-p", name)]
    return child_pytest(*plugins, "-c", tmp_path / "pytest.ini", "--rootdir", tmp_path, tmp_path / "test_tiny.py",
                        *options, cwd=tmp_path, env=env, background=background, timeout=timeout), state


# -- without a Docker engine -------------------------------------------------------
def test_engine_problem_is_one_short_line(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    assert engine_problem() == f"no Docker engine at {NO_ENGINE}: no such socket"


def test_redis_docker_without_engine_fails_fast_and_says_what_to_do(tmp_path):
    started = time.monotonic()
    result, _ = tiny_lab(tmp_path, "--redis=docker", docker_host=NO_ENGINE)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == USAGE_ERROR, output
    assert "--redis=docker: Docker is not reachable (no Docker engine at" in output, output
    assert "--redis=local" in output, output
    assert elapsed < 10, f"took {elapsed:.1f} s to say there is no engine"


def test_redis_docker_with_an_engine_port_that_refuses_fails_fast(tmp_path):
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    started = time.monotonic()
    result, _ = tiny_lab(tmp_path, "--redis=docker", docker_host=f"tcp://127.0.0.1:{port}")
    assert result.returncode == USAGE_ERROR, result.stdout + result.stderr
    assert ": connection refused" in result.stderr
    assert time.monotonic() - started < 10


def test_auto_without_engine_falls_back_to_the_embedded_server_and_says_so(tmp_path):
    result, state = tiny_lab(tmp_path, "--redis=auto", docker_host=NO_ENGINE)
    assert result.returncode == 0, result.stdout + result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("celery-handson: redis"))
    assert "local redis-server" in header and "(auto: the embedded one, as there is no Docker engine at" in header, header
    assert json.loads(state.read_text())["kind"] == "local"


# -- the offline image, without an engine --------------------------------------------
LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd4b5f2000)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f0e2b0a1000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0e2aebf000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0e2b1a5000)
"""


def test_parse_ldd_lists_the_files_to_copy_and_skips_the_vdso():
    assert docker_image.parse_ldd(LDD_OUTPUT) == [
        "/lib/x86_64-linux-gnu/libm.so.6", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]
    assert docker_image.parse_ldd("\tstatically linked\n") == []


def test_parse_ldd_refuses_a_missing_library():
    with pytest.raises(docker_image.RedisUnavailable, match="libssl.so.3 => not found"):
        docker_image.parse_ldd("\tlibssl.so.3 => not found\n")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the offline image is built from a Linux binary")
def test_rootfs_holds_the_server_its_libraries_and_writable_folders():
    binary = embedded_redis_binary()
    assert binary, "no embedded redis-server (pip install -e .)"
    files = docker_image.rootfs_files(binary)
    assert files[docker_image.SERVER_PATH] == binary
    assert any("libc.so" in target for target in files), files
    with tarfile.open(fileobj=BytesIO(docker_image.rootfs_tar(files))) as tar:
        members = {member.name: member for member in tar.getmembers()}
    server = members[docker_image.SERVER_PATH.lstrip("/")]
    assert server.isfile() and server.mode & 0o111 and server.size == Path(binary).stat().st_size
    assert members["tmp"].mode == 0o1777
    assert members["data"].uid == docker_image.NOBODY
    assert all(target.lstrip("/") in members for target in files)


def test_image_names_split_into_repository_and_tag():
    assert docker_image._split("redis:7.4-alpine") == ("redis", "7.4-alpine")
    assert docker_image._split("redis") == ("redis", "latest")
    assert docker_image._split("localhost:5000/redis") == ("localhost:5000/redis", "latest")
    assert docker_image._split("localhost:5000/redis:7") == ("localhost:5000/redis", "7")


def test_embedded_version_names_the_built_image():
    binary = embedded_redis_binary()
    assert re.fullmatch(r"\d+\.\d+\.\d+", docker_image.redis_version(binary))


# -- the compose route ----------------------------------------------------------------
def test_compose_app_image_installs_what_pyproject_requires():
    """The Dockerfile installs the app's dependencies with the same ranges as pyproject.toml."""
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name in ("celery[redis]", "django", "redis"):
        spec = next(dep for dep in required if re.match(rf"{re.escape(name)}\s*[<>=]", dep))
        assert f'"{spec}"' in dockerfile, f"Dockerfile should install {spec!r}, as pyproject.toml does"


def test_compose_file_runs_the_original_three_services():
    compose = (ROOT / "compose.yaml").read_text()
    for needle in ("python /app/handson_runserver.py runserver --nothreading --noreload 0.0.0.0:8000",
                   "./labs/harness/services/runserver.py:/app/handson_runserver.py:ro", "127.0.0.1:8000:8000",
                   "done < handson/Procfile", "./handson:/app/handson",
                   "HANDSON_BROKER_URL: redis://redis:6379/1", "HANDSON_RESULT_BACKEND: redis://redis:6379/0",
                   "DJANGO_SETTINGS_MODULE: handson.settings"):
        assert needle in compose
    # The worker service starts what handson/Procfile declares; the starter declares the original's worker.
    assert "worker: celery -A handson worker --concurrency=1 -l info" in (ROOT / "handson" / "Procfile").read_text()


# -- with a Docker engine ---------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    problem = engine_problem()
    if problem is not None:
        message = (f"needs a Docker engine ({problem}). Start Docker Desktop, or on Debian/Ubuntu as root "
                   "run .ci/docker-engine (installs docker.io and starts dockerd); .ci/run does it in CI")
        if os.environ.get("HANDSON_REQUIRE_DOCKER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    client = engine_client()
    yield client
    client.close()


def containers_of(client, run_id):
    return docker_cleanup.listed_containers(client, {"label": f"{docker_cleanup.RUN}={run_id}"})


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_docker_run_passes_names_the_image_and_leaves_nothing(engine, tmp_path):
    result, state = tiny_lab(tmp_path, "--redis=docker")
    assert result.returncode == 0, result.stdout + result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("celery-handson: redis"))
    assert re.search(r"docker container of \S+:\S+ on a port of 127\.0\.0\.1", header), header
    run = json.loads(state.read_text())
    assert run["kind"] == "docker" and run["url"].startswith("redis://127.0.0.1:")
    assert containers_of(engine, run["run"]) == []
    assert gone(run["watchdog"])


def test_an_image_that_cannot_be_pulled_is_built_locally_and_the_header_says_so(engine, tmp_path):
    missing = "celery-handson/no-such-image:0"
    result, _ = tiny_lab(tmp_path, "--redis=docker", extra_env={"HANDSON_REDIS_IMAGE": missing})
    assert result.returncode == 0, result.stdout + result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("celery-handson: redis"))
    assert f"docker container of {docker_image.BUILT_REPOSITORY}:" in header, header
    assert f"built locally from the embedded redis-server; {missing} could not be pulled, which is fine" in header, header


@pytest.mark.parametrize("mode, options", [
    ("fail", []),
    ("hang", ["--timeout=2", "--timeout-method=signal"]),
    ("hang", ["--timeout=2", "--timeout-method=thread"]),  # os._exit: no teardown, the watchdog removes it
], ids=["failing-test", "timeout-signal", "timeout-thread"])
def test_container_is_removed_when_the_run_fails(engine, tmp_path, mode, options):
    result, state = tiny_lab(tmp_path, "--redis=docker", *options, mode=mode)
    assert result.returncode != 0, result.stdout
    run = json.loads(state.read_text())
    assert wait_for(lambda: not containers_of(engine, run["run"]), timeout=10), "container left behind"
    assert wait_for(lambda: gone(run["watchdog"]), timeout=10), "watchdog still running"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_container_is_removed_when_the_run_is_interrupted(engine, tmp_path, signum):
    run_process, state = tiny_lab(tmp_path, "--redis=docker", mode="hang", background=True)
    try:
        assert wait_for(state.exists, timeout=30), "the tiny lab never got its Redis"
        run = json.loads(state.read_text())
        assert containers_of(engine, run["run"]), "no container while the test runs"
        run_process.send_signal(signum)
        run_process.wait(timeout=30)
    finally:
        if run_process.poll() is None:
            run_process.kill()
        run_process.communicate()
    assert wait_for(lambda: not containers_of(engine, run["run"]), timeout=10), "container left behind"
    assert wait_for(lambda: gone(run["watchdog"]), timeout=10), "watchdog still running"


def test_a_later_run_removes_containers_whose_owner_died(engine, tmp_path):
    image = docker_image.build_embedded_image(engine, embedded_redis_binary())
    dead = subprocess.Popen(["true"])  # a pid whose process is gone
    dead.wait()
    owners = {
        "dead": {docker_cleanup.PID: str(dead.pid), docker_cleanup.STARTED: "1.00"},
        "alive": {docker_cleanup.PID: str(os.getpid()),
                  docker_cleanup.STARTED: docker_cleanup.new_run_labels()[docker_cleanup.STARTED]},
    }
    hosts = {"dead": socket.gethostname(), "alive": socket.gethostname(), "elsewhere": "another-host"}
    owners["elsewhere"] = owners["dead"]  # dead here, but on another host: not ours to judge
    made = {}
    try:
        for name, owner in owners.items():
            labels = {docker_cleanup.RUN: f"orphan-test-{name}", docker_cleanup.HOST: hosts[name], **owner}
            made[name] = engine.containers.create(image, labels=labels)
        docker_cleanup.remove_orphans(engine)
        assert containers_of(engine, "orphan-test-dead") == []
        assert containers_of(engine, "orphan-test-alive") and containers_of(engine, "orphan-test-elsewhere")
    finally:
        for container in made.values():
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)  # already removed by remove_orphans
