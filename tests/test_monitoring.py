"""Flower, started the way `make run` starts it, sees the run's worker and its tasks with the
times they were sent (by the web app), received and started (by the worker)."""
import os
import subprocess
import sys
import time

import psutil
import pytest
import requests

from labs.harness.lesson.waiting import wait_for
from labs.harness.paths import ROOT
from labs.harness.services.flower import Flower, installed
from labs.harness.services.processes import free_port
from labs.harness.services.stack import StackSpec

from .helpers import reference_app


def test_flower_is_installed_for_the_tests():
    # `make test` installs the optional group, so the Flower test runs in CI and never skips.
    assert installed(), "Flower is missing: pip install -e '.[flower]' (make test does it)"


@pytest.fixture
def monitored_app(tmp_path):
    with reference_app(tmp_path, "0.5", StackSpec(events=True)) as stack:
        flower = Flower(stack.redis.broker_url, stack.redis.result_backend_url, tmp_path, free_port()).start()
        try:
            yield stack, flower
        finally:
            flower.stop()


def test_flower_shows_the_worker_and_each_task_with_its_times(monitored_app):
    stack, flower = monitored_app
    node = stack.worker.hostname()
    assert "task events: ON" in stack.worker.log()

    workers = wait_for(lambda: node in flower.api("workers?refresh=1") and flower.api("workers"), timeout=30)
    assert node in workers, (workers, flower.process.log_tail())
    assert workers[node]["stats"]["pool"]["max-concurrency"] == stack.worker.spec.concurrency

    sent_at = time.time()
    assert stack.web.client().post("/handson/task_step2").status == 302

    def finished():
        return [task for task in flower.api("tasks").values()
                if task["name"] == "handson.tasks.hello" and task["state"] == "SUCCESS"]

    tasks = wait_for(finished, timeout=20)
    assert tasks, (flower.api("tasks"), flower.process.log_tail())
    task = tasks[0]
    # Sent by the web app (task_send_sent_event), then received and started by the worker.
    assert task["sent"] and task["received"] and task["started"] and task["succeeded"], task
    # Celery publishes the task-sent event just after the task itself, so on a busy machine the worker
    # may stamp "received" (even "started") before the web app stamps "sent"; the one-second task
    # still ends after both.
    assert sent_at - 1 <= min(task["sent"], task["received"]), task
    assert task["received"] <= task["started"] <= task["succeeded"] and task["sent"] <= task["succeeded"], task
    assert task["worker"] == node and task["client"], task


def test_flower_listens_on_127_0_0_1_only_and_its_api_needs_no_login(monitored_app):
    _, flower = monitored_app
    listening = {conn.laddr.ip for conn in psutil.Process(flower.process.pid).net_connections("tcp")
                 if conn.status == psutil.CONN_LISTEN}
    assert listening == {"127.0.0.1"}, listening
    assert requests.get(flower.url + "/api/workers?status=1", timeout=10).status_code == 200


def test_flower_1_make_run_starts_flower_on_the_runs_broker(make_run):
    port = free_port()
    run = make_run("--flower", FLOWER_PORT=str(port))
    assert run.seen(f"Flower (the Celery monitor): http://127.0.0.1:{port}"), run.output()[-2000:]
    assert wait_for(lambda: _nodes(port) >= {"default", "slow"}, timeout=20), _status(port)


def test_make_flower_finds_the_running_make_run_and_ends_with_it(make_run, tmp_path):
    run = make_run()
    port = free_port()
    flower = subprocess.Popen([sys.executable, "-m", "labs.harness.tools.flower"], cwd=ROOT, text=True,
                              env=dict(os.environ, HANDSON_LANG="en", HANDSON_LAB_DIR=str(tmp_path / "lab"),
                                       FLOWER_PORT=str(port)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: _nodes(port) >= {"default", "slow"}, timeout=30), _status(port)
        run.stop()
        output, _ = flower.communicate(timeout=30)
        assert flower.returncode == 0 and "make run has ended, so Flower stops too." in output, output[-2000:]
    finally:
        if flower.poll() is None:
            flower.kill()
            flower.wait()


def _status(port):
    """{node: answers} from a Flower on ``port``, or {} while it is not up yet."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/workers?status=1", timeout=5).json()
    except (requests.RequestException, ValueError):
        return {}


def _nodes(port):
    """The first part of the node names Flower lists (the reference runs "default" and "slow")."""
    return {node.split("-", 1)[0] for node in _status(port)}
