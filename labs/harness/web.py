"""The hands-on's Django server, single-threaded as in the original, and a client for it.

`runserver --nothreading --noreload` serves one request at a time in one
process: exactly what step 1 is about. The client speaks to it like a browser:
it keeps cookies, sends the CSRF token with every POST, and times each answer.
"""
import re
import sys
import time
from pathlib import Path

import pytest
import requests

from .i18n import say
from .processes import ServiceProcess, free_port
from .tracebacks import headline

READY_TIMEOUT = 30  # seconds


class DjangoServer:
    def __init__(self, workspace, env, log_dir, port=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "django", "runserver", "--nothreading", "--noreload",
                f"127.0.0.1:{self.port}"]
        self.process = ServiceProcess("web", argv, env=env, cwd=Path(workspace),
                                      log_path=Path(log_dir) / "web.log")
        self.problem = None

    def start(self):
        self.process.start()
        if not self.process.wait_until(self._answers, timeout=READY_TIMEOUT, interval=0.1):
            stopped, cause = not self.process.running(), headline(self.process.log_text())
            self.problem = say(
                ("The Django server stopped while starting" if stopped else
                 f"The Django server did not answer within {READY_TIMEOUT} s")
                + (f": {cause}" if cause else " (look for an error in your handson/ files)")
                + ".\n\nServer log:\n" + self.process.log_tail(),
                ("Django サーバーが起動中に終了しました" if stopped else
                 f"Django サーバーが {READY_TIMEOUT} 秒以内に応答しませんでした")
                + (f": {cause}" if cause else " (handson/ のファイルのエラーを確認してください)")
                + "。\n\nサーバーのログ:\n" + self.process.log_tail(),
            )
        return self

    def stop(self):
        self.process.stop(grace=3.0)

    def _answers(self):
        try:
            requests.get(self.url + "/handson", timeout=2)
            return True
        except requests.RequestException:
            return False

    def require_running(self):
        if self.problem is None and not self.process.running():
            self.problem = say("The Django server has stopped.\n\nServer log:\n",
                               "Django サーバーが停止しました。\n\nサーバーのログ:\n") + self.process.log_tail()
        if self.problem:
            pytest.fail(self.problem, pytrace=False)
        return self

    def client(self):
        return WebClient(self)


class Answer:
    """One HTTP answer and how long it took."""

    def __init__(self, response, seconds):
        self.response, self.seconds = response, seconds
        self.status, self.text = response.status_code, response.text
        self.location = response.headers.get("Location", "")

    def json(self):
        return self.response.json()


class WebClient:
    """A browser-like client: cookies, CSRF token on POST, timing, a clear failure when the server errs."""

    def __init__(self, server, timeout=60):
        self.server, self.timeout = server, timeout
        self.session = requests.Session()

    def get(self, path):
        return self._send("GET", path)

    def post(self, path):
        """POST like the page's forms do, with the CSRF token from the page's cookie."""
        if "csrftoken" not in self.session.cookies:
            self.get("/handson")
        token = self.session.cookies.get("csrftoken", "")
        return self._send("POST", path, data={"csrfmiddlewaretoken": token},
                          headers={"Referer": self.server.url + "/handson"})

    def _send(self, method, path, **kwargs):
        self.server.require_running()
        log_mark = self.server.process.log_size()
        started = time.monotonic()
        try:
            response = self.session.request(method, self.server.url + path, allow_redirects=False,
                                            timeout=self.timeout, **kwargs)
        except requests.RequestException as problem:
            pytest.fail(say(f"{method} {path} got no answer: {problem}\n\nServer log:\n",
                            f"{method} {path} に応答がありません: {problem}\n\nサーバーのログ:\n")
                        + self.server.process.log_tail(), pytrace=False)
        answer = Answer(response, time.monotonic() - started)
        if answer.status >= 500:
            log = "\n".join(self.server.process.log_text(log_mark).splitlines()[-40:])
            cause = headline(self.server.process.log_text(log_mark))
            what = (cause or say("the app raised an error", "アプリでエラー")) if answer.status == 500 \
                else answer.text[:300]
            pytest.fail(say(f"{method} {path} answered {answer.status} ({what}).",
                            f"{method} {path} が {answer.status} を返しました ({what})。")
                        + _known_cause(self.server.process.log_text(log_mark) + answer.text) + say("\n\nServer log:\n", "\n\nサーバーのログ:\n") + log,
                        pytrace=False)
        return answer


def _known_cause(log):
    """A sentence for mistakes whose traceback does not say what to do."""
    refused = re.search(r"Error \d+ connecting to ([\w.\-]+:\d+)", log)
    if refused:
        return say(
            f" Django could not reach Redis at {refused.group(1)}: the lab's Redis is elsewhere, on a free port. "
            "Do not write Redis addresses in the code: CELERY_BROKER_URL = HANDSON_BROKER_URL and "
            "CELERY_RESULT_BACKEND = HANDSON_RESULT_BACKEND in handson/settings.py.",
            f" Django が {refused.group(1)} の Redis に接続できませんでした。ラボの Redis は別の空きポートにあります。"
            "Redis のアドレスをコードに書かず、handson/settings.py に CELERY_BROKER_URL = HANDSON_BROKER_URL と "
            "CELERY_RESULT_BACKEND = HANDSON_RESULT_BACKEND と書いてください。",
        )
    if "/amqp/" in log or "amqp://" in log:
        # Django sent the task with Celery's default app, whose broker is amqp://localhost.
        return say(
            " Django sent the task to Celery's default broker (amqp://localhost), not to Redis: the Celery "
            "app is not loaded when Django starts. In handson/__init__.py write "
            "`from .celery import app as celery_app`.",
            " Django がタスクを Redis ではなく Celery の既定のブローカー (amqp://localhost) に送りました。"
            "Django の起動時に Celery アプリが読み込まれていません。handson/__init__.py に "
            "`from .celery import app as celery_app` と書いてください。",
        )
    return ""


def tasks_on_page(html):
    """(task id, state) for each row of the task table on /handson."""
    return re.findall(r'class="task" data-id="([^"]+)" data-state="([^"]+)"', html)
