"""The hands-on's Django server, single-threaded as in the original, and a client for it.

`runserver --nothreading --noreload` serves one request at a time in one
process: exactly what step 1 is about. It is started through services/runserver.py, which
gives an idle client about a second (a browser's spare connection would hold it for ever). The client speaks to it like a browser:
it keeps cookies, sends the CSRF token with every POST, and times each answer.
"""
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

import psutil
import requests
import urllib3

from ..paths import ROOT
from ..tracebacks import headline
from .app_env import data_folders
from .causes import Cause, ServiceProblem
from .processes import ServiceProcess, free_port

READY_TIMEOUT = 30  # seconds
# An answer is read within limits, whatever the app sends: the app's pages are kilobytes, and a grader
# that read an endless answer whole would run out of memory before any report is written.
ANSWER_LIMIT = 8 << 20  # bytes
PORT_ATTEMPTS = 3
PORT_TAKEN = "That port is already in use"  # runserver's words when it cannot bind its port


class DjangoServer:
    def __init__(self, workspace, env, log_dir, port=None, sent_events=False):
        # The workspace first (its handson/ is the app), then this checkout for the launcher.
        self.env = dict(env, PYTHONPATH=os.pathsep.join(dict.fromkeys([env["PYTHONPATH"], str(ROOT)])))
        if sent_events:
            self.env["HANDSON_SENT_EVENTS"] = "1"
        self.workspace, self.log_dir = Path(workspace), Path(log_dir)
        self.port_given = port is not None
        self._use_port(port or free_port())
        self.problem = None

    def _use_port(self, port):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "labs.harness.services.runserver", "runserver", "--nothreading", "--noreload",
                f"127.0.0.1:{port}"]
        self.process = ServiceProcess("web", argv, env=self.env, cwd=self.workspace,
                                      log_path=self.log_dir / "web.log", writable=data_folders(self.env))

    def launch(self):
        self.process.start()
        return self

    def wait_ready(self):
        for attempt in range(1, PORT_ATTEMPTS + 1):
            ready = self.process.wait_until(self._answers, timeout=READY_TIMEOUT, interval=0.05)
            if ready or self.port_given or attempt == PORT_ATTEMPTS or PORT_TAKEN not in self.process.log_text():
                break
            # Another process took the free port before the server bound it (parallel runs open
            # many connections): the learner's code is not to blame, choose another.
            self.process.stop()
            self._use_port(free_port())
            self.launch()
        if not ready:
            stopped = not self.process.running()
            found = headline(self.process.log_text(), self.workspace)
            self.problem = Cause("web", "crashed_on_start" if stopped else "not_ready",
                                 {"headline": found, "seconds": READY_TIMEOUT}, self.process.log_tail())
        return self

    def start(self):
        return self.launch().wait_ready()

    def stop(self):
        self.process.stop(grace=3.0)

    def _answers(self):
        try:
            with requests.get(self.url + "/handson", timeout=2, stream=True) as response:
                # An answer has begun; how it goes on is not the readiness check's (a test reads it).
                read_bounded(response, time.monotonic() + 2, limit=64 << 10)
        except (requests.RequestException, OSError):
            return False
        return self._listens()

    def _listens(self):
        """Whether the answer came from our server: the server of another run that took the port
        first must not pass for the learner's app."""
        try:
            connections = psutil.Process(self.process.pid).net_connections(kind="tcp")
        except (psutil.Error, ValueError):
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in connections)

    def require_running(self):
        if self.problem is None and not self.process.running():
            self.problem = Cause("web", "stopped", {}, self.process.log_tail())
        if self.problem:
            raise ServiceProblem(self.problem)
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
    """A browser-like client: cookies, CSRF token on POST, timing. An answer the app could not
    give (no answer, a 5xx) raises ServiceProblem with what the server's log says."""

    def __init__(self, server, timeout=60):
        self.server, self.timeout = server, timeout
        self.session = requests.Session()

    def get(self, path):
        return self._send("GET", path)

    def post(self, path, fields=None, *, timeout=None, accept=()):
        """POST like the page's forms do (with their ``fields``), with the CSRF token from the page's cookie.
        ``timeout``: seconds to wait for the answer (the client's default otherwise); ``accept``: 5xx statuses
        that are an answer here (step 13's 503), not a server problem."""
        if "csrftoken" not in self.session.cookies:
            self.get("/handson")
        token = self.session.cookies.get("csrftoken", "")
        return self._send("POST", path, data={**(fields or {}), "csrfmiddlewaretoken": token},
                          headers={"Referer": self.server.url + "/handson"}, timeout=timeout, accept=accept)

    def _send(self, method, path, timeout=None, accept=(), **kwargs):
        self.server.require_running()
        process = self.server.process
        log_mark = process.log_size()
        started = time.monotonic()
        seconds = timeout or self.timeout
        try:
            response = self.session.request(method, self.server.url + path, allow_redirects=False,
                                            timeout=seconds, stream=True, **kwargs)
            whole = read_bounded(response, started + seconds)
        except requests.RequestException as problem:
            raise ServiceProblem(Cause("web", "no_answer", {"method": method, "path": path, "error": str(problem)},
                                       process.log_tail())) from None
        if not whole:
            raise ServiceProblem(Cause("web", "answer_too_large", {
                "method": method, "path": path, "limit": ANSWER_LIMIT, "seconds": seconds}, process.log_tail()))
        answer = Answer(response, time.monotonic() - started)
        if answer.status >= 500 and answer.status not in accept:
            log = process.log_text(log_mark)
            raise ServiceProblem(Cause("web", "server_error", {
                "method": method, "path": path, "status": answer.status,
                "headline": headline(log, self.server.workspace),
                "body": answer.text[:300], "seen": seen_in_log(log + answer.text),
            }, "\n".join(log.splitlines()[-40:])))
        return answer


def read_bounded(response, deadline, limit=ANSWER_LIMIT):
    """Read ``response``'s body (sent with stream=True) into it, as requests would, but no more than
    ``limit`` bytes and not past ``deadline`` (time.monotonic()): False when it was cut off there. A body
    that trickles (a byte now and then, each read within the socket's timeout) is cut off at the deadline
    too: a timer shuts the connection's socket, which ends the read that waits on it."""
    body, size = [], 0
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), _shut, (response,))
    timer.daemon = True
    timer.start()
    try:
        for chunk in response.iter_content(64 << 10):
            body.append(chunk)
            size += len(chunk)
            if size > limit or time.monotonic() > deadline:
                return False
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        if time.monotonic() >= deadline:
            return False
        raise
    finally:
        timer.cancel()
        response.close()
    response._content = b"".join(body)  # what .text and .json() read (requests' own cache of the body)
    return True


def _shut(response):
    connection = getattr(response.raw, "connection", None) or getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def seen_in_log(log):
    """What a failed request's log shows that its traceback alone does not explain:
    ("redis_refused", "host:port"), ("default_amqp", "") or None."""
    refused = re.search(r"Error \d+ connecting to ([\w.\-]+:\d+)", log)
    if refused:
        return ("redis_refused", refused.group(1))
    if "/amqp/" in log or "amqp://" in log:
        # Django sent the task with Celery's default app, whose broker is amqp://localhost.
        return ("default_amqp", "")
    return None
