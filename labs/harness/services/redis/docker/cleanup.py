"""No container of a run outlives it, whatever ends the run.

testcontainers' own reaper (Ryuk) is an image that has to be pulled, which is
not possible offline; it is turned off and replaced by three layers:

1. ``DockerRedis.stop()`` removes the run's containers. pytest calls it from the
   session fixture's teardown after a pass, a failure, a pytest-timeout (signal
   method) or Ctrl-C, and an atexit hook calls it if the teardown never ran.
2. A watchdog process, started in a session of its own, holds the read end of a
   pipe whose write end only the run holds. When the run ends in any way -- even
   SIGKILL or os._exit, where no Python code runs -- the kernel closes the write
   end, the watchdog reads EOF, removes the run's containers and exits.
3. Every container is labelled with its owner (host, pid, process start time).
   The next run removes containers whose owner is gone, for the case where the
   watchdog was killed too.
"""
import os
import socket
import subprocess
import sys
import uuid

import psutil

from ....paths import ROOT

RUN = "celery-handson.run"
HOST = "celery-handson.owner-host"
PID = "celery-handson.owner-pid"
STARTED = "celery-handson.owner-started"
WATCHDOG_EXIT_TIMEOUT = 10  # seconds; removing a container takes well under one


def new_run_labels():
    """Labels naming a fresh run and this process as its owner."""
    me = psutil.Process()
    return {RUN: uuid.uuid4().hex[:12], HOST: socket.gethostname(), PID: str(me.pid),
            STARTED: f"{me.create_time():.2f}"}


def owner_alive(labels):
    """False only when the owner was on this host and that process is gone (or its pid was reused)."""
    if labels.get(HOST) != socket.gethostname():
        return True  # another machine's (or container's) run: not ours to judge
    try:
        owner = psutil.Process(int(labels.get(PID, "")))
        return abs(owner.create_time() - float(labels.get(STARTED, "0"))) < 1.0
    except (ValueError, psutil.NoSuchProcess):
        return False
    except psutil.Error:
        return True  # exists but cannot be inspected: leave its containers alone


def remove_run(client, run_id):
    """Remove every container of run ``run_id``; the number removed."""
    return _remove(client, listed_containers(client, {"label": f"{RUN}={run_id}"}))


def remove_orphans(client):
    """Remove containers left by runs of this host whose process is gone; the number removed."""
    labelled = listed_containers(client, {"label": PID})
    return _remove(client, [c for c in labelled if not owner_alive(c.labels)])


def listed_containers(client, filters):
    """The containers matching ``filters``, stopped ones too. docker-py lists the ids, then inspects each:
    one removed in between (by its watchdog, by another cleanup) is left out instead of raising NotFound."""
    return client.containers.list(all=True, filters=filters, ignore_removed=True)


def _remove(client, containers):
    import docker

    removed = 0
    for container in containers:
        try:
            container.remove(force=True, v=True)
            removed += 1
        except docker.errors.NotFound:
            pass  # already gone (removed by the watchdog, or by the engine)
        except docker.errors.APIError as problem:
            if problem.status_code != 409:  # 409: removal already in progress
                raise
    return removed


class Watchdog:
    """The process that removes the run's containers once the run is gone."""

    def __init__(self, run_id, docker_host=None):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        if docker_host:
            env["DOCKER_HOST"] = docker_host  # the engine the run uses, even if it came from a docker context
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "labs.harness.services.redis.docker.cleanup", run_id],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=ROOT, env=env,
            # Its own session: Ctrl-C in the terminal and a kill of pytest's
            # process group do not reach it, so it outlives the run it guards.
            start_new_session=True,
        )

    def release(self):
        """The run is ending normally: let the watchdog check once more and exit."""
        if self.popen.stdin and not self.popen.stdin.closed:
            self.popen.stdin.close()
        try:
            self.popen.wait(timeout=WATCHDOG_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _watch(run_id):
    """Block until the run closes the pipe (or dies), then remove its containers."""
    import docker  # imported before waiting, so the removal is quick when it is needed

    sys.stdin.buffer.read()
    client = docker.from_env(timeout=30)
    try:
        remove_run(client, run_id)
    finally:
        client.close()


if __name__ == "__main__":
    _watch(sys.argv[1])
