"""What the lessons say about Celery, Kombu and Django, asserted on real workers of the installed versions.

A lesson is only as good as its facts. Where a lesson (labs/test_step*.py), a hint (labs/steps.toml)
or an advice sentence (labs/harness/lesson/advice.py) states a behaviour of the libraries rather than
of the learner's code, it is checked here, on the reference app plus a few probe tasks, so that an
upgrade that changes the behaviour fails CI instead of leaving a lesson wrong. Each test names the
lesson that relies on it; the lessons name these tests back.

(The lab modules themselves hold the rest on the reference: a queued task revoked is REVOKED at
once, a running one revoked without terminate ends SUCCESS (step 4); retry spacing (step 5);
WorkerLostError by default and a new pool process (step 6); SoftTimeLimitExceeded inside the task
and FAILURE TimeLimitExceeded at the hard limit (step 7); prefetch leaving a long task in Redis (step 8);
EncodeError for a model instance sent as an argument (step 9's wrong edits).)
"""
import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from labs.harness.lesson.checks import ENDED
from labs.harness.lesson.waiting import wait_for
from labs.harness.reference import materialize
from labs.harness.services.backend import BrokerControl
from labs.harness.services.redis import LocalRedis
from labs.harness.services.stack import Stack, StackSpec
from labs.harness.services.worker import WorkerSpec
from labs.harness.steps import last_step

SLEEP = 1.5  # seconds the probes' slow work takes (HANDSON_SLEEP of these stacks)
PROBES = '''

# --- probe tasks of tests/test_celery_facts.py (not part of the hands-on) ---
import redis as _probe_redis


def _probe_client():
    return _probe_redis.Redis.from_url(settings.HANDSON_RESULT_BACKEND)


@shared_task(time_limit=1)
def probe_cleanup_at_the_hard_limit(key):
    try:
        while True:
            time.sleep(0.05)
    finally:
        _probe_client().set(key, "finally ran", ex=600)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, retry_on_worker_lost=True,
             default_retry_delay=1, max_retries=1)
def probe_retry_on_worker_lost(self):
    time.sleep(settings.HANDSON_SLEEP)
    return self.request.retries


@shared_task(acks_late=True)
def probe_acks_late():
    time.sleep(settings.HANDSON_SLEEP)
    return "done"


@shared_task(bind=True)
def probe_count_runs(self, key):
    _probe_client().rpush(key, self.request.hostname or "?")


@shared_task(soft_time_limit=0.5, time_limit=1)
def probe_over_its_limits():
    time.sleep(settings.HANDSON_SLEEP)
    return "ran to the end"
'''
# Kombu's Redis transport: an unacked message past the visibility timeout is swept back on the next
# restore (every unacked_restore_interval x unacked_restore_throttle seconds): all short here.
QUICK_RESTORE = ('\nCELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2, "unacked_restore_interval": 1, '
                 '"unacked_restore_throttle": 1}\n')


def probe_workspace(folder, settings_extra=""):
    """The reference app with the probe tasks (and ``settings_extra``) added."""
    workspace = materialize(last_step(), folder)
    tasks = workspace / "handson" / "tasks.py"
    tasks.write_text(tasks.read_text() + PROBES)
    settings = workspace / "handson" / "settings.py"
    settings.write_text(settings.read_text() + settings_extra)
    return workspace


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = LocalRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def client(redis):
    """A Celery client of the lab's Redis, as a view would be: it sends by task name. One per test: a
    BrokerControl closed by an earlier test resets Kombu's process-wide pools (kombu/pools.py, reset), which
    closes the producer pool a longer-lived client had cached ("Acquire on closed pool")."""
    from celery import Celery

    app = Celery("facts", broker=redis.broker_url, backend=redis.result_backend_url, set_as_current=False)
    app.conf.task_serializer = "json"
    yield app
    app.close()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return probe_workspace(tmp_path_factory.mktemp("probes"))


@pytest.fixture
def start(tmp_path, redis):
    """start(workspace, *worker specs, web=False) -> a running Stack on the module's Redis, stopped after the test."""
    stacks = []

    def _start(workspace, *workers, web=False):
        stack = Stack(workspace, redis, SLEEP, tmp_path / f"stack{len(stacks)}",
                      StackSpec(workers=workers or (WorkerSpec(),), web=web), own_redis=False).start()
        stacks.append(stack)
        assert not stack.problems(), stack.problems()
        return stack

    yield _start
    for stack in reversed(stacks):
        stack.stop()
    redis.client(redis.broker_url).flushdb()
    redis.client().flushdb()


