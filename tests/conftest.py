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
    os.environ["HANDSON_LAB_DIR"] = tempfile.mkdtemp(prefix="celery-handson-lab-")
    # Many runs here fail on purpose; their services' logs are not kept.
    os.environ["HANDSON_DISCARD_LOGS"] = "1"
    # Runs killed on purpose (SIGKILL, os._exit) cannot remove their run folders: the
    # child processes make them in a scratch TMPDIR that goes away with the session.
    config._handson_tmpdir_before = os.environ.get("TMPDIR")
    os.environ["HANDSON_TESTS_TMPDIR"] = os.environ["TMPDIR"] = tempfile.mkdtemp(prefix="celery-handson-tests-")


def pytest_unconfigure(config):
    shutil.rmtree(os.environ.pop("HANDSON_LAB_DIR", ""), ignore_errors=True)
    shutil.rmtree(os.environ.pop("HANDSON_TESTS_TMPDIR", ""), ignore_errors=True)
    before = getattr(config, "_handson_tmpdir_before", None)
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before


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
