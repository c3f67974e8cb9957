"""Grading runs the learner's code: what that code starts must not outlive the grade, nor forge it.

A submission whose handson/__init__.py (imported by every web server and worker of every step)
double-forks a daemon, in a session of its own, that keeps rewriting result.json to full marks.
Graded through `make grade WORKSPACE=` and through Classroom 50's autograder, it must score what
its honest part earns (the untouched starter: step 1's points), with nothing of it left running.
(tools/sweep.py: the grader is the subreaper of everything it starts, and kills what is left
before it writes a report.)
"""
import json
import subprocess
import sys
import textwrap

import pytest

from labs.harness.lesson.waiting import wait_for
from labs.harness.paths import ROOT
from labs.harness.reference import materialize
from labs.harness.steps import load_steps

from .helpers import marked_env, processes_marked
from .test_grading import autograde

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper guard needs Linux")

FORGER = '''

# --- a hostile submission: a daemon that forges the grade once it is written ---
import json as _json
import os as _os
import time as _time


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


if not _os.environ.get("FORGER_STARTED"):
    _os.environ["FORGER_STARTED"] = "1"
    _forge(TARGET)
'''
HONEST = load_steps()[0].points  # the untouched starter passes step 1 only


def hostile_checkout(folder, target):
    checkout = materialize(1, folder)
    init = checkout / "handson" / "__init__.py"
    init.write_text(init.read_text() + textwrap.dedent(FORGER).replace("TARGET", repr(str(target))))
    return checkout


def _not_forged(path):
    """True when ``path`` still holds the honest grade for the next 2 s (a surviving forger writes within 0.05 s)."""
    forged = wait_for(lambda: json.loads(path.read_text())["score"] != HONEST, timeout=2)
    return not forged


def test_make_grade_stops_a_daemon_that_would_forge_result_json(tmp_path):
    out = tmp_path / "out"
    checkout = hostile_checkout(tmp_path / "checkout", out / "result.json")
    mark, env = marked_env(TMPDIR=str(tmp_path), HANDSON_LAB_DIR=str(tmp_path / "lab"))
    finished = subprocess.run([sys.executable, "-m", "labs.harness.tools.grade", "--workspace", str(checkout),
                               "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)

    assert finished.returncode == 1, finished.stdout[-2000:] + finished.stderr[-2000:]
    assert _not_forged(out / "result.json"), (out / "result.json").read_text()
    assert json.loads((out / "result.json").read_text())["score"] == HONEST
    assert not processes_marked(mark, folder=tmp_path)
    assert "they were stopped before this report was written" in (out / "grade.md").read_text()


def test_the_autograder_stops_a_daemon_that_would_forge_result_json(tmp_path):
    checkout = tmp_path / "checkout"
    hostile_checkout(checkout, checkout / "result.json")

    graded = autograde(checkout, tmp_path / "scratch")

    assert graded.finished.returncode == 0, graded.finished.stdout[-2000:] + graded.finished.stderr[-2000:]
    assert _not_forged(graded.result_path), graded.result_path.read_text()
    assert graded.result()["score"] == HONEST
    assert not graded.left_behind, graded.left_behind


SNOOPER = '''

# --- a hostile submission: it copies the environment it can see to a file of its own ---
import json as _json
import os as _os

with open(DUMP, "a") as _dump:
    _seen = {"self": dict(_os.environ)}
    try:
        with open(f"/proc/{_os.getppid()}/environ", "rb") as _parent:  # the process that started this one
            _seen["parent"] = _parent.read().decode("utf-8", "replace")
    except OSError:
        pass
    _dump.write(_json.dumps(_seen) + "\\n")
'''
CANARY = "canary-4f1c9a0e7b"


def test_the_graded_code_sees_no_secret_of_the_grader(tmp_path):
    """The grader's secrets (a canary SECRET and GITHUB_TOKEN here) are in neither the app's
    environment nor that of the pytest that starts it (services/app_env.py, minimal_env)."""
    dump = tmp_path / "seen.jsonl"
    checkout = materialize(1, tmp_path / "checkout")
    init = checkout / "handson" / "__init__.py"
    init.write_text(init.read_text() + textwrap.dedent(SNOOPER).replace("DUMP", repr(str(dump))))
    mark, env = marked_env(TMPDIR=str(tmp_path), HANDSON_LAB_DIR=str(tmp_path / "lab"), SECRET=CANARY,
                           GITHUB_TOKEN=CANARY, AWS_SECRET_ACCESS_KEY=CANARY)
    finished = subprocess.run([sys.executable, "-m", "labs.harness.tools.grade", "--workspace", str(checkout),
                               "--out", str(tmp_path / "out")], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=900)

    assert finished.returncode == 1, finished.stdout[-2000:] + finished.stderr[-2000:]
    seen = dump.read_text()
    assert seen.count("\n") >= 2, "the graded code did not run"  # web servers and workers imported it
    assert CANARY not in seen
    assert json.loads((tmp_path / "out" / "result.json").read_text())["score"] == HONEST
    assert not processes_marked(mark, folder=tmp_path)
