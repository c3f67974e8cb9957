"""Run a command as an unprivileged user that sees this checkout read-only (for CI, which runs as root):

    python -m labs.harness.dev.unprivileged -- python -m pytest tests/test_grading_hostile.py

CI grades as root, where services/confine.py runs the app as a user of its own. A teacher without
root gets the other guards only (the subreaper, the environment allow-list, the autograder's check of
result.json): this runs the project's tests of them the way that teacher would, as a user with no
rights here. The user (celery-handson-tester) is made if missing; the command starts through
confine.py's launcher, so a Python under /root (closed to other users) is reachable, read-only, and
the command's /tmp is private.
"""
import os
import subprocess
import sys

from ..paths import ROOT
from ..services import confine

TESTER = "celery-handson-tester"


def main(argv):
    command = argv[argv.index("--") + 1:] if "--" in argv else argv
    if os.geteuid() != 0:
        sys.exit("This needs root: it runs the command as another user.")
    problem = confine.ensure_user(TESTER)
    if problem:
        sys.exit(problem)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.call(confine.wrap(command, ROOT, user=TESTER), cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
