"""Steps the lessons share: press a button, find the tasks it sent, read the worker's log.

Every assertion here teaches: it names the file to edit and the idea missing.
"""
import datetime
import json
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ..i18n import say
from ..services import confine
from ..services.procfile import PROCFILE, ProcfileError, read_procfile
from ..services.worker import WorkerSpec
from . import foundations
from .advice import BROKER_SETTING
from .waiting import wait_for

HELLO = "handson.tasks.hello"


def require(condition, message):
    """Fail the running test with ``message`` alone (no harness traceback) unless ``condition``."""
    if not condition:
        pytest.fail(message, pytrace=False)


def _button_form(html, label):
    """The action of the enabled form whose button reads ``label``, or None."""
    match = re.search(rf'<form method="post" action="([^"]*)">(?:(?!</form>).)*?<button type="submit">{label}</button>',
                      html, flags=re.S)
    return match.group(1) if match else None


def find_button(web, label, view, route_name, path):
    """The action of the ``label`` button on /handson; fails (and marks the route missing for the
    module's later tests) while the button is greyed out."""
    route = f'path("{path.lstrip("/")}", views.{view}.as_view(), name="{route_name}")'
    foundations.check(f"route {route_name}")
    action = _button_form(web.get("/handson").text, label)
    foundations.must_have(f"route {route_name}", action, say(
        f"The {label} button on /handson is greyed out: handson/urls.py has no route named {route_name!r} yet. "
        f"Add {route} and write the {view} view in handson/views.py.",
        f"/handson の {label} ボタンが無効 (灰色) です。handson/urls.py に名前 {route_name!r} の URL がまだありません。"
        f"{route} を追加し、handson/views.py に {view} ビューを書いてください。",
    ))
    return action


def press(web, label, view, route_name, path, fields=None):
    """Press a button on /handson like the browser: find its form on the page, POST it (with its form's
    ``fields``), insist on the redirect."""
    action = find_button(web, label, view, route_name, path)
    answer = web.post(action, fields)
    require(answer.status != 405, say(
        f"POST {action} answered 405: {view} in handson/views.py needs a `def post(self, request, *args, **kwargs)` method.",
        f"POST {action} が 405 でした。handson/views.py の {view} に `def post(self, request, *args, **kwargs)` が必要です。",
    ))
    require(answer.status == 302 and answer.location.rstrip("/").endswith("/handson"), say(
        f"POST {action} ({label}) answered {answer.status} {answer.location!r}: {view}.post should end with "
        f"`return redirect(reverse(\"base\"))` (a 302 back to /handson).\n{answer.text[:500]}",
        f"POST {action} ({label}) が {answer.status} {answer.location!r} を返しました。{view}.post の最後は "
        f"`return redirect(reverse(\"base\"))` (/handson への 302) にしてください。\n{answer.text[:500]}",
    ))
    return answer


STEP2 = ("Step2", "TaskStep2", "task_step2", "/handson/task_step2")
STOP_ALL_TASKS = ("StopAllTasks", "TaskStep4", "task_step4", "/handson/task_step4")
def printed_in_web_server(web, since):
    """Whether the web server's log printed "hello world" after byte offset ``since``."""
    return "hello world" in web.server.process.log_text(since)


def press_step2(web):
    """Press Step2; fail at once (for this module's later tests too) when hello ran in the request."""
    foundations.check("delay")
    web_mark = web.server.process.log_size()
    answer = press(web, *STEP2)
    foundations.must_have("delay", not printed_in_web_server(web, web_mark), say(
        "hello ran inside the web server (its log printed \"hello world\"), not in the worker: call "
        "hello.delay(\"hello world\") in TaskStep2.post, not hello(\"hello world\").",
        "hello がワーカーではなく Web サーバーの中で実行されました (サーバーのログに \"hello world\")。"
        "TaskStep2.post では hello(\"hello world\") ではなく hello.delay(\"hello world\") を呼んでください。",
    ))
    return answer


def press_stop_all_tasks(web):
    return press(web, *STOP_ALL_TASKS)


def send_hello_and_see_it_received(web, celery_worker):
    """Press Step2 and wait for the worker's log to say it received the task: (log mark, task id).
    (A hello that ran in the request fails in press_step2 already: no waiting for a task that never comes.)"""
    mark = celery_worker.mark()
    press_step2(web)
    received = wait_for(lambda: received_ids(celery_worker.log(mark)), timeout=10)
    require(received, say(
        "The worker received no task after Step2. TaskStep2.post must call hello.delay(\"hello world\"), and "
        "handson/settings.py must send tasks to the lab's Redis: " + BROKER_SETTING + ".",
        "Step2 の後、ワーカーはタスクを受け取りませんでした。TaskStep2.post で hello.delay(\"hello world\") を呼び、"
        "handson/settings.py でラボの Redis に送るようにしてください: " + BROKER_SETTING + "。",
    ))
    return mark, received[0]


