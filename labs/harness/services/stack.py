"""ONE way to run the hands-on: Redis -> workers -> web, stopped in reverse, whatever happens.

The pytest fixtures, `make run`, `make bench` and the project's tests all start
the app through ``Stack``, so the app a learner clicks is the app the lab grades.

A step declares the stack it needs at the top of its lab module:

    pytestmark = [pytest.mark.lab, pytest.mark.stack(workers=[
        WorkerSpec(node="default", concurrency=2),
        WorkerSpec(node="slow", queues=("slow",)),
    ])]

Modules that declare the same stack share one.
"""
from dataclasses import dataclass, replace
from pathlib import Path

from . import confine
from .app_env import app_env
from .beat import BeatSpec, CeleryBeat
from .link import RedisLink
from .web import DjangoServer
from .worker import CeleryWorker, WorkerSpec


@dataclass(frozen=True)
class StackSpec:
    """What a step needs besides Redis: its worker nodes, its beat schedulers, and whether the web server runs."""

    workers: tuple = (WorkerSpec(),)
    web: bool = True
    # Task events for monitoring (Flower, `celery events`): every worker with -E, and the web
    # app sending a task-sent event with each task. `make run` turns them on; the labs do not.
    events: bool = False
    beats: tuple = ()  # `celery beat` processes (step 11); none unless declared
    linked: bool = False  # the app reaches Redis through a relay the lab can cut (services/link.py, step 13)

    @classmethod
    def declared(cls, workers=None, web=True, beats=(), linked=False):
        """A spec from a ``stack`` marker's arguments (lists become tuples, so specs compare)."""
        return cls(tuple(workers) if workers is not None else cls.workers, web, beats=tuple(beats), linked=linked)

    @classmethod
    def from_procfile(cls, specs, **options):
        """The stack a Procfile's lines declare (services/procfile.read_procfile): its workers and beats."""
        return cls(workers=tuple(spec for spec in specs if isinstance(spec, WorkerSpec)),
                   beats=tuple(spec for spec in specs if isinstance(spec, BeatSpec)), **options)


class Stack:
    """The services of one run of the app. Redis is started here unless the caller
    already did (``own_redis=False``: several stacks in turn on one Redis)."""

    def __init__(self, workspace, redis, sleep, log_dir, spec=StackSpec(), *, web_port=None, own_redis=True,
                 payments="clock"):
        self.workspace, self.redis, self.sleep = Path(workspace), redis, sleep
        self.log_dir, self.spec, self.web_port, self.own_redis = Path(log_dir), spec, web_port, own_redis
        self.payments = payments  # who answers handson/payments.py: "clock", or "lab" (the labs)
        self.env, self.workers, self.beats, self.web = None, [], [], None
        self.link = None  # the RedisLink the app goes through (spec.linked), else None
        # Ids the lab itself revoked between tests (plugin/fixtures.settle): what the backend then holds
        # for them is the lab's doing, not the app's.
        self.revoked_by_lab = set()
        self._redis_started = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def database(self):
        """The SQLite file of this stack's app."""
        return Path(self.env["HANDSON_DATABASE"]) if self.env else None

    @property
    def worker(self):
        """The first (often the only) worker."""
        return self.workers[0] if self.workers else None

    def start(self):
        """Start everything; a worker or web server that cannot serve keeps its ``problem``
        (the learner's code may be unfinished), a Redis that cannot start raises RedisUnavailable."""
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            if self.own_redis:
                self.redis.start()
                self._redis_started = True
            # A database of its own (SQLite, step 9), for its web server and workers; created as the web
            # server starts (services/runserver.py applies the migrations).
            data = self.log_dir / "data"
            data.mkdir(exist_ok=True)
            confine.hand_over(data)
            if self.spec.linked:
                self.link = RedisLink(self.redis).start()
            app_redis = self.link or self.redis  # where the app's processes find Redis
            self.env = app_env(self.workspace, app_redis, self.sleep, database=data / "handson.sqlite3",
                               payments=self.payments)
            self.workers = [CeleryWorker(self.workspace, app_redis, self.env, self.log_dir,
                                         replace(spec, events=True) if self.spec.events else spec)
                            for spec in self.spec.workers]
            self.beats = [CeleryBeat(self.workspace, self.env, self.log_dir, spec) for spec in self.spec.beats]
            if self.spec.web:
                self.web = DjangoServer(self.workspace, self.env, self.log_dir, port=self.web_port,
                                        sent_events=self.spec.events)
            # Side by side: every process starts at once, then each is waited for.
            for service in self.services():
                service.launch()
            for service in self.services():
                service.wait_ready()
            return self
        except BaseException:
            self.stop()
            raise

    def services(self):
        """The app's processes in start order: workers, beats, then web."""
        return [*self.workers, *self.beats, *([self.web] if self.web else [])]

    def problems(self):
        """What stops the app from serving (services/causes.Cause), in start order."""
        return [service.problem for service in self.services() if service.problem]

    def log_files(self):
        """{name: log path} of every service, Redis included when it writes one."""
        files = {}
        redis_log = getattr(getattr(self.redis, "process", None), "log_path", None)
        if redis_log:
            files["redis"] = redis_log
        for service in self.services():
            files[service.process.name] = service.process.log_path
        return files

    def stop(self):
        """Stop web, beats, workers, then Redis (if started here); safe to call twice."""
        for service in reversed(self.services()):
            service.stop()
        if self.link is not None:
            self.link.stop()
            self.link = None
        if self._redis_started:
            self.redis.stop()
            self._redis_started = False