def state(redis, task_id):
    raw = redis.client().get(f"celery-task-meta-{task_id}")
    return json.loads(raw) if raw else {"status": None, "result": None}


def wait_state(redis, task_id, states, timeout):
    return wait_for(lambda: state(redis, task_id)["status"] in states, timeout=timeout, interval=0.02)


def unacked_ids(redis):
    """{task id: delivery tag} of the messages Kombu keeps as delivered but not acknowledged."""
    return BrokerControl(redis).unacknowledged()


def test_a_message_is_acknowledged_when_a_pool_process_starts_the_task_and_prefetched_ones_stay_unacked(
        workspace, start, client, redis):
    """Step 4 ("revoked without terminate ... its message was acknowledged when it started"), step 6
    (hello's work is lost) and step 8 (prefetch): by default the ack comes when a pool process starts
    the task; a message the worker only reserved ahead stays unacked in Redis (celery/worker/request.py,
    on_accepted)."""
    start(workspace)
    running = client.send_task("handson.tasks.hello", ("hello world",)).id
    reserved = client.send_task("handson.tasks.hello", ("hello world",)).id
    assert wait_state(redis, running, ("STARTED",), timeout=10), state(redis, running)
    held = wait_for(lambda: unacked_ids(redis) if reserved in unacked_ids(redis) else None, timeout=5)

    assert held and running not in held, f"while {running} runs, unacked holds {held}"
    assert wait_state(redis, reserved, ("SUCCESS",), timeout=2 * SLEEP + 10)
    assert not unacked_ids(redis)


def test_an_acks_late_message_stays_in_a_hash_and_a_sorted_set_until_the_task_ends(workspace, start, client, redis):
    """Step 6 ("the message waits in the broker's unacked hash and its index, a sorted set"): with
    acks_late the delivery is kept in `unacked` (the message) and `unacked_index` (delivery time) while
    the task runs, and removed when it ends (kombu/transport/redis.py, QoS.append / ack)."""
    start(workspace)
    task_id = client.send_task("handson.tasks.probe_acks_late").id
    assert wait_state(redis, task_id, ("STARTED",), timeout=10)
    tag = unacked_ids(redis).get(task_id)
    broker = redis.client(redis.broker_url)

    assert tag and broker.zscore("unacked_index", tag) is not None, (unacked_ids(redis), broker.zrange("unacked_index", 0, -1))
    assert wait_state(redis, task_id, ("SUCCESS",), timeout=SLEEP + 10)
    assert wait_for(lambda: not broker.hlen("unacked") and not broker.zcard("unacked_index"), timeout=5)


def test_kombu_sweeps_unacked_messages_back_about_every_100_seconds_by_default():
    """Step 6 ("comes back up to about 100 s after the visibility timeout"): the defaults of Kombu's
    Redis transport, an hour of visibility and a restore scan every 10 x 10 seconds."""
    from kombu.transport.redis import Channel

    assert Channel.visibility_timeout == 3600
    assert Channel.unacked_restore_interval * Channel.unacked_restore_throttle == 100


def test_a_message_left_unacked_by_a_dead_worker_comes_back_after_the_visibility_timeout(
        tmp_path, start, client, redis):
    """Step 6 ("When the whole worker dies"): kill -9 of the worker's whole process group mid-task
    leaves the acks_late message unacked and the task STARTED; once the visibility timeout has passed
    (2 s here) a worker puts it back on the queue and it runs again."""
    workspace = probe_workspace(tmp_path / "quick-restore", QUICK_RESTORE)
    first = start(workspace)
    task_id = client.send_task("handson.tasks.probe_acks_late").id
    assert wait_state(redis, task_id, ("STARTED",), timeout=10)
    os.killpg(first.worker.process.pid, signal.SIGKILL)
    wait_for(lambda: not first.worker.process.running(), timeout=5)

    assert task_id in unacked_ids(redis) and state(redis, task_id)["status"] == "STARTED"
    second = start(workspace)
    received = wait_for(lambda: f"[{task_id}] received" in second.worker.log(), timeout=10)
    assert received, second.worker.log()[-2000:]
    assert wait_state(redis, task_id, ("SUCCESS",), timeout=SLEEP + 10), state(redis, task_id)


