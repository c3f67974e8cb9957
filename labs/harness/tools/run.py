"""`make run`: the hands-on app by hand, on the same services the labs start.

Redis (embedded by default), the Celery workers handson/Procfile declares (one
worker with one process without it) and the single-threaded Django server run
in the foreground with their log lines prefixed by service. Ctrl-C stops them
all, as do SIGTERM and a closed terminal (SIGHUP). Every service is watched: a
worker that stops is restarted (make run gives up after a few quick deaths), and
when Redis or the web server stops, make run says so with its log and ends.
The workers send task events (-E) and the web app task-sent events, so that
Flower (--flower, or `make flower` beside a running `make run`) shows every task.
PORT (8000), HANDSON_SLEEP (10), HANDSON_REDIS (local) and FLOWER_PORT (5555) are
honoured; --solution serves the reference instead of handson/.
"""
import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ..i18n import say
from ..lesson.advice import explain
from ..paths import ROOT
from ..reference import materialize
from ..services.flower import Flower, FlowerUnavailable, flower_port
from ..services.ports import port_is_free
from ..services.procfile import PROCFILE, ProcfileError, read_procfile
from ..services.redis import RedisUnavailable, choose_redis, wanted_kind
from ..services.stack import Stack, StackSpec
from ..state import lab_dir, read_json, write_json
from ..steps import last_step

DEFAULT_SLEEP = "10"  # as in the original hands-on
STATE_FILE = "run.json"  # in .lab/: where a running `make run` keeps its broker, for `make flower`
TICK = 0.2  # seconds between two looks at the services (a stop is told within 2 s)
QUICK_DEATHS, QUICK_WINDOW = 3, 60  # a worker that stops this often within this many seconds is not restarted
LOG_LINES = 15  # last lines of a stopped service's log shown with the message


class Stopped(Exception):
    """SIGTERM or SIGHUP (a closed terminal): stop everything, as Ctrl-C does."""


def _raise_stopped(number, _frame):
    raise Stopped(signal.Signals(number).name)


def stop_on_sigterm_and_sighup():
    """From now on a kill or a closed terminal raises Stopped, so that the caller's clean-up
    (its `except Stopped` and `finally`) runs as it does for Ctrl-C, instead of the process
    dying with its services left running. Shared by `make run` and `make flower`."""
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, _raise_stopped)


def show(text=""):
    """print() that survives a closed terminal (SIGHUP: writing to it fails)."""
    try:
        print(text, flush=True)
    except OSError:
        pass


def _port():
    """PORT as a number (exits when it is not one); _refuse_taken() tells whether it is free."""
    raw = os.environ.get("PORT", "8000")
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        sys.exit(say(f"PORT={raw!r}: give a port number from 1 to 65535.",
                     f"PORT={raw!r}: 1〜65535 のポート番号を指定してください。"))
    return int(raw)


def _refuse_taken(port):
    """Exits when something listens on the web port (often another `make run`)."""
    if not port_is_free(port):
        sys.exit(say(f"Port {port} is in use. Choose another: PORT=8001 make run",
                     f"ポート {port} は使用中です。別のポートを指定してください: PORT=8001 make run"))


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

    def add(self, name, path):
        self.files[name] = [Path(path), 0]
        self.width = max(self.width, len(name))

    def rewind(self, path):
        """Follow ``path`` from its start again (a restarted service writes a new log)."""
        for state in self.files.values():
            if state[0] == Path(path):
                state[1] = 0

    def print_new(self):
        for name, state in self.files.items():
            path, offset = state
            try:
                with open(path, "rb") as log:
                    if os.fstat(log.fileno()).st_size < offset:
                        offset = 0  # a restarted service begins a new log
                    log.seek(offset)
                    chunk = log.read()
            except FileNotFoundError:
                continue
            complete = chunk[: chunk.rfind(b"\n") + 1]  # hold back a half-written line
            state[1] = offset + len(complete)
            for line in complete.decode("utf-8", "replace").splitlines():
                show(f"{name:<{self.width}} | {line}")


def declared_stack(workspace):
    """The workers of handson/Procfile when it exists (exits with the reason when a line is refused)."""
    if not (Path(workspace) / PROCFILE).exists():
        return StackSpec()
    try:
        return StackSpec.from_procfile(read_procfile(Path(workspace) / PROCFILE))
    except ProcfileError as problem:
        sys.exit(str(problem))


