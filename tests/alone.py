"""A pytest plugin for the verdict checks: every test runs as if it were alone in its run.

After each test pytest tears down every fixture, session-scoped ones included: the
workspace, Redis, the stack's worker and web server. The next test starts them all
again, exactly as a `pytest labs/test_stepN.py::name` of its own would, without paying
for a new pytest each time. Nor does a test learn what earlier ones found missing
(lesson/foundations.py), which would end it at once. So one run (with xdist: a few side
by side) gives every test's "alone" verdict.
"""
import pytest
from _pytest.runner import runtestprotocol

from labs.harness.lesson import foundations


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    foundations.forget()  # a missing route found by an earlier test must not end this one early
    # nextitem=None: as after the last test of a run, nothing is kept for the next one.
    runtestprotocol(item, nextitem=None, log=True)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
