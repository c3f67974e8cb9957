"""How long the lab takes, and how much of that is not the tasks' own sleeping.

`make bench` runs every step (from labs/steps.toml) against the reference, serial
and in parallel (pytest-xdist, one stack per xdist worker), each with
HANDSON_SLEEP=1 and HANDSON_SLEEP=2. The wall time grows by k seconds for every
second of sleep (k = the sleeps the lessons must wait through), so

    wall(sleep) = overhead + k * sleep   ->   k = wall(2) - wall(1),  overhead = wall(1) - k

It also starts a worker alone a few times and reports how long it takes to be
ready, times each step alone on the reference (a learner whose edit is right), and
times the verdict on each classic wrong edit (dev/wrong_edits.py): seconds from
`pytest` start to its exit on the step that judges it, the loop a learner repeats.
`--edits [WORDS]` times only the wrong edits (those whose "step N  name" holds WORDS).
It reports figures; it asserts nothing (speed is not a test).

`make bench` with --at-scale (python -m labs.harness.dev.bench --at-scale) instead fills the
result backend of the reference with 10,000 and then 100,000 tasks and times, side by side,
the page, the JSON API and StopAllTasks against the original hands-on's way: `KEYS *` on the
result backend and one GET per key, and one revoke broadcast per task id.
"""
import datetime
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ..reference import materialize
from ..runner import run_labs
from ..services import processes, sweep
from ..services.redis import LocalRedis
from ..services.stack import Stack, StackSpec
from ..steps import last_step, load_steps, modules
from .wrong_edits import EDITS

PARALLEL = ["-n", "auto", "--dist", "loadfile"]


def lab_wall_time(sleep, parallel=False, repeats=2):
    """The fastest of ``repeats`` runs (a busy machine only ever adds time) and its seconds per step."""
    env = dict(os.environ, HANDSON_SLEEP=str(sleep), HANDSON_REDIS="local", HANDSON_DISCARD_LOGS="1")
    best = None
    for _ in range(repeats):
        run = run_labs(modules(), pytest_args=["--solution", *(PARALLEL if parallel else [])], env=env)
        failed = [o for o in run.outcomes if o.status != "passed"]
        if failed or not run.outcomes:
            sys.exit(f"the lab did not pass with HANDSON_SLEEP={sleep}:\n{run.output[-3000:]}")
        if best is None or run.seconds < best.seconds:
            best = run
    per_step = {module: sum(o.duration for o in best.for_module(module)) for module in modules()}
    return best.seconds, per_step


def step_alone_times(repeats=3):
    """{module: [seconds from pytest start to exit, one per run]} of each step alone on the reference at
    HANDSON_SLEEP=1: the loop of a learner whose step is right."""
    env = dict(os.environ, HANDSON_SLEEP="1", HANDSON_REDIS="local", HANDSON_DISCARD_LOGS="1")
    times = {}
    for module in modules():
        for _ in range(repeats):
            run = run_labs([module], pytest_args=["--solution"], env=env)
            if not run.outcomes or any(o.status != "passed" for o in run.outcomes):
                sys.exit(f"{module} did not pass on the reference:\n{run.output[-3000:]}")
            times.setdefault(module, []).append(run.seconds)
    return times


def worker_ready_times(tries=7, prewarmed=False):
    """Seconds from starting a worker process to its "ready." line, on a Redis already up: a new Python
    each time (as `make run` and grading start it), or forked from the pre-warmed one (services/prewarmed.py,
    as lab runs start it; its first start, which waits for the server's imports, is not counted)."""
    if prewarmed:
        if not sweep.become_subreaper():
            return []
        processes.prewarm()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        workspace = materialize(last_step(), scratch / "workspace")
        redis = LocalRedis(scratch).start()
        times = []
        try:
            for attempt in range(tries + (1 if prewarmed else 0)):
                started = time.monotonic()
                with Stack(workspace, redis, 1, scratch / f"try{attempt}", StackSpec(web=False),
                           own_redis=False) as stack:
                    times.append(time.monotonic() - started)
                    if stack.problems():
                        sys.exit(str(stack.problems()))
        finally:
            redis.stop()
        return times[1:] if prewarmed else times