def how_it_ended(process):
    """'killed by SIGKILL' / 'exit code 1' for a process that has ended."""
    code = process.popen.returncode if process.popen else None
    if code is None:
        return say("still running", "実行中")
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return say(f"killed by {name}", f"{name} で強制終了")
    return say(f"exit code {code}", f"終了コード {code}")


def _log_block(process):
    tail = process.log_tail(LOG_LINES)
    return say(f"\nIts last log lines ({process.log_path.name}):\n", f"\n最後のログ ({process.log_path.name}):\n") + \
        "\n".join(f"  {line}" for line in tail.splitlines()) if tail else ""


def celery_command():
    """The celery command of this environment, as the learner can type it from the repository."""
    celery = Path(sys.executable).parent / "celery"
    try:
        return os.path.relpath(celery) if not os.path.relpath(celery).startswith("..") else str(celery)
    except ValueError:
        return str(celery)


def ping_workers(broker_url, timeout=0.5):
    """Node names of the workers that answer a control ping within ``timeout`` s (`celery inspect ping`)."""
    from celery import Celery

    app = Celery("handson-run", broker=broker_url, set_as_current=False,
                 broker_connection_timeout=1, broker_connection_retry=False)
    try:
        return sorted(node for reply in app.control.ping(timeout=timeout) or [] for node in reply)
    except Exception:  # noqa: BLE001 - no answer is the answer
        return []
    finally:
        app.close()


def say_who_answers(stack):
    nodes = ping_workers(stack.redis.broker_url)
    if nodes:
        show(say(f"Workers answering a ping: {', '.join(nodes)}", f"ping に応答するワーカー: {', '.join(nodes)}"))
    else:
        show(say("No worker answers a ping: tasks sent now wait in the queue until a worker runs.",
                 "ping に応答するワーカーがありません: いま送ったタスクはワーカーが動くまでキューで待ちます。"))
    return nodes


