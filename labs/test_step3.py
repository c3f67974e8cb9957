"""Step 3 — watch task states: PENDING, STARTED, SUCCESS.
ステップ 3 — タスクの状態を見る: PENDING, STARTED, SUCCESS

What you see
    The page lists the tasks the app has sent, newest first, with their state
    read from the result backend (``AsyncResult(task_id).state``); so do
    GET /handson/api/tasks (JSON), /handson/tasks/<id> and /handson/api/tasks/<id>.

    PENDING   the backend has nothing for this id: the task waits in the queue,
              or was never sent. Celery cannot tell those apart (``exists()``, new
              in Celery 5.7, only says whether the backend holds something: False
              for both), so the app keeps its own list of what it sent
              (handson/tasklog.py) and answers 404 for ids that are not on it.
    STARTED   a worker is running it, but only if you ask Celery to record that.
              Its "result" is then the worker's pid and host name, not a result yet.
    SUCCESS   finished; the result and the finish time are stored (for a day).
    FAILURE, REVOKED   raised an error / was stopped (step 4).
    (tests/test_celery_facts.py checks PENDING, exists() and the day.)

What to do
    Press Step2 and reload: the task jumps from PENDING to SUCCESS. By default
    Celery does not store STARTED, so a running task looks just like a queued
    one. Add to handson/settings.py:

        CELERY_TASK_TRACK_STARTED = True

Watch for
    - The worker reads the setting when it starts: restart it.
    - ``AsyncResult`` caches a finished state; ask a fresh one each time.

見えること
    ページには、アプリが送ったタスクが新しい順に並び、状態は結果バックエンドから読みます
    (``AsyncResult(task_id).state``)。GET /handson/api/tasks (JSON)、/handson/tasks/<id>、
    /handson/api/tasks/<id> も同じです。

    PENDING   バックエンドにこの id の情報がない: キューで待っているか、送られていない。Celery は
              両者を区別できないので (Celery 5.7 で加わった ``exists()`` も、バックエンドに何かあるかを
              答えるだけで、どちらにも False)、アプリは送ったタスクを自分で記録し (handson/tasklog.py)、
              記録にない id には 404 を返します。
    STARTED   ワーカーが実行中。ただし Celery に記録を頼んだ場合だけ。このときの "result" は
              まだ結果ではなく、ワーカーの pid とホスト名です。
    SUCCESS   完了。結果と終了時刻が (1 日) 保存されます。
    FAILURE, REVOKED   エラーで終了 / 停止された (ステップ 4)。
    (PENDING、exists()、1 日の保存は tests/test_celery_facts.py が確かめます。)

やること
    Step2 を押して再読み込みすると、タスクは PENDING から SUCCESS に飛びます。Celery は標準では
    STARTED を保存しないので、実行中のタスクはキュー待ちと同じに見えます。handson/settings.py に
    追加します:

        CELERY_TASK_TRACK_STARTED = True

注意
    - ワーカーは起動時に設定を読みます。再起動してください。
    - ``AsyncResult`` は完了した状態をキャッシュします。毎回新しいものに尋ねましょう。
"""
import uuid

import pytest

from labs.harness.i18n import say
from labs.harness.lesson import foundations
from labs.harness.lesson.checks import listed_tasks, send_hello_tasks, tasks_on_page
from labs.harness.lesson.waiting import wait_for

pytestmark = pytest.mark.lab
TRACK_STARTED_HINT = say(
    "Celery stores STARTED only with CELERY_TASK_TRACK_STARTED = True in handson/settings.py "
    "(Celery's task_track_started setting).",
    "Celery が STARTED を保存するのは handson/settings.py に CELERY_TASK_TRACK_STARTED = True "
    "(Celery の task_track_started 設定) がある場合だけです。",
)


def _state_on_api(web, task_id):
    return next((task["state"] for task in listed_tasks(web) if task["id"] == task_id), None)


def _state_on_page(web, task_id):
    return dict(tasks_on_page(web.get("/handson").text)).get(task_id)


def test_a_running_task_is_listed_started_then_success(web, celery_worker, result_backend, sleep_seconds):
    """The task list (page and JSON) shows the task STARTED while it runs, then SUCCESS."""
    celery_worker.require_running()
    [task_id] = send_hello_tasks(web)
    seen_on_api, seen_on_page = [], []

    def finished():
        for seen, read in ((seen_on_api, _state_on_api), (seen_on_page, _state_on_page)):
            state = read(web, task_id)
            if not seen or seen[-1] != state:
                seen.append(state)
        return seen_on_api[-1] == seen_on_page[-1] == "SUCCESS" or seen_on_api[-1] in ("FAILURE", "REVOKED")

    wait_for(finished, timeout=sleep_seconds + 20, interval=0.02)

    assert seen_on_api[-1] == "SUCCESS", say(
        f"Task {task_id} went {' -> '.join(map(str, seen_on_api))} on /handson/api/tasks, never to SUCCESS. "
        "Is the worker running hello?",
        f"タスク {task_id} は /handson/api/tasks 上で {' -> '.join(map(str, seen_on_api))} と変わり、SUCCESS に"
        "なりませんでした。ワーカーは hello を実行していますか？",
    )
    foundations.must_have("track_started", "STARTED" in seen_on_api and "STARTED" in seen_on_page, say(
        f"While the task ran, the list never showed STARTED (API: {' -> '.join(map(str, seen_on_api))}; "
        f"page: {' -> '.join(map(str, seen_on_page))}). {TRACK_STARTED_HINT}",
        f"タスクの実行中、一覧に STARTED が出ませんでした (API: {' -> '.join(map(str, seen_on_api))}、"
        f"ページ: {' -> '.join(map(str, seen_on_page))})。{TRACK_STARTED_HINT}",
    ))
    assert seen_on_page[-1] == "SUCCESS", say(
        f"The page shows task {task_id} as {seen_on_page[-1]!r} after it succeeded.",
        f"成功した後も、ページにはタスク {task_id} が {seen_on_page[-1]!r} と表示されています。",
    )


