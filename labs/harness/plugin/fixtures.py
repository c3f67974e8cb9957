"""The fixtures: thin wrappers over services/stack.py, each starting what its name says.

    redis_server        Redis for the broker and the result backend, once per run (per xdist worker)
    lab_stack_spec      the stack a module declares with ``pytest.mark.stack(...)`` (or redefines)
    lab_stack           that stack, started once and shared by the modules that declare the same one
    celery_worker(s)    its `celery worker` node(s); django_server its single-threaded server
    web                 a fresh browser-like client; result_backend, broker_control: Celery's own doors
    lab_database        the app's SQLite database (step 9), read-only

A test (or a conftest.py) overrides any of them by defining a fixture of the same
name. Teardown stops web, workers, then Redis, whatever happened; the process
module also kills them if pytest itself dies.
"""
import pytest

from ..i18n import say
from ..lesson.advice import explain
from ..lesson.waiting import wait_for
from ..reference import materialize
from ..services.backend import BrokerControl, ResultBackend
from ..services.causes import ServiceProblem
from ..services.redis import RedisUnavailable
from ..services.stack import Stack, StackSpec
from .options import LAB

READY_STATES = ("SUCCESS", "FAILURE", "REVOKED")  # a task in one of these runs no more
SETTLE_TIMEOUT = 10  # seconds for a revoked task to be terminated or discarded: it takes milliseconds
# Seconds a running leftover may take to end on its own before it is terminated: a terminated pool process is
# replaced at once or at the pool's next check, up to 5 s later (celery/concurrency/asynpool.py, maintain_pool
# every 5 s), while a hello at the lab's sleep (1 s) ends sooner.
SETTLE_GRACE = 2
_shown = pytest.StashKey[dict]()  # what a run has already printed in full: key -> the test that did
_log_marks = pytest.StashKey[dict]()  # a test's start in each service's log: name -> byte offset


class StackKeeper:
    """Keeps the one live stack of this process; a module that declares another stack
    stops it first (two stacks on one broker would take each other's tasks)."""

    def __init__(self, workspace, redis, lab, control):
        self.workspace, self.redis, self.lab, self.control = workspace, redis, lab, control
        self.current, self.started = None, 0

    def get(self, spec):
        if self.current is not None and self.current.spec == spec:
            return self.current
        self.close()
        self.started += 1
        log_dir = self.lab.run_dir if self.started == 1 else self.lab.run_dir / f"stack{self.started}"
        # The lab answers the app's payments (handson/payments.py): step 9 holds them while it looks.
        self.current = Stack(self.workspace, self.redis, self.lab.sleep, log_dir, spec, own_redis=False,
                             payments="lab").start()
        for worker in self.current.workers:  # each is a Celery worker that answers its remote control
            worker.confirm(self.control)
        return self.current

    def close(self):
        if self.current is not None:
            self.current.stop()
            self.current = None


def _first_time(config, key, nodeid):
    """None the first time ``key`` is shown in this run, else the test that showed it."""
    shown = config.stash.setdefault(_shown, {})
    return shown.get(key) if shown.setdefault(key, nodeid) != nodeid else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    lab = item.config.stash.get(LAB, None)
    if lab is None or not report.failed:
        return report
    lab.failed = True
    if call.excinfo is not None and call.excinfo.errisinstance(ServiceProblem):
        # A service could not serve the test: say why and what to edit, not where the harness
        # noticed. Its log once per run; later failures for the same cause point there.
        cause = call.excinfo.value.cause
        key = (cause.service, cause.what, str(sorted(cause.detail.items())))
        first = _first_time(item.config, key, item.nodeid)
        report.longrepr = explain(cause, with_log=first is None)
        if first is not None:
            report.longrepr += say(f"\n(The same cause as in {first}: its log is shown there.)",
                                   f"\n({first} と同じ原因です。ログはそちらに表示されています。)")
        return report
    if call.excinfo is not None and call.excinfo.errisinstance(AssertionError) and item.get_closest_marker("lab"):
        # A lesson's assertion: its message is the lesson, pytest's introspection
        # of the expression only gets in the way. Keep the message first (reports show the
        # first line), then where the check is, said to be the lab's, not a file to edit.
        message = str(call.excinfo.value).split("\nassert ", 1)[0].strip()
        entry = call.excinfo.traceback[-1] if call.excinfo.traceback else None
        where = f"{item.nodeid.split('::')[0]}:{entry.lineno + 1}" if entry is not None else item.nodeid
        if message:
            report.longrepr = message + say(f"\n(the lab's check: {where})", f"\n(ラボの検査: {where})")
    # A service's own words, printed under the first failure that needs them when they hold
    # an error that the failure does not quote already: only what it wrote during this test
    # (an earlier test's traceback, of a test that passed, belongs to that test).
    stack = item.funcargs.get("lab_stack") if hasattr(item, "funcargs") else None
    marks = item.stash.get(_log_marks, {})
    for service in stack.services() if stack is not None else ():
        if service.process.popen is not None:
            since = marks.get(service.process.name, 0)
            tail = "\n".join(service.process.log_text(since).splitlines()[-30:])
            if ("Traceback" in tail or "Error" in tail) and tail not in str(report.longrepr) \
                    and _first_time(item.config, ("log", tail), item.nodeid) is None:
                report.sections.append((f"{service.process.name} log (last lines)", tail))
    return report


