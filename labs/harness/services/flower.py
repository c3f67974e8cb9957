"""Flower, Celery's web monitor, on 127.0.0.1, pointed at a run's broker and result backend.

Flower comes from the optional dependency group ``flower`` (pip install -e '.[flower]'; the make
targets that need it install it). Celery's global options --broker and --result-backend go
*before* the `flower` command: after it, Flower warns and falls back to amqp://localhost.
FLOWER_UNAUTHENTICATED_API=1 opens its HTTP API (/api/workers, /api/tasks) on this machine only.
"""
import importlib.util
import os
import sys
from pathlib import Path

import requests

from ..i18n import say
from .ports import port_is_free
from .processes import ServiceProcess

DEFAULT_PORT = 5555
READY_TIMEOUT = 30  # seconds; Flower answers about 0.5 s after its start


class FlowerUnavailable(RuntimeError):
    """Flower cannot be started; the message says why and what to do."""


def installed():
    return importlib.util.find_spec("flower") is not None


def flower_port(environ=None):
    """FLOWER_PORT (default 5555), checked: a number from 1 to 65535 that nothing listens on."""
    raw = (os.environ if environ is None else environ).get("FLOWER_PORT", str(DEFAULT_PORT)).strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise FlowerUnavailable(say(f"FLOWER_PORT={raw!r}: give a port number from 1 to 65535.",
                                    f"FLOWER_PORT={raw!r}: 1〜65535 のポート番号を指定してください。"))
    if not port_is_free(int(raw)):
        raise FlowerUnavailable(say(
            f"Port {raw} is in use (another Flower?). Choose another: FLOWER_PORT={int(raw) + 1}",
            f"ポート {raw} は使用中です (別の Flower?)。別のポートを指定してください: FLOWER_PORT={int(raw) + 1}",
        ))
    return int(raw)


class Flower:
    def __init__(self, broker_url, result_backend_url, log_dir, port):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "celery", "--broker", broker_url, "--result-backend", result_backend_url,
                "flower", "--address=127.0.0.1", f"--port={port}"]
        env = {key: value for key, value in os.environ.items() if not key.startswith("CELERY_")}
        env.update(FLOWER_UNAUTHENTICATED_API="1", PYTHONUNBUFFERED="1")
        self.process = ServiceProcess("flower", argv, env=env, cwd=Path(log_dir),
                                      log_path=Path(log_dir) / "flower.log")

    def start(self):
        if not installed():
            raise FlowerUnavailable(say(
                "Flower is not installed: `make flower` (or FLOWER=1 make run) installs it "
                "(pip install -e '.[flower]').",
                "Flower がインストールされていません。`make flower` (または FLOWER=1 make run) で"
                "インストールされます (pip install -e '.[flower]')。"))
        self.process.start()
        if not self.process.wait_until(self._answers, timeout=READY_TIMEOUT, interval=0.1):
            log = self.process.log_tail(20)
            self.stop()
            raise FlowerUnavailable(say(f"Flower did not start on port {self.port}:\n{log}",
                                        f"Flower がポート {self.port} で起動しませんでした:\n{log}"))
        return self

    def _answers(self):
        try:
            return requests.get(self.url + "/healthcheck", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def api(self, path):
        """GET /api/<path> as JSON."""
        response = requests.get(f"{self.url}/api/{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def stop(self):
        self.process.stop(grace=3.0)
