"""The lab grades what it claims to: every starter fails, every reference passes.

For each N, the reference of step N (1 = the untouched starter) runs all four
lab modules in a child pytest, exactly as a learner's run would. Steps up to N
must pass; later steps must FAIL with assertion messages, never error out (a
fixture traceback, a collection error) and never hang. No process of any run
may be left behind. The reference of the last step passing everything is the
"labs on the reference" run.
"""
import pytest

from labs.harness.steps import last_step

from .helpers import STEP_MODULES, run_marked


def _summary(run):
    return "\n".join(f"{o.module}::{o.name} {o.status}: {o.message[:300]}" for o in run.outcomes)


@pytest.mark.parametrize("reference", range(1, last_step() + 1), ids=lambda n: f"reference{n}")
def test_reference_passes_its_steps_and_fails_the_later_ones(reference):
    run, left_behind = run_marked(STEP_MODULES, pytest_args=["--reference", str(reference)])

    assert run.outcomes and not run.timed_out, f"no outcome read (timed out: {run.timed_out}):\n{run.output[-3000:]}"
    assert not [o for o in run.outcomes if o.status in ("error", "skipped")], _summary(run)
    for number, module in enumerate(STEP_MODULES, start=1):
        statuses = {o.status for o in run.for_module(module)}
        if number <= reference:
            assert statuses == {"passed"}, f"{module} should pass on reference {reference}:\n{_summary(run)}\n{run.output[-4000:]}"
        else:
            assert "failed" in statuses, f"{module} should fail on reference {reference}:\n{_summary(run)}"
    assert not left_behind, f"processes left behind: {left_behind}"
