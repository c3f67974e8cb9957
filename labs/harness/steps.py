"""The ordered list of steps (labs/steps.toml), as every command reads it."""
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .i18n import pick
from .solutions import patch_path

STEPS_FILE = Path(__file__).resolve().parents[1] / "steps.toml"


@dataclass(frozen=True)
class Step:
    number: int
    module: str
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
        names = []
        for line in patch_path(self.number).read_text().splitlines():
            if line.startswith("+++ b/"):
                names.append(line[len("+++ b/"):])
        return names


def load_steps(path=STEPS_FILE):
    with open(path, "rb") as handle:
        table = tomllib.load(handle)
    steps = [Step(s["number"], s["module"], s["points"], s["title"], s["hints"]) for s in table["step"]]
    return sorted(steps, key=lambda step: step.number)


def step_for_module(path):
    """The step whose test module is ``path`` (a file name or path), or None."""
    name = Path(path).name
    return next((step for step in load_steps() if Path(step.module).name == name), None)