def test_the_hard_limit_sends_sigterm_first_so_a_finally_block_runs(workspace, start, client, redis):
    """Step 7 ("SIGTERM first, SIGKILL 0.1 s later: a finally: block may run briefly"): billiard's
    _trywaitkill; the task is stored FAILURE TimeLimitExceeded."""
    start(workspace)
    key = "facts:finally"
    task_id = client.send_task("handson.tasks.probe_cleanup_at_the_hard_limit", (key,)).id
    assert wait_state(redis, task_id, ENDED, timeout=10)

    assert state(redis, task_id)["result"]["exc_type"] == "TimeLimitExceeded"
    assert wait_for(lambda: redis.client().get(key), timeout=2) == b"finally ran"


def test_retry_on_worker_lost_takes_precedence_over_reject_and_waits_default_retry_delay(
        workspace, start, client, redis):
    """Step 6 ("retry_on_worker_lost ... takes precedence over reject_on_worker_lost, counts against
    max_retries, waits default_retry_delay"): celery/worker/request.py, on_failure and _retry_worker_lost."""
    stack = start(workspace)
    mark = stack.worker.mark()
    task_id = client.send_task("handson.tasks.probe_retry_on_worker_lost").id
    assert wait_state(redis, task_id, ("STARTED",), timeout=10)
    stack.worker.kill_pool_process(state(redis, task_id)["result"]["pid"])

    assert wait_state(redis, task_id, ("RETRY",), timeout=10), state(redis, task_id)
    # The worker stores RETRY first and logs the retry after.
    assert wait_for(lambda: f"[{task_id}] retry: Retry in 1s" in stack.worker.log(mark), timeout=5), stack.worker.log(mark)
    assert wait_state(redis, task_id, ("SUCCESS",), timeout=SLEEP + 10), state(redis, task_id)
    assert state(redis, task_id)["result"] == 1  # the second run is retry number 1


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_the_solo_and_threads_pools_enforce_no_time_limit_and_terminate_nothing(pool, workspace, start, client, redis):
    """Step 7 ("solo and threads ignore both limits") and step 4 / the README ("only prefork, eventlet
    and gevent can stop a running task"): with these pools a task runs past its limits to SUCCESS, and
    revoke(terminate=True) leaves a running task to finish."""
    start(workspace, WorkerSpec(pool=pool))
    over = client.send_task("handson.tasks.probe_over_its_limits").id
    assert wait_state(redis, over, ENDED, timeout=SLEEP + 10)
    assert state(redis, over)["status"] == "SUCCESS", state(redis, over)

    running = client.send_task("handson.tasks.hello", ("hello world",)).id
    assert wait_state(redis, running, ("STARTED",), timeout=10)
    client.control.revoke(running, terminate=True)
    assert wait_state(redis, running, ENDED, timeout=SLEEP + 10)
    assert state(redis, running)["status"] == "SUCCESS", state(redis, running)


def test_celery_a_handson_finds_the_app_without_the_import_in_init(tmp_path, start):
    """Step 2 and the advice for "no Celery app": `celery -A handson` tries handson.app, handson.celery
    (the module handson/celery.py and its `app`), then any Celery instance in the package
    (celery/app/utils.py, find_app); it never looks for `celery_app`. The import in __init__.py is
    for Django, not for the worker."""
    workspace = probe_workspace(tmp_path / "no-import")
    init = workspace / "handson" / "__init__.py"
    init.write_text('"""Without the Celery import."""\n')

    stack = start(workspace)
    assert "handson.tasks.hello" in stack.worker.registered_tasks()


def test_runserver_noreload_serves_from_the_one_process_it_starts(workspace, start):
    """Step 1 ("one process: --noreload; one thread: --nothreading"): without --noreload, runserver's
    autoreloader would run the server in a child process."""
    stack = start(workspace, web=True)
    assert psutil.Process(stack.web.process.pid).children() == []
    assert stack.web.client().get("/handson").status == 200


