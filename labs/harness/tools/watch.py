"""`make watch STEP=n`: check step n again every time you save a file under handson/.

    python -m labs.harness.tools.watch [N] [pytest options...]

Every run is a new `pytest labs/test_stepN.py` process, which starts a fresh
Celery worker and Django server: what runs is the code you just saved. The
screen is cleared between runs, and Enter runs it again at any time.

File events do not reach every folder (network drives, some WSL set-ups):
WATCH_POLL=1 looks at the files every 0.3 s instead; WATCH_ENTER=1 turns
watching off and runs on Enter only, which is also what happens, with a
message, when file watching cannot start. Ctrl-C stops; a run in progress
first stops the services it started.
"""
import argparse
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import watchfiles
from rich.console import Console

from ..i18n import say
from ..paths import ROOT
from ..plugin import progress
from ..steps import load_steps
from .status import find_step, next_step


def _watch_files(path, events, stop, ready, poll):
    """Thread: put ("save", names) on ``events`` for every batch of saves under ``path``."""
    try:
        # yield_on_timeout makes the first (empty) yield prove the watcher is armed.
        for changes in watchfiles.watch(path, stop_event=stop, yield_on_timeout=True, rust_timeout=200,
                                        force_polling=True if poll else None, raise_interrupt=False):
            ready.set()
            if changes:
                events.put(("save", sorted({Path(name).name for _, name in changes})))
    except Exception as problem:  # noqa: BLE001 - e.g. too many watches: Enter still works, say why
        events.put(("broken", f"{type(problem).__name__}: {problem}"))
    finally:
        ready.set()


def _read_enter(events):
    """Thread: put ("enter", None) on ``events`` for every Enter; ("eof", None) when input ends."""
    for _ in sys.stdin:
        events.put(("enter", None))
    events.put(("eof", None))


def _run(command, cwd):
    # The run gets a session of its own, so Ctrl-C reaches only this process, which
    # passes it on exactly once: pytest then stops the worker, server and Redis it started.
    process = subprocess.Popen(command, cwd=cwd, start_new_session=True)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        raise


class Watcher:
    def __init__(self, step, command, path, *, poll=False, enter_only=False, console=None):
        self.step, self.command, self.path = step, command, Path(path)
        self.poll, self.watching = poll, not enter_only
        self.console = console or Console(highlight=False)
        self.events, self.stop, self.ready = queue.Queue(), threading.Event(), threading.Event()

    def run_forever(self):
        """Run, then wait for a save or Enter, and again, until Ctrl-C (returns 0) or nothing can trigger."""
        if self.watching:
            threading.Thread(target=_watch_files, daemon=True,
                             args=(self.path, self.events, self.stop, self.ready, self.poll)).start()
        threading.Thread(target=_read_enter, args=(self.events,), daemon=True).start()
        reason, runs = say("first run", "初回"), 0
        try:
            while True:
                runs += 1
                self._one_run(runs, reason)
                reason = self._next_trigger()
                if reason is None:
                    return 1
        except KeyboardInterrupt:
            self.console.print(say("\nWatch stopped.", "\nウォッチを終了しました。"))
            return 0
        finally:
            self.stop.set()

    def _one_run(self, runs, reason):
        self.console.clear()
        stamp = datetime.now().strftime("%H:%M:%S")
        self.console.rule(say(f"Step {self.step.number} · run {runs} · {stamp} · {reason}",
                              f"ステップ {self.step.number} · {runs} 回目 · {stamp} · {reason}"))
        code = _run(self.command, ROOT)
        n = self.step.number
        if code == 0:
            self.console.print(say(f"✔ Step {n} passes. `make status` shows what is next.",
                                   f"✔ ステップ {n} に合格しました。次は `make status` で確認できます。"),
                               style="bold green")
        else:
            self.console.print(say(f"✘ Step {n} does not pass yet: read the first failure above. "
                                   f"Stuck? make hint STEP={n}",
                                   f"✘ ステップ {n} はまだ合格していません。上の最初の失敗を読んでください。"
                                   f"困ったら make hint STEP={n}"), style="bold red")
        if self.watching:
            self.ready.wait(timeout=10)  # say "watching" only once it is true
        self._say_mode()

    def _say_mode(self):
        if not self.watching:
            self.console.print(say("Press Enter to run again (Ctrl-C stops).",
                                   "Enter でもう一度実行します (Ctrl-C で終了)。"))
            return
        how = say(" (polling every 0.3 s)", " (0.3 秒ごとに確認)") if self.poll else ""
        self.console.print(say(f"Watching {self.path}{how}: save a file, or press Enter, to run again. "
                               "Ctrl-C stops.",
                               f"{self.path} を監視中{how}: ファイルを保存するか Enter を押すと再実行します。"
                               "Ctrl-C で終了。"))
        if not self.poll:
            self.console.print(say("No new run after a save? Files on a network drive or a WSL /mnt path "
                                   "send no events: start it with WATCH_POLL=1, or press Enter.",
                                   "保存しても再実行されないときは、ネットワークドライブや WSL の /mnt 上では"
                                   "ファイルの通知が届きません。WATCH_POLL=1 を付けて起動するか、Enter を押してください。"),
                               style="dim")

    def _next_trigger(self):
        """Block until a save or Enter; return why (for the header), or None when nothing can trigger."""
        while True:
            kind, detail = self.events.get()
            if kind == "broken":
                self.watching = False
                self.console.print(say(f"File watching stopped working ({detail}). Falling back: "
                                       "press Enter to run again.",
                                       f"ファイルの監視が使えなくなりました ({detail})。代わりに Enter で再実行します。"),
                                   style="yellow")
            elif kind == "eof" and not self.watching:
                self.console.print(say("No input and no file watching: nothing can start a run.",
                                       "入力もファイル監視もないため、再実行できません。"))
                return None
            elif kind in ("save", "enter"):
                break
        while not self.events.empty():  # saves that came together make one run
            self.events.get_nowait()
        if kind == "enter":
            return say("Enter", "Enter")
        return say(f"saved {', '.join(detail)}", f"保存: {', '.join(detail)}")


def main(argv):
    parser = argparse.ArgumentParser(prog="make watch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", nargs="?", help="step number (default: the next step to do)")
    # For the project's tests: a cheap command and a scratch folder, through the same loop.
    parser.add_argument("--command", help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, default=ROOT / "handson", help=argparse.SUPPRESS)
    args, pytest_args = parser.parse_known_args(argv)
    steps = load_steps()
    step = find_step(steps, args.step) if args.step else next_step(steps, progress.load()) or steps[-1]
    if step is None:
        return 2
    command = (shlex.split(args.command) if args.command
               else [sys.executable, "-m", "pytest", step.module, *pytest_args])
    # Ctrl-C is how a learner stops it, even when started from something that ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return Watcher(step, command, args.path, poll=_flag("WATCH_POLL"),
                   enter_only=_flag("WATCH_ENTER")).run_forever()


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "yes", "true")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
