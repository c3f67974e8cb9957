"""`make run` watches its services: a stopped worker is restarted, a stopped Redis or web
server ends the run with a message, and a closed terminal leaves nothing behind. The web
server serves the next request while a client holds an idle connection open."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
import requests

from labs.harness.lesson.waiting import wait_for
from labs.harness.paths import ROOT
from labs.harness.services.processes import free_port

from .helpers import reference_app

MESSAGE_WITHIN = 2.0  # seconds from a kill to make run's message


def _kill_and_time(run, word, message):
    killed_at = time.monotonic()
    os.kill(run.service_pid(word), signal.SIGKILL)
    said_at = wait_for(lambda: run.seen(message, after=killed_at), timeout=10)
    assert said_at, run.output()[-3000:]
    return said_at - killed_at


def test_a_killed_worker_is_announced_and_restarted(make_run):
    run = make_run()
    seconds = _kill_and_time(run, "-n default", "The worker default has stopped (killed by SIGKILL)")
    assert seconds < MESSAGE_WITHIN, seconds
    back = wait_for(lambda: run.seen("The worker default is running again"), timeout=30)
    assert back, run.output()[-3000:]
    assert wait_for(lambda: run.seen("Workers answering a ping: default-", after=back), timeout=5), run.output()[-2000:]
    assert run.process.poll() is None
    # Its log lines come with the message, and the app still works.
    assert "Its last log lines (worker-default.log)" in run.output()
    assert requests.get(f"http://127.0.0.1:{run.port}/handson", timeout=5).status_code == 200


def test_a_worker_that_keeps_stopping_ends_the_run(make_run):
    run = make_run()
    for _ in range(3):
        start = time.monotonic()
        os.kill(run.service_pid("-n default"), signal.SIGKILL)
        assert wait_for(lambda: run.seen("has stopped", after=start), timeout=MESSAGE_WITHIN), run.output()[-2000:]
        wait_for(lambda: run.seen("running again", after=start) or run.process.poll() is not None, timeout=30)
    assert run.process.wait(timeout=30) == 1
    assert "3 times within 60 s: make run gives up and ends" in run.output(), run.output()[-2000:]
    assert wait_for(lambda: not run.left_behind(), timeout=10), run.left_behind()


def test_a_killed_web_server_ends_the_run_with_its_log_and_exit_code_1(make_run):
    run = make_run()
    seconds = _kill_and_time(run, "runserver", "The web server (Django runserver) has stopped (killed by SIGKILL)")
    assert seconds < MESSAGE_WITHIN, seconds
    assert run.process.wait(timeout=30) == 1
    # Django 5.2 says "Starting development server at", 6.1 "Starting WSGI development server at".
    assert "Its last log lines (web.log)" in run.output()
    assert re.search(r"Starting (WSGI )?development server at", run.output()), run.output()[-2000:]
    # What stopped, as the reference's Procfile declares it (a default and a slow worker, one beat).
    assert "Stopped: the web server, 2 workers, beat and Redis are gone." in run.output(), run.output()[-2000:]
    assert wait_for(lambda: not run.left_behind(), timeout=10), run.left_behind()


def test_a_killed_redis_ends_the_run(make_run):
    run = make_run()
    seconds = _kill_and_time(run, "redis-server", "Redis has stopped (killed by SIGKILL)")
    assert seconds < MESSAGE_WITHIN, seconds
    assert run.process.wait(timeout=30) == 1
    assert "cannot go on without it" in run.output()
    assert wait_for(lambda: not run.left_behind(), timeout=10), run.left_behind()


@pytest.mark.parametrize("how", [signal.SIGHUP, signal.SIGTERM], ids=lambda s: s.name)
def test_a_closed_terminal_or_sigterm_stops_everything_and_leaves_nothing(make_run, how):
    run = make_run()
    assert run.left_behind() and list(run.folder.glob("celery-handson-run-*"))
    run.process.send_signal(how)
    run.process.wait(timeout=30)
    assert f"{how.name} received" in run.output() and "Stopped:" in run.output(), run.output()[-2000:]
    assert wait_for(lambda: not run.left_behind(), timeout=10), run.left_behind()
    assert not list(run.folder.iterdir()), list(run.folder.iterdir())


def test_a_bad_flower_port_is_refused():
    # A free PORT: the refusal must not depend on whether a run of the learner's holds 8000.
    result = subprocess.run([sys.executable, "-m", "labs.harness.tools.run", "--flower"], cwd=ROOT, text=True,
                            capture_output=True, timeout=60,
                            env=dict(os.environ, FLOWER_PORT="abc", HANDSON_LANG="en", PORT=str(free_port())))
    assert result.returncode != 0 and "FLOWER_PORT='abc'" in result.stderr, result.stderr


def test_make_flower_without_a_run_says_to_start_one(tmp_path):
    result = subprocess.run([sys.executable, "-m", "labs.harness.tools.flower"], cwd=ROOT, text=True,
                            capture_output=True, timeout=60,
                            env=dict(os.environ, HANDSON_LANG="en", HANDSON_LAB_DIR=str(tmp_path),
                                     FLOWER_PORT=str(free_port())))
    assert result.returncode != 0 and "make run is not running" in result.stderr, result.stderr


def test_an_idle_connection_does_not_hold_the_server_and_a_slow_view_still_does(tmp_path):
    with reference_app(tmp_path, "2") as stack:
        # A browser's spare connection: opened, never used.
        idle = socket.create_connection(("127.0.0.1", stack.web.port))
        try:
            started = time.monotonic()
            assert requests.get(stack.web.url + "/handson", timeout=10).status_code == 200
            assert time.monotonic() - started < 1.5
        finally:
            idle.close()
        # Step 1's lesson holds: while the slow view sleeps, the second tab waits for it.
        client = stack.web.client()
        client.get("/handson")
        slow = threading.Thread(target=client.post, args=("/handson/task_step1",))
        slow.start()
        assert wait_for(lambda: _busy(stack.web.port), timeout=5)
        started = time.monotonic()
        requests.get(stack.web.url + "/handson", timeout=10)
        waited = time.monotonic() - started
        slow.join()
        assert waited > 1.0, waited


def _busy(port):
    """True once a client is connected to the server (the slow POST, here)."""
    return any(conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_ESTABLISHED
               for conn in psutil.net_connections("tcp"))