def test_pending_is_all_a_queued_task_and_an_unknown_id_share_and_exists_cannot_tell_them_apart(client, redis):
    """Step 3 ("PENDING: the backend has nothing for this id ... Celery cannot tell those apart";
    AsyncResult.exists(), new in 5.7, says only whether the backend holds something): a task waiting in
    a queue no worker reads, and an id never sent, look the same."""
    queued = client.send_task("handson.tasks.hello", ("hello world",), queue="facts-nobody-reads-this")
    unknown = client.AsyncResult("00000000-0000-4000-8000-000000000000")

    assert (queued.state, unknown.state) == ("PENDING", "PENDING")
    assert (queued.exists(), unknown.exists()) == (False, False)
    redis.client(redis.broker_url).delete("facts-nobody-reads-this")


def test_a_result_is_kept_for_a_day_by_default(tmp_path, start, client, redis):
    """Steps 3 and 11 ("stored for a day", "Celery's default is a day"): result_expires, on the reference
    without step 11's CELERY_RESULT_EXPIRES (its own TTL is the step 11 lab's to check)."""
    start(probe_workspace(tmp_path / "default-expiry", settings_extra="\ndel CELERY_RESULT_EXPIRES\n"))
    task_id = client.send_task("handson.tasks.hello", ("hello world",)).id
    assert wait_state(redis, task_id, ("SUCCESS",), timeout=SLEEP + 10)

    assert 86_000 < redis.client().ttl(f"celery-task-meta-{task_id}") <= 86_400


ON_COMMIT_PROBE = """
import json, time
import django
django.setup()
from celery.signals import after_task_publish
from django.core.management import call_command
from django.db import transaction
from handson.models import Order
from handson.tasks import send_confirmation

call_command("migrate", verbosity=0)
published = []
after_task_publish.connect(lambda headers=None, **_: published.append(headers["id"]), weak=False)
from celery.contrib.django.task import DjangoTask

out = {"django_task": isinstance(send_confirmation._get_current_object(), DjangoTask)}  # shared_task: a proxy
with transaction.atomic():
    order = Order.objects.create(item="probe", amount=1)
    out["returned"] = repr(send_confirmation.delay_on_commit(order.pk))
    out["published_inside"] = len(published)
out["published_after_commit"] = len(published)
try:
    with transaction.atomic():
        order = Order.objects.create(item="probe", amount=1)
        send_confirmation.delay_on_commit(order.pk)
        raise RuntimeError("roll back")
except RuntimeError:
    pass
out["published_after_rollback"] = len(published)
with transaction.atomic():  # .delay() inside: the worker looks while the transaction is open
    order = Order.objects.create(item="probe", amount=1)
    task = send_confirmation.delay(order.pk)
    deadline = time.monotonic() + 20
    while task.state not in ("SUCCESS", "FAILURE") and time.monotonic() < deadline:
        time.sleep(0.05)
    out["inside_state"], out["inside_result"] = task.state, repr(task.result)
print(json.dumps(out))
"""


