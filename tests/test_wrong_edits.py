"""The classic wrong edits fail their step, and the first failure (or the test named for it) names the fix;
the other right answers a lesson offers pass the test they name.

The edits are listed once, in labs/harness/dev/wrong_edits.py (`make bench` times them too).
Each runs the step's lab on a reference with that one mistake, in a child pytest, and only as far
as the verdict needs: an edit judged by a named test runs that test (as `pytest labs/test_stepN.py::name`
would), one judged by the module's first failure runs the module up to it (`-x`). `make bench` times
the whole module, as a learner runs it; that every test of a module keeps its verdict alone and in any
order is tests/test_lab_integrity.py's part.
"""
import re

import pytest

from labs.harness.dev.wrong_edits import ALSO_RIGHT, EDITS
from labs.harness.reference import materialize
from labs.harness.steps import load_steps

from .helpers import run_marked


def _summary(run):
    return "\n".join(f"{o.module}::{o.name} {o.status}: {o.message[:400]}" for o in run.outcomes)


@pytest.mark.parametrize("edit", EDITS, ids=lambda edit: f"step{edit.step}-{edit.name}")
def test_a_wrong_edit_fails_and_its_first_failure_names_the_fix(tmp_path, edit):
    workspace = materialize(edit.base, tmp_path / "workspace")
    edit.apply(workspace)
    module = load_steps()[edit.step - 1].module

    target, until = (f"{module}::{edit.test}", []) if edit.test else (module, ["-x"])
    run, left_behind = run_marked([target], pytest_args=["--workspace", str(workspace), *until])

    assert run.outcomes and not run.timed_out, run.output[-3000:]
    assert not [o for o in run.outcomes if o.status in ("error", "skipped")], _summary(run)
    judged = edit.judged_by(run.outcomes)
    assert judged, f"{edit.name}: {edit.test or 'no test'} failed on step {edit.step}:\n{_summary(run)}"
    assert any(words in judged.message for words in edit.fix_named), \
        f"{judged.name}'s failure does not name {edit.fix_named}:\n{_summary(run)}"
    # Reports show a failure's first line (JUnit's message, the grade table): it is the lesson's sentence.
    first = (judged.message.removeprefix("Failed: ").strip().splitlines() or [""])[0]
    assert first and not re.search(r"\.py:\d+\)?$", first), f"the first line is not a sentence: {first!r}"
    assert not left_behind, left_behind


@pytest.mark.parametrize("edit", ALSO_RIGHT, ids=lambda edit: f"step{edit.step}-{edit.name}")
def test_another_right_answer_a_lesson_offers_passes(tmp_path, edit):
    workspace = materialize(edit.base, tmp_path / "workspace")
    edit.apply(workspace)
    module = load_steps()[edit.step - 1].module
    run, left_behind = run_marked([f"{module}::{edit.test}"], pytest_args=["--workspace", str(workspace)])

    assert run.outcomes and not run.timed_out, run.output[-3000:]
    assert [o.status for o in run.outcomes] == ["passed"], _summary(run)
    assert not left_behind, left_behind
