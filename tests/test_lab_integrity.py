"""The lab grades what it claims to: every starter fails, every reference passes, and every
test's verdict is its own.

For each N, the reference of step N (1 = the untouched starter) runs every lab module
(the steps from labs/steps.toml) in a child pytest, exactly as a learner's run would.
Steps up to N must pass; later steps must FAIL with assertion messages, never error out
(a fixture traceback, a collection error) and never hang. That run takes two stacks side
by side (pytest-xdist, one module stays in one process, in its order).

Then the verdicts must be each test's own: the modules of step N and step N+1 (the step
just done, and the one a learner works on next, whose failing tests leave tasks behind)
run again in reverse test order (tests/reverse_order.py), and each of their tests alone in
a pytest of its own (`pytest labs/test_stepN.py::name`, two at a time). Each verdict must
be the same in all three runs. Over all N, every test is held to that twice: at its own
step's reference and at the one before. No process of any run may be left behind. The
reference of the last step passing everything is the "labs on the reference" run.
"""
from concurrent.futures import ThreadPoolExecutor

import pytest

from labs.harness.steps import last_step

from .helpers import STEP_MODULES, run_marked


def _summary(run):
    return "\n".join(f"{o.module}::{o.name} {o.status}: {o.message[:300]}" for o in run.outcomes)


@pytest.mark.parametrize("reference", range(1, last_step() + 1), ids=lambda n: f"reference{n}")
def test_reference_passes_its_steps_and_fails_the_later_ones(reference):
    run, left_behind = run_marked(STEP_MODULES, pytest_args=["--reference", str(reference), "-n", "2",
                                                             "--dist", "loadfile"])

    assert run.outcomes and not run.timed_out, f"no outcome read (timed out: {run.timed_out}):\n{run.output[-3000:]}"
    assert not [o for o in run.outcomes if o.status in ("error", "skipped")], _summary(run)
    for number, module in enumerate(STEP_MODULES, start=1):
        statuses = {o.status for o in run.for_module(module)}
        if number <= reference:
            assert statuses == {"passed"}, f"{module} should pass on reference {reference}:\n{_summary(run)}\n{run.output[-4000:]}"
        else:
            assert "failed" in statuses, f"{module} should fail on reference {reference}:\n{_summary(run)}"
    assert not left_behind, f"processes left behind: {left_behind}"
    _same_verdicts_reversed_and_alone(run, ["--reference", str(reference)], STEP_MODULES[reference - 1:reference + 1])


def _verdicts(run):
    return {f"{o.module}::{o.name}": o.status for o in run.outcomes}


def _same_verdicts_reversed_and_alone(forward, args, modules):
    in_order = {nodeid: status for nodeid, status in _verdicts(forward).items() if nodeid.split("::")[0] in modules}
    reverse, left_behind = run_marked(modules, pytest_args=[*args, "-p", "tests.reverse_order"])
    reversed_order = _verdicts(reverse)
    assert not reverse.timed_out and list(reversed_order) != list(in_order), "the order was not reversed"
    with ThreadPoolExecutor(max_workers=2) as pool:
        alone_runs = list(pool.map(lambda nodeid: run_marked([nodeid], pytest_args=args), in_order))
    alone = {}
    for run, left in alone_runs:
        alone.update(_verdicts(run))
        left_behind += left
    differing = {nodeid: (status, reversed_order.get(nodeid), alone.get(nodeid))
                 for nodeid, status in in_order.items()
                 if not status == reversed_order.get(nodeid) == alone.get(nodeid)}
    assert not differing, "verdicts (in order, reversed, alone) that differ:\n" + "\n".join(
        f"{nodeid}: {verdicts}" for nodeid, verdicts in differing.items())
    assert not left_behind, f"processes left behind: {left_behind}"
