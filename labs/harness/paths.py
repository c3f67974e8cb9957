"""Where things are: the repository, the lessons, the reference patches."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: handson/, labs/, Makefile
LABS = ROOT / "labs"
STEPS_FILE = LABS / "steps.toml"
PATCHES = LABS / "solutions"
