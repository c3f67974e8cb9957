"""The ordered list of steps (labs/steps.toml), as every command reads it.

steps.toml is the only list: the plugin, `make status`, `make hint`, grading,
the benchmark and the project's tests all take the steps from here.
"""
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .i18n import pick
from .paths import ROOT, STEPS_FILE
from .reference import patched_files

FORMAT = 1  # the layout of steps.toml this code reads


@dataclass(frozen=True)
class Step:
    number: int
    module: str  # labs/test_stepN.py, relative to the repository
    points: int
    titles: dict
    hints: dict

    @property
    def title(self):
        return pick(self.titles)

    def hint_list(self):
        return pick(self.hints)

    def files(self):
        """The workspace files this step's reference adds or changes (from its patch)."""
        return patched_files(self.number)

    @property
    def path(self):
        return ROOT / self.module


@cache
def _load(path):
    with open(path, "rb") as handle:
        table = tomllib.load(handle)
    if table.get("format") != FORMAT:
        raise ValueError(f"{path}: format = {table.get('format')!r}, this harness reads format = {FORMAT}")
    steps = [Step(s["number"], s["module"], s["points"], s["title"], s["hints"]) for s in table["step"]]
    steps.sort(key=lambda step: step.number)
    if [step.number for step in steps] != list(range(1, len(steps) + 1)):
        raise ValueError(f"{path}: the steps must be numbered 1, 2, 3, ... without gaps")
    return tuple(steps)


def load_steps(path=STEPS_FILE):
    return list(_load(Path(path)))


def last_step():
    """The number of the last step (the full reference)."""
    return len(_load(STEPS_FILE))


def modules():
    """Every lab module, in step order (labs/test_step1.py, ...)."""
    return [step.module for step in load_steps()]


def step_for_module(path):
    """The step whose test module is ``path`` (a file name or path), or None."""
    name = Path(path).name
    return next((step for step in load_steps() if Path(step.module).name == name), None)
