"""Step 4 — stop tasks: revoke, and terminate the one that is running.
ステップ 4 — タスクを止める: revoke と、実行中タスクの terminate

What you build
    The "StopAllTasks" button posts to /handson/task_step4. Its view stops every
    task the app sent that has not finished, running or still queued:

        celery_app.control.revoke(tasklog.unfinished(), terminate=True)

    ``revoke`` broadcasts "do not run these ids" to every worker, all the ids in
    one message. (A loop of ``celery_app.AsyncResult(task_id).revoke(terminate=True)``
    is not wrong: it sends one broadcast per id, which is slow with thousands of
    tasks.) Each worker keeps the ids in memory, and at once, when the broadcast
    arrives, stores REVOKED for every id it is not running whose state is still
    PENDING (no entry yet), RECEIVED, RETRY or REJECTED: a queued task shows REVOKED
    right away. It skips the task later, when its turn comes ("Discarding revoked
    task" in its log). ``terminate=True`` also kills the pool process already
    running it (SIGTERM by default), which the prefork pool can do (eventlet and
    gevent can too; solo and threads cannot); the task is stored REVOKED
    ("terminated") and the worker starts a new pool process.

Files to edit
    handson/views.py   class TaskStep4(View) whose post() revokes as above and
                       redirects to "base" (``from .celery import app as celery_app``)
    handson/urls.py    path("handson/task_step4", views.TaskStep4.as_view(), name="task_step4")

Watch for
    - Take the ids from ``tasklog.unfinished()``, the app's own list. The result
      backend has no entry yet for a queued task (step 3), so a loop over the
      backend's keys misses exactly the tasks that have not started.
    - Without ``terminate=True`` a running task is not stopped: it runs to the end
      and ends SUCCESS (the last test here shows it, and that the queued task is
      REVOKED before the running one ends). It does not "run again after a
      restart" either: by default its message was acknowledged when a pool process
      started it, so the broker holds nothing more to deliver
      (tests/test_celery_facts.py checks when the acknowledgement comes). The
      revoked ids themselves live only in the workers' memory (``--statedb`` keeps
      them across a restart).

作るもの
    「StopAllTasks」ボタンは /handson/task_step4 に POST します。そのビューは、アプリが送った
    未完了のタスク (実行中もキュー待ちも) をすべて止めます (上のコード)。

    ``revoke`` は「これらの id を実行するな」を 1 つのメッセージで全ワーカーに通知します
    (``celery_app.AsyncResult(task_id).revoke(terminate=True)`` のループも間違いではありませんが、
    id ごとに 1 回通知するので、タスクが何千もあると遅くなります)。各ワーカーは id をメモリに覚え、
    通知が届いたその時点で、自分が実行中でなく状態がまだ PENDING (項目なし)・RECEIVED・RETRY・
    REJECTED の id を REVOKED として保存します。キュー待ちのタスクはすぐに REVOKED と表示されます。
    実際にスキップするのは後で順番が来たときです (ログに "Discarding revoked task")。
    ``terminate=True`` は実行中のプールプロセスも終了させます (既定は SIGTERM)。prefork プールはこれができます
    (eventlet と gevent も可、solo と threads は不可)。タスクは REVOKED ("terminated") として
    保存され、ワーカーは新しいプールプロセスを起動します。

編集するファイル
    handson/views.py   TaskStep4(View) の post() で上のように revoke し "base" へリダイレクト
                       (``from .celery import app as celery_app``)
    handson/urls.py    path("handson/task_step4", views.TaskStep4.as_view(), name="task_step4")

注意
    - id はアプリ自身の記録 ``tasklog.unfinished()`` から取ります。キュー待ちのタスクは結果
      バックエンドにまだ項目がないので (ステップ 3)、バックエンドのキーを回すループでは、まさに
      開始前のタスクを取りこぼします。
    - ``terminate=True`` がないと実行中のタスクは止まらず、最後まで走って SUCCESS になります
      (最後のテストで確かめます。キュー待ちのタスクが、実行中のタスクが終わる前に REVOKED に
      なることも)。「再起動後に再実行される」こともありません。既定ではそのメッセージはプール
      プロセスが実行を始めた時点で確認応答 (ack) 済みで、ブローカーにはもう配送するものがない
      からです (ack の時点は tests/test_celery_facts.py が確かめます)。取り消した id そのものは
      ワーカーのメモリにだけ残ります (``--statedb`` で再起動後も保持)。
"""
import pytest

from labs.harness.i18n import say
from labs.harness.lesson.checks import (
    HELLO,
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
    # No entry in the result backend is what Celery reports as PENDING.
    running_state, queued_state = (result_backend.state(task) or "PENDING" for task in (running, queued))

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

    The queued task is stored REVOKED at once, while the running one still runs,
    and skipped when its turn comes. The running one is not touched: it prints
    "hello world" and ends SUCCESS.
    """
    celery_worker.require_running()
    broker_control.connect()
    mark = celery_worker.mark()
    running, queued = send_hello_tasks(web, count=2)
    # The queued task's revoke first, at once: it must reach the worker before the running task ends.
    broker_control.revoke(queued, terminate=False)
    _wait_until_running(result_backend, running)
    # The worker writes REVOKED when the broadcast arrives, not when the queued task's turn comes.
    revoked_at_once = wait_for(lambda: result_backend.state(queued) == "REVOKED", timeout=REVOKE_WITHIN)
    running_then = result_backend.state(running)
    broker_control.revoke(running, terminate=False)
    wait_for(lambda: result_backend.state(running) in ENDED and result_backend.state(queued) in ENDED,
             timeout=2 * sleep_seconds + 20)

    assert result_backend.state(queued) == "REVOKED", say(
        f"The queued task revoked without terminate is {result_backend.state(queued)!r}, expected REVOKED "
        "(skipped when its turn came).",
        f"terminate なしで取り消したキュー待ちタスクが {result_backend.state(queued)!r} です。REVOKED "
        "(順番が来たときにスキップ) のはずです。",
    )
    assert revoked_at_once and running_then == "STARTED", say(
        f"The queued task should be stored REVOKED as soon as the revoke arrives, while the running task is "
        f"still STARTED; it was {'REVOKED' if revoked_at_once else result_backend.state(queued)!r} "
        f"{REVOKE_WITHIN:g} s after the revoke, with the running task {running_then!r}.",
        f"キュー待ちタスクは revoke が届いた時点で、実行中のタスクがまだ STARTED のうちに REVOKED と保存される"
        f"はずです。revoke から {REVOKE_WITHIN:g} 秒後、キュー待ちは "
        f"{'REVOKED' if revoked_at_once else result_backend.state(queued)!r}、実行中のタスクは {running_then!r} でした。",
    )
    # The discard comes when a pool process is free again, a moment after the running task has ended.
    discarded = wait_for(lambda: f"Discarding revoked task: {HELLO}[{queued}]" in celery_worker.log(mark), timeout=5)
    assert discarded, say(
        f"The worker's log should say \"Discarding revoked task\" for {queued} when its turn came.",
        f"ワーカーのログには、順番が来たとき {queued} の \"Discarding revoked task\" が出るはずです。",
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
