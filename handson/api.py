"""The hands-on's JSON API and its per-task Stop. You do not need to edit this file.

GET  /handson/api/tasks?page=N     {"tasks": [task, ...], "page", "pages", "total", "per_page", "now"}
                                   newest first, 50 a page (the page number is 1 or more)
GET  /handson/api/tasks/<id>       one task, or 404 {"error"} for an id this app never sent
GET  /handson/api/workers          {"workers": N, "names": [...], "message"}: who answers a ping
POST /handson/tasks/<id>/stop      revoke(terminate=True) for one task (with the CSRF token)

A task is {"id", "name", "args", "state", "result", "sent", "started", "finished", "ready", "parent"}:
``args`` is the JSON list of positional arguments it was sent with; the times are ISO 8601
(UTC) or null; ``parent`` is the id of the task that sent it (null when a view did); ``result``
has one shape per state:

    PENDING           null                               (queued, or unknown to the backend)
    STARTED           {"pid": int, "hostname": str}      (the pool process running it)
    RETRY, FAILURE    {"exc_type": str, "exc_message": str}
    REVOKED           {"reason": str}                    ("revoked", "terminated", ...)
    SUCCESS and any   {"value": <what the task returned>}
    other state

Every error is JSON {"error": "<a sentence>"} with a 4xx, or 503 when Redis or the Celery
app is not there yet (before step 2): never a 500.
"""
import datetime
import threading
import time

from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from . import tasklog

PING_TIMEOUT = 0.5  # seconds the app waits for workers to answer a ping
PING_CACHE = 2.0  # seconds an answer is reused, so polling the page does not ping every time
_ping = {"at": None, "answer": None}
_ping_lock = threading.Lock()


def _when(stamp):
    try:
        return datetime.datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None


def timeline(tasks, now=None, shown=20):
    """Bars of the newest ``shown`` tasks, oldest first, on one time axis from the first one's
    sending to now: [{"task", "wait": (left %, width %), "run": (left %, width %) or None}]; a task that
    ended without starting (revoked while queued) gets a short "run" mark at its end, in its state's colour.
    The page's script draws the same bars again from the JSON API (handson/templates/handson/_live.html)."""
    now = time.time() if now is None else now
    picked = [task for task in tasks[:shown] if _when(task["sent"])][::-1]
    if not picked:
        return []
    start = min(_when(task["sent"]) for task in picked)
    span = max(now - start, 1.0)

    def pct(moment):
        return round(100 * min(max(moment - start, 0), span) / span, 2)

    bars = []
    for task in picked:
        sent, started, finished = _when(task["sent"]), _when(task["started"]), _when(task["finished"])
        end = finished or now
        begun = started if started and (not finished or started <= finished) else None
        wait_end = begun or end
        run = (pct(begun), round(max(pct(end) - pct(begun), 0.3), 2)) if begun else None
        if run is None and task["ready"]:  # ended without starting (revoked in the queue): a mark at its end
            run = (round(max(pct(end) - 0.6, 0), 2), 0.6)
        bars.append({"task": task, "wait": (pct(sent), round(max(pct(wait_end) - pct(sent), 0.3), 2)), "run": run})
    return bars


def _error(message, status):
    return JsonResponse({"error": message}, status=status, json_dumps_params={"ensure_ascii": False})


def page_number(raw):
    """The page number of ?page=..., or raise ValueError with a sentence."""
    if raw in (None, ""):
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
        raise ValueError(f"page must be a whole number from 1 (got {raw[:40]!r}).")
    return int(raw)


def _ping_workers():
    app = tasklog.celery_app()
    try:
        replies = app.control.ping(timeout=PING_TIMEOUT) or []
    except Exception as error:  # noqa: BLE001 - the broker being down is an answer, not a crash
        return {"workers": 0, "names": [], "message": f"the broker (Redis) did not answer: {error}",
                "message_ja": f"ブローカー (Redis) が応答しません: {error}"}
    names = sorted(name for reply in replies for name in reply)
    if names:
        return {"workers": len(names), "names": names, "message": f"{len(names)} worker(s) answer",
                "message_ja": f"{len(names)} 個のワーカーが応答しています"}
    return {"workers": 0, "names": [], "message": "no worker is running",
            "message_ja": "ワーカーが動いていません"}


def workers_answer(fresh_only=False):
    """Who answers a ping, reused for PING_CACHE seconds. With fresh_only, the cached answer
    or None (never waits for a ping: the page itself stays fast)."""
    with _ping_lock:
        now = time.monotonic()
        if _ping["at"] is not None and now - _ping["at"] < PING_CACHE:
            return _ping["answer"]
        if fresh_only:
            return None
        _ping["answer"] = _ping_workers()
        _ping["at"] = time.monotonic()
        return _ping["answer"]


def workers(request):
    if request.method not in ("GET", "HEAD"):
        response = _error(f"{request.method} is not accepted here: this address is read with GET.", 405)
        response["Allow"] = "GET, HEAD"
        return response
    try:
        return JsonResponse(workers_answer())
    except tasklog.TaskLogUnavailable as problem:
        return _error(f"Workers cannot be asked yet: {problem}", 503)


@require_POST
def stop_task(request, task_id):
    """Stop one task: revoke(terminate=True), as StopAllTasks does for all of them."""
    wants_json = "application/json" in request.headers.get("Accept", "")
    try:
        app = tasklog.celery_app()
        task = tasklog.find(task_id)
    except tasklog.TaskLogUnavailable as problem:
        return _error(f"Nothing can be stopped yet: {problem}", 503)
    if task is None:
        return _error(f"This app never sent a task with id {task_id}.", 404)
    if task["ready"]:
        return _error(f"Task {task_id} has already finished ({task['state']}): there is nothing to stop.", 409)
    try:
        app.control.revoke(task_id, terminate=True)
    except Exception as error:  # noqa: BLE001 - a broker that is down is a 503 with its reason
        return _error(f"The broker (Redis) did not take the revoke: {error}", 503)
    if wants_json:
        return JsonResponse({"stopped": task_id})
    return redirect(reverse("base"))

