"""The lab grades what it claims to: every starter fails, every reference passes, and every
test's verdict is its own.

For each N, the reference of step N (1 = the untouched starter) runs every lab module
(the steps from labs/steps.toml) in a child pytest, exactly as a learner's run would.
Steps up to N must pass; later steps must FAIL with assertion messages, never error out
(a fixture traceback, a collection error) and never hang. That run takes two stacks side
by side (pytest-xdist, one module stays in one process, in its order).

Then the verdicts must be each test's own, at that reference, for every test of every
module: the same modules run again with each module's tests in reverse order
(tests/reverse_order.py), and every test runs alone, in a pytest of its own
(`pytest labs/test_stepN.py::name`, a few at a time). Each test's verdict must be the same
in all three runs, and no process of any run may be left behind. The reference of the last
step passing everything is the "labs on the reference" run.
"""
from concurrent.futures import ThreadPoolExecutor

import pytest

from labs.harness.steps import last_step

from .helpers import STEP_MODULES, run_marked

# Alone runs side by side. Each is one short pytest with its own Redis, worker and web
# server; most of its time is spent waiting on the lab's sleeps, not on the 2 cores.
ALONE_AT_ONCE = 3


def _summary(run):
    return "\n".join(f"{o.module}::{o.name} {o.status}: {o.message[:300]}" for o in run.outcomes)


def _verdicts(run):
    return {f"{o.module}::{o.name}": o.status for o in run.outcomes}


def _message(runs, nodeid, lines=25):
    """The start of ``nodeid``'s message (with a service's log, if it has one) in the first of
    ``runs`` that has one: what a flaky verdict needs to be understood from CI's output alone."""
    for run in runs:
        for outcome in run.outcomes:
            if f"{outcome.module}::{outcome.name}" == nodeid and outcome.message:
                return "\n    ".join(outcome.message.splitlines()[:lines])
    return ""


@pytest.mark.timeout(900)  # three child runs and one alone run per lab test: one to four minutes
@pytest.mark.parametrize("reference", range(1, last_step() + 1), ids=lambda n: f"reference{n}")
def test_reference_passes_its_steps_and_fails_the_later_ones(reference):
    args = ["--reference", str(reference)]
    run, left_behind = run_marked(STEP_MODULES, pytest_args=[*args, "-n", "2", "--dist", "loadfile"])

    assert run.outcomes and not run.timed_out, f"no outcome read (timed out: {run.timed_out}):\n{run.output[-3000:]}"
    assert not [o for o in run.outcomes if o.status in ("error", "skipped")], _summary(run)
    for number, module in enumerate(STEP_MODULES, start=1):
        statuses = {o.status for o in run.for_module(module)}
        if number <= reference:
            assert statuses == {"passed"}, f"{module} should pass on reference {reference}:\n{_summary(run)}\n{run.output[-4000:]}"
        else:
            assert "failed" in statuses, f"{module} should fail on reference {reference}:\n{_summary(run)}"
    assert not left_behind, f"processes left behind: {left_behind}"
    _same_verdicts_reversed_and_alone(run, args)


def _same_verdicts_reversed_and_alone(forward, args):
    in_order = _verdicts(forward)
    assert sorted(in_order) == sorted(f"{module}::{name}" for module, name in forward.collected), \
        "every collected test must have a verdict in the module-order run"

    reverse, left_behind = run_marked(STEP_MODULES, pytest_args=[*args, "-n", "2", "--dist", "loadfile",
                                                                 "-p", "tests.reverse_order"])
    for module in STEP_MODULES:
        assert reverse.collected_in(module) == forward.collected_in(module)[::-1], f"{module} was not reversed"
    reversed_order = _verdicts(reverse)

    with ThreadPoolExecutor(max_workers=ALONE_AT_ONCE) as pool:
        alone_runs = list(pool.map(lambda nodeid: run_marked([nodeid], pytest_args=args), in_order))
    alone = {}
    for run, left in alone_runs:
        alone.update(_verdicts(run))
        left_behind += left

    differing = {nodeid: (status, reversed_order.get(nodeid), alone.get(nodeid))
                 for nodeid, status in in_order.items()
                 if not status == reversed_order.get(nodeid) == alone.get(nodeid)}
    runs = [forward, reverse, *(run for run, _ in alone_runs)]
    assert not differing, "verdicts (in order, reversed, alone) that differ:\n" + "\n".join(
        f"{nodeid}: {verdicts}\n    {_message(runs, nodeid)}" for nodeid, verdicts in differing.items())
    assert not left_behind, f"processes left behind: {left_behind}"
