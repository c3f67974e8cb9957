"""How long the lab takes, and how much of that is not the tasks' own sleeping.

`make bench` runs every step (from labs/steps.toml) against the reference, serial
and in parallel (pytest-xdist, one stack per xdist worker), each with
HANDSON_SLEEP=1 and HANDSON_SLEEP=2. The wall time grows by k seconds for every
second of sleep (k = the sleeps the lessons must wait through), so

    wall(sleep) = overhead + k * sleep   ->   k = wall(2) - wall(1),  overhead = wall(1) - k

It also starts a worker alone a few times and reports how long it takes to be
ready. It reports figures; it asserts nothing (speed is not a test).
"""
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ..reference import materialize
from ..runner import run_labs
from ..services.redis import LocalRedis
from ..services.stack import Stack, StackSpec
from ..steps import last_step, modules

PARALLEL = ["-n", "auto", "--dist", "loadfile"]


def lab_wall_time(sleep, parallel=False):
    env = dict(os.environ, HANDSON_SLEEP=str(sleep), HANDSON_REDIS="local", HANDSON_DISCARD_LOGS="1")
    run = run_labs(modules(), pytest_args=["--solution", *(PARALLEL if parallel else [])], env=env)
    failed = [o for o in run.outcomes if o.status != "passed"]
    if failed or not run.outcomes:
        sys.exit(f"the lab did not pass with HANDSON_SLEEP={sleep}:\n{run.output[-3000:]}")
    per_step = {module: sum(o.duration for o in run.for_module(module)) for module in modules()}
    return run.seconds, per_step


def worker_ready_times(tries=7):
    """Seconds from starting a worker process to its "ready." line, on a Redis already up."""
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        workspace = materialize(last_step(), scratch / "workspace")
        redis = LocalRedis(scratch).start()
        times = []
        try:
            for attempt in range(tries):
                started = time.monotonic()
                with Stack(workspace, redis, 1, scratch / f"try{attempt}", StackSpec(web=False),
                           own_redis=False) as stack:
                    times.append(time.monotonic() - started)
                    if stack.problems():
                        sys.exit(str(stack.problems()))
        finally:
            redis.stop()
        return times


def main():
    print(f"cores: {os.cpu_count()}; python {sys.version.split()[0]}; steps: {len(modules())}")
    ready = worker_ready_times()
    print(f"worker ready (start to 'ready.'): median {statistics.median(ready):.2f} s, "
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
