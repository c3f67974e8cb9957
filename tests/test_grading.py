"""Grading: `make grade` (labs/harness/tools/grade.py) and Classroom 50's autograder.

The autograder runs as Classroom 50's runner runs it: `python autograder.py`, no
arguments, in the submission's checkout, with the runner's environment; the lab it
grades with is this checkout (HANDSON_LAB). Each grading runs the real labs, so the
slow ones are module fixtures shared by several tests: the starter, the reference, and
a learner's clone whose labs/test_step2.py always passes. Every result.json is put
through Classroom 50's own checks (classroom50_contract.py).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, replace
from pathlib import Path

import portpicker
import pytest
import yaml

from labs.harness.paths import ROOT
from labs.harness.reference import git, materialize
from labs.harness.steps import largest_remainder, last_step, load_steps
from labs.harness.tools.grade import step_numbers

from .classroom50_contract import finalize, validate_result
from .helpers import child_pytest, marked_env, once_per_session, processes_marked

AUTOGRADER = ROOT / "classroom50" / "autograder.py"
RUNNER_ENV = {
    "CLASSROOM": "cs-celery-2026",
    "ASSIGNMENT": "celery-handson",
    "SUBMISSION_TAG": "submit/2026-11-25T10-00-00Z-a1b2c3d",
    "COMMIT_URL": "https://github.com/school/cs-celery-2026-celery-handson-learner/commit/a1b2c3d",
    "RELEASE_URL": "https://github.com/school/cs-celery-2026-celery-handson-learner/releases/tag/"
                   "submit%2F2026-11-25T10-00-00Z-a1b2c3d",
    "REVIEW_URL": "https://github.com/school/cs-celery-2026-celery-handson-learner/compare/base...a1b2c3d",
}
ALWAYS_PASSES = '"""Always passes."""\n\n\ndef test_step2():\n    assert True\n'


@dataclass
class Graded:
    finished: subprocess.CompletedProcess
    checkout: Path
    reports: Path  # GRADE_DIR: junit.xml and grade.md
    left_behind: list

    @property
    def result_path(self):
        return self.checkout / "result.json"

    def result(self):
        return json.loads(self.result_path.read_text(encoding="utf-8"))


def autograde(checkout, scratch, via=None, **extra):
    """Classroom 50's runner, as far as the autograder can tell: no arguments, cwd the checkout
    (``via``: a function that wraps the command, to run it as another user)."""
    scratch.mkdir(parents=True, exist_ok=True)
    reports = scratch / "reports"
    mark, env = marked_env(HANDSON_LAB=str(ROOT), TMPDIR=str(scratch), GRADE_DIR=str(reports), **RUNNER_ENV)
    env.update(extra)
    env.pop("GITHUB_STEP_SUMMARY", None)
    argv = [sys.executable, str(AUTOGRADER)]
    finished = subprocess.run(via(argv) if via else argv, cwd=checkout, env=env, capture_output=True,
                              text=True, timeout=900, check=False)
    return Graded(finished, checkout, reports, processes_marked(mark, folder=scratch))


def check_contract(graded, steps=None):
    """The runner's own checks pass, and nothing the runner does not stamp was left to chance (``steps``: how
    many steps, from the first, were graded; every step unless said)."""
    assert graded.finished.returncode == 0, graded.finished.stdout[-3000:] + graded.finished.stderr[-3000:]
    stamped, problem = finalize(graded.result_path, classroom=RUNNER_ENV["CLASSROOM"],
                                assignment=RUNNER_ENV["ASSIGNMENT"])
    assert problem is None, problem
    written = graded.result()
    assert {key: written[key] for key in ("submission", "commit", "release", "review")} == {
        "submission": RUNNER_ENV["SUBMISSION_TAG"], "commit": RUNNER_ENV["COMMIT_URL"],
        "release": RUNNER_ENV["RELEASE_URL"], "review": RUNNER_ENV["REVIEW_URL"]}
    assert written["score"] == sum(t["score"] for t in written["tests"])
    assert written["max-score"] == sum(t["max-score"] for t in written["tests"]) == \
        sum(s.points for s in load_steps()[:steps])
    assert not graded.left_behind, graded.left_behind
    return written


@pytest.fixture(scope="module")
def lab_tests():
    """Every lab test, as pytest itself collects them: (module, test function)."""
    listed = child_pytest("--collect-only", "-q", "--redis=local", *[step.module for step in load_steps()])
    tests = [tuple(line.split("::", 1)) for line in listed.stdout.splitlines() if "::" in line]
    assert tests, listed.stdout + listed.stderr
    return tests


# Graded once per session (helpers.once_per_session), however many xdist workers use them.
@pytest.fixture(scope="module")
def starter(tmp_path_factory):
    def grade():
        scratch = tmp_path_factory.mktemp("starter")
        return autograde(materialize(1, scratch / "checkout"), scratch)
    return once_per_session("autograded-starter", grade)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    def grade():
        scratch = tmp_path_factory.mktemp("reference")
        return autograde(materialize(last_step(), scratch / "checkout"), scratch)
    return once_per_session("autograded-reference", grade)


@pytest.fixture(scope="module")
def learner_clone(tmp_path_factory):
    """A learner's repository: the lab as handed out (one root commit), then labs/test_step2.py
    replaced by a test that always passes, committed; handson/ is the untouched starter."""
    scratch = tmp_path_factory.mktemp("clone")
    clone = scratch / "checkout"
    for name in git(["ls-files"], ROOT).stdout.splitlines():
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    shutil.rmtree(clone / "handson")
    materialize(1, clone)
    identity = ["-c", "user.name=learner", "-c", "user.email=learner@example.com"]
    for args in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-qm", "The lab"]):
        assert git(args, clone).returncode == 0
    (clone / "labs" / "test_step2.py").write_text(ALWAYS_PASSES)
    assert git([*identity, "commit", "-qam", "step 2 done"], clone).returncode == 0
    return clone, scratch


# -- points ----------------------------------------------------------------------------
def test_points_are_integers_that_add_up_to_the_step(tmp_path):
    assert largest_remainder(40, 3) == [14, 13, 13] and largest_remainder(10, 4) == [3, 3, 2, 2]
    for total in range(0, 60):
        for count in range(1, 8):
            shares = largest_remainder(total, count)
            assert sum(shares) == total and max(shares) - min(shares) <= 1 and all(type(s) is int for s in shares)
    step = replace(load_steps()[1], points=40, test_points={"test_b": 20})
    assert step.split(["test_a", "test_b", "test_c"]) == {"test_a": 10, "test_b": 20, "test_c": 10}
    with pytest.raises(ValueError, match="test_x"):
        replace(step, test_points={"test_x": 1}).split(["test_a"])

    from labs.harness.steps import load_steps as load
    toml = (ROOT / "labs" / "steps.toml").read_text()
    points = re.search(r"^points = (\d+)$", toml, flags=re.M)
    for says in (f"points = {points.group(1)}.0", f"{points.group(0)}\ntest_points = {{ a = {int(points.group(1)) + 1} }}"):
        broken = tmp_path / f"steps{len(says)}.toml"
        broken.write_text(toml.replace(points.group(0), says, 1))
        with pytest.raises(ValueError, match="points"):
            load(broken)


# -- the contract ------------------------------------------------------------------------
def test_the_contract_check_rejects_what_classroom50_rejects():
    """The mirror of runner.py::validate_result, on the cases its own tests pin (test_runner.py)."""
    base = {"schema": "classroom50/result/v1", "classroom": "c", "assignment": "a", "owner": "alice",
            "assignment_type": "individual", "submission": "submit/x", "commit": "u", "release": "u",
            "review": "u", "datetime": "2026-06-01T14:33:11Z", "score": 0, "max-score": 0, "tests": []}
    test = {"test-name": "t", "passed": True, "score": 1, "max-score": 1, "message": "an extra key"}

    def check(**changes):
        return validate_result({**base, **changes}, classroom="c", assignment="a", owner="ALICE")

    assert check() is None and check(extra_field="anything") is None
    assert check(score=1, **{"max-score": 1}, tests=[test]) is None
    for bad in (-1, "5", 5.5, 3.0, True, None):
        assert check(score=bad, **{"max-score": 10}), bad
        assert check(score=0, **{"max-score": 1}, tests=[{**test, "score": bad}]), bad
    for bad in (None, 42, "not-a-submit-tag", "submit", ""):
        assert check(submission=bad), bad
    for field in ("commit", "release", "review", "datetime"):
        assert check(**{field: None}) and check(**{field: ""}), field
    assert check(score=5, **{"max-score": 4}) and check(schema="classroom50/result/v2")
    assert check(classroom="C") and check(assignment="b") and check(owner="bob") and check(tests={})
    assert check(tests=[{**test, "passed": "yes"}]) and check(tests=[{**test, "test-name": ""}])
    assert check(tests=[{**test, "score": 5, "max-score": 4}]) and check(tests=["t"])
    assert check(submitted_by={"username": "bob", "id": None}) is None and check(submitted_by={"id": 2})


# -- the autograder ------------------------------------------------------------------------
def test_autograder_on_the_starter_gives_step1_points_only(starter, lab_tests):
    result = check_contract(starter)
    steps = load_steps()
    assert result["score"] == steps[0].points, starter.finished.stdout[-3000:]
    assert [tuple(t["test-name"].split("::")) for t in result["tests"]] == lab_tests
    for step in steps:
        mine = [t for t in result["tests"] if t["step"] == step.number]
        assert [t["max-score"] for t in mine] == largest_remainder(step.points, len(mine))
        assert all(t["passed"] is (step.number == 1) for t in mine), mine
    assert all(t["message"] and t["score"] == 0 for t in result["tests"] if not t["passed"])
    assert (starter.checkout / "release-body.md").read_text() == (starter.reports / "grade.md").read_text()


def test_junit_has_one_case_per_lab_test_with_the_lesson_as_failure(starter, lab_tests):
    suites = ElementTree.parse(starter.reports / "junit.xml").getroot()
    cases = list(suites.iter("testcase"))
    assert [(case.get("file"), case.get("name")) for case in cases] == lab_tests
    result = starter.result()
    for case, test in zip(cases, result["tests"]):
        assert case.get("classname") == f"step{test['step']}"
        failure = case.find("failure")
        assert (failure is None) is test["passed"]
        if failure is not None:
            assert failure.text == test["message"] and failure.get("message") in test["message"]
        points = {p.get("name"): int(p.get("value")) for p in case.iter("property")}
        assert points == {"points": test["score"], "max-points": test["max-score"]}
    assert int(suites.get("tests")) == len(cases) and int(suites.get("failures")) == len(cases) - 2
    report = (starter.reports / "grade.md").read_text()
    first_failed = next(test for test in result["tests"] if not test["passed"])
    assert f"{result['score']}/{result['max-score']} points" in report and f"| 0/{first_failed['max-score']} |" in report


def test_autograder_on_the_reference_gives_full_points(reference):
    result = check_contract(reference)
    failed = [(t["test-name"], (t.get("message") or "")[:300]) for t in result["tests"] if not t["passed"]]
    assert result["score"] == result["max-score"] == 100 and not failed, failed


def test_an_always_passing_step2_in_a_learners_clone_changes_nothing(learner_clone, starter):
    """The autograder grades handson/ with its own labs: the clone's labs/test_step2.py is never read."""
    clone, scratch = learner_clone
    # Steps 1-3 are enough to tell (the edited lab is step 2's): the starter's grade of the same tests.
    cheated = autograde(clone, scratch, HANDSON_GRADE_STEPS="1-3")
    result = check_contract(cheated, steps=3)
    modules = {step.module for step in load_steps()[:3]}
    plain = [t for t in starter.result()["tests"] if t["test-name"].split("::")[0] in modules]
    assert result["score"] == sum(t["score"] for t in plain)
    assert [(t["test-name"], t["passed"], t["score"]) for t in result["tests"]] == \
        [(t["test-name"], t["passed"], t["score"]) for t in plain]