def settle(stack, control, backend, grace=SETTLE_GRACE):
    """Bring the stack's workers back to idle with nothing queued: a test that failed half-way
    (or a task still running from the last one) must not decide the next test's verdict."""
    workers = [worker for worker in stack.workers if worker.problem is None and worker.process.running()]
    if not workers:
        return
    control.purge({"celery", *(queue for worker in stack.workers for queue in worker.spec.queues)})

    def leftovers():
        # The log cannot tell every end: a task whose pool process died is logged without its id
        # ("Task handler raised error: WorkerLostError"), and a revoked task that waits for its
        # countdown is discarded only when that is due. The result backend knows both.
        return [task_id for worker in workers for task_id in worker.unfinished_ids()
                if backend.state(task_id) not in READY_STATES]

    left = leftovers()
    if left:
        # A broadcast revoke makes every worker that does not hold a task store REVOKED for it, even for a
        # task that ignores its result (celery/worker/control.py, revoke: store_result=True).
        stack.revoked_by_lab.update(left)
        control.revoke(left)  # what has not started never will; what runs may end within the grace
        if not wait_for(lambda: not leftovers(), timeout=grace):
            control.revoke(leftovers(), terminate=True)
            wait_for(lambda: not leftovers(), timeout=SETTLE_TIMEOUT)


# -- the run's choices ---------------------------------------------------------------
@pytest.fixture(scope="session")
def lab(pytestconfig):
    """The run's choices (plugin/options.LabRun): workspace, Redis, sleep seconds, log folder."""
    return pytestconfig.stash[LAB]


@pytest.fixture(scope="session")
def sleep_seconds(lab):
    """How long the slow work takes in this run (HANDSON_SLEEP)."""
    return lab.sleep


@pytest.fixture(scope="session")
def workspace(lab):
    """The folder holding the handson/ package under test."""
    if lab.reference is not None:
        return materialize(lab.reference, lab.run_dir / f"reference-step{lab.reference}")
    if not (lab.workspace / "handson" / "settings.py").exists():
        pytest.fail(say("handson/settings.py is missing: restore your workspace (make reset).",
                        "handson/settings.py がありません。ワークスペースを戻してください (make reset)。"),
                    pytrace=False)
    return lab.workspace


# -- services --------------------------------------------------------------------------
def _start_redis(redis):
    """None once Redis answers, else why it cannot start (failed outside the except block, where
    pytest would print the error a second time as its context)."""
    try:
        redis.start()
    except RedisUnavailable as unavailable:
        return str(unavailable)
    return None


@pytest.fixture(scope="session")
def redis_server(lab):
    """Redis for the broker and the result backend, started once per run."""
    redis = lab.redis
    problem = _start_redis(redis)
    if problem is not None:
        redis.stop()
        pytest.fail(problem, pytrace=False)
    yield redis
    redis.stop()


@pytest.fixture(scope="session")
def lab_stacks(workspace, redis_server, lab, broker_control):
    """The keeper of this process's live stack (one at a time, on the run's Redis)."""
    keeper = StackKeeper(workspace, redis_server, lab, broker_control)
    yield keeper
    keeper.close()


@pytest.fixture(scope="module")
def lab_stack_spec(request):
    """The stack the module declares with ``pytest.mark.stack(workers=[...], web=True)``;
    without one, a prefork worker with one process and the web server, as in the original."""
    marker = request.node.get_closest_marker("stack")
    return StackSpec.declared(*marker.args, **marker.kwargs) if marker else StackSpec()


@pytest.fixture(scope="module")
def lab_stack(lab_stacks, lab_stack_spec):
    """Redis -> workers -> web for this module (services/stack.Stack)."""
    return lab_stacks.get(lab_stack_spec)


@pytest.fixture(scope="module")
def celery_workers(lab_stack):
    """Every `celery -A handson worker` node the module declared, in declaration order."""
    return lab_stack.workers


@pytest.fixture(scope="module")
def celery_worker(lab_stack):
    """The module's (first) `celery -A handson worker` process: prefork pool, one child by default."""
    return lab_stack.worker


@pytest.fixture(scope="module")
def django_server(lab_stack):
    """The app on `runserver --nothreading --noreload`: one process, one thread."""
    return lab_stack.web


@pytest.fixture(autouse=True)
def clean_slate(request):
    """Every test that uses the stack starts with empty queues and idle workers."""
    if "lab_stack" in request.fixturenames:
        stack = request.getfixturevalue("lab_stack")
        settle(stack, request.getfixturevalue("broker_control"), request.getfixturevalue("result_backend"),
               grace=min(SETTLE_GRACE, request.getfixturevalue("sleep_seconds") + 0.5))
        request.node.stash[_log_marks] = {service.process.name: service.process.log_size()
                                          for service in stack.services()}


@pytest.fixture
def web(django_server):
    """A fresh browser-like client (own cookies) for the app."""
    return django_server.client()


@pytest.fixture(scope="session")
def result_backend(redis_server):
    """Reads task states straight from the result backend in Redis."""
    return ResultBackend(redis_server)


@pytest.fixture
def lab_database(lab_stack):
    """The app's SQLite database (step 9's orders), read-only, as another client would read it."""
    from ..lesson.orders import Database

    return Database(lab_stack.database)


@pytest.fixture(scope="session")
def broker_control(redis_server):
    """Talks to the worker through the broker: remote control (revoke, inspect) and the lab's own tasks."""
    control = BrokerControl(redis_server)
    yield control
    control.close()