class Watch:
    """Looks at every service each TICK: says which one stopped, restarts a worker, ends on Redis or web."""

    def __init__(self, stack, follower, flower=None):
        self.stack, self.follower, self.flower = stack, follower, flower
        self.workers = [worker for worker in stack.workers if not worker.problem]  # step 1 runs without one
        self.deaths = {id(worker): [] for worker in self.workers}
        self._redis_client, self._redis_misses = None, 0

    def redis_alive(self):
        process = getattr(self.stack.redis, "process", None)
        if process is not None and hasattr(process, "running"):
            return process.running()  # the embedded redis-server: its process
        import redis as redis_py  # a container or a server of yours: ask it

        try:
            if self._redis_client is None:
                self._redis_client = redis_py.Redis.from_url(self.stack.redis.broker_url, socket_timeout=0.8,
                                                             socket_connect_timeout=0.8)
            self._redis_client.ping()
            self._redis_misses = 0
        except redis_py.RedisError:
            self._redis_misses += 1  # one slow answer on a busy machine is not a stop
        return self._redis_misses < 2

    def run(self):
        """Until a service that cannot be restarted stops: the exit code (1)."""
        while True:
            self.follower.print_new()
            if not self.redis_alive():
                self.follower.print_new()
                process = getattr(self.stack.redis, "process", None)
                how = f" ({how_it_ended(process)})" if process is not None and hasattr(process, "popen") else ""
                yours = "" if how else f" ({self.stack.redis.broker_url})"
                show(say(f"\nRedis has stopped{how}{yours}. The workers and the web app cannot go on without it "
                         "(it holds the queue and the results), so make run ends. Start it again: make run"
                         + ("" if how else " (once that Redis answers again)"),
                         f"\nRedis が停止しました{how}{yours}。ワーカーも Web アプリも Redis (キューと結果) なしでは"
                         "動けないため make run を終了します。もう一度起動してください: make run"
                         + ("" if how else " (その Redis が再び応答してから)"))
                     + (_log_block(process) if how else ""))
                return 1
            web = self.stack.web.process
            if not web.running():
                self.follower.print_new()
                show(say(f"\nThe web server (Django runserver) has stopped ({how_it_ended(web)}), so make run ends. "
                         "If its log shows an error, fix it in handson/; then start again: make run",
                         f"\nWeb サーバー (Django runserver) が停止しました ({how_it_ended(web)})。make run を終了します。"
                         "ログにエラーがあれば handson/ を直してから、もう一度起動してください: make run")
                     + _log_block(web))
                return 1
            for worker in self.workers:
                if not worker.process.running() and not self.restart(worker):
                    return 1
            if self.flower is not None and not self.flower.process.running():
                self.follower.print_new()
                show(say(f"\nFlower has stopped ({how_it_ended(self.flower.process)}); the app goes on without it. "
                         "Start it again beside this run: make flower",
                         f"\nFlower が停止しました ({how_it_ended(self.flower.process)})。アプリはそのまま動きます。"
                         "もう一度起動するには別の端末で: make flower") + _log_block(self.flower.process))
                self.flower = None
            time.sleep(TICK)  # the refresh of a watch, not a wait on a condition

    def restart(self, worker):
        """Say that ``worker`` stopped and start it again; False when it stops too often (make run ends)."""
        self.follower.print_new()
        now = time.monotonic()
        deaths = self.deaths[id(worker)]
        deaths[:] = [at for at in deaths if now - at < QUICK_WINDOW] + [now]
        name, how, log = worker.spec.node, how_it_ended(worker.process), _log_block(worker.process)
        if len(deaths) >= QUICK_DEATHS:
            show(say(f"\nThe worker {name} has stopped ({how}), {len(deaths)} times within {QUICK_WINDOW} s: "
                     "make run gives up and ends. Fix what its log shows (often an error in handson/tasks.py "
                     "or settings.py), then start again: make run",
                     f"\nワーカー {name} が停止しました ({how})。{QUICK_WINDOW} 秒以内に {len(deaths)} 回目のため、"
                     "make run は再起動をあきらめて終了します。ログに出ているエラー (handson/tasks.py や settings.py "
                     "のことが多い) を直してから、もう一度起動してください: make run") + log)
            return False
        show(say(f"\nThe worker {name} has stopped ({how}). make run starts it again "
                 f"(restart {len(deaths)}; it gives up after {QUICK_DEATHS} stops within {QUICK_WINDOW} s). "
                 "The task it was running is lost unless the task is acks_late; if its log shows an error, "
                 "fix it in handson/.",
                 f"\nワーカー {name} が停止しました ({how})。make run が再起動します "
                 f"({len(deaths)} 回目。{QUICK_WINDOW} 秒以内に {QUICK_DEATHS} 回停止すると終了します)。"
                 "実行中だったタスクは acks_late でなければ失われます。ログにエラーがあれば handson/ を直してください。")
             + log)
        worker.process.stop(first_signal=signal.SIGKILL, grace=2.0)  # what is left of its pool
        self.follower.rewind(worker.process.log_path)
        worker.start()
        if worker.problem:
            self.follower.print_new()
            show(say(f"The worker {name} did not come back, so make run ends:\n",
                     f"ワーカー {name} が再起動できなかったため make run を終了します:\n") + explain(worker.problem))
            return False
        self.follower.print_new()
        show(say(f"The worker {name} is running again.", f"ワーカー {name} が再び動いています。"))
        say_who_answers(self.stack)
        return True


def _write_state(stack, flower):
    write_json(STATE_FILE, {"pid": os.getpid(), "broker": stack.redis.broker_url,
                            "result_backend": stack.redis.result_backend_url, "web": stack.web.url,
                            "flower": flower.url if flower else None})


