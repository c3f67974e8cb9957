"""Maintainers change a step of the reference chain (labs/solutions/stepN.patch) with:

    python -m labs.harness.dev.solutions export N DIR   # the reference of step N into DIR/handson
    (edit DIR/handson)
    python -m labs.harness.dev.solutions record N DIR   # rewrite stepN.patch from it

and then re-record the later steps if their patches no longer apply.
"""
import shutil
import sys
import tempfile
from pathlib import Path

from ..reference import IGNORE, git, materialize, patch_path


def diff(old_root, new_root):
    """The patch that turns old_root/handson into new_root/handson (paths handson/...)."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for side, root in (("a", old_root), ("b", new_root)):
            (scratch / side).mkdir()
            if root is not None and (Path(root) / "handson").exists():
                shutil.copytree(Path(root) / "handson", scratch / side / "handson", ignore=IGNORE)
        result = git(["diff", "--no-index", "--no-prefix", "a", "b"], cwd=scratch)
        if result.returncode not in (0, 1):
            raise RuntimeError(result.stderr)
        # --no-index names files a/handson/... and b/handson/...: the usual -p1 form.
        return result.stdout


def record(step, source_root):
    """Rewrite stepN.patch so that step N becomes source_root/handson."""
    with tempfile.TemporaryDirectory() as before:
        base = materialize(step - 1, before) if step > 1 else None
        patch_path(step).write_text(diff(base, source_root))


def main(argv):
    if len(argv) == 3 and argv[0] in ("export", "record"):
        step, folder = int(argv[1]), Path(argv[2])
        if argv[0] == "export":
            materialize(step, folder)
            print(f"reference of step {step} written to {folder / 'handson'}")
        else:
            record(step, folder)
            print(f"{patch_path(step)} recorded from {folder / 'handson'}")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
