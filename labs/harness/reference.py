"""The reference solution of every step, kept as one chain of patches.

labs/solutions/step1.patch creates the starter from nothing; stepN.patch turns
step N-1 into step N. The reference of step N is the chain 1..N applied in an
empty folder, so there is one source of truth, and the committed handson/ must
equal step 1 (tests/test_solutions.py checks it). Maintainers change a step
with `python -m labs.harness.dev.solutions`.
"""
import os
import shutil
import subprocess
from pathlib import Path

from .paths import PATCHES

IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def patch_path(step):
    return PATCHES / f"step{step}.patch"


def git(args, cwd):
    """Run git in ``cwd``; GIT_CEILING_DIRECTORIES keeps an enclosing repository from
    becoming the base of the patch paths."""
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(Path(cwd).parent))
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)


def materialize(step, dest):
    """Write the reference of ``step`` (1 = the starter) as ``dest/handson``; return ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if (dest / "handson").exists():
        shutil.rmtree(dest / "handson")
    for number in range(1, step + 1):
        result = git(["apply", "--whitespace=nowarn", str(patch_path(number))], cwd=dest)
        if result.returncode != 0:
            raise RuntimeError(f"{patch_path(number).name} does not apply:\n{result.stderr}")
    return dest


def patched_files(step):
    """The workspace files the patch of ``step`` adds or changes (handson/...)."""
    return [line[len("+++ b/"):] for line in patch_path(step).read_text().splitlines()
            if line.startswith("+++ b/")]
