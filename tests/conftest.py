"""The project's own tests never touch a learner's records in .lab/, and leave no folders in /tmp.

A lab run on the repository's handson/ (without --solution, --reference or
--workspace) records progress; every run these tests start keeps it in a
scratch folder instead (HANDSON_LAB_DIR, inherited by the child processes).
"""
import os
import shutil
import tempfile

import pytest


def pytest_configure(config):
    if hasattr(config, "workerinput"):
        return  # a pytest-xdist worker: the controller made the folders, their names are in its environment
    os.environ["HANDSON_LAB_DIR"] = tempfile.mkdtemp(prefix="celery-handson-lab-")
    # Many runs here fail on purpose; their services' logs are not kept.
    os.environ["HANDSON_DISCARD_LOGS"] = "1"
    # Runs killed on purpose (SIGKILL, os._exit) cannot remove their run folders: the
    # child processes make them in a scratch TMPDIR that goes away with the session.
    config._handson_tmpdir_before = os.environ.get("TMPDIR")
    os.environ["HANDSON_TESTS_TMPDIR"] = os.environ["TMPDIR"] = tempfile.mkdtemp(prefix="celery-handson-tests-")


def pytest_unconfigure(config):
    if hasattr(config, "workerinput"):
        return
    shutil.rmtree(os.environ.pop("HANDSON_LAB_DIR", ""), ignore_errors=True)
    shutil.rmtree(os.environ.pop("HANDSON_TESTS_TMPDIR", ""), ignore_errors=True)
    before = getattr(config, "_handson_tmpdir_before", None)
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before


# The longest tests first: `make test` hands them out in this order (pytest-xdist, --dist loadgroup
# --no-loadscope-reorder), and a long one started last would keep one worker busy while the others
# idle. The lab-integrity runs take one to two minutes each, the later references the longest.
LONGEST_FIRST = ("tests/test_lab_integrity.py", "tests/test_grading.py", "tests/test_wrong_edits.py",
                 "tests/test_grading_hostile.py", "tests/test_grading_submissions.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        module = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    integrity = [item for item in items if item.nodeid.startswith(LONGEST_FIRST[0])]
    items.sort(key=rank)  # stable: the order inside a module stays
    items[:len(integrity)] = reversed(integrity)


@pytest.fixture
def make_run(tmp_path):
    """Starts `make run` (python -m labs.harness.tools.run --solution) as a child; stops it afterwards."""
    from .helpers import Run  # imported once the session's environment is set

    runs = []

    def start(*args, **env):
        runs.append(Run(tmp_path, *args, **env).wait_ready())
        return runs[-1]

    yield start
    for run in runs:
        run.stop()