def test_delay_on_commit_sends_after_the_commit_never_after_a_rollback_and_returns_none(workspace, start):
    """Step 9: every task of a Django project is a DjangoTask (celery/fixups/django.py sets task_cls unless the
    app names its own); delay_on_commit returns None and publishes nothing until the commit, nothing at all when
    the transaction rolls back (Django's on_commit); a .delay() inside the transaction is run by the worker before
    the commit, which does not find the order: FAILURE DoesNotExist."""
    stack = start(workspace)
    probe = subprocess.run([sys.executable, "-c", ON_COMMIT_PROBE], cwd=workspace, env=stack.env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["django_task"] is True, seen
    assert seen["returned"] == "None", seen
    assert (seen["published_inside"], seen["published_after_commit"], seen["published_after_rollback"]) == (0, 1, 1)
    assert seen["inside_state"] == "FAILURE" and "DoesNotExist" in seen["inside_result"], seen


def test_a_group_followed_by_a_task_is_a_chord_and_a_task_may_not_wait_for_another():
    """Step 10: `group(...) | task.s()` is upgraded to a chord (celery/canvas.py, group.__or__); a task that calls
    result.get() is refused with the message the lesson quotes (celery/result.py, assert_will_not_block)."""
    from celery import Celery, chord, group
    from celery.result import E_WOULDBLOCK

    app = Celery("facts-canvas", set_as_current=False)
    part, report = app.signature("handson.tasks.region_sales"), app.signature("handson.tasks.sales_report")
    assert isinstance(group(part.clone(("north",)), part.clone(("south",))) | report, chord)
    assert E_WOULDBLOCK.startswith("Never call result.get() within a task!")


def test_beat_adds_a_daily_cleanup_only_for_backends_that_cannot_expire_results(tmp_path):
    """Step 11: the Redis backend expires each result key itself (supports_autoexpire), so beat schedules no
    celery.backend_cleanup; for a backend that cannot (the filesystem backend here; a database, SQLAlchemy's
    or MongoDB, elsewhere) it adds one, daily at 4:00 (celery/beat.py, Scheduler.install_default_entries)."""
    from celery import Celery, beat

    def default_entries(backend):
        app = Celery("facts-beat", set_as_current=False, backend=backend, broker="memory://")
        scheduler = beat.Scheduler(app, lazy=True)
        scheduler.install_default_entries({})
        return set(scheduler.schedule)

    assert default_entries("redis://127.0.0.1:1/0") == set()
    assert default_entries(f"file://{tmp_path}") == {"celery.backend_cleanup"}


def test_sigquit_is_a_cold_shutdown_that_cancels_a_running_task_for_good(workspace, start, client, redis):
    """Step 12 ("SIGQUIT ... the running tasks are cancelled ... its state is left RETRY and nothing runs it again"):
    the cold shutdown terminates a running task without acks_late, stores RETRY (a Retry "cancelled by Celery",
    whose text the backend does not keep) for it, and leaves no message to deliver again (celery/apps/worker.py, on_cold_shutdown; celery/worker/consumer/consumer.py,
    cancel_active_requests; celery/worker/request.py, _announce_cancelled)."""
    stack = start(workspace)
    task_id = client.send_task("handson.tasks.hello", ("hello world",)).id
    assert wait_state(redis, task_id, ("STARTED",), timeout=10), state(redis, task_id)
    os.kill(stack.worker.process.pid, signal.SIGQUIT)
    assert wait_for(lambda: not stack.worker.process.running(), timeout=SLEEP + 10), stack.worker.log()[-2000:]

    meta = state(redis, task_id)
    assert meta["status"] == "RETRY" and meta["result"]["exc_type"] == "Retry", meta
    assert task_id not in unacked_ids(redis) and not redis.client(redis.broker_url).llen("celery")
    assert "worker: Cold shutdown (MainProcess)" in stack.worker.log()


def test_the_defaults_steps_12_and_13_teach():
    """Steps 12 and 13 name these defaults: soft shutdown off (worker_soft_shutdown_timeout 0,
    worker_enable_soft_shutdown_on_idle False); publish retried 3 times, 0, 0.2, 0.4 s apart; the worker
    reconnects, 100 times, 2 s then 2 s more each time up to 30 s apart (kombu/connection.py,
    _ensure_connection); Kombu's Redis transport has no socket timeout (waits for ever), checks connections
    every 25 s and has no heartbeats; the result backend's socket timeout is 120 s, its connect timeout none."""
    import inspect

    from celery.app.defaults import NAMESPACES
    from kombu import Connection
    from kombu.transport import redis as kombu_redis
    from kombu.transport.virtual import Transport

    def default(namespace, name):
        return NAMESPACES[namespace][name].default

    assert default("worker", "soft_shutdown_timeout") == 0.0
    assert default("worker", "enable_soft_shutdown_on_idle") is False
    assert default("task", "publish_retry") is True
    assert default("task", "publish_retry_policy") == {"max_retries": 3, "interval_start": 0, "interval_max": 1,
                                                       "interval_step": 0.2}
    assert default("broker", "connection_retry") is True and default("broker", "connection_max_retries") == 100
    assert default("redis", "socket_timeout") == 120.0 and default("redis", "socket_connect_timeout") is None
    assert kombu_redis.Channel.socket_timeout is None and kombu_redis.Channel.socket_connect_timeout is None
    assert kombu_redis.DEFAULT_HEALTH_CHECK_INTERVAL == 25
    assert Transport.implements.heartbeats is False and kombu_redis.Transport.implements.heartbeats is False
    retry = inspect.signature(Connection._ensure_connection).parameters
    assert (retry["interval_start"].default, retry["interval_step"].default, retry["interval_max"].default) == (2, 2, 30)
    # Step 13: a consumer's silent BRPOP connection is dropped after about brpop_timeout + 2 x the check (51 s).
    assert kombu_redis.Transport.brpop_timeout + 2 * kombu_redis.DEFAULT_HEALTH_CHECK_INTERVAL == 51


def test_a_worker_remembers_a_limited_set_of_revoked_ids_and_a_later_broadcast_s_are_the_newest(workspace, start,
                                                                                               redis):
    """Step 4 ("each worker keeps revoked ids in memory only, 50,000 for 3 hours; a broadcast of more leaves in it
    any 50,000 of them, and a later broadcast's ids are always the newest"): the set a worker looks a task up in
    when its turn comes is a LimitedSet of CELERY_WORKER_REVOKES_MAX ids (celery/worker/state.py: 50,000 and
    CELERY_WORKER_REVOKE_EXPIRES 10,800 s by default), filled from the broadcast's ids taken as a set
    (celery/worker/control.py, revoke). With 5 kept: 20 ids in one broadcast leave 5 of them, and 3 more
    sent after are all kept."""
    from celery.worker import state as worker_state

    assert (worker_state.REVOKES_MAX, worker_state.REVOKE_EXPIRES) == (50000, 10800)
    stack = start(workspace, WorkerSpec(env=(("CELERY_WORKER_REVOKES_MAX", "5"),)))
    control = BrokerControl(redis)
    try:
        hostname = stack.worker.hostname()
        first, later = [f"revoked-{index:02d}" for index in range(20)], ["later-1", "later-2", "later-3"]
        control.revoke(first)
        kept = wait_for(lambda: control.revoked_ids(hostname) or None, timeout=10)
        assert kept and len(kept) == 5 and kept <= set(first), sorted(kept or [])
        control.revoke(later)
        kept = wait_for(lambda: (lambda ids: ids if ids and set(later) & ids else None)(control.revoked_ids(hostname)),
                        timeout=10)
        assert kept and set(later) <= kept and len(kept) == 5, sorted(kept or [])
    finally:
        control.close()


def test_a_held_task_flagged_by_terminate_starts_and_is_killed_when_its_id_is_forgotten(workspace, start, client,
                                                                                      redis):
    """Step 4 ("terminate=True also marks what a worker holds; a held task whose id the worker forgot starts, and is
    killed as it starts, stored REVOKED 'terminated'"): revoke(terminate=True) calls Request.terminate on every request
    the worker holds (celery/worker/control.py, _revoke: worker_state.requests holds the reserved ones too); one not
    started yet keeps the mark in _terminate_on_ack (celery/worker/request.py, terminate), and on_accepted kills it.
    Here 2 ids are kept: a later broadcast of 2 others pushes the held ones out, so revoked() lets them start."""
    stack = start(workspace, WorkerSpec(env=(("CELERY_WORKER_REVOKES_MAX", "2"),)))
    control = BrokerControl(redis)
    try:
        hostname = stack.worker.hostname()
        mark = stack.worker.mark()
        running, *held = (client.send_task("handson.tasks.hello", ("hello world",)).id for _ in range(3))
        assert wait_state(redis, running, ("STARTED",), timeout=10), state(redis, running)
        assert wait_for(lambda: set(held) <= set(unacked_ids(redis)), timeout=5), unacked_ids(redis)
        control.revoke(held, terminate=True)
        assert wait_for(lambda: all(state(redis, task)["status"] == "REVOKED" for task in held), timeout=5), held
        forget = ["forget-1", "forget-2"]
        control.revoke(forget)
        assert wait_for(lambda: control.revoked_ids(hostname) == set(forget), timeout=10), control.revoked_ids(hostname)
        # Each held one starts in turn (after the running one ends) and is killed at once.
        killed = wait_for(lambda: all("terminated" in json.dumps(state(redis, task)["result"]) for task in held),
                          timeout=3 * SLEEP + 15)
        assert killed, [state(redis, task) for task in held]
        assert all(state(redis, task)["status"] == "REVOKED" for task in held), [state(redis, task) for task in held]
        log = stack.worker.log(mark)
        assert all(f"Terminating {task}" in log and f"Discarding revoked task: handson.tasks.hello[{task}]" not in log
                   for task in held), log
        assert wait_state(redis, running, ENDED, timeout=10) and state(redis, running)["status"] == "SUCCESS"
    finally:
        control.close()


def test_the_warm_shutdown_line_is_printed_not_logged(workspace, start, redis):
    """Step 12 ("worker: Warm shutdown (MainProcess)" on standard output, not through the logger, so a
    --logfile does not hold it: safe_say, celery/apps/worker.py)."""
    stack = start(workspace, web=False)  # for the app's environment (its Redis, its settings)
    logfile = workspace.parent / "worker-logfile.log"
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "handson", "worker", "--pool=solo", "--loglevel=INFO",
                               f"--logfile={logfile}", "-n", "warm@%h", "--without-mingle", "--without-gossip"],
                              cwd=workspace, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: logfile.exists() and " ready." in logfile.read_text(), timeout=20)
        worker.send_signal(signal.SIGTERM)
        printed, _ = worker.communicate(timeout=20)
    finally:
        worker.kill()
    assert "worker: Warm shutdown (MainProcess)" in printed, printed[-2000:]
    assert "Warm shutdown" not in logfile.read_text()


