"""`make run`: the hands-on app by hand, on the same services the labs start.

Redis (embedded by default), the Celery workers handson/Procfile declares (one
worker with one process without it) and the single-threaded Django server run
in the foreground with their log lines prefixed by service. Ctrl-C stops them
all. PORT (8000), HANDSON_SLEEP (10) and HANDSON_REDIS (local) are honoured;
--solution serves the reference instead of handson/.
"""
import argparse
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from ..i18n import say
from ..lesson.advice import explain
from ..paths import ROOT
from ..reference import materialize
from ..services.procfile import PROCFILE, ProcfileError, read_procfile
from ..services.redis import RedisUnavailable, choose_redis, wanted_kind
from ..services.stack import Stack, StackSpec
from ..steps import last_step

DEFAULT_SLEEP = "10"  # as in the original hands-on


def _port():
    raw = os.environ.get("PORT", "8000")
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        sys.exit(say(f"PORT={raw!r}: give a port number from 1 to 65535.",
                     f"PORT={raw!r}: 1〜65535 のポート番号を指定してください。"))
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", int(raw)))
        except OSError:
            sys.exit(say(f"Port {raw} is in use. Choose another: PORT=8001 make run",
                         f"ポート {raw} は使用中です。別のポートを指定してください: PORT=8001 make run"))
    return int(raw)


def _sleep():
    raw = os.environ.get("HANDSON_SLEEP", DEFAULT_SLEEP)
    try:
        if 0 < float(raw) <= 3600:
            return raw
    except ValueError:
        pass
    sys.exit(say(f"HANDSON_SLEEP={raw!r}: give a number of seconds above 0.",
                 f"HANDSON_SLEEP={raw!r}: 0 より大きい秒数を指定してください。"))


class LogFollower:
    """Prints the new lines of each service's log file with a prefix (like `tail -f`)."""

    def __init__(self, files):
        self.files = {name: [Path(path), 0] for name, path in files.items()}
        self.width = max(map(len, files))

    def print_new(self):
        for name, state in self.files.items():
            path, offset = state
            if not path.exists():
                continue
            with open(path, "rb") as log:
                log.seek(offset)
                chunk = log.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # hold back a half-written line
            state[1] = offset + len(complete)
            for line in complete.decode("utf-8", "replace").splitlines():
                print(f"{name:<{self.width}} | {line}", flush=True)


def declared_stack(workspace):
    """The workers of handson/Procfile when it exists (exits with the reason when a line is refused)."""
    if not (Path(workspace) / PROCFILE).exists():
        return StackSpec()
    try:
        return StackSpec(workers=tuple(read_procfile(Path(workspace) / PROCFILE)))
    except ProcfileError as problem:
        sys.exit(str(problem))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solution", action="store_true", help="serve the reference solution")
    args = parser.parse_args(argv)
    port, sleep = _port(), _sleep()
    run_dir = Path(tempfile.mkdtemp(prefix="celery-handson-run-"))
    workspace = materialize(last_step(), run_dir / "reference") if args.solution else ROOT
    stack = None
    try:
        spec = declared_stack(workspace)
        redis, _ = choose_redis(wanted_kind(), run_dir)
        stack = Stack(workspace, redis, sleep, run_dir, spec, web_port=port).start()
    except RedisUnavailable as problem:
        shutil.rmtree(run_dir, ignore_errors=True)
        sys.exit(str(problem))
    except SystemExit:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    follower = LogFollower(stack.log_files())
    print(say(f"Redis: {redis.describe()} (HANDSON_REDIS=docker: a container; the labs use the same kind)",
              f"Redis: {redis.describe()} (HANDSON_REDIS=docker でコンテナ。ラボも同じ種類を使います)"), flush=True)
    try:
        follower.print_new()
        for worker in stack.workers:
            if worker.problem:
                print(say(f"\nThe worker {worker.spec.node} is not running (fine for step 1, needed from step 2 on):\n",
                          f"\nワーカー {worker.spec.node} は起動していません (ステップ 1 では問題なし、ステップ 2 から必要):\n")
                      + explain(worker.problem, with_log=False))
        if stack.web.problem:
            sys.exit(explain(stack.web.problem))
        print(say(f"\n  Open {stack.web.url}/handson  (HANDSON_SLEEP={sleep} s; Ctrl-C stops everything)\n",
                  f"\n  {stack.web.url}/handson を開いてください (HANDSON_SLEEP={sleep} 秒、Ctrl-C ですべて停止)\n"),
              flush=True)
        while stack.web.process.running():
            follower.print_new()
            time.sleep(0.2)  # a tail -f refresh, not a wait on a condition
        follower.print_new()
        return 1
    except KeyboardInterrupt:
        print(say("\nStopping the web server, the workers and Redis...", "\nWeb サーバー、ワーカー、Redis を停止します..."))
        return 0
    finally:
        stack.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        print(say("Stopped: the web server, the worker and Redis are gone.",
                  "停止しました: Web サーバー、ワーカー、Redis はすべて終了しています。"), flush=True)


if __name__ == "__main__":
    sys.exit(main())
