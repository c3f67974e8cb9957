"""Nothing a lab run starts outlives it: not on Ctrl-C, not on a timeout, not when pytest is killed."""
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from labs.harness.lesson.waiting import wait_for

from .helpers import child_pytest, marked_env, processes_marked, run_marked


def _start_lab_run(*args, sleep="30"):
    """A child pytest on step 2 whose tasks sleep long enough to be interrupted mid-test."""
    mark, env = marked_env(HANDSON_SLEEP=sleep)
    child = child_pytest("labs/test_step2.py", "--solution", *args, env=env, background=True)
    # Wait until Redis, the worker and the web server are all up.
    def services():
        return processes_marked(mark, child.pid)

    everything_up = wait_for(lambda: all(any(word in line for line in services())
                                         for word in ("redis-server", "celery", "runserver")), timeout=60)
    assert everything_up, f"the services did not all start: {services()}"
    return child, services


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_stopping_pytest_stops_every_service(how):
    """Ctrl-C (SIGINT) tears the fixtures down; SIGTERM and SIGKILL leave no time for that, and the kernel
    kills the children (PR_SET_PDEATHSIG), Celery's pool processes with their worker."""
    child, services = _start_lab_run()

    child.send_signal(how)
    child.communicate(timeout=60)

    assert wait_for(lambda: not services(), timeout=15), f"still running after {how.name}: {services()}"
    # A killed pytest cannot remove its log folder (a later run prunes old ones); this test does.
    for folder in Path(tempfile.gettempdir()).glob(f"celery-handson-{child.pid}-*"):
        shutil.rmtree(folder, ignore_errors=True)


def test_a_test_timeout_fails_the_test_and_stops_the_services():
    """pytest-timeout (signal method) fails the hanging test; the session still tears everything down.
    The limit counts the fixtures' start too: 20 s leaves a busy 2-core machine room to start the stack
    (6 s did not, in CI), and the task's 60 s sleep still outlasts it."""
    run, left_behind = run_marked(["labs/test_step2.py::test_the_worker_runs_hello_and_stores_success"],
                                  pytest_args=["--solution", "--timeout", "20"], HANDSON_SLEEP="60")

    timed_out = [o for o in run.outcomes if "Timeout" in o.message]
    assert timed_out and all(o.status == "failed" for o in timed_out), run.output[-3000:]
    assert not left_behind, left_behind
