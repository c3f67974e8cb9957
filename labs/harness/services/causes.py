"""What a service saw go wrong, as data: the lesson layer (lesson/advice.py) turns it into words.

A service never writes advice. It names what it saw (``what``), adds the facts
the advice needs (``detail``) and its own last log lines (``log``).
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cause:
    service: str  # "worker" | "beat" | "web"
    what: str  # see the names in lesson/advice.py (no_celery_app, wrong_broker, stopped, ...)
    detail: dict = field(default_factory=dict)
    log: str = ""


class ServiceProblem(Exception):
    """Raised where a test needs a service that cannot serve it; pytest reports it as the
    advice for its cause (plugin/fixtures.py), not as a traceback."""

    def __init__(self, cause):
        super().__init__(f"{cause.service}: {cause.what} {cause.detail}")
        self.cause = cause


class CeleryProcess:
    """What a worker and a beat share (services/worker.py, services/beat.py): a ServiceProcess in
    ``process``, the ``problem`` it had starting (a Cause, or None), and its log."""

    service = ""  # the Cause's service: "worker", "beat"
    process = None
    problem = None

    def _cause(self, what, **detail):
        return Cause(self.service, what, detail, self.process.log_tail())

    def require_running(self):
        """Raise ServiceProblem (the test fails with its advice) unless the process is up."""
        if self.problem is None and not self.process.running():
            self.problem = self._cause("stopped")
        if self.problem:
            raise ServiceProblem(self.problem)
        return self

    def log(self, since=0):
        """The process's log, from byte offset ``since`` (see ``mark``)."""
        return self.process.log_text(since)

    def mark(self):
        """An offset into the log: ``log(since=mark)`` shows only what came after."""
        return self.process.log_size()

    def log_tail(self, lines=40):
        return self.process.log_tail(lines)
