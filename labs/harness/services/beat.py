"""A real `celery -A handson beat` process: the scheduler that sends the app's periodic tasks (step 11).

Beat keeps, in its schedule file (a shelve database), when each entry last ran. Run in the
workspace it would write `celerybeat-schedule` there; the lab gives it one in the run's data folder
instead (--schedule), so nothing is left in the workspace and every run starts with a fresh record.
A beat that cannot start because of the learner's code does not raise here: it keeps what it saw in
``problem``, as a worker does (services/worker.py).
"""
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from ..tracebacks import headline
from .app_env import data_folders
from .causes import CeleryProcess
from .processes import ServiceProcess

READY_TIMEOUT = 30  # seconds; it starts in about a second
_SENT = re.compile(r"Scheduler: Sending due task (\S+) \((\S+)\)")


def schedule_file(env, log_dir, name):
    """Where the beat called ``name`` (or a worker's -B beat) keeps its schedule: the run's data folder."""
    return (data_folders(env) or [Path(log_dir)])[0] / f"celerybeat-schedule-{name}"


@dataclass(frozen=True)
class BeatSpec:
    """One `celery beat` process a step needs (a `name: celery -A handson beat` line of handson/Procfile)."""

    name: str = "beat"
    options: tuple = ()  # other command-line options, e.g. ("--max-interval=5",)
    execs: bool = False  # its Procfile line starts with `exec` (step 12)

    def argv(self, schedule):
        return [sys.executable, "-m", "celery", "-A", "handson", "beat", "--loglevel=INFO", f"--schedule={schedule}",
                *self.options]


class CeleryBeat(CeleryProcess):
    service = "beat"

    def __init__(self, workspace, env, log_dir, spec=BeatSpec()):
        self.workspace, self.spec = Path(workspace), spec
        self.process = ServiceProcess(f"beat {spec.name}", spec.argv(schedule_file(env, log_dir, spec.name)), env=env,
                                      cwd=self.workspace, log_path=Path(log_dir) / f"beat-{spec.name}.log",
                                      writable=data_folders(env))
        self.problem = None

    def launch(self):
        self.process.start()
        return self

    def wait_ready(self):
        ready = self.process.wait_until(lambda: "beat: Starting..." in self.log(), timeout=READY_TIMEOUT,
                                        interval=0.02)
        log = self.log()
        if "Unable to load celery application" in log:
            self.problem = self._cause("no_celery_app")
        elif not ready:
            stopped = not self.process.running()
            self.problem = self._cause("crashed_on_start" if stopped else "not_ready",
                                       headline=headline(log, self.workspace), seconds=READY_TIMEOUT)
        return self

    def stop(self):
        # As a worker: at once, the whole group. A run's end needs no graceful stop of its scheduler.
        self.process.stop(first_signal=signal.SIGKILL, grace=5.0)

    def sent(self, since=0):
        """(entry name, task name) of every periodic task this beat has sent, in order."""
        return _SENT.findall(self.log(since))
