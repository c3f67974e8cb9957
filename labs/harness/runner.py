"""Run lab modules in a separate pytest process and read back every test's outcome.

Used by the lab-integrity check and by grading: a step is judged by what pytest
reports in its JUnit XML, so a crashed worker, a fixture error or a timeout is
an "error" or a "failed", never a pass. What the run leaves (its output, its
report) is read within limits: a run that floods its output or breaks its report
is still a run, with a reason.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from .paths import ROOT

OUTPUT_LIMIT = 256 << 10  # the end of a run's output is what says why it ended
JUNIT_LIMIT = 16 << 20  # a lab module's report is kilobytes; more is not a report


@dataclass
class TestOutcome:
    module: str  # e.g. labs/test_step2.py
    name: str  # the test function
    status: str  # passed | failed | error | skipped
    message: str = ""
    duration: float = 0.0
    line: int = 0


@dataclass
class LabRun:
    outcomes: list = field(default_factory=list)
    exit_code: int = 0
    output: str = ""
    timed_out: bool = False
    seconds: float = 0.0
    pid: int = 0  # the child pytest's, which names its run folder (see plugin.py)
    collected: list = field(default_factory=list)  # (module, test) of every test collected, run or not
    report_problem: str = ""  # why its JUnit report could not be read ("" when it was)

    def for_module(self, module):
        return [outcome for outcome in self.outcomes if outcome.module == module]

    def collected_in(self, module):
        """The tests pytest collected from ``module``, in order (read before they ran)."""
        return [name for collected_module, name in self.collected if collected_module == module]


def _outcome(case):
    module = case.get("file") or case.get("classname", "").replace(".", "/") + ".py"
    status, message = "passed", ""
    for child in case:
        if child.tag in ("failure", "error", "skipped"):
            status = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
            summary, text = child.get("message") or "", child.text or ""
            # The text repeats the message attribute (which pytest 9 may shorten to its first lines and a
            # "[+N more lines; full report in element text]" note): then the text alone is the message.
            message = text if text and text.startswith(summary.split("\n[+", 1)[0]) \
                else summary + ("\n" + text if text else "")
            break
    return TestOutcome(module, case.get("name", ""), status, message.strip(),
                       float(case.get("time") or 0), int(case.get("line") or 0))


def _pytest_argv(modules, pytest_args):
    return [sys.executable, "-m", "pytest", *modules, "-p", "no:cacheprovider",
            "-p", "labs.harness.plugin.collected", *pytest_args]


def _collect_only(modules, pytest_args, env, target=None):
    """The tests of ``modules``, collected without running them, into ``target`` (HANDSON_COLLECTED by
    default): for a run cut off (a short timeout on a busy machine) whose tests still have to be named,
    and for grading, which names every test before any of the learner's code runs (``collect``)."""
    env = dict(env, **({"HANDSON_COLLECTED": str(target)} if target else {}), HANDSON_PREWARM="0")
    subprocess.run([*_pytest_argv(modules, pytest_args), "--collect-only", "-q"], cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=False)


def collect(modules, *, pytest_args=(), env=None):
    """[(module, test)] of every test of ``modules``, in order, from a pytest that only collects (the lab
    modules never import the learner's code): what a step is graded on, whatever its own run does."""
    with tempfile.TemporaryDirectory(prefix="celery-handson-collect-") as scratch:
        target = Path(scratch) / "collected.json"
        _collect_only(modules, pytest_args, dict(env or os.environ), target)
        return _read_collected(target)


def _read_collected(path):
    try:
        return [tuple(entry) for entry in json.loads(path.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError):
        return []


def _tail(path, limit):
    """The last ``limit`` bytes of ``path``, as text."""
    with open(path, "rb") as handle:
        handle.seek(max(0, os.fstat(handle.fileno()).st_size - limit))
        return handle.read().decode("utf-8", "replace")


def _read_junit(report):
    """(outcomes, problem): every test case of the JUnit file, or why it could not be read."""
    if not report.exists():
        return [], "it wrote no JUnit report"
    size = report.stat().st_size
    if size == 0:
        return [], "its JUnit report is empty"
    if size > JUNIT_LIMIT:
        return [], f"its JUnit report is {size >> 20} MB, more than the {JUNIT_LIMIT >> 20} MB read"
    try:
        return [_outcome(case) for case in ElementTree.parse(report).iter("testcase")], ""
    except ElementTree.ParseError as problem:
        return [], f"its JUnit report is broken ({problem})"


def run_labs(modules, *, pytest_args=(), env=None, timeout=600):
    """Run ``pytest modules`` from the repository root; return every test's outcome. Whatever the run
    does (crash, get killed, write a broken report), this returns: ``report_problem`` says what was
    wrong with its report, and ``output`` holds its last OUTPUT_LIMIT bytes."""
    with tempfile.TemporaryDirectory(prefix="celery-handson-run-") as scratch:
        report = Path(scratch) / "junit.xml"
        collected = Path(scratch) / "collected.json"
        output = Path(scratch) / "output.txt"
        argv = [*_pytest_argv(modules, pytest_args), f"--junitxml={report}", "-o", "junit_family=xunit1"]
        env = dict(env or os.environ, HANDSON_COLLECTED=str(collected))
        started = time.monotonic()
        # Into a file, read back only in part: the run's output is as long as its messages make it.
        with open(output, "wb") as out:
            process = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            timed_out = False
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                # SIGINT first: pytest then tears its fixtures down and stops the services.
                timed_out = True
                os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        run = LabRun(exit_code=process.returncode, output=_tail(output, OUTPUT_LIMIT), timed_out=timed_out,
                     seconds=time.monotonic() - started, pid=process.pid)
        if timed_out:
            # pytest may have been cut off while collecting (it still reports the part it had):
            # the full list comes from a run that only collects.
            _collect_only(modules, pytest_args, env)
        run.outcomes, run.report_problem = _read_junit(report)
        run.collected = _read_collected(collected)
        return run
