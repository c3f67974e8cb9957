"""A step's foundations: once one test finds one missing, the module's later tests fail at once.

Some things a step stands on are decided by the code alone: a button's route, `.delay()`
instead of a direct call. When a test finds one missing, every later test of the module that
needs it would fail the same way, each after its own waits. They fail at once instead, with one
line that points at the first failure. The verdict is the same (a failure, never a skip); only
the waiting goes. A test run on its own finds the foundation missing itself.
"""
import os

import pytest

from ..i18n import say

_missing = {}  # (module, foundation) -> (the test that found it missing, the first line of its message)


def _current_test():
    # "labs/test_step2.py::test_x (call)" while a test runs
    nodeid = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    module, _, name = nodeid.partition("::")
    return module, name


def check(foundation):
    """Fail at once if an earlier test of this module found ``foundation`` missing."""
    module, name = _current_test()
    found = _missing.get((module, foundation))
    if found and found[0] != name:
        pytest.fail(say(f"{found[1]} (see the first failure, {found[0]}.)",
                        f"{found[1]} (最初の失敗 {found[0]} を見てください。)"), pytrace=False)


def remember_missing(foundation, message):
    """Record ``foundation`` as missing for the module's later tests (the caller fails the test itself)."""
    module, name = _current_test()
    _missing.setdefault((module, foundation), (name, message.splitlines()[0] if message else ""))


def forget():
    """Forget what earlier tests found missing: the next test finds out for itself, as if alone."""
    _missing.clear()


def must_have(foundation, condition, message):
    """Fail with ``message`` unless ``condition``, and remember the foundation as missing."""
    check(foundation)
    if not condition:
        remember_missing(foundation, message)
        pytest.fail(message, pytrace=False)
