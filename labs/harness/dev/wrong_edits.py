"""The classic wrong edits of each step: the mistakes learners make, as edits of a reference.

One list, read by the project's tests (each edit must fail its step, and its first failure must
name the fix) and by `make bench` (how many seconds each takes to be judged). An edit starts
from the reference of ``base`` (a step number) and changes text in its files.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class WrongEdit:
    name: str
    step: int  # the step whose lab judges it
    base: int  # the reference it starts from
    file: str  # handson/...
    old: str  # text that must be in the file (replaced by ``new``)
    new: str
    fix_named: tuple  # words the first failure must contain (any one of them)

    def apply(self, workspace):
        path = workspace / self.file
        text = path.read_text()
        if self.old not in text:
            raise ValueError(f"{self.name}: {self.old!r} is not in {self.file} of reference {self.base}")
        path.write_text(text.replace(self.old, self.new))


EDITS = [
    WrongEdit("hello() instead of hello.delay()", 2, 2, "handson/views.py",
              "hello.delay(", "hello(", (".delay",)),
    WrongEdit("no celery_app import in handson/__init__.py", 2, 2, "handson/__init__.py",
              "from .celery import app as celery_app", "", ("from .celery import app as celery_app",)),
    WrongEdit("__all__ = ('app',) (the original's typo)", 2, 2, "handson/__init__.py",
              '__all__ = ("celery_app",)', '__all__ = ("app",)', ("__all__",)),
    WrongEdit("a hard-coded broker address", 2, 2, "handson/settings.py",
              "CELERY_BROKER_URL = HANDSON_BROKER_URL", 'CELERY_BROKER_URL = "redis://127.0.0.1:1/1"',
              ("CELERY_BROKER_URL = HANDSON_BROKER_URL",)),
    WrongEdit("a syntax error in tasks.py", 2, 2, "handson/tasks.py",
              "@shared_task", "def broken(:\n\n\n@shared_task", ("SyntaxError",)),
    WrongEdit("no task_track_started", 3, 3, "handson/settings.py",
              "CELERY_TASK_TRACK_STARTED = True", "", ("CELERY_TASK_TRACK_STARTED = True",)),
    WrongEdit("revoke() without terminate=True", 4, 4, "handson/views.py",
              "revoke(terminate=True)", "revoke()", ("terminate=True",)),
    WrongEdit("revoking only the STARTED tasks", 4, 4, "handson/views.py",
              "task_ids = tasklog.unfinished()",
              'task_ids = [t for t in tasklog.unfinished() if celery_app.AsyncResult(t).state == "STARTED"]',
              ("tasklog.unfinished()",)),
]