def test_make_grade_in_the_learners_clone_lists_the_edited_lab(learner_clone):
    """There the learner's own labs grade (step 2 passes), and the report says labs/test_step2.py changed."""
    clone, scratch = learner_clone
    mark, env = marked_env(TMPDIR=str(scratch), HANDSON_LAB_DIR=str(scratch / "lab"))
    env.pop("GITHUB_STEP_SUMMARY", None)
    out = scratch / "own-grade"
    finished = subprocess.run([sys.executable, "-m", "labs.harness.tools.grade", "--steps=1-3", "--out", str(out)],
                              cwd=clone, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert finished.returncode == 1, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert not processes_marked(mark, folder=scratch)
    result = json.loads((out / "result.json").read_text())
    assert result["score"] == sum(step.points for step in load_steps()[:2])  # the edit works here...
    assert result["max-score"] == sum(step.points for step in load_steps()[:3])  # (steps 1-3 graded)
    assert result["changed-outside-handson"] == ["labs/test_step2.py"]  # ...and the report says so
    stamped, problem = finalize(out / "result.json", classroom="local", assignment="local")
    assert problem is None, problem  # placeholders outside a runner
    report = (out / "grade.md").read_text()
    assert "Files changed outside handson/" in report and "`labs/test_step2.py`" in report
    assert "the root commit" in report


def test_an_autograder_that_cannot_grade_exits_non_zero_and_writes_nothing(tmp_path):
    """Redis that never answers, and a lab that is not there: an error for the runner, not a 0."""
    checkout = materialize(1, tmp_path / "checkout")
    (checkout / "result.json").write_text("{}")  # a stale one must not survive either
    no_redis = autograde(checkout, tmp_path / "a", HANDSON_REDIS=f"redis://127.0.0.1:{portpicker.pick_unused_port()}/0")
    assert no_redis.finished.returncode != 0 and not no_redis.result_path.exists()
    assert "Redis would not start" in no_redis.finished.stderr, no_redis.finished.stderr
    assert not (no_redis.reports / "junit.xml").exists() and not no_redis.left_behind
    no_lab = autograde(checkout, tmp_path / "b", HANDSON_LAB=str(tmp_path))
    assert no_lab.finished.returncode != 0 and not no_lab.result_path.exists()
    assert "not a checkout of the lab" in no_lab.finished.stderr


# -- make grade ------------------------------------------------------------------------------
def test_a_timeout_scores_zero_and_says_so(tmp_path):
    """Two seconds per step (steps 2 and 3 of the reference, `make grade STEPS=2-3`): each step is cut off. A
    test that had not finished scores 0 and says it timed out; one that passed before the cut (on a fast machine,
    a quick first test) keeps its points. Only the steps asked for are graded, and the maximum is theirs."""
    mark, env = marked_env(TMPDIR=str(tmp_path), HANDSON_LAB_DIR=str(tmp_path / "lab"),
                           GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"))
    finished = subprocess.run([sys.executable, "-m", "labs.harness.tools.grade", "--solution", "--timeout=2",
                               "--steps=2-3", "--out", str(tmp_path / "out")], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert not processes_marked(mark, folder=tmp_path)
    stamped, problem = finalize(tmp_path / "out" / "result.json", classroom="local", assignment="local")
    assert problem is None, problem  # placeholders outside a runner, in the contract's shape
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    timed_out = [t for t in result["tests"] if t["status"] == "timeout"]
    graded = load_steps()[1:3]
    assert {t["test-name"].split("::")[0] for t in result["tests"]} == {step.module for step in graded}, result["tests"]
    assert len(timed_out) >= len(graded), result["tests"]  # at least the last test of each step
    assert all(t["score"] == 0 and "Timed out after 2 s" in t["message"] for t in timed_out)
    assert all(t["score"] == (t["max-score"] if t["passed"] else 0) for t in result["tests"])
    assert result["score"] < result["max-score"] == sum(step.points for step in graded)
    assert (tmp_path / "summary.md").read_text() == (tmp_path / "out" / "grade.md").read_text()


@pytest.mark.parametrize("text, wanted", [("1-3", [1, 2, 3]), ("2,5", [2, 5]), (" 1-2 , 4 ", [1, 2, 4]), ("3", [3])])
def test_steps_to_grade_are_numbers_and_ranges(text, wanted):
    assert step_numbers(text) == wanted


@pytest.mark.parametrize("text, says", [("two", "not a step or a range"), ("0-2", "the steps are 1 to"),
                                        (f"1-{last_step() + 1}", "the steps are 1 to"), ("3-1", "the steps are")])
def test_steps_that_do_not_exist_are_refused_before_anything_runs(text, says, tmp_path):
    with pytest.raises(ValueError, match=says):
        step_numbers(text)
    finished = subprocess.run([sys.executable, "-m", "labs.harness.tools.grade", f"--steps={text}", "--out",
                               str(tmp_path)], cwd=ROOT, env=dict(os.environ, HANDSON_LANG="en"),
                              capture_output=True, text=True, timeout=60, check=False)
    assert finished.returncode == 2 and says in finished.stderr and not list(tmp_path.iterdir()), finished.stderr


def test_judge_scores_only_tests_that_passed_in_a_clean_run():
    """Fixture errors, skips, timeouts and odd exits score 0; a test that passed keeps its share."""
    from labs.harness.runner import LabRun, TestOutcome
    from labs.harness.tools.grade import CannotGrade, judge

    step = replace(load_steps()[1], points=40)  # 14, 13, 13 over three tests
    names = ["test_a", "test_b", "test_c"]

    def run(*statuses, exit_code=1, timed_out=False):
        outcomes = [TestOutcome(step.module, name, status, "Failed: worker died", 1.0, 10)
                    for name, status in zip(names, statuses)]
        return LabRun(outcomes=outcomes, exit_code=exit_code, output="boom", seconds=3.0, timed_out=timed_out,
                      collected=[(step.module, name) for name in names])

    def scored(*statuses, **kwargs):
        return [(g.status, g.points) for g in judge(step, run(*statuses, **kwargs), 300)]

    assert scored("passed", "passed", "passed", exit_code=0) == [("passed", 14), ("passed", 13), ("passed", 13)]
    assert scored("passed", "error", "skipped") == [("passed", 14), ("error", 0), ("skipped", 0)]
    errored = judge(step, run("passed", "error", "failed"), 300)[1]
    assert "fixture" in errored.message and "worker died" in errored.message and errored.line == 11
    assert scored("passed", exit_code=2, timed_out=True) == [("passed", 14), ("timeout", 0), ("timeout", 0)]
    assert scored("passed", "passed", "passed", exit_code=3) == [("error", 0)] * 3
    assert scored("passed", "passed", "passed", exit_code=1) == [("error", 0)] * 3
    with pytest.raises(CannotGrade):
        judge(step, None, 300)
    with pytest.raises(CannotGrade, match="exit code 4"):
        judge(step, LabRun(exit_code=4, output="usage"), 300)


def test_a_step_whose_pytest_was_killed_or_broke_its_report_is_still_graded(tmp_path):
    """A real pytest killed mid-run (SIGKILL, as a memory limit does) leaves no JUnit file; a broken or
    empty one reads as none. Every test of the step, named before it ran, scores 0 and says why."""
    from labs.harness.runner import _read_junit, run_labs
    from labs.harness.tools.grade import judge

    module = tmp_path / "test_killed.py"
    module.write_text("import os, signal\n\ndef test_a():\n    pass\n\n"
                      "def test_b():\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    run = run_labs([str(module)], env=dict(os.environ, HANDSON_LANG="en"), timeout=60)
    assert run.exit_code == -9 and run.report_problem == "it wrote no JUnit report", (run.exit_code, run.output)
    step = replace(load_steps()[1], points=10, module=str(module))
    graded = judge(step, run, 300, names=["test_a", "test_b"])
    assert [(g.status, g.points) for g in graded] == [("error", 0), ("error", 0)]
    assert "killed (SIGKILL)" in graded[0].message and "wrote no JUnit report" in graded[0].message

    (tmp_path / "empty.xml").write_text("")
    (tmp_path / "broken.xml").write_text("<testsuites><testcase name='a'")
    assert _read_junit(tmp_path / "empty.xml") == ([], "its JUnit report is empty")
    outcomes, problem = _read_junit(tmp_path / "broken.xml")
    assert outcomes == [] and problem.startswith("its JUnit report is broken")


def test_files_changed_outside_handson_since_the_start(tmp_path, monkeypatch):
    from labs.harness.tools.outside import changes

    assert "Not a git repository" in changes(tmp_path).describe()
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    (tmp_path / "handson").mkdir()
    for name in ("handson/views.py", "Makefile", "labs.py", "notes.md"):
        (tmp_path / name).write_text("given\n")
    for args in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-qm", "given"]):
        git(args, tmp_path)
    assert changes(tmp_path).files == []
    (tmp_path / "handson" / "views.py").write_text("mine\n")  # the work itself: never listed
    (tmp_path / "labs.py").write_text("mine\n")
    git([*identity, "commit", "-qam", "work"], tmp_path)
    (tmp_path / "Makefile").unlink()  # uncommitted
    (tmp_path / "new.py").write_text("mine\n")  # untracked
    (tmp_path / "result.json").write_text("{}")  # make grade's own report
    found = changes(tmp_path)
    assert found.files == ["Makefile", "labs.py", "new.py"] and "root commit" in found.start
    git(["tag", "handson-start", "HEAD"], tmp_path)  # the teacher's tag wins over the root commit
    assert changes(tmp_path).files == ["Makefile", "new.py"]
    monkeypatch.setenv("HANDSON_START", "HEAD~1")
    assert changes(tmp_path).files == ["Makefile", "labs.py", "new.py"]


def test_a_message_holding_backtick_fences_stays_inside_its_block():
    """grade.md (the Release's text too) shows each message verbatim in a code block that the
    message's own ``` or ```` cannot close; read back as CommonMark, as GitHub reads it."""
    from markdown_it import MarkdownIt

    from labs.harness.tools.grade import TestGrade
    from labs.harness.tools.reports import cannot_grade, fenced, markdown

    message = "assert views.py looks like:\n```python\nx = 1\n```\nand ````nested```` too\n``"
    assert fenced("plain").startswith("```text\n") and fenced(message).startswith("`````text\n")
    failed = TestGrade(load_steps()[0], "test_a", "failed", 0, 5, message=message, line=3)
    passed = TestGrade(load_steps()[0], "test_b", "passed", 5, 5)
    for report in (markdown([failed, passed]), cannot_grade(message)):
        blocks = [token for token in MarkdownIt("commonmark").parse(report) if token.type == "fence"]
        assert [(block.info, block.content) for block in blocks] == [("text", message + "\n")], report


# -- CI examples ------------------------------------------------------------------------------
CI_FILES = {".github/workflows/grade.yml": lambda doc: [step.get("run", "") for job in doc["jobs"].values()
                                                        for step in job["steps"]],
            ".gitlab-ci.yml": lambda doc: [line for job in doc.values() if isinstance(job, dict)
                                           for line in job.get("script", [])]}


@pytest.mark.parametrize("name", sorted(CI_FILES))
def test_ci_examples_parse_and_call_make_targets_that_exist(name):
    doc = yaml.safe_load((ROOT / name).read_text())
    commands = [line for text in CI_FILES[name](doc) for line in text.splitlines() if line.strip()]
    makes = [line.split() for line in commands if line.split()[:1] == ["make"]]
    assert makes, commands
    for words in makes:
        dry = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True, check=False)
        assert dry.returncode == 0, f"{name}: {' '.join(words)}: {dry.stderr}"
        assert "labs.harness.tools.grade" in dry.stdout and "--out=grade" in dry.stdout
    uses = [step["uses"] for job in doc.get("jobs", {}).values() for step in job["steps"] if "uses" in step]
    assert all(use.startswith("actions/") for use in uses), uses  # GitHub's own actions only


def test_the_retired_classroom_files_are_gone():
    assert not (ROOT / ".github" / "workflows" / "classroom.yml").exists()
    tracked = git(["ls-files"], ROOT).stdout
    assert "autograding-grading-reporter" not in "".join(
        (ROOT / name).read_text(errors="replace") for name in tracked.splitlines()
        if name.endswith((".yml", ".yaml")) and (ROOT / name).is_file())
