"""Steps the lessons share: press a button, find the tasks it sent, read the worker's log.

Every assertion here teaches: it names the file to edit and the idea missing.
"""
import re

import pytest

from .i18n import say
from .waiting import wait_for

HELLO = "handson.tasks.hello"


def require(condition, message):
    """Fail the running test with ``message`` alone (no harness traceback) unless ``condition``."""
    if not condition:
        pytest.fail(message, pytrace=False)


def press(web, path, label, view, route_name):
    """POST a button's form like the browser; insist on the redirect back to /handson."""
    answer = web.post(path)
    route = f'path("{path.lstrip("/")}", views.{view}.as_view(), name="{route_name}")'
    require(answer.status != 404, say(
        f"POST {path} ({label}) answered 404: handson/urls.py has no such route yet. Add {route} "
        f"and write the {view} view in handson/views.py.",
        f"POST {path} ({label}) が 404 でした。handson/urls.py にまだその URL がありません。{route} を追加し、"
        f"handson/views.py に {view} ビューを書いてください。",
    ))
    require(answer.status != 405, say(
        f"POST {path} answered 405: {view} in handson/views.py needs a `def post(self, request, *args, **kwargs)` method.",
        f"POST {path} が 405 でした。handson/views.py の {view} に `def post(self, request, *args, **kwargs)` が必要です。",
    ))
    require(answer.status == 302 and answer.location.rstrip("/").endswith("/handson"), say(
        f"POST {path} answered {answer.status} {answer.location!r}: {view}.post should end with "
        f"`return redirect(reverse(\"base\"))` (a 302 back to /handson).\n{answer.text[:500]}",
        f"POST {path} が {answer.status} {answer.location!r} を返しました。{view}.post の最後は "
        f"`return redirect(reverse(\"base\"))` (/handson への 302) にしてください。\n{answer.text[:500]}",
    ))
    return answer


def press_step2(web):
    return press(web, "/handson/task_step2", "Step2", "TaskStep2", "task_step2")


def send_hello_and_see_it_received(web, celery_worker):
    """Press Step2 and wait for the worker's log to say it received the task: (log mark, task id)."""
    mark = celery_worker.mark()
    press_step2(web)
    received = wait_for(lambda: received_ids(celery_worker.log(mark)), timeout=10)
    require(received, say(
        "The worker received no task after Step2. TaskStep2.post must call hello.delay(\"hello world\"), and "
        "handson/settings.py must send tasks to the lab's Redis: CELERY_BROKER_URL = HANDSON_BROKER_URL.",
        "Step2 の後、ワーカーはタスクを受け取りませんでした。TaskStep2.post で hello.delay(\"hello world\") を呼び、"
        "handson/settings.py でラボの Redis に送るようにしてください: CELERY_BROKER_URL = HANDSON_BROKER_URL。",
    ))
    return mark, received[0]


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


def received_ids(log):
    """Ids of the hello tasks the worker's log says it received, in order."""
    return re.findall(rf"Task {re.escape(HELLO)}\[([0-9a-f-]+)\] received", log)


def succeeded_seconds(log, task_id):
    """The run time the worker logged for a task that succeeded, or None."""
    match = re.search(rf"Task {re.escape(HELLO)}\[{re.escape(task_id)}\] succeeded in ([0-9.]+)s", log)
    return float(match.group(1)) if match else None
