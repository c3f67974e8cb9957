"""Step 4 — stop tasks: revoke, and terminate the one that is running.
ステップ 4 — タスクを止める: revoke と、実行中タスクの terminate

What you build
    The "StopAllTasks" button posts to /handson/task_step4. Its view stops every
    task the app sent that has not finished, running or still queued:

        celery_app.control.revoke(tasklog.unfinished(), terminate=True)

    ``revoke`` broadcasts "do not run these ids" to every worker, all the ids in
    one message. (A loop of ``celery_app.AsyncResult(task_id).revoke(terminate=True)``
    is not wrong: it sends one broadcast per id, which is slow with thousands of
    tasks.) A worker skips a revoked task when its turn comes ("Discarding revoked
    task") and stores it REVOKED. ``terminate=True`` also kills the pool process
    already running it (SIGTERM by default), which only a prefork (or eventlet/gevent)
    pool can do; the task is stored REVOKED ("terminated") and the worker starts a
    new pool process.

Files to edit
    handson/views.py   class TaskStep4(View) whose post() revokes as above and
                       redirects to "base" (``from .celery import app as celery_app``)
    handson/urls.py    path("handson/task_step4", views.TaskStep4.as_view(), name="task_step4")

Watch for
    - Take the ids from ``tasklog.unfinished()``, the app's own list. The result
      backend has no entry yet for a queued task (step 3), so a loop over the
      backend's keys misses exactly the tasks that have not started.
    - Without ``terminate=True`` a running task is not stopped: it runs to the end
      and ends SUCCESS. It does not "run again after a restart" either: a revoke
      only lives in the worker's memory (``--statedb`` keeps it across restarts).
      The last test here shows it.

作るもの
    「StopAllTasks」ボタンは /handson/task_step4 に POST します。そのビューは、アプリが送った
    未完了のタスク (実行中もキュー待ちも) をすべて止めます (上のコード)。

    ``revoke`` は「これらの id を実行するな」を 1 つのメッセージで全ワーカーに通知します
    (``celery_app.AsyncResult(task_id).revoke(terminate=True)`` のループも間違いではありませんが、
    id ごとに 1 回通知するので、タスクが何千もあると遅くなります)。ワーカーは順番が来た取り消し済み
    タスクを実行せず ("Discarding revoked task")、REVOKED として保存します。``terminate=True`` は
    実行中のプールプロセスも終了させます (既定は SIGTERM)。これができるのは prefork (または
    eventlet/gevent) プールだけです。タスクは REVOKED ("terminated") として保存され、ワーカーは
    新しいプールプロセスを起動します。

編集するファイル
    handson/views.py   TaskStep4(View) の post() で上のように revoke し "base" へリダイレクト
                       (``from .celery import app as celery_app``)
    handson/urls.py    path("handson/task_step4", views.TaskStep4.as_view(), name="task_step4")

注意
    - id はアプリ自身の記録 ``tasklog.unfinished()`` から取ります。キュー待ちのタスクは結果
      バックエンドにまだ項目がないので (ステップ 3)、バックエンドのキーを回すループでは、まさに
      開始前のタスクを取りこぼします。
    - ``terminate=True`` がないと実行中のタスクは止まらず、最後まで走って SUCCESS になります。
      「再起動後に再実行される」こともありません。revoke はワーカーのメモリにだけ残ります
      (``--statedb`` で再起動後も保持)。最後のテストで確かめます。
"""
import pytest

from labs.harness.i18n import say
from labs.harness.lesson.checks import (
    STOP_ALL_TASKS,
    find_button,
    press_stop_all_tasks,
    printed_hello_world,
    send_hello_and_see_it_received,
    send_hello_tasks,
    succeeded_seconds,
    tasks_on_page,
)
from labs.harness.lesson.waiting import wait_for

pytestmark = pytest.mark.lab
REVOKE_WITHIN = 2.0  # seconds: a revoke is a broadcast message, it arrives in milliseconds
ENDED = ("SUCCESS", "FAILURE", "REVOKED")


def _wait_until_running(result_backend, task_id):
    wait_for(lambda: result_backend.state(task_id), timeout=10, interval=0.02)
    state = result_backend.state(task_id)
    assert state == "STARTED", say(
        f"The first task never showed STARTED (it is {state!r}), so it cannot be stopped while it runs. "
        "Finish step 3 first: CELERY_TASK_TRACK_STARTED = True.",
        f"1 つ目のタスクが STARTED になりませんでした (現在 {state!r})。実行中に止める確認ができません。"
        "先にステップ 3 を終えてください: CELERY_TASK_TRACK_STARTED = True。",
    )


