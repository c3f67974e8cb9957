"""A lesson's failure, said the moment it is known: its first line as soon as the test fails.

pytest prints failures at the end of a run; a learner who runs a step again and again waits for the
whole module before reading the one sentence that matters. This prints that sentence (the lesson's,
plugin/fixtures.py puts it first) right away, and the full report still comes at the end. `make bench
--edits` times a wrong edit's verdict by this line.
"""
import pytest

PREFIX = "lab: FAILED "  # what the line starts with (dev/bench.py looks for it)


def first_line(report):
    text = report.longreprtext if hasattr(report, "longreprtext") else str(report.longrepr or "")
    lines = [line for line in text.removeprefix("Failed: ").strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


_config = []


def pytest_configure(config):
    _config.append(config)


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report):
    if not report.failed or report.when not in ("setup", "call") or not report.nodeid.startswith("labs/"):
        return
    reporter = _config[-1].pluginmanager.get_plugin("terminalreporter") if _config else None
    if reporter is not None:
        reporter.write("\n")  # after the progress letter pytest has just written
        reporter.write_line(f"{PREFIX}{report.nodeid}: {first_line(report)[:300]}", red=True)
