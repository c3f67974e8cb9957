"""Run lab modules in a separate pytest process and read back every test's outcome.

Used by the lab-integrity check and by grading: a step is judged by what pytest
reports in its JUnit XML, so a crashed worker, a fixture error or a timeout is
an "error" or a "failed", never a pass.
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


def _collect_only(modules, pytest_args, env):
    """The tests of ``modules``, collected without running them, into HANDSON_COLLECTED: for a run
    cut off (a short timeout on a busy machine) whose tests still have to be named."""
    subprocess.run([*_pytest_argv(modules, pytest_args), "--collect-only", "-q"], cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=False)


def run_labs(modules, *, pytest_args=(), env=None, timeout=600):
    """Run ``pytest modules`` from the repository root; return every test's outcome."""
    with tempfile.TemporaryDirectory(prefix="celery-handson-run-") as scratch:
        report = Path(scratch) / "junit.xml"
        collected = Path(scratch) / "collected.json"
        argv = [*_pytest_argv(modules, pytest_args), f"--junitxml={report}", "-o", "junit_family=xunit1"]
        env = dict(env or os.environ, HANDSON_COLLECTED=str(collected))
        started = time.monotonic()
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        timed_out = False
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGINT first: pytest then tears its fixtures down and stops the services.
            timed_out = True
            os.killpg(process.pid, signal.SIGINT)
            try:
                output, _ = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                output, _ = process.communicate()
        run = LabRun(exit_code=process.returncode, output=output, timed_out=timed_out,
                     seconds=time.monotonic() - started, pid=process.pid)
        if timed_out:
            # pytest may have been cut off while collecting (it still reports the part it had):
            # the full list comes from a run that only collects.
            _collect_only(modules, pytest_args, env)
        if report.exists():
            run.outcomes = [_outcome(case) for case in ElementTree.parse(report).iter("testcase")]
        if collected.exists():
            run.collected = [tuple(entry) for entry in json.loads(collected.read_text(encoding="utf-8"))]
        return run
