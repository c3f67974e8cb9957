"""How long the lab takes, and how much of that is not the tasks' own sleeping.

`make bench` runs every step against the reference twice, with HANDSON_SLEEP=1
and HANDSON_SLEEP=2. The lab's wall time grows by k seconds for every second of
sleep (k = the sleeps the lessons must wait through), so

    wall(sleep) = overhead + k * sleep   ->   k = wall(2) - wall(1),  overhead = wall(1) - k

It also starts the worker alone a few times and reports how long it takes to be
ready. It reports figures; it asserts nothing (speed is not a test).
"""
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .app_env import app_env
from .redis import LocalRedis
from .runner import run_labs
from .solutions import LAST_STEP, materialize
from .worker import CeleryWorker

MODULES = [f"labs/test_step{number}.py" for number in range(1, LAST_STEP + 1)]


def lab_wall_time(sleep):
    env = dict(os.environ, HANDSON_SLEEP=str(sleep), HANDSON_REDIS="local")
    run = run_labs(MODULES, pytest_args=["--solution"], env=env)
    failed = [o for o in run.outcomes if o.status != "passed"]
    if failed or not run.outcomes:
        sys.exit(f"the lab did not pass with HANDSON_SLEEP={sleep}:\n{run.output[-3000:]}")
    per_step = {module: sum(o.duration for o in run.for_module(module)) for module in MODULES}
    return run.seconds, per_step


def worker_ready_times(tries=5):
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        workspace = materialize(LAST_STEP, scratch / "workspace")
        redis = LocalRedis(scratch).start()
        env = app_env(workspace, redis, sleep=1)
        times = []
        try:
            for attempt in range(tries):
                started = time.monotonic()
                worker = CeleryWorker(workspace, redis, env, scratch / f"worker{attempt}").start()
                times.append(time.monotonic() - started)
                worker.stop()
                if worker.problem:
                    sys.exit(worker.problem)
        finally:
            redis.stop()
        return times


def main():
    print(f"cores: {os.cpu_count()}; python {sys.version.split()[0]}")
    ready = worker_ready_times()
    print(f"worker ready (start to 'ready.'): median {statistics.median(ready):.2f} s, "
          f"max {max(ready):.2f} s over {len(ready)} starts")
    one, steps_one = lab_wall_time(1)
    two, _ = lab_wall_time(2)
    sleeps = max(two - one, 0.0)
    print(f"whole lab on the reference, HANDSON_SLEEP=1: {one:.1f} s wall (pytest start to exit)")
    print(f"whole lab on the reference, HANDSON_SLEEP=2: {two:.1f} s wall")
    print(f"-> {sleeps:.1f} s of it is the tasks' sleeping at HANDSON_SLEEP=1; overhead {one - sleeps:.1f} s")
    for module, seconds in steps_one.items():
        print(f"   {module}: {seconds:.1f} s in its tests (fixture start-up included in the first)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
