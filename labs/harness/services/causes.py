"""What a service saw go wrong, as data: the lesson layer (lesson/advice.py) turns it into words.

A service never writes advice. It names what it saw (``what``), adds the facts
the advice needs (``detail``) and its own last log lines (``log``).
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cause:
    service: str  # "worker" | "web"
    what: str  # see the names in lesson/advice.py (no_celery_app, wrong_broker, stopped, ...)
    detail: dict = field(default_factory=dict)
    log: str = ""


class ServiceProblem(Exception):
    """Raised where a test needs a service that cannot serve it; pytest reports it as the
    advice for its cause (plugin/fixtures.py), not as a traceback."""

    def __init__(self, cause):
        super().__init__(f"{cause.service}: {cause.what} {cause.detail}")
        self.cause = cause