def _remove_state():
    path = lab_dir() / STATE_FILE
    if read_json(STATE_FILE, {}).get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solution", action="store_true", help="serve the reference solution")
    parser.add_argument("--flower", action="store_true", help="start Flower too (FLOWER_PORT, default 5555)")
    args = parser.parse_args(argv)
    # The settings are checked before the web port is probed: a mistyped FLOWER_PORT is told
    # as such, not hidden behind "Port 8000 is in use" while another run of yours holds 8000.
    port, sleep = _port(), _sleep()
    try:
        monitor_port = flower_port() if args.flower else None
    except FlowerUnavailable as problem:
        sys.exit(str(problem))
    _refuse_taken(port)
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    stop_on_sigterm_and_sighup()
    run_dir = Path(tempfile.mkdtemp(prefix="celery-handson-run-"))
    # The services' own temporary files (Celery's pool makes pymp-* folders that a killed worker
    # cannot remove) go inside the run folder, which goes away with the run.
    (run_dir / "tmp").mkdir()
    os.environ["TMPDIR"] = str(run_dir / "tmp")
    stack = flower = None
    try:
        workspace = materialize(last_step(), run_dir / "reference") if args.solution else ROOT
        declared = declared_stack(workspace)
        spec = replace(declared, events=True)
        redis, _ = choose_redis(wanted_kind(), run_dir)
        stack = Stack(workspace, redis, sleep, run_dir, spec, web_port=port).start()
        follower = LogFollower(stack.log_files())
        show(say(f"Redis: {redis.describe()} (HANDSON_REDIS=docker: a container; the labs use the same kind)",
                 f"Redis: {redis.describe()} (HANDSON_REDIS=docker でコンテナ。ラボも同じ種類を使います)"))
        follower.print_new()
        for worker in stack.workers:
            if worker.problem:
                show(say(f"\nThe worker {worker.spec.node} is not running (fine for step 1, needed from step 2 on):\n",
                         f"\nワーカー {worker.spec.node} は起動していません (ステップ 1 では問題なし、ステップ 2 から必要):\n")
                     + explain(worker.problem, with_log=False))
        if stack.web.problem:
            print(explain(stack.web.problem), file=sys.stderr, flush=True)
            raise SystemExit(1)
        if args.flower:
            try:
                flower = Flower(redis.broker_url, redis.result_backend_url, run_dir, monitor_port).start()
                follower.add("flower", flower.process.log_path)
            except FlowerUnavailable as problem:
                show(str(problem))
        _write_state(stack, flower)
        show(say(f"Look at the workers: {celery_command()} --broker {redis.broker_url} inspect active  "
                 "(or ping, stats, registered, reserved)",
                 f"ワーカーを調べる: {celery_command()} --broker {redis.broker_url} inspect active  "
                 "(ping, stats, registered, reserved も)"))
        if flower:
            show(say(f"Flower (the Celery monitor): {flower.url}", f"Flower (Celery のモニター): {flower.url}"))
        else:
            show(say("Flower (the Celery monitor) beside this run: make flower (or start with FLOWER=1 make run)",
                     "Flower (Celery のモニター) をこの実行と並べて: make flower (または FLOWER=1 make run で起動)"))
        say_who_answers(stack)
        show(say(f"\n  Open {stack.web.url}/handson  (HANDSON_SLEEP={sleep} s; Ctrl-C stops everything)\n",
                 f"\n  {stack.web.url}/handson を開いてください (HANDSON_SLEEP={sleep} 秒、Ctrl-C ですべて停止)\n"))
        return Watch(stack, follower, flower).run()
    except RedisUnavailable as problem:
        raise SystemExit(str(problem)) from None
    except (KeyboardInterrupt, Stopped) as stop:
        # Ctrl-C, a closed terminal or a kill: stop everything and leave nothing behind.
        show(say(f"\n{_why(stop)}Stopping {_what_runs(stack, flower)}...",
                 f"\n{_why(stop)}{_what_runs(stack, flower)}を停止します..."))
        return 0 if isinstance(stop, KeyboardInterrupt) else 128 + getattr(signal, str(stop), signal.SIGTERM)
    finally:
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)  # a second signal must not interrupt the clean-up
        if flower is not None:
            flower.stop()
        if stack is not None:
            stack.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        _remove_state()
        for number, handler in previous.items():
            signal.signal(number, handler)
        if stack is not None:
            show(say(f"Stopped: {_what_runs(stack, flower)} are gone.",
                     f"停止しました: {_what_runs(stack, flower)}はすべて終了しています。"))


def _what_runs(stack, flower):
    """The run's services as the stop messages name them: "the web server, 2 workers, beat and Redis"."""
    workers = len(stack.workers) if stack is not None else 0
    beats = len(stack.beats) if stack is not None else 0
    english = ["the web server", "the worker" if workers == 1 else f"{workers} workers" if workers else "the workers"]
    japanese = ["Web サーバー", "ワーカー" if workers <= 1 else f"{workers} つのワーカー"]
    if beats:
        english.append("beat" if beats == 1 else f"{beats} beats")
        japanese.append("beat" if beats == 1 else f"{beats} つの beat")
    if flower is not None:
        english.append("Flower")
        japanese.append("Flower")
    return say(", ".join(english) + " and Redis", "、".join(japanese) + "、Redis ")


def _why(stop):
    if isinstance(stop, Stopped):
        return say(f"{stop} received. ", f"{stop} を受け取りました。")
    return ""


if __name__ == "__main__":
    sys.exit(main())
