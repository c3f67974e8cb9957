"""The project's own tests never touch a learner's records in .lab/.

A lab run on the repository's handson/ (without --solution, --reference or
--workspace) records progress; every run these tests start keeps it in a
scratch folder instead (HANDSON_LAB_DIR, inherited by the child processes).
"""
import os
import shutil
import tempfile


def pytest_configure(config):
    os.environ["HANDSON_LAB_DIR"] = tempfile.mkdtemp(prefix="celery-handson-lab-")
    # Many runs here fail on purpose; their services' logs are not kept in /tmp.
    os.environ["HANDSON_DISCARD_LOGS"] = "1"


def pytest_unconfigure(config):
    shutil.rmtree(os.environ.pop("HANDSON_LAB_DIR", ""), ignore_errors=True)