def wrong_edit_times(matching=""):
    """[(edit, seconds to its verdict, seconds from pytest start to exit, the verdict's first line)] at
    HANDSON_SLEEP=1, for the edits whose "step N  name" holds ``matching``. The verdict is the failure that
    judges the edit (its named test's, or the module's first), timed from pytest's start to the moment the
    lab prints it (plugin/instant.py): what a learner running the step waits for."""
    import subprocess

    from ..paths import ROOT
    from ..plugin.instant import PREFIX

    env = dict(os.environ, HANDSON_SLEEP="1", HANDSON_REDIS="local", HANDSON_DISCARD_LOGS="1", HANDSON_LANG="en")
    rows = []
    for edit in [edit for edit in EDITS if matching.lower() in f"step {edit.step}  {edit.name}".lower()]:
        with tempfile.TemporaryDirectory() as scratch:
            workspace = materialize(edit.base, Path(scratch) / "workspace")
            edit.apply(workspace)
            module = load_steps()[edit.step - 1].module
            started = time.monotonic()
            child = subprocess.Popen([sys.executable, "-m", "pytest", module, "-q", "-p", "no:cacheprovider",
                                      "--workspace", str(workspace)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
            verdict, first = None, "(passed!)"
            wanted = f"{PREFIX}{module}::{edit.test}:" if edit.test else PREFIX
            for line in child.stdout:
                if verdict is None and line.startswith(wanted):
                    verdict = time.monotonic() - started
                    first = line[len(PREFIX):].split(": ", 1)[-1].strip()  # after "nodeid: "
            child.wait()
            rows.append((edit, verdict, time.monotonic() - started, first))
    return rows


AT_SCALE = (10_000, 100_000)
PER_ID_BUDGET = 20.0  # seconds the per-id revoke loop may run before its total is extrapolated


def _fill(client, count, finished):
    """``count`` tasks in the app's task log (handson/tasklog.py's keys), each with a SUCCESS entry
    in the result backend when ``finished``, else none (queued). Returns their ids."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    now = datetime.datetime.now(datetime.timezone.utc)
    for first in range(0, count, 5000):
        with client.pipeline(transaction=False) as pipe:
            for offset, task_id in enumerate(ids[first:first + 5000]):
                sent = now - datetime.timedelta(seconds=count - first - offset)
                pipe.hset(f"handson:task:{task_id}", mapping={
                    "name": "handson.tasks.hello", "args": "('hello world',)", "args_json": '["hello world"]',
                    "sent": sent.isoformat(), "started": sent.isoformat()})
                pipe.zadd("handson:tasks", {task_id: sent.timestamp()})
                if finished:
                    pipe.set(f"celery-task-meta-{task_id}", json.dumps({
                        "status": "SUCCESS", "result": None, "traceback": None, "children": [],
                        "date_done": sent.isoformat(), "task_id": task_id}))
            pipe.execute()
    return ids


def _best(action, repeats=5):
    """The fastest of ``repeats`` runs of ``action``, in seconds."""
    best = None
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        took = time.perf_counter() - started
        best = took if best is None else min(best, took)
    return best


def _naive_list(client):
    """The original hands-on's task list: every key of the result backend, one GET each (the
    app's own task log lives in the same database: its hashes answer WRONGTYPE, one round trip each too)."""
    import redis

    tasks = []
    for key in client.keys("*"):
        try:
            raw = client.get(key)
        except redis.ResponseError:
            continue
        if key.startswith(b"celery-task-meta-") and raw:
            tasks.append(json.loads(raw))
    return tasks


def _per_id_stop(app, ids):
    """The per-id way: read each state, send one revoke broadcast per unfinished id.
    Returns (seconds, ids handled); stops after PER_ID_BUDGET seconds."""
    started = time.perf_counter()
    for done, task_id in enumerate(ids, 1):
        if app.AsyncResult(task_id).state not in ("SUCCESS", "FAILURE", "REVOKED"):
            app.AsyncResult(task_id).revoke(terminate=True)
        if time.perf_counter() - started > PER_ID_BUDGET:
            return time.perf_counter() - started, done
    return time.perf_counter() - started, len(ids)


def at_scale(counts=AT_SCALE):
    """Yields rows of (tasks, what, this app's seconds, the original way's seconds, note)."""
    import redis
    import requests
    from celery import Celery

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        workspace = materialize(last_step(), scratch / "workspace")
        with Stack(workspace, LocalRedis(scratch), 1, scratch / "logs") as stack:
            if stack.problems():
                sys.exit(str(stack.problems()))
            backend = redis.Redis.from_url(stack.redis.result_backend_url)
            app = Celery("bench", broker=stack.redis.broker_url, backend=stack.redis.result_backend_url)
            web = requests.Session()
            url = stack.web.url
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', web.get(url + "/handson").text).group(1)

            def stop_all():
                answer = web.post(url + "/handson/task_step4", data={"csrfmiddlewaretoken": token},
                                  allow_redirects=False)
                assert answer.status_code == 302, answer.text[:300]

            for count in counts:
                backend.flushdb()
                _fill(backend, count, finished=True)
                page = _best(lambda: web.get(url + "/handson").raise_for_status())
                api = _best(lambda: web.get(url + "/handson/api/tasks").raise_for_status())
                naive = _best(lambda: _naive_list(backend), repeats=2)
                yield count, "page /handson (50 newest of N finished)", page, naive, "KEYS * + GET per key"
                yield count, "GET /handson/api/tasks", api, naive, "KEYS * + GET per key"
                backend.flushdb()
                ids = _fill(backend, count, finished=False)
                stop = _best(stop_all, repeats=1)
                per_id, handled = _per_id_stop(app, ids)
                note = "state + revoke per id"
                if handled < len(ids):
                    note += f" (stopped after {handled} ids in {per_id:.0f} s: extrapolated)"
                    per_id = per_id * len(ids) / handled
                yield count, "StopAllTasks (N queued)", stop, per_id, note
            app.close()


# What the app sends when its Step2 button is pressed, N times over, from a Python of its own (so that
# handson/tasklog.py records every one, as it records a press).
_SEND = """
import sys, django
django.setup()
from handson.tasks import hello
for _ in range(int(sys.argv[1])):
    hello.delay("hello world")
"""


def stop_effect(count, sleep=5, watch=20.0):
    """StopAllTasks over ``count`` real queued tasks, on the last reference's own stack (its Procfile's
    workers), one running: (seconds the press took, how many ran after it, how many are still queued)."""
    import redis
    import requests

    from ..services.procfile import PROCFILE, read_procfile

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        workspace = materialize(last_step(), scratch / "workspace")
        spec = StackSpec.from_procfile(read_procfile(workspace / PROCFILE))
        with Stack(workspace, LocalRedis(scratch), sleep, scratch / "logs", spec) as stack:
            if stack.problems():
                sys.exit(str(stack.problems()))
            import subprocess

            subprocess.run([sys.executable, "-c", _SEND, str(count)], cwd=workspace, env=stack.env, check=True)
            backend = redis.Redis.from_url(stack.redis.result_backend_url)
            ids = [raw.decode() for raw in backend.zrange("handson:tasks", 0, -1)]

            def started():
                # A task killed as it started (a held one that terminate=True flagged, its id forgotten by the
                # worker) is stored REVOKED "terminated": it started too.
                return [task_id for task_id, raw in zip(ids, _metas(backend, ids))
                        if raw and (json.loads(raw).get("status") in ("STARTED", "SUCCESS")
                                    or b'"terminated"' in raw)]

            deadline = time.monotonic() + 60
            while not started() and time.monotonic() < deadline:
                time.sleep(0.1)
            before = set(started())
            web = requests.Session()
            url = stack.web.url
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', web.get(url + "/handson").text).group(1)
            pressed = time.perf_counter()
            answer = web.post(url + "/handson/task_step4", data={"csrfmiddlewaretoken": token}, allow_redirects=False)
            press = time.perf_counter() - pressed
            assert answer.status_code == 302, answer.text[:300]
            time.sleep(watch)  # the bench watches a fixed window: it reports, it asserts nothing
            ran = set(started()) - before
            queued = redis.Redis.from_url(stack.redis.broker_url).llen("celery")
            return press, len(ran), queued


def _metas(client, ids):
    found = []
    for first in range(0, len(ids), 5000):
        found += client.mget([f"celery-task-meta-{task_id}" for task_id in ids[first:first + 5000]])
    return found


def print_at_scale():
    print(f"cores: {os.cpu_count()}; python {sys.version.split()[0]}; Redis: embedded (LocalRedis)")
    print(f"\n{'tasks':>8}  {'what':<42} {'this app':>10} {'original':>10}  original way")
    for count, what, ours, theirs, note in at_scale():
        print(f"{count:>8}  {what:<42} {ours * 1000:8.1f}ms {theirs * 1000:8.0f}ms  {note}", flush=True)
    print("\nStopAllTasks over real queued hello tasks (the last reference's Procfile workers, HANDSON_SLEEP=5, "
          "one running; watched for 20 s after the press):")
    for count in AT_SCALE:
        press, ran, queued = stop_effect(count)
        print(f"{count:>8}  press {press:5.2f} s   ran after StopAllTasks: {ran} of {count:,}   "
              f"still queued: {queued}", flush=True)
    return 0


def print_wrong_edits(matching=""):
    print("classic wrong edits, HANDSON_SLEEP=1: seconds from pytest start to the verdict (the failure that judges "
          "the edit, printed as it happens), and to exit; the verdict's first words:")
    for edit, verdict, seconds, first in wrong_edit_times(matching):
        shown = f"{verdict:5.1f} s" if verdict is not None else "  none "
        print(f"   step {edit.step:>2}  {edit.name:<55} {shown}  (exit {seconds:5.1f} s)  {first[:60]}", flush=True)
    return 0


def main():
    args = sys.argv[1:]
    if "--at-scale" in args:
        return print_at_scale()
    if "--edits" in args:
        # A maintainer's loop: only the wrong edits (those whose "step N  name" holds the next argument).
        following = args[args.index("--edits") + 1:]
        return print_wrong_edits(following[0] if following else "")
    print(f"cores: {os.cpu_count()}; python {sys.version.split()[0]}; steps: {len(modules())}")
    for how, prewarmed in (("a new Python", False), ("pre-warmed", True)):
        ready = worker_ready_times(prewarmed=prewarmed)
        if ready:
            print(f"worker ready (start to 'ready.'), {how}: median {statistics.median(ready):.2f} s, "
                  f"min {min(ready):.2f} s, max {max(ready):.2f} s over {len(ready)} starts")
    rows = []
    for label, parallel in (("serial", False), ("parallel (-n auto --dist loadfile)", True)):
        one, per_step = lab_wall_time(1, parallel)
        two, _ = lab_wall_time(2, parallel)
        sleeps = max(two - one, 0.0)
        rows.append((label, one, two, sleeps, one - sleeps, per_step))
    print("\nwhole lab on the reference (pytest start to exit):")
    print(f"{'':36} {'wall @1s':>9} {'wall @2s':>9} {'sleeping':>9} {'overhead':>9}")
    for label, one, two, sleeps, overhead, _ in rows:
        print(f"{label:36} {one:8.1f}s {two:8.1f}s {sleeps:8.1f}s {overhead:8.1f}s")
    print("\nseconds in each step's tests at HANDSON_SLEEP=1, serial (fixture start-up in the first):")
    for module, seconds in rows[0][5].items():
        print(f"   {module}: {seconds:.1f} s")
    print("\neach step alone on the reference, HANDSON_SLEEP=1, pytest start to exit (median, min-max of 3):")
    for module, seconds in step_alone_times().items():
        print(f"   {module}: {statistics.median(seconds):.1f} s ({min(seconds):.1f}-{max(seconds):.1f})", flush=True)
    print()
    return print_wrong_edits()


if __name__ == "__main__":
    sys.exit(main())