def printed_hello_world(log):
    """How many times a task printed "hello world" (print lines only, not a logged return value)."""
    return len(re.findall(r"\] hello world\s*$", log, flags=re.M))


def listed_tasks(web):
    """The tasks on GET /handson/api/tasks, newest first: [{"id", "name", "state", ...}]."""
    answer = web.get("/handson/api/tasks")
    require(answer.status == 200, say(
        f"GET /handson/api/tasks answered {answer.status}: {answer.text[:300]}",
        f"GET /handson/api/tasks が {answer.status} を返しました: {answer.text[:300]}",
    ))
    return answer.json()["tasks"]


def send_hello_tasks(web, count=1):
    """Press Step2 ``count`` times; return the ids of the new tasks, oldest first."""
    before = {task["id"] for task in listed_tasks(web)}
    for _ in range(count):
        press_step2(web)
    def new_ids():
        fresh = [task["id"] for task in listed_tasks(web) if task["id"] not in before]
        return fresh if len(fresh) >= count else None

    new = wait_for(new_ids, timeout=5)
    require(new, say(
        f"After pressing Step2 {count} time(s), the task list shows no new task. The app lists the tasks "
        "it sends with .delay() (handson/tasklog.py): does TaskStep2.post call hello.delay(\"hello world\")?",
        f"Step2 を {count} 回押しても、タスク一覧に新しいタスクが出ません。アプリは .delay() で送ったタスクを一覧にします "
        "(handson/tasklog.py)。TaskStep2.post で hello.delay(\"hello world\") を呼んでいますか？",
    ))
    return list(reversed(new[:count]))


def received_ids(log, task_name=HELLO):
    """Ids of the ``task_name`` tasks (hello by default) the worker's log says it received, in order."""
    return re.findall(rf"Task {re.escape(task_name)}\[([0-9a-f-]+)\] received", log)


def succeeded_seconds(log, task_id):
    """The run time the worker logged for a task that succeeded, or None."""
    match = re.search(rf"Task {re.escape(HELLO)}\[{re.escape(task_id)}\] succeeded in ([0-9.]+)s", log)
    return float(match.group(1)) if match else None


ENDED = ("SUCCESS", "FAILURE", "REVOKED")


def wait_until_started(result_backend, task_id, timeout=10, ready=lambda: True):
    """The task's stored meta once it reads STARTED (and ``ready()``). Fails, naming step 3, when it does
    not within ``timeout`` s, and at once when the task ends without having shown STARTED: without
    task_track_started the worker stores nothing until the task ends (step 3), and an ended task will
    show nothing more."""
    def started():
        meta = result_backend.meta(task_id)
        status = meta["status"] if meta else None
        if status in ENDED:
            return meta
        return meta if status == "STARTED" and ready() else None

    meta = wait_for(started, timeout=timeout, interval=0.02)
    state = meta["status"] if meta else result_backend.state(task_id)
    require(meta and state == "STARTED", say(
        f"The task {task_id} never showed STARTED (it is {state}), so the lab cannot act on it while it runs. "
        "Finish step 3 first: CELERY_TASK_TRACK_STARTED = True in handson/settings.py.",
        f"タスク {task_id} が STARTED になりませんでした (現在 {state})。実行中のタスクを確かめられません。"
        "先にステップ 3 を終えてください: handson/settings.py に CELERY_TASK_TRACK_STARTED = True。",
    ))
    return meta


def tasks_on_page(html):
    """(task id, state) for each row of the task table on /handson."""
    return re.findall(r'class="task" data-id="([^"]+)" data-state="([^"]+)"', html)


# The probe reports on a file the lab opened for it (its descriptor in argv[1]), tagged with a nonce it
# reads from stdin before `import handson` (so the import finds stdin empty), and ends with os._exit:
# what the learner's code prints, at import or in an atexit hook, never stands for its answer.
_EXPORTS = """
import json, os, sys


def probe(channel, nonce):
    report = {"all": None, "error": None, "celery_app": None, "star": []}
    try:
        import handson
        declared = getattr(handson, "__all__", None)
        report["all"] = [str(name) for name in declared] if declared is not None else None
        app = getattr(handson, "celery_app", None)
        report["celery_app"] = type(app).__module__ + "." + type(app).__name__ if app is not None else None
        namespace = {}
        exec("from handson import *", namespace)
        report["star"] = sorted(name for name in namespace if not name.startswith("__"))
    except Exception as error:
        report["error"] = f"{type(error).__name__}: {error}"[:500]
    os.write(channel, (json.dumps({"nonce": nonce, "report": report}) + "\\n").encode())
    os._exit(0)


probe(int(sys.argv[1]), sys.stdin.readline().strip())
"""
PROBE_LIMIT = 1 << 20  # bytes of the probe's report read


