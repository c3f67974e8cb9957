"""A real `celery -A handson worker` process (prefork pool) and its log.

The worker is started the way the original hands-on starts it, with one pool
process, and without the start-up chatter with other workers (mingle, gossip)
that only slows a lone worker down. A worker that cannot start because of the
learner's code does not raise here: it keeps the reason in ``problem``, and the
test that needs the worker fails with it (``require_running``).
"""
import re
import signal
import sys
import uuid
from pathlib import Path

import pytest

from .i18n import say
from .processes import ServiceProcess
from .tracebacks import headline

READY_TIMEOUT = 30  # seconds; a cold start takes about 1-2 s, a busy machine more


class CeleryWorker:
    def __init__(self, workspace, redis, env, log_dir, concurrency=1):
        self.workspace, self.redis, self.env = Path(workspace), redis, env
        self.node = f"lab-{uuid.uuid4().hex[:6]}@%h"
        argv = [sys.executable, "-m", "celery", "-A", "handson", "worker", "--pool=prefork",
                f"--concurrency={concurrency}", "--loglevel=INFO", "--without-mingle",
                "--without-gossip", "-n", self.node]
        self.process = ServiceProcess("worker", argv, env=env, cwd=self.workspace,
                                      log_path=Path(log_dir) / "worker.log")
        self.problem = None

    # -- start and stop ----------------------------------------------------------
    def start(self):
        self.process.start()
        ready = self.process.wait_until(self._ready_or_stuck, timeout=READY_TIMEOUT)
        self.problem = self._diagnose(ready)
        return self

    def stop(self):
        # SIGQUIT is Celery's cold shutdown: it does not wait for a running task.
        self.process.stop(first_signal=signal.SIGQUIT, grace=5.0)

    def _ready_or_stuck(self):
        log = self.log()
        return " ready." in log or "Cannot connect to" in log

    def _diagnose(self, ready):
        log, tail = self.log(), self.process.log_tail()
        if "Unable to load celery application" in log:
            return say(
                "The worker found no Celery app: `celery -A handson worker` looks in the package handson "
                "(for `celery_app` or `app`, then in the module handson.celery). Create handson/celery.py with "
                "app = Celery(\"handson\"), and in handson/__init__.py write "
                "`from .celery import app as celery_app`.\n\nWorker log:\n" + tail,
                "ワーカーが Celery アプリを見つけられません。`celery -A handson worker` は handson パッケージ "
                "(`celery_app` または `app`、次に handson.celery モジュール) を探します。handson/celery.py に app = Celery(\"handson\") を作り、"
                "handson/__init__.py に `from .celery import app as celery_app` と書いてください。\n\n"
                "ワーカーのログ:\n" + tail,
            )
        if "Cannot connect to" in log:
            return say(
                f"The worker cannot reach its broker. The lab's Redis is {self.redis.broker_url}; in "
                "handson/settings.py set CELERY_BROKER_URL = HANDSON_BROKER_URL (the app gets the "
                "address from the environment).\n\nWorker log:\n" + tail,
                f"ワーカーがブローカーに接続できません。ラボの Redis は {self.redis.broker_url} です。"
                "handson/settings.py に CELERY_BROKER_URL = HANDSON_BROKER_URL と書いてください "
                "(アドレスは環境変数から渡されます)。\n\nワーカーのログ:\n" + tail,
            )
        if not ready:
            stopped = not self.process.running()
            cause = headline(log)
            return say(
                ("The worker stopped while starting" if stopped else
                 f"The worker was not ready within {READY_TIMEOUT} s")
                + (f": {cause}" if cause else " (look for an error in your handson/ files)")
                + ".\n\nWorker log:\n" + tail,
                ("ワーカーが起動中に終了しました" if stopped else
                 f"ワーカーが {READY_TIMEOUT} 秒以内に起動しませんでした")
                + (f": {cause}" if cause else " (handson/ のファイルのエラーを確認してください)")
                + "。\n\nワーカーのログ:\n" + tail,
            )
        transport = self.banner("transport") or ""
        if _address(transport) != _address(self.redis.broker_url):
            return say(
                f"The worker takes tasks from {transport}, not from the lab's Redis ({self.redis.broker_url}). "
                "Do not write Redis addresses in the code: in handson/settings.py set "
                "CELERY_BROKER_URL = HANDSON_BROKER_URL.",
                f"ワーカーはラボの Redis ({self.redis.broker_url}) ではなく {transport} からタスクを受け取っています。"
                "Redis のアドレスをコードに書かず、handson/settings.py に CELERY_BROKER_URL = HANDSON_BROKER_URL と"
                "書いてください。",
            )
        return None

    # -- what tests use ----------------------------------------------------------
    def require_running(self):
        """Fail the calling test, with the reason, unless the worker is up."""
        if self.problem is None and not self.process.running():
            self.problem = say("The worker has stopped.\n\nWorker log:\n", "ワーカーが停止しました。\n\nワーカーのログ:\n") \
                + self.process.log_tail()
        if self.problem:
            pytest.fail(self.problem, pytrace=False)
        return self

    def log(self, since=0):
        """The worker's log, from byte offset ``since`` (see ``mark``)."""
        return self.process.log_text(since)

    def mark(self):
        """An offset into the log: ``log(since=mark)`` shows only what came after."""
        return self.process.log_size()

    def log_tail(self, lines=40):
        return self.process.log_tail(lines)

    def banner(self, field):
        """A value from the start-up banner, e.g. banner("transport") or banner("results")."""
        match = re.search(rf"\.> {field}:\s+(\S+)", self.log())
        return match.group(1) if match else None

    def registered_tasks(self):
        """Task names listed under [tasks] in the start-up banner."""
        block = self.log().split("[tasks]", 1)
        if len(block) < 2:
            return []
        return re.findall(r"^\s+\. (\S+)", block[1].split("\n\n", 1)[0], flags=re.M)

    def pool_pids(self):
        import psutil

        try:
            return [child.pid for child in psutil.Process(self.process.pid).children()]
        except psutil.Error:
            return []


def _address(url):
    """host:port/db of a redis:// URL, without the credentials Celery masks as ':**@' in its banner."""
    rest = url.split("://", 1)[-1].rsplit("@", 1)[-1]
    return rest if "/" in rest else rest + "/0"
