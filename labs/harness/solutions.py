"""The reference solution of every step, kept as one chain of patches.

labs/solutions/step1.patch creates the starter from nothing; stepN.patch turns
step N-1 into step N. The reference of step N is the chain 1..N applied in an
empty folder, so there is one source of truth, and the committed handson/ must
equal step 1 (tests/test_solutions.py checks it).

Maintainers change a step with:
    python -m labs.harness.solutions export N DIR   # the reference of step N into DIR/handson
    (edit DIR/handson)
    python -m labs.harness.solutions record N DIR   # rewrite stepN.patch from it
and then re-record the later steps if their patches no longer apply.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATCHES = ROOT / "labs" / "solutions"
LAST_STEP = 4
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def patch_path(step):
    return PATCHES / f"step{step}.patch"


def _git(args, cwd):
    # GIT_CEILING_DIRECTORIES keeps git from treating an enclosing repository as
    # the base of the patch paths.
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(Path(cwd).parent))
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)


def materialize(step, dest):
    """Write the reference of ``step`` (1 = the starter) as ``dest/handson``; return ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if (dest / "handson").exists():
        shutil.rmtree(dest / "handson")
    for number in range(1, step + 1):
        result = _git(["apply", "--whitespace=nowarn", str(patch_path(number))], cwd=dest)
        if result.returncode != 0:
            raise RuntimeError(f"{patch_path(number).name} does not apply:\n{result.stderr}")
    return dest


def diff(old_root, new_root):
    """The patch that turns old_root/handson into new_root/handson (paths handson/...)."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for side, root in (("a", old_root), ("b", new_root)):
            (scratch / side).mkdir()
            if root is not None and (Path(root) / "handson").exists():
                shutil.copytree(Path(root) / "handson", scratch / side / "handson", ignore=_IGNORE)
        result = _git(["diff", "--no-index", "--no-prefix", "a", "b"], cwd=scratch)
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
