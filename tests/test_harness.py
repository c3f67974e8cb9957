"""Unit tests of the harness's small parts (each isolates what it tests; the labs use the real thing)."""
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from labs.harness import i18n
from labs.harness.lesson.waiting import wait_for
from labs.harness.paths import ROOT
from labs.harness.services.ports import port_is_free
from labs.harness.services.processes import ServiceProcess, free_port
from labs.harness.services.redis import ExternalRedis, LocalRedis, RedisUnavailable, choose_redis

from .helpers import child_pytest, run_marked


@pytest.mark.parametrize("env, expected", [
    ({"HANDSON_LANG": "ja"}, "ja"), ({"HANDSON_LANG": "en", "LANG": "ja_JP.UTF-8"}, "en"),
    ({"LANG": "ja_JP.UTF-8"}, "ja"), ({"LC_ALL": "C.UTF-8", "LANG": "ja_JP.UTF-8"}, "en"),
    ({"HANDSON_LANG": "fr", "LANG": "en_US.UTF-8"}, "en"),
])
def test_the_language_comes_from_handson_lang_then_the_locale(monkeypatch, env, expected):
    for name in ("HANDSON_LANG", "LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert i18n.language() == expected
    assert i18n.say("english", "日本語") == ("日本語" if expected == "ja" else "english")


def test_stopping_a_service_kills_its_whole_process_group(tmp_path):
    """A child that forks (like Celery's pool) is stopped with everything it started."""
    service = ServiceProcess("forker", ["sh", "-c", "sleep 300 & sleep 300 & wait"], env=None, cwd=tmp_path,
                             log_path=tmp_path / "forker.log").start()
    assert wait_for(lambda: len(psutil.Process(service.pid).children()) == 2, timeout=5)
    grandchildren = psutil.Process(service.pid).children()

    service.stop(grace=2)

    assert not service.running()
    assert not [p for p in grandchildren if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_free_ports_are_free_and_distinct():
    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5 and all(1024 < port < 65536 for port in ports)


def test_the_embedded_redis_starts_on_a_free_port_and_stops(tmp_path):
    redis = LocalRedis(tmp_path).start()
    try:
        assert redis.client().ping()
        assert redis.broker_url.endswith("/1") and redis.result_backend_url.endswith("/0")
    finally:
        redis.stop()
    assert not redis.process.running()


def test_a_port_taken_before_the_bind_is_replaced_not_blamed_on_the_learner(tmp_path, monkeypatch):
    """Between choosing a free port and binding it, another run may take it (parallel runs open many
    connections). Redis and the web server then move to another port, and never take the server
    that holds the port (another run's) for their own."""
    from labs.harness.reference import materialize
    from labs.harness.services import web as web_module
    from labs.harness.services.app_env import app_env
    from labs.harness.services.redis import embedded

    other = LocalRedis(tmp_path / "other").start()
    taken = iter([other.port])
    monkeypatch.setattr(embedded, "free_port", lambda: next(taken, None) or free_port())
    redis = LocalRedis(tmp_path / "ours")
    try:
        redis.start()
        assert redis.port != other.port
        assert redis.client().info("server")["process_id"] == redis.process.pid

        with socket.create_server(("127.0.0.1", 0)) as holder:
            ports = iter([holder.getsockname()[1]])
            monkeypatch.setattr(web_module, "free_port", lambda: next(ports, None) or free_port())
            workspace = materialize(1, tmp_path / "workspace")
            web = web_module.DjangoServer(workspace, app_env(workspace, redis, 1), tmp_path / "web")
            try:
                web.start()
                assert web.problem is None, web.problem
                assert web.port != holder.getsockname()[1]
            finally:
                web.stop()
    finally:
        redis.stop()
        other.stop()


def test_a_run_cut_off_early_still_names_every_test_it_would_have_run():
    """Grading gives each test its points: a run stopped by its timeout before (or while) pytest
    collected must still name the step's tests, which then score 0 as timed out."""
    run, left_behind = run_marked(["labs/test_step2.py"], pytest_args=["--solution"], timeout=0.2)
    listed = child_pytest("--collect-only", "-q", "labs/test_step2.py").stdout
    expected = [line.split("::", 1)[1] for line in listed.splitlines() if "::" in line]
    assert run.timed_out and expected and run.collected_in("labs/test_step2.py") == expected, run.output
    assert not left_behind, left_behind


def test_an_existing_redis_gets_databases_of_its_own():
    assert ExternalRedis("redis://example:6379/3").broker_url == "redis://example:6379/3"
    assert ExternalRedis("redis://example:6379/3").result_backend_url == "redis://example:6379/4"
    assert ExternalRedis("redis://example:6379").broker_url == "redis://example:6379/14"
    with pytest.raises(RedisUnavailable, match="0 to 14"):
        ExternalRedis("redis://example:6379/15")


def test_an_unreachable_redis_url_fails_fast_and_names_the_url():
    url = f"redis://127.0.0.1:{free_port()}/2"
    started = time.monotonic()
    with pytest.raises(RedisUnavailable, match=url.replace("/", r"\/").replace(".", r"\.")):
        ExternalRedis(url).start()
    assert time.monotonic() - started < 10


def test_an_unknown_redis_choice_is_refused(tmp_path):
    with pytest.raises(RedisUnavailable, match="auto / local / docker|auto, local, docker"):
        choose_redis("memcached", tmp_path)


@pytest.mark.parametrize("sleep", ["abc", "0", "-1", "1000"])
def test_a_bad_handson_sleep_is_a_usage_error(sleep):
    result = child_pytest("labs/test_step1.py", env=dict(os.environ, HANDSON_LANG="en", HANDSON_SLEEP=sleep))
    assert result.returncode == 4 and "HANDSON_SLEEP" in result.stderr + result.stdout


def test_an_unreachable_redis_url_fails_the_lab_fast_with_the_url():
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = child_pytest("labs/test_step1.py", f"--redis={url}")
    assert result.returncode != 0 and url in result.stdout, result.stdout[-2000:]
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("port, message", [("abc", "PORT="), ("70000", "PORT=")])
def test_make_run_refuses_a_bad_port(port, message):
    result = subprocess.run([sys.executable, "-m", "labs.harness.tools.run"], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, PORT=port, HANDSON_LANG="en"), timeout=60)
    assert result.returncode != 0 and message in result.stderr


# -- the headline of a traceback: the learner's own frame ---------------------------------------
_TRACEBACK = '''Internal Server Error: /handson/task_step6
Traceback (most recent call last):
  File "/home/me/celery-handson/.venv/lib/python3.11/site-packages/django/core/handlers/base.py", line 197, in _get_response
    response = wrapped_callback(request, *callback_args, **callback_kwargs)
  File "/home/me/celery-handson/handson/views.py", line 168, in post
    send_receipt.delay(f"order-{uuid.uuid4().hex[:8]}")
  File "/home/me/celery-handson/.venv/lib/python3.11/site-packages/celery/app/task.py", line 719, in apply_async
    check_arguments(*(args or ()), **(kwargs or {}))
TypeError: send_receipt() missing 1 required positional argument: 'order'
'''


@pytest.mark.parametrize("workspace", ["/home/me/celery-handson", None])
def test_a_headline_names_the_learners_frame_not_a_library_under_a_path_holding_handson(workspace):
    """A checkout named celery-handson puts "handson/" into every path of its .venv: the place named is
    the innermost frame of the workspace's own handson/ package, relative to the workspace."""
    from labs.harness.tracebacks import headline

    assert headline(_TRACEBACK, workspace) == (
        "handson/views.py, line 168: TypeError: send_receipt() missing 1 required positional argument: 'order'")


def test_a_syntax_error_is_placed_at_its_own_file():
    from labs.harness.tracebacks import headline

    log = ('Traceback (most recent call last):\n  File "/w/handson/urls.py", line 3, in <module>\n'
           '  File "/w/handson/views.py", line 12, in <module>\n  File "/w/handson/tasks.py", line 8\n'
           "    def broken(:\nSyntaxError: invalid syntax\n")
    assert headline(log, "/w") == "handson/tasks.py, line 8: SyntaxError: invalid syntax"
    assert headline("no traceback here", "/w") == ""


def test_a_missing_argument_in_a_500_suggests_bind_true(monkeypatch):
    from labs.harness.lesson import advice
    from labs.harness.services.causes import Cause

    monkeypatch.setenv("HANDSON_LANG", "en")
    detail = {"method": "POST", "path": "/handson/task_step6", "status": 500, "body": "", "seen": None,
              "headline": "handson/views.py, line 168: TypeError: send_receipt() missing 1 required positional "
                          "argument: 'order'"}
    text = advice.explain(Cause("web", "server_error", detail), with_log=False)
    assert "handson/views.py, line 168" in text and "bind=True" in text
    assert "bind=True" not in advice.explain(Cause("web", "server_error", dict(detail, headline="ValueError: x")),
                                             with_log=False)


def _plain_bind_fails(port):
    with socket.socket() as plain:
        try:
            plain.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_a_port_is_taken_while_a_server_listens_and_free_once_only_time_wait_is_left():
    """`make run`, Flower and `make doctor` ask port_is_free: right after a `make run` stops, its port
    still has connections in TIME_WAIT (the page polls twice a second), and a new run must start."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    assert not port_is_free(port)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server closes first, so its end of the connection waits in TIME_WAIT
    assert client.recv(1) == b""
    client.close()
    listener.close()
    # The case itself: a bind without SO_REUSEADDR is refused now (Linux keeps the address for TIME_WAIT).
    assert wait_for(lambda: _plain_bind_fails(port), timeout=5), "no TIME_WAIT connection was left on the port"
    assert port_is_free(port)


def test_an_answer_is_read_within_its_size_and_its_time(tmp_path):
    """services/web.read_bounded: a body past the size limit, and one that trickles a byte at a time (each
    read well within the socket's timeout), are both cut off; a page of kilobytes is read whole."""
    import socket
    import threading

    import requests

    from labs.harness.services.web import read_bounded

    def serve(body_of, length=10000000):
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer():
            client, _ = server.accept()
            client.recv(65536)
            client.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode())
            try:
                body_of(client)
            except OSError:
                pass
            client.close()
            server.close()

        threading.Thread(target=answer, daemon=True).start()
        return f"http://127.0.0.1:{server.getsockname()[1]}/"

    def trickle(client):
        while True:
            client.sendall(b"x")
            time.sleep(0.2)

    def flood(client):
        while True:
            client.sendall(b"x" * 65536)

    started = time.monotonic()
    response = requests.get(serve(trickle), stream=True, timeout=5)
    assert read_bounded(response, time.monotonic() + 2) is False
    assert time.monotonic() - started < 4
    response = requests.get(serve(flood), stream=True, timeout=5)
    assert read_bounded(response, time.monotonic() + 30, limit=1 << 20) is False
    response = requests.get(serve(lambda client: client.sendall(b"y" * 200000), 200000), stream=True, timeout=5)
    assert read_bounded(response, time.monotonic() + 30) and response.text == "y" * 200000


def test_while_grading_redis_takes_only_its_password_and_keeps_its_memory_bound(tmp_path):
    """A grading run's Redis: another grade's app on this loopback, which has not its URL, is refused, and
    the app itself cannot lift the memory bound (CONFIG answers only under the lab's name for it)."""
    import redis as redis_py

    from labs.harness.services.redis.embedded import GRADING_MAXMEMORY

    server = LocalRedis(tmp_path, guarded=True).start()
    try:
        stranger = redis_py.Redis(port=server.port, socket_timeout=5)
        with pytest.raises(redis_py.AuthenticationError):
            stranger.ping()
        app = server.client(server.broker_url)
        assert app.ping()
        with pytest.raises(redis_py.ResponseError, match="unknown command"):
            app.config_set("maxmemory", "0")
        answer = app.execute_command(server.config_command, "GET", "maxmemory")
        pairs = answer if isinstance(answer, dict) else dict(zip(answer[::2], answer[1::2]))
        assert pairs == {b"maxmemory": str(GRADING_MAXMEMORY).encode()}, answer
    finally:
        server.stop()
