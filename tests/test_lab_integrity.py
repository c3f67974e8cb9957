"""The lab grades what it claims to: every starter fails, every reference passes, and every
test's verdict is its own.

For each N, the reference of step N (1 = the untouched starter) runs the lab modules (the
steps from labs/steps.toml) in a child pytest, exactly as a learner's run would. Steps up to
N must pass; later steps must FAIL with assertion messages, never error out (a fixture
traceback, a collection error) and never hang. That run is one pytest, as `make step1` ...
`make step13` one after the other would be, but with the stack shared by every module that
declares the same one. At the starter and at the last reference it runs every module; in
between, from step N-1 on: every later step (each must fail, cleanly, on N's code), step N
(it passes from here on) and step N-1 (it still passes once N's patch is in). A step's pass
is so proven where it begins, at the next reference, and at the last, with every step: a
patch that broke an earlier step for good fails the last reference's run. Running every
earlier step again at every reference grew with the square of the number of steps.

Then the verdicts must be each test's own: the modules run again with each module's tests in
reverse order (tests/reverse_order.py), and once more with every test alone (tests/alone.py:
after each test every fixture is torn down, Redis and the stack included, and started afresh
for the next, as in a `pytest labs/test_stepN.py::name` of its own). Each test's verdict must be
the same in all three runs, and no process of any run may be left behind.

Which modules run reversed and alone at a reference: every module at the starter (every step
but the first failing); at a reference N after it, the two whose verdicts that reference
changes, step N (it passes from here on) and step N+1 (the next a learner works on, failing on
exactly the state it starts from), and at the last reference the last two steps. A test can
only lean on what its own module's tests share (the fixtures of a module are its own), and a
step's tests keep their verdicts from one reference to the next (the module-order runs prove
it), so the other modules' reversed and alone verdicts were already compared where they last
changed: each step reversed and alone where it first passes, and where it is the next to do.
That keeps the check linear in the number of steps: every module reversed and alone at every
reference grew with its square.

The module-order run is made once per reference and read by both of its tests; the second
runs its own two runs first, so the two tests of one reference can run side by side. (Its two runs
one after the other, not side by side: together they started twice the stacks at once, and under
CI's load step 8's thumbnails then missed their window in a fresh stack.)
"""
import pytest

from labs.harness.steps import last_step

from .helpers import STEP_MODULES, once_per_session, run_marked

# The alone run's tests side by side (xdist workers), each with its own Redis, worker and web
# server; most of a test's time is spent waiting on the lab's sleeps, not on the 2 cores.
ALONE_AT_ONCE = 3
REFERENCES = range(1, last_step() + 1)


def _forward_modules(reference):
    """The modules of the module-order run at ``reference`` (the module docstring says why these)."""
    if reference in (REFERENCES[0], REFERENCES[-1]):
        return list(STEP_MODULES)
    return STEP_MODULES[max(reference - 2, 0):]


def _compared_modules(reference):
    """The modules run reversed and alone at ``reference`` (the module docstring says why these)."""
    if reference == REFERENCES[0]:
        return list(STEP_MODULES)
    if reference == REFERENCES[-1]:
        return STEP_MODULES[-2:]
    return STEP_MODULES[reference - 1:reference + 1]


def _reference_id(number):
    return f"reference{number}"


def _args(reference):
    return ["--reference", str(reference)]


def _in_module_order(reference):
    """(run, processes left behind) of the lab modules at ``reference`` (_forward_modules), in module
    order: made once per session, whichever of the reference's two tests asks first."""
    return once_per_session(f"integrity-forward-{reference}",
                            lambda: run_marked(_forward_modules(reference), pytest_args=_args(reference)))


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


@pytest.mark.timeout(600)  # one child run, under a minute; or wait for the other test of the reference
@pytest.mark.parametrize("reference", REFERENCES, ids=_reference_id)
def test_reference_passes_its_steps_and_fails_the_later_ones(reference):
    run, left_behind = _in_module_order(reference)

    assert run.outcomes and not run.timed_out, f"no outcome read (timed out: {run.timed_out}):\n{run.output[-3000:]}"
    assert not [o for o in run.outcomes if o.status in ("error", "skipped")], _summary(run)
    for number, module in enumerate(STEP_MODULES, start=1):
        if module not in _forward_modules(reference):
            continue
        statuses = {o.status for o in run.for_module(module)}
        if number <= reference:
            assert statuses == {"passed"}, f"{module} should pass on reference {reference}:\n{_summary(run)}\n{run.output[-4000:]}"
        else:
            assert "failed" in statuses, f"{module} should fail on reference {reference}:\n{_summary(run)}"
    assert not left_behind, f"processes left behind: {left_behind}"


@pytest.mark.timeout(900)  # three child runs: one to three minutes
@pytest.mark.parametrize("reference", REFERENCES, ids=_reference_id)
def test_every_verdict_is_the_same_in_order_reversed_and_alone(reference):
    modules = _compared_modules(reference)
    reverse, left_behind = run_marked(modules, pytest_args=[*_args(reference), "-p", "tests.reverse_order"])
    alone, left_alone = run_marked(modules, pytest_args=[*_args(reference), "-n", str(ALONE_AT_ONCE),
                                                         "-p", "tests.alone"])
    forward, _ = _in_module_order(reference)  # what it left behind is the other test's verdict

    in_order = _verdicts(forward)
    assert in_order and sorted(in_order) == sorted(f"{module}::{name}" for module, name in forward.collected), \
        f"every collected test must have a verdict in the module-order run:\n{forward.output[-3000:]}"
    for module in modules:
        assert reverse.collected_in(module) == forward.collected_in(module)[::-1], f"{module} was not reversed"
        assert alone.collected_in(module) == forward.collected_in(module), f"{module}: the alone run collected others"
    reversed_order, by_itself = _verdicts(reverse), _verdicts(alone)
    compared = {nodeid: status for nodeid, status in in_order.items() if nodeid.split("::")[0] in modules}

    differing = {nodeid: (status, reversed_order.get(nodeid), by_itself.get(nodeid))
                 for nodeid, status in compared.items()
                 if not status == reversed_order.get(nodeid) == by_itself.get(nodeid)}
    runs = [forward, reverse, alone]
    assert compared, f"no verdict of {modules} in the module-order run"
    assert not differing, "verdicts (in order, reversed, alone) that differ:\n" + "\n".join(
        f"{nodeid}: {verdicts}\n    {_message(runs, nodeid)}" for nodeid, verdicts in differing.items())
    assert not left_behind + left_alone, f"processes left behind: {left_behind + left_alone}"