def test_the_task_detail_agrees_with_the_result_backend(web, celery_worker, result_backend, sleep_seconds):
    """/handson/api/tasks/<id> and /handson/tasks/<id> show what the result backend stores for that id."""
    celery_worker.require_running()
    [task_id] = send_hello_tasks(web)
    stored = wait_for(lambda: result_backend.state(task_id) == "SUCCESS", timeout=sleep_seconds + 20)
    assert stored, say(
        f"The result backend never stored SUCCESS for task {task_id} (it holds {result_backend.state(task_id)!r}).",
        f"結果バックエンドにタスク {task_id} の SUCCESS が保存されませんでした (現在 {result_backend.state(task_id)!r})。",
    )
    meta = result_backend.meta(task_id)

    detail = web.get(f"/handson/api/tasks/{task_id}")
    page = web.get(f"/handson/tasks/{task_id}")

    assert detail.status == 200 and detail.json()["state"] == meta["status"], say(
        f"GET /handson/api/tasks/{task_id} answered {detail.status} {detail.text[:300]}; the backend holds "
        f"{meta['status']}.",
        f"GET /handson/api/tasks/{task_id} が {detail.status} {detail.text[:300]} を返しました。バックエンドは "
        f"{meta['status']} です。",
    )
    assert detail.json()["finished"] and detail.json()["started"], say(
        f"The task's start and finish times are missing: {detail.json()}.",
        f"タスクの開始・終了時刻がありません: {detail.json()}。",
    )
    assert page.status == 200 and task_id in page.text and "SUCCESS" in page.text, say(
        f"GET /handson/tasks/{task_id} answered {page.status} without the id and SUCCESS.",
        f"GET /handson/tasks/{task_id} が {page.status} を返し、id と SUCCESS が含まれていません。",
    )


def test_a_queued_task_is_pending_and_unknown_to_the_backend(web, celery_worker, result_backend, sleep_seconds):
    """With one worker process busy, a second task waits: the list shows it PENDING, the backend has nothing yet."""
    celery_worker.require_running()
    foundations.check("track_started")  # without it, STARTED never comes: no need to wait for it again
    running, queued = send_hello_tasks(web, count=2)

    # Wait until the worker has started it, or has already finished it (no STARTED recorded).
    wait_for(lambda: result_backend.state(running), timeout=10, interval=0.02)
    foundations.must_have("track_started", result_backend.state(running) == "STARTED", say(
        f"The first task was never stored as STARTED (it is {result_backend.state(running)!r}). {TRACK_STARTED_HINT}",
        f"1 つ目のタスクが STARTED として保存されませんでした (現在 {result_backend.state(running)!r})。{TRACK_STARTED_HINT}",
    ))
    queued_state, queued_meta = _state_on_api(web, queued), result_backend.meta(queued)

    assert queued_state == "PENDING" and queued_meta is None, say(
        f"While the first task ran, the second was {queued_state!r} on the list and the backend held "
        f"{queued_meta!r}; expected PENDING and nothing (the worker runs one task at a time: --concurrency=1).",
        f"1 つ目の実行中、2 つ目は一覧で {queued_state!r}、バックエンドは {queued_meta!r} でした。"
        "PENDING と「なし」のはずです (ワーカーは一度に 1 タスク: --concurrency=1)。",
    )
    # Both end before the next test, so it starts with an idle worker.
    done = wait_for(lambda: result_backend.state(queued) == "SUCCESS", timeout=2 * sleep_seconds + 20)
    assert done, say(
        f"The queued task did not end SUCCESS (it is {result_backend.state(queued)!r}).",
        f"待っていたタスクが SUCCESS になりませんでした (現在 {result_backend.state(queued)!r})。",
    )


def test_an_id_the_app_never_sent_is_404(web):
    """Celery answers PENDING for any unknown id; the app knows what it sent and answers 404."""
    unknown = str(uuid.uuid4())

    api, page = web.get(f"/handson/api/tasks/{unknown}"), web.get(f"/handson/tasks/{unknown}")

    assert api.status == 404 and "error" in api.json(), say(
        f"GET /handson/api/tasks/<unknown id> answered {api.status} {api.text[:200]}; expected 404 with an "
        "error message (handson/tasklog.py find() returns None for ids the app never sent).",
        f"GET /handson/api/tasks/<未知の id> が {api.status} {api.text[:200]} を返しました。エラーメッセージ付きの "
        "404 のはずです (handson/tasklog.py の find() は送っていない id に None を返します)。",
    )
    assert page.status == 404, say(
        f"GET /handson/tasks/<unknown id> answered {page.status}; expected 404.",
        f"GET /handson/tasks/<未知の id> が {page.status} を返しました。404 のはずです。",
    )
