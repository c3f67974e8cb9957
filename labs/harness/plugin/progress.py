"""Keeps how each step went in .lab/progress.json, for `make status`.

A pytest plugin (the root conftest.py loads it). After a run of lab modules on
the learner's own handson/ (or the one --workspace names), every step that ran
is stored as passed or failed, with how long it took and when, in the .lab/
beside that handson/. Runs on the reference (--solution, --reference N) are not
the learner's work and leave the record alone.

    python -m labs.harness.plugin.progress            print the record
    python -m labs.harness.plugin.progress --forget   start again from nothing
"""
import json
import sys
from datetime import datetime
from pathlib import Path

import pytest

from ..i18n import say
from ..paths import ROOT
from ..state import lab_dir, read_json, write_json
from ..steps import load_steps

PROGRESS = "progress.json"


def load(root=ROOT):
    """{"steps": {"2": {"status", "tests", "passed", "seconds", "at"}, ...}} (step numbers as strings)."""
    return read_json(PROGRESS, {"steps": {}}, root)


def forget_steps(numbers, root=ROOT):
    """Drop the record of these steps (after a reset took their work away)."""
    record = load(root)
    for number in numbers:
        record["steps"].pop(str(number), None)
    write_json(PROGRESS, record, root)


class _Recorder:
    """Collects one run's reports per step; writes them when the session ends."""

    def __init__(self, root):
        self.root = root  # the folder holding the handson/ under test
        self.step_of_module = {step.module: step.number for step in load_steps()}
        self.selected = {}  # step -> node ids that will run
        self.outcome = {}  # node id -> passed | failed | skipped
        self.seconds = {}  # step -> seconds spent in its tests (setup, call, teardown)
        self.incomplete = set()  # steps with tests left out (-k, deselected): not a verdict on the step
        self.broken = set()  # steps whose module did not even import
        self.stopped = False  # Ctrl-C

    def _step(self, nodeid):
        return self.step_of_module.get(nodeid.split("::")[0])

    def pytest_collectreport(self, report):
        step = self._step(report.nodeid)
        if step is not None and report.failed:
            self.broken.add(step)

    def pytest_deselected(self, items):
        self.incomplete.update(filter(None, (self._step(item.nodeid) for item in items)))

    def _select(self, nodeids):
        for nodeid in nodeids:
            step = self._step(nodeid)
            if step is not None:
                self.selected.setdefault(step, set()).add(nodeid)

    def pytest_collection_finish(self, session):
        self._select(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids):
        # Under pytest-xdist the controller collects nothing itself: each worker tells it what it will run.
        self._select(ids)

    def pytest_runtest_logreport(self, report):
        step = self._step(report.nodeid)
        if step is None:
            return
        self.seconds[step] = self.seconds.get(step, 0.0) + report.duration
        if report.failed:
            self.outcome[report.nodeid] = "failed"  # a failing setup or teardown fails the test too
        elif self.outcome.get(report.nodeid) != "failed" and (report.when == "call" or report.skipped):
            self.outcome[report.nodeid] = "skipped" if report.skipped else "passed"

    def pytest_keyboard_interrupt(self, excinfo):
        # Also called when a collection error ends the session (Session.Interrupted): that one is a verdict.
        self.stopped = not excinfo.errisinstance(pytest.Session.Interrupted)

    def pytest_terminal_summary(self, terminalreporter):
        # A learner who jumps ahead meets an earlier step's fix first (step 9 on the starter asks for
        # step 2's Celery app): say so once, at the end, where the eye lands.
        failed = [step for step, tests in self.selected.items()
                  if any(self.outcome.get(nodeid) == "failed" for nodeid in tests)]
        if self.stopped or not failed:
            return
        first, recorded = min(failed), load(self.root)["steps"]
        before = [n for n in range(1, first)
                  if n not in self.selected and recorded.get(str(n), {}).get("status") != "passed"]
        # A step whose files the workspace has changed from the starter's is begun (by the learner, or by
        # the earlier steps' reference put in place): only the untouched ones are a place to start.
        before = [n for n in before if n == 1 or not _begun(n, self.root)]
        if before:
            steps = _numbers(before)
            terminalreporter.write_line(say(
                f"Step {first} builds on the steps before it, and no pass is recorded for {steps} (make status): "
                f"start with make step{before[0]}.",
                f"ステップ {first} はそれより前のステップを土台にしています。{steps} の合格が記録されていません "
                f"(make status)。make step{before[0]} から始めてください。",
            ))

    def pytest_sessionfinish(self, session):
        if self.stopped:
            return  # the learner stopped it: this run says nothing about the steps
        now = datetime.now().astimezone().isoformat(timespec="seconds")
        record, changed = load(self.root), False
        for step in sorted(set(self.selected) | self.broken):
            tests = self.selected.get(step, set())
            results = [self.outcome.get(nodeid) for nodeid in tests]
            passed = results.count("passed")
            if step in self.broken or "failed" in results:
                status = "failed"
            elif passed == len(tests) and tests and step not in self.incomplete:
                status = "passed"
            else:
                continue  # part of the step ran, all well: keep the last full verdict
            record["steps"][str(step)] = {"status": status, "tests": len(tests), "passed": passed,
                                          "seconds": round(self.seconds.get(step, 0.0), 2), "at": now}
            changed = True
        if changed:
            write_json(PROGRESS, record, self.root)


def _begun(step, root):
    """Whether ``root``/handson differs from the starter in a file step ``step``'s reference patch touches."""
    import tempfile

    from ..reference import materialize, patched_files

    with tempfile.TemporaryDirectory(prefix="celery-handson-starter-") as scratch:
        starter = materialize(1, scratch)
        for name in patched_files(step):
            mine, given = Path(root) / name, starter / name
            if mine.exists() != given.exists() or (mine.exists() and mine.read_bytes() != given.read_bytes()):
                return True
    return False


def _numbers(steps):
    """[1, 2, 3, 5] as "steps 1-3, 5" (ステップ 1-3, 5 in Japanese)."""
    runs = []
    for n in steps:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
    return say(f"step {text}" if len(steps) == 1 else f"steps {text}", f"ステップ {text}")


def pytest_configure(config):
    # The reference is not the learner's work: nothing to record. Under pytest-xdist the
    # controller records (it sees every report); its workers do not.
    if hasattr(config, "workerinput"):
        return
    if config.getoption("solution", default=False) or config.getoption("reference", default=None) is not None:
        return
    workspace = config.getoption("workspace", default=None)
    config.pluginmanager.register(_Recorder(Path(workspace).resolve() if workspace else ROOT),
                                  "celery-handson-progress")


def main(argv):
    if argv == ["--forget"]:
        (lab_dir() / PROGRESS).unlink(missing_ok=True)
        print(say("Progress forgotten: every step is \"not run\" again.",
                  "進捗を消去しました。すべてのステップが「未実行」に戻りました。"))
        return 0
    if argv:
        print(__doc__)
        return 2
    print(json.dumps(load(), ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