def test_stop_all_tasks_revokes_the_running_and_the_queued_task(web, celery_worker, result_backend, sleep_seconds):
    """StopAllTasks turns a running and a queued task REVOKED within 2 s; neither prints "hello world";
    the worker stays up and runs the next task."""
    celery_worker.require_running()
    find_button(web, *STOP_ALL_TASKS)  # before any task is sent: a missing view fails at once
    mark = celery_worker.mark()
    running, queued = send_hello_tasks(web, count=2)
    _wait_until_running(result_backend, running)

    press_stop_all_tasks(web)
    # Until both have ended, or the queued one has begun: then it was not revoked, and waiting is over.
    wait_for(lambda: (result_backend.state(running) in ENDED and result_backend.state(queued) in ENDED)
             or result_backend.state(queued) == "STARTED", timeout=REVOKE_WITHIN)
    running_state, queued_state = result_backend.state(running), result_backend.state(queued)

    assert running_state == "REVOKED", say(
        f"{REVOKE_WITHIN:g} s after StopAllTasks the running task is {running_state!r}, not REVOKED. A plain "
        "revoke() does not stop a task that has started: call revoke(terminate=True).",
        f"StopAllTasks から {REVOKE_WITHIN:g} 秒後、実行中だったタスクが REVOKED ではなく {running_state!r} です。"
        "ただの revoke() は開始済みのタスクを止めません。revoke(terminate=True) を呼んでください。",
    )
    assert queued_state == "REVOKED", say(
        f"{REVOKE_WITHIN:g} s after StopAllTasks the queued task is {queued_state!r}, not REVOKED: it was not "
        "revoked. A queued task has no entry in the result backend yet; take the ids from "
        "tasklog.unfinished(), which lists queued tasks too.",
        f"StopAllTasks から {REVOKE_WITHIN:g} 秒後、キュー待ちだったタスクが REVOKED ではなく {queued_state!r} です "
        "(取り消されていません)。キュー待ちのタスクは結果バックエンドにまだ項目がありません。キュー待ちも返す "
        "tasklog.unfinished() から id を取ってください。",
    )
    log = celery_worker.log(mark)
    assert f"Terminating {running}" in log and not printed_hello_world(log), say(
        f"The worker's log should show `Terminating {running}` and no \"hello world\". Log since Step2:\n{log}",
        f"ワーカーのログには `Terminating {running}` があり、\"hello world\" はないはずです。Step2 以降のログ:\n{log}",
    )
    page_states = dict(tasks_on_page(web.get("/handson").text))
    assert page_states.get(running) == page_states.get(queued) == "REVOKED", say(
        f"The page lists the two tasks as {page_states.get(running)!r} and {page_states.get(queued)!r}, not REVOKED.",
        f"ページには 2 つのタスクが REVOKED ではなく {page_states.get(running)!r} と {page_states.get(queued)!r} と表示されています。",
    )

    # Terminating killed one pool process, not the worker: the next task runs to the end.
    after, next_task = send_hello_and_see_it_received(web, celery_worker)
    ran = wait_for(lambda: succeeded_seconds(celery_worker.log(after), next_task), timeout=sleep_seconds + 20)
    celery_worker.require_running()
    assert ran, say(
        f"After StopAllTasks the worker did not run a new task to the end. Worker log:\n{celery_worker.log(after)}",
        f"StopAllTasks の後、ワーカーが新しいタスクを最後まで実行しませんでした。ワーカーのログ:\n{celery_worker.log(after)}",
    )


def test_revoke_without_terminate_skips_queued_but_lets_running_finish(
        web, celery_worker, result_backend, broker_control, sleep_seconds):
    """Settles the original hands-on's open question: what does revoke() without terminate do?

    The queued task is skipped (REVOKED). The running one is not touched: it
    prints "hello world" and ends SUCCESS.
    """
    celery_worker.require_running()
    broker_control.connect()
    mark = celery_worker.mark()
    running, queued = send_hello_tasks(web, count=2)
    # The queued task's revoke first, at once: it must reach the worker before the running task ends.
    broker_control.revoke(queued, terminate=False)
    _wait_until_running(result_backend, running)
    broker_control.revoke(running, terminate=False)
    # Both: the worker stores the queued one REVOKED when its turn comes, just after the running one ends.
    wait_for(lambda: result_backend.state(running) in ENDED and result_backend.state(queued) in ENDED,
             timeout=2 * sleep_seconds + 20)

    assert result_backend.state(queued) == "REVOKED", say(
        f"The queued task revoked without terminate is {result_backend.state(queued)!r}, expected REVOKED "
        "(skipped when its turn came).",
        f"terminate なしで取り消したキュー待ちタスクが {result_backend.state(queued)!r} です。REVOKED "
        "(順番が来たときにスキップ) のはずです。",
    )
    assert result_backend.state(running) == "SUCCESS", say(
        f"The running task revoked without terminate ended {result_backend.state(running)!r}, expected SUCCESS: "
        "without terminate a started task runs to the end. Does the worker use the prefork pool?",
        f"terminate なしで取り消した実行中タスクが {result_backend.state(running)!r} で終わりました。SUCCESS のはず "
        "です (terminate なしでは開始済みのタスクは最後まで走ります)。ワーカーは prefork プールですか？",
    )
    assert printed_hello_world(celery_worker.log(mark)) == 1, say(
        "Exactly one \"hello world\" was expected in the worker's log (the running task's).",
        "ワーカーのログには \"hello world\" がちょうど 1 回 (実行中だったタスクの分) 出るはずです。",
    )