def test_a_started_result_expires_with_result_expires(workspace, start, client, redis):
    """Step 12 (after SIGKILL "its stored state stays what it was (STARTED) until the result key expires
    (result_expires), and then reads PENDING"): the STARTED entry is written with the result's TTL
    (the reference keeps results CELERY_RESULT_EXPIRES = 3600 s, step 11)."""
    stack = start(workspace)
    task_id = client.send_task("handson.tasks.hello", ("hello world",)).id
    assert wait_state(redis, task_id, ("STARTED",), timeout=10), state(redis, task_id)
    os.kill(stack.worker.process.pid, signal.SIGKILL)
    ttl = redis.client().ttl(f"celery-task-meta-{task_id}")
    assert 3600 - 60 <= ttl <= 3600, ttl
    assert state(redis, task_id)["status"] == "STARTED"


COUNTDOWN = 4  # seconds: longer than QUICK_RESTORE's visibility timeout (2 s), shorter than a 30 s one


@pytest.mark.parametrize("visibility_timeout, runs", [(2, "more than once"), (30, "once")])
def test_a_countdown_past_the_visibility_timeout_runs_more_than_once(visibility_timeout, runs, tmp_path, start,
                                                                    client, redis):
    """The chapter on Redis as the broker (kombu#337): Kombu's Redis transport hands a countdown task to a
    worker at once, which holds it unacknowledged until it is due; once the visibility timeout has passed the
    restore sweep puts it back on the queue, and a worker (another, or the same one again) runs it too. With a
    visibility timeout longer than the countdown it runs once."""
    options = QUICK_RESTORE.replace('"visibility_timeout": 2', f'"visibility_timeout": {visibility_timeout}')
    workspace = probe_workspace(tmp_path / f"countdown-{visibility_timeout}", options)
    start(workspace, WorkerSpec(node="one"), WorkerSpec(node="two"))
    key = f"probe:runs:{visibility_timeout}"
    client.send_task("handson.tasks.probe_count_runs", args=(key,), countdown=COUNTDOWN)
    ran = redis.client()
    wait_for(lambda: ran.llen(key) >= 2, timeout=COUNTDOWN + 6)
    count = ran.llen(key)
    assert (count >= 2) if runs == "more than once" else (count == 1), (count, ran.lrange(key, 0, -1))


def test_a_task_no_worker_knows_is_rejected_stored_failure_and_gone(workspace, start, client, redis):
    """The chapter on Redis as the broker (a deploy that sends a new task before the workers know it): the worker
    logs "Received unregistered task of type", stores FAILURE NotRegistered, and the message is not requeued."""
    stack = start(workspace)
    task_id = client.send_task("handson.tasks.not_deployed_yet").id
    assert wait_state(redis, task_id, ("FAILURE",), timeout=10), state(redis, task_id)
    assert state(redis, task_id)["result"]["exc_type"] == "NotRegistered"
    assert "Received unregistered task of type 'handson.tasks.not_deployed_yet'" in stack.worker.log()
    control = BrokerControl(redis)
    assert task_id not in control.queued() and task_id not in control.unacknowledged()
