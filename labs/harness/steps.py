"""The ordered list of steps (labs/steps.toml), as every command reads it.

steps.toml is the only list: the plugin, `make status`, `make hint`, grading,
the benchmark and the project's tests all take the steps from here.
"""
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .i18n import pick
from .paths import ROOT, STEPS_FILE
from .reference import patched_files

FORMAT = 2  # the layout of steps.toml this code reads (2: optional test_points per step)


@dataclass(frozen=True)
class Step:
    number: int
    module: str  # labs/test_stepN.py, relative to the repository
    points: int
    titles: dict
    hints: dict
    test_points: dict = field(default_factory=dict)  # test function -> points, for tests not worth a share


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

    def split(self, tests):
        """Integer points for each of ``tests`` (the module's test functions, in order), summing to
        ``points``: the tests named in test_points get those, the others share what is left."""
        unknown = sorted(set(self.test_points) - set(tests))
        if unknown:
            raise ValueError(f"steps.toml, step {self.number}: test_points names {', '.join(unknown)}, "
                             f"which {self.module} does not have")
        rest = [test for test in tests if test not in self.test_points]
        left = self.points - sum(self.test_points.values())
        if rest:
            shares = dict(zip(rest, largest_remainder(left, len(rest))))
        elif left:
            raise ValueError(f"steps.toml, step {self.number}: test_points give every test a value, "
                             f"and they sum to {self.points - left}, not points = {self.points}")
        else:
            shares = {}
        return {test: self.test_points.get(test, shares.get(test)) for test in tests}


def largest_remainder(total, count):
    """``total`` split into ``count`` integers as even as can be, summing exactly to ``total``
    (Classroom 50 takes integers only). The first ones get the remainder's extra points, so
    the split is the same on every run."""
    base, extra = divmod(total, count)
    return [base + (1 if index < extra else 0) for index in range(count)]


def _points(value, where):
    # bool is an int in Python, and a float would reach Classroom 50, which rejects it.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: points must be a whole number >= 0, not {value!r}")
    return value


def _step(entry, path):
    where = f"{path}, step {entry.get('number')}"
    points = _points(entry["points"], where)
    test_points = {name: _points(value, f"{where}, test_points.{name}")
                   for name, value in entry.get("test_points", {}).items()}
    if sum(test_points.values()) > points:
        raise ValueError(f"{where}: test_points sum to {sum(test_points.values())}, more than points = {points}")
    return Step(entry["number"], entry["module"], points, entry["title"], entry["hints"], test_points)


@cache
def _load(path):
    with open(path, "rb") as handle:
        table = tomllib.load(handle)
    if table.get("format") != FORMAT:
        raise ValueError(f"{path}: format = {table.get('format')!r}, this harness reads format = {FORMAT}")
    steps = [_step(entry, path) for entry in table["step"]]
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