def package_exports(workspace, env):
    """What `import handson` and `from handson import *` give, learned in a child process (the
    learner's code is never imported into the test process): {"all", "error", "celery_app", "star"}."""
    nonce = secrets.token_hex(16)
    # Into files, not pipes: a process that `import handson` starts in the background would hold a
    # pipe open, and reading it to its end would wait for that process instead of this one.
    with tempfile.TemporaryFile("w+b") as channel, tempfile.TemporaryFile("w+") as err:
        fd = channel.fileno()
        subprocess.run(confine.wrap([sys.executable, "-c", _EXPORTS, str(fd)], workspace), cwd=workspace, env=env,
                       input=nonce + "\n", stdout=subprocess.DEVNULL, stderr=err, pass_fds=(fd,), text=True,
                       timeout=60)
        channel.seek(0)
        err.seek(0)
        said, stderr = channel.read(PROBE_LIMIT).decode("utf-8", "replace"), err.read(PROBE_LIMIT)
    for line in reversed(said.splitlines()):
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict) and found.get("nonce") == nonce:
            return found["report"]
    return {"all": None, "error": (stderr.strip().splitlines() or ["the probe gave no answer"])[-1][:500],
            "celery_app": None, "star": []}


def press_for_new_tasks(web, label, view, route_name, path, task_name, count):
    """Press a button and return the ``count`` tasks named ``task_name`` it sent, as the task list shows
    them ({"id", "args", "state", ...}), oldest first."""
    before = {task["id"] for task in listed_tasks(web)}
    press(web, label, view, route_name, path)

    def new_tasks():
        fresh = [task for task in listed_tasks(web) if task["id"] not in before and task["name"] == task_name]
        return fresh if len(fresh) >= count else None

    new = wait_for(new_tasks, timeout=5)
    require(new, say(
        f"After pressing {label}, the task list shows no {count} new {task_name} task(s). {view}.post in "
        f"handson/views.py should send them with .delay(...) (the app lists what it sends: handson/tasklog.py).",
        f"{label} を押しても、タスク一覧に新しい {task_name} タスクが {count} 個出ません。handson/views.py の "
        f"{view}.post で .delay(...) で送ってください (アプリは送ったタスクを一覧にします: handson/tasklog.py)。",
    ))
    return list(reversed(new[:count]))


LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}): \w+/[^\]]+\] (.*)$", re.M)


def task_events(log, task_name, task_id):
    """What the worker's log says about one task, in order: [(time in seconds, event, rest)]
    with event one of received, retry, succeeded, raised (the log's own timestamps, millisecond precision)."""
    events = []
    pattern = re.compile(rf"Task {re.escape(task_name)}\[{re.escape(task_id)}\] (received|retry|succeeded|raised)(.*)")
    for stamp, millis, text in LOG_LINE.findall(log):
        found = pattern.match(text)
        if found:
            when = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").timestamp() + int(millis) / 1000
            events.append((when, found.group(1), found.group(2)))
    return events


def declared_processes(workspace):
    """The workers and beats handson/Procfile declares (services/procfile.py); the test fails with the reason
    when the file cannot be started as written (in full once; the module's later tests point to that failure)."""
    foundations.check("procfile")
    try:
        return read_procfile(Path(workspace) / PROCFILE)
    except ProcfileError as error:
        problem = str(error)
    # Outside the except block: pytest would print the error a second time as its context.
    foundations.must_have("procfile", False, problem)


def declared_workers(workspace):
    """The workers (WorkerSpec) of handson/Procfile, as ``declared_processes`` reads it."""
    return [spec for spec in declared_processes(workspace) if isinstance(spec, WorkerSpec)]


def reported_settings(worker, broker_control):
    """The settings beyond Celery's defaults that the running worker reports (its `conf` remote
    control, never by importing handson): {} when it does not answer in time."""
    hostname = worker.hostname()
    return broker_control.worker_settings(hostname) if hostname else {}


def setting(reported, name):
    """(the name as the learner wrote it, its value) of Celery's setting ``name`` (e.g. "task_routes") in
    ``reported``: CELERY_<NAME> in handson/settings.py, or ``name`` on the app itself; (None, None) if unset."""
    for spelled in (f"CELERY_{name.upper()}", name):
        if reported.get(spelled) is not None:
            return spelled, reported[spelled]
    return None, None


def for_every_task(worker, broker_control, names):
    """Which of the task options ``names`` (Celery's names, e.g. "task_acks_late") the worker was
    configured with for every task, in handson/settings.py as CELERY_<NAME> or on the app itself:
    {name: "CELERY_TASK_ACKS_LATE = True", as the learner wrote it}."""
    reported = reported_settings(worker, broker_control)
    found = {}
    for name in names:
        for spelled in (f"CELERY_{name.upper()}", name):
            if reported.get(spelled) not in (None, False):
                found[name] = f"{spelled} = {reported[spelled]!r}"
    return found
