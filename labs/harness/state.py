"""The learner's own records in .lab/ (gitignored): progress, hints seen, backups.

HANDSON_LAB_DIR moves the folder, so the project's tests never touch a learner's records.
"""
import json
import os
from pathlib import Path

from .paths import ROOT


def lab_dir(root=ROOT):
    """.lab/ beside the handson/ it is about (``root``), unless HANDSON_LAB_DIR says otherwise."""
    return Path(os.environ.get("HANDSON_LAB_DIR") or Path(root) / ".lab")


def read_json(name, default, root=ROOT):
    """The JSON in .lab/<name>, or ``default`` when it is missing or unreadable."""
    try:
        return json.loads((lab_dir(root) / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def write_json(name, data, root=ROOT):
    """Write .lab/<name> whole or not at all: a crash mid-write must not lose the record."""
    folder = lab_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / f".{name}.{os.getpid()}.tmp"  # one per process: two runs never share one
    with open(scratch, "w", encoding="utf-8") as out:
        json.dump(data, out, ensure_ascii=False, indent=2)
    os.replace(scratch, folder / name)
