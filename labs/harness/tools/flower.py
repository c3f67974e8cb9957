"""`make flower`: Flower, Celery's web monitor, beside a running `make run`.

It finds the run's broker and result backend in .lab/run.json (written by `make run`
while it runs) and starts Flower on 127.0.0.1:FLOWER_PORT (5555) in the foreground,
its log lines prefixed. Ctrl-C stops it; it also stops when the run ends.
"""
import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil

from ..i18n import say
from ..services.flower import Flower, FlowerUnavailable, flower_port
from ..state import read_json
from .run import STATE_FILE, LogFollower, Stopped, show, stop_on_sigterm_and_sighup

TICK = 0.2


def running_run():
    """The state of a `make run` that is running now, or None."""
    state = read_json(STATE_FILE, {})
    pid = state.get("pid")
    if not pid or not state.get("broker") or not psutil.pid_exists(pid):
        return None
    return state


def main(argv=None):
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    try:
        port = flower_port()
    except FlowerUnavailable as problem:
        sys.exit(str(problem))
    state = running_run()
    if state is None:
        sys.exit(say("make run is not running, so Flower has nothing to watch. Start it first (make run), "
                     "then make flower in a second terminal; or start both at once: FLOWER=1 make run",
                     "make run が動いていないため、Flower が監視する対象がありません。先に make run を起動し、"
                     "別の端末で make flower を実行してください。両方を一度に起動するには: FLOWER=1 make run"))
    stop_on_sigterm_and_sighup()
    log_dir = Path(tempfile.mkdtemp(prefix="celery-handson-flower-"))
    flower = None
    try:
        flower = Flower(state["broker"], state["result_backend"], log_dir, port).start()
        follower = LogFollower({"flower": flower.process.log_path})
        follower.print_new()
        show(say(f"\n  Flower: {flower.url}  (watching the run at {state['web']}; Ctrl-C stops Flower)\n",
                 f"\n  Flower: {flower.url}  ({state['web']} の実行を監視中、Ctrl-C で Flower を停止)\n"))
        while flower.process.running() and psutil.pid_exists(state["pid"]):
            follower.print_new()
            time.sleep(TICK)  # the refresh of a watch, not a wait on a condition
        follower.print_new()
        if not psutil.pid_exists(state["pid"]):
            show(say("make run has ended, so Flower stops too.", "make run が終了したため Flower も停止します。"))
            return 0
        show(say("Flower has stopped; its log is above.", "Flower が停止しました。ログは上にあります。"))
        return 1
    except FlowerUnavailable as problem:
        raise SystemExit(str(problem)) from None
    except (KeyboardInterrupt, Stopped):
        return 0
    finally:
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)
        if flower is not None:
            flower.stop()
        shutil.rmtree(log_dir, ignore_errors=True)
        show(say("Flower has stopped.", "Flower を停止しました。"))


if __name__ == "__main__":
    sys.exit(main())
