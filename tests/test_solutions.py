"""The reference is one chain of patches, and the committed starter is its first link."""
import ast
import filecmp
import re

import pytest

from labs.harness.paths import ROOT
from labs.harness.reference import materialize
from labs.harness.steps import last_step, load_steps


def _differences(left, right):
    comparison = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found = comparison.left_only + comparison.right_only + comparison.diff_files
    for name, sub in comparison.subdirs.items():
        found += [f"{name}/{item}" for item in _differences(sub.left, sub.right)]
    return found


def test_the_committed_workspace_is_the_starter(tmp_path):
    """handson/ in the repository equals step 1 of the patch chain (the starter a learner clones)."""
    starter = materialize(1, tmp_path)
    differences = _differences(ROOT / "handson", starter / "handson")
    assert not differences, (
        f"handson/ differs from labs/solutions/step1.patch in {differences}. If the starter changed on purpose, "
        "re-record it: python -m labs.harness.dev.solutions record 1 . (then check steps 2-4 still apply). "
        "A learner who has started editing sees this too: it checks the project, not your work.")


@pytest.mark.parametrize("step", range(2, last_step() + 1))
def test_each_step_builds_on_the_one_before(step, tmp_path):
    """Every patch applies to the step before it and changes something."""
    before = materialize(step - 1, tmp_path / "before")
    after = materialize(step, tmp_path / "after")
    assert _differences(before / "handson", after / "handson")


def test_the_steps_list_matches_the_patches_and_modules():
    """steps.toml, the patches and the test modules describe the same steps, in order."""
    steps = load_steps()
    assert [step.number for step in steps] == list(range(1, last_step() + 1))
    for step in steps:
        assert (ROOT / step.module).exists(), step.module
        assert step.points > 0 and step.files(), step
        # Points given per test name tests the module has (grading would refuse the step otherwise).
        functions = {node.name for node in ast.parse((ROOT / step.module).read_text()).body
                     if isinstance(node, ast.FunctionDef) and node.name.startswith("test")}
        assert set(step.test_points) <= functions, f"step {step.number}: test_points {sorted(step.test_points)}"
    assert sum(step.points for step in steps) == 100


def test_the_readme_lists_every_step_with_its_points_and_every_make_target():
    """The README's table of steps, the Makefile's `make stepN` and steps.toml agree."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = {int(number): int(points) for number, points in re.findall(r"^\| (\d+) \| .* \| (\d+) \|$", readme, re.M)}
    assert listed == {step.number: step.points for step in load_steps()}, listed
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = re.search(r"^(step1 .*): \$\(STAMP\)$", makefile, re.M).group(1).split()
    assert targets == [f"step{step.number}" for step in load_steps()], targets
    assert f"make step1..{last_step()}" in makefile and f"`make step{last_step()}`" in readme
