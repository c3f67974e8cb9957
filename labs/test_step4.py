"""Step 4 — stop tasks: revoke, and terminate the one that is running.
ステップ 4 — タスクを止める: revoke と、実行中タスクの terminate

What you build
    The "StopAllTasks" button posts to /handson/task_step4. Its view stops every
    task the app sent that has not finished, running or still queued, however
    many there are. Two tools do it, each for what it is good at:

    ``revoke(ids, terminate=True)`` broadcasts "do not run these ids" to every
    worker, all the ids in one message (a loop of
    ``celery_app.AsyncResult(task_id).revoke(terminate=True)`` sends one broadcast
    per id). When it arrives, each worker stores REVOKED for every id it is not
    running whose state is still PENDING, RECEIVED, RETRY or REJECTED, kills the
    pool process of every one of them it runs (``terminate``: SIGTERM by default,
    the task stored REVOKED "terminated", a new pool process started), marks every
    one it holds but has not started to be killed the moment it starts
    (``Request.terminate``, ``celery/worker/request.py``), and adds the ids to the
    set it looks a task up in when the task's turn comes ("Discarding revoked
    task"). That set lives in memory only, and holds 50,000 ids for 3 hours
    (``celery/worker/state.py``: a LimitedSet of CELERY_WORKER_REVOKES_MAX ids,
    CELERY_WORKER_REVOKE_EXPIRES seconds; ``--statedb`` keeps it across a restart).
    A broadcast of more ids leaves in it any 50,000 of them (``celery/worker/
    control.py`` takes the ids as a set, in no order), and a later broadcast's ids
    are always the newest. So a revoke alone does not stop a backlog larger than
    the set: the forgotten tasks still queued run after all, while the page said
    REVOKED, and a forgotten one the worker holds starts, only to be killed as it
    starts (its first moments run, and each costs a pool process). Here
    the lab starts the worker with CELERY_WORKER_REVOKES_MAX=10, so that 30 tasks
    are a backlog.

    ``purge`` drops the messages waiting in a queue, however many: what no worker
    has taken yet never runs, and nothing has to be remembered. It cannot reach
    what a worker already holds: the task it runs, the ones it fetched ahead
    (prefetch), the ones waiting for a countdown.

    So the view does three things:

        # 1. purge the queues the app sends to (Celery's default one, and the
        #    queues CELERY_TASK_ROUTES names from step 8 on)
        with celery_app.connection_for_write() as connection:
            for queue in queues:
                connection.default_channel.queue_purge(queue)
        # 2. ask the workers which of the ids they hold: {worker: {id: [state, request]}}
        answers = celery_app.control.inspect(timeout=0.3).query_task(*task_ids) or {}
        held = {task_id for found in answers.values() for task_id in found}
        # 3. two broadcasts: the dropped ids (every worker stores them REVOKED, so
        #    the page says what became of them), then the held ones, terminated:
        #    sent last, they are the newest ids each worker remembers, and are
        #    discarded when their turn comes: none of them starts
        celery_app.control.revoke(sorted(set(task_ids) - held))
        celery_app.control.revoke(sorted(held), terminate=True)

    The prefork pool can terminate (eventlet and gevent can too; solo and threads
    cannot). What starts in the fraction of a second the view takes to ask is held
    by then, and terminated with the rest.

Files to edit
    handson/views.py   class TaskStep4(View) whose post() stops them as above and
                       redirects to "base" (``from .celery import app as celery_app``)
    handson/urls.py    path("handson/task_step4", views.TaskStep4.as_view(), name="task_step4")

Watch for
    - Take the ids from ``tasklog.unfinished()``, the app's own list. The result
      backend has no entry yet for a queued task (step 3), so a loop over the
      backend's keys misses exactly the tasks that have not started.
    - Without ``terminate=True`` a running task is not stopped: it runs to the end
      and ends SUCCESS (a test here shows it, and that the queued task is REVOKED
      before the running one ends). It does not "run again after a restart"
      either: by default its message was acknowledged when a pool process started
      it, so the broker holds nothing more to deliver (tests/test_celery_facts.py
      checks when the acknowledgement comes).
    - terminate is a blunt tool: the worker signals the pool process by its pid
      (``Request.terminate``, ``celery/worker/request.py``). A task that ended just
      before the signal arrives leaves that process to the next task, which dies
      instead. Celery's workers guide calls it a last resort for administrators.
      A stop-everything button accepts that (every task is to stop anyway), and the
      window is the moment between a task's end and the broadcast's arrival; to stop
      one task of many, prefer a revoke without terminate, and tasks short enough
      to end on their own (or a time limit, step 7).

作るもの
    「StopAllTasks」ボタンは /handson/task_step4 に POST します。そのビューは、アプリが送った
    未完了のタスク (実行中もキュー待ちも) を、いくつあってもすべて止めます。2 つの道具を、それぞれ
    得意なことに使います。

    ``revoke(ids, terminate=True)`` は「これらの id を実行するな」を 1 つのメッセージで全ワーカーに通知します
    (``celery_app.AsyncResult(task_id).revoke(terminate=True)`` のループは id ごとに 1 回通知します)。通知が届くと
    各ワーカーは、自分が実行中でなく状態がまだ PENDING・RECEIVED・RETRY・REJECTED の id を REVOKED として保存し、
    自分が実行中のもののプールプロセスを終了させ (``terminate``: 既定は SIGTERM。タスクは REVOKED "terminated" と
    して保存され、新しいプールプロセスが起動します)、持っているがまだ始めていないものには、始まった瞬間に終了させる
    印を付け (``Request.terminate``、``celery/worker/request.py``)、id を集合に加えます。タスクの順番が来たとき、その集合を引いて
    スキップします ("Discarding revoked task")。集合はメモリにだけあり、50,000 個を 3 時間保持します
    (``celery/worker/state.py``: CELERY_WORKER_REVOKES_MAX 個・CELERY_WORKER_REVOKE_EXPIRES 秒の LimitedSet。
    ``--statedb`` で再起動後も保持)。それより多い通知では、どの 50,000 個が残るかは決まっていません
    (``celery/worker/control.py`` は id を順序のない集合として受け取ります)。後の通知の id は常に最も新しい
    ものになります。そのため revoke だけでは集合より大きな滞留を止められません。忘れられたタスクのうちキューに
    あるものは、ページが REVOKED と表示したのに結局実行され、ワーカーが持っているものは始まってすぐ終了させ
    られます (最初の一瞬は実行され、1 つごとにプールプロセスを 1 つ失います)。ここではラボがワーカーを CELERY_WORKER_REVOKES_MAX=10 で起動する
    ので、30 個のタスクで滞留になります。

    ``purge`` はキューで待っているメッセージを、いくつあっても捨てます。まだどのワーカーも取っていないものは
    実行されず、何も覚えておく必要がありません。ただしワーカーがすでに持っているもの (実行中のタスク、先読み
    (prefetch) したもの、カウントダウン待ちのもの) には届きません。

    そこでビューは 3 つのことをします (上のコード): 1. アプリが送るキュー (Celery の既定のキューと、ステップ 8
    からは CELERY_TASK_ROUTES が指定するキュー) を purge する。2. ワーカーにどの id を持っているか尋ねる
    (``query_task``)。3. 2 回通知する: 捨てた id (各ワーカーが REVOKED と保存するので、ページに結末が表示
    されます)、次に持っているものを terminate で。最後に送るので、それが各ワーカーの覚える最も新しい id に
    なり、順番が来たときに捨てられます。どれも始まりません。

    終了させられるのは prefork プールです (eventlet と gevent も可、solo と threads は不可)。ビューが尋ねている
    一瞬の間に始まったものは、その時点で持たれているので、ほかと一緒に終了させられます。

編集するファイル
    handson/views.py   TaskStep4(View) の post() で上のように止め "base" へリダイレクト
                       (``from .celery import app as celery_app``)
    handson/urls.py    path("handson/task_step4", views.TaskStep4.as_view(), name="task_step4")

注意
    - id はアプリ自身の記録 ``tasklog.unfinished()`` から取ります。キュー待ちのタスクは結果
      バックエンドにまだ項目がないので (ステップ 3)、バックエンドのキーを回すループでは、まさに
      開始前のタスクを取りこぼします。
    - ``terminate=True`` がないと実行中のタスクは止まらず、最後まで走って SUCCESS になります
      (ここのテストで確かめます。キュー待ちのタスクが、実行中のタスクが終わる前に REVOKED に
      なることも)。「再起動後に再実行される」こともありません。既定ではそのメッセージはプール
      プロセスが実行を始めた時点で確認応答 (ack) 済みで、ブローカーにはもう配送するものがない
      からです (ack の時点は tests/test_celery_facts.py が確かめます)。
    - terminate は荒い道具です。ワーカーはプールプロセスを pid で止めます (``Request.terminate``、
      ``celery/worker/request.py``)。シグナルが届く直前にタスクが終わっていれば、そのプロセスは次の
      タスクを実行しており、そちらが止められます。Celery のワーカーガイドは管理者の最後の手段と
      しています。全部止めるボタンではそれを受け入れられ (どのタスクも止めるのですから)、危険な
      時間はタスクの終わりから通知の到着までの一瞬です。多くの中の 1 つを止めるなら、terminate
      なしの revoke と、自分で終わる短いタスク (または時間制限、ステップ 7) を選んでください。
"""
import json
import time

import pytest

from labs.harness.i18n import say
from labs.harness.lesson.checks import (
    ENDED,
    HELLO,
    STOP_ALL_TASKS,
    find_button,
    press_stop_all_tasks,
    printed_hello_world,
    send_hello_tasks,
    tasks_on_page,
    wait_until_started,
)
from labs.harness.lesson.waiting import wait_for
from labs.harness.services.worker import WorkerSpec

REVOKES_KEPT = 10  # revoked ids the worker remembers here (CELERY_WORKER_REVOKES_MAX; Celery's own default: 50,000)
BACKLOG = 30  # tasks queued behind the running one: more than the worker remembers
# The worker's hello sleeps 5 s here (HANDSON_SLEEP for the worker alone): the first task must still be running
# when the 30 behind it have been sent (one press each, on a busy machine up to 3 s) and StopAllTasks has asked
# the workers what they hold. Only the test that lets a running task finish waits for the whole sleep.
WORKER_SLEEP = 5
# The worker fetches 8 ahead (1 process x --prefetch-multiplier=8): with the running one it holds 9, fewer than
# the 10 it remembers, so the held ids sent last in a broadcast of their own are all kept; a broadcast of all 31
# keeps every held one only by chance (any 10 of the 31: 22 times in 44 million).
PREFETCH = 8
pytestmark = [pytest.mark.lab, pytest.mark.stack(workers=[
    WorkerSpec(env=(("CELERY_WORKER_REVOKES_MAX", str(REVOKES_KEPT)), ("HANDSON_SLEEP", str(WORKER_SLEEP))),
               options=(f"--prefetch-multiplier={PREFETCH}",))])]
REVOKE_WITHIN = 2.0  # seconds: a revoke is a broadcast message, it arrives in milliseconds
RUNS_WITHIN = 3.0  # seconds: a queued task that was not stopped starts as soon as the terminated one is gone


def test_stop_all_tasks_revokes_the_running_and_the_queued_task(web, celery_worker, result_backend, broker_control,
                                                              sleep_seconds):
    """StopAllTasks turns a running and a queued task REVOKED within 2 s; neither prints "hello world";
    the worker stays up and takes the next task."""
    celery_worker.require_running()
    find_button(web, *STOP_ALL_TASKS)  # before any task is sent: a missing view fails at once
    mark = celery_worker.mark()
    running, queued = send_hello_tasks(web, count=2)
    wait_until_started(result_backend, running)

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

    # Terminating killed one pool process, not the worker: it stays up and runs the next task, once the pool has
    # replaced the process (at once, or at the pool's next check, up to 5 s later). The next task is Celery's own
    # celery.accumulate, which ends at once: a hello would still run when the next test starts, and hold it up.
    mark = celery_worker.mark()
    marker = broker_control.send_builtin("celery.accumulate", args=("after StopAllTasks",))
    ran = wait_for(lambda: f"celery.accumulate[{marker}] succeeded" in celery_worker.log(mark), timeout=10)
    celery_worker.require_running()
    assert ran, say(
        f"After StopAllTasks the worker did not run the next task within 10 s (celery.accumulate {marker}): "
        f"terminate should have killed one pool process and the pool replaced it. Its log:\n{celery_worker.log_tail(15)}",
        f"StopAllTasks の後、ワーカーが次のタスク (celery.accumulate {marker}) を 10 秒以内に実行しませんでした。"
        f"terminate はプールプロセスを 1 つ終了させ、プールがそれを置き換えるはずです。ログ:\n{celery_worker.log_tail(15)}",
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
    wait_until_started(result_backend, running)
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


def test_stop_all_tasks_stops_a_backlog_larger_than_a_worker_remembers(web, celery_worker, result_backend,
                                                                       broker_control):
    """30 tasks queued behind a running one, with a worker that remembers only 10 revoked ids: after
    StopAllTasks none of them starts (to the end, or killed as it starts), nor is left waiting where the worker
    would start it (in the queue, or fetched ahead, while the worker does not remember it as revoked), and the page
    shows every one REVOKED."""
    celery_worker.require_running()
    broker_control.connect()
    running, *queued = send_hello_tasks(web, count=BACKLOG + 1)
    wait_until_started(result_backend, running)

    press_stop_all_tasks(web)

    seen = {"ids": None, "since": time.monotonic(), "none_waiting": None}

    def remembered():
        """The revoked ids the worker remembers, once the broadcasts StopAllTasks sent are all taken in (the set
        has held still for 0.3 s); None before."""
        ids = broker_control.revoked_ids(celery_worker.hostname()) or set()
        if ids != seen["ids"]:
            seen.update(ids=ids, since=time.monotonic())
        return ids if ids and time.monotonic() - seen["since"] > 0.3 else None

    def verdict():
        """What became of the queued tasks, once it is known: ("ran" | "started" | "will run" | "will start", ids)
        or ("stopped", [])."""
        metas = {task: result_backend.meta(task) or {} for task in queued}
        ran = [task for task, meta in metas.items() if meta.get("status") == "SUCCESS"]
        if ran:
            return "ran", ran
        # A held task flagged by terminate=True that the worker no longer remembers as revoked starts when its
        # turn comes and is killed at once: stored REVOKED "terminated", as the running one is.
        started = [task for task, meta in metas.items() if "terminated" in json.dumps(meta.get("result"))]
        if started:
            return "started", started
        unacknowledged = set(broker_control.unacknowledged())
        waiting = (set(broker_control.queued()) | unacknowledged) & set(queued)
        if not waiting:
            # The last held one may be between its acknowledgement (as it starts) and its "terminated": judged
            # once nothing has waited for 0.5 s.
            seen["none_waiting"] = seen["none_waiting"] or time.monotonic()
            return ("stopped", []) if time.monotonic() - seen["none_waiting"] > 0.5 else None
        seen["none_waiting"] = None
        known = remembered()
        if known is None:
            return None
        # Each one still waiting must be among the ids the worker remembers: it is discarded when its turn comes.
        forgotten = waiting - known
        if forgotten & unacknowledged:
            return "will start", sorted(forgotten & unacknowledged)
        return ("will run", sorted(forgotten)) if forgotten else ("stopped", [])

    outcome, tasks = wait_for(verdict, timeout=RUNS_WITHIN, interval=0.05) or ("will run", ["(still waiting)"])
    how = {
        "ran": say("ran to the end", "最後まで実行されました"),
        "started": say("were started after the press, and killed as they started: the worker held them (fetched "
                       "ahead) and no longer remembered their ids as revoked, so only terminate=True's mark stopped "
                       "them; their first moments ran, and each cost a pool process",
                       "押した後に開始され、始まった瞬間に終了させられました。ワーカーが先読みで持っていて、その id を"
                       "取り消し済みとしてもう覚えていなかったので、止めたのは terminate=True の印だけです。最初の一瞬は"
                       "実行され、1 つごとにプールプロセスを 1 つ失いました"),
        "will start": say("are held by the worker (fetched ahead) with their ids no longer among the revoked ones it "
                          "remembers: each will start when its turn comes, to be killed as it starts",
                          "ワーカーが (先読みで) 持っていて、その id はワーカーが覚えている取り消し済み id にもうありません。"
                          "順番が来るとそれぞれ開始し、始まった瞬間に終了させられます"),
        "will run": say("are still waiting in the queue with their ids no longer among the revoked ones the worker "
                        "remembers: they will run",
                        "まだキューで待っていて、その id はワーカーが覚えている取り消し済み id にもうないので、実行されます"),
    }.get(outcome, "")
    assert outcome == "stopped", say(
        f"After StopAllTasks {len(tasks)} of the {BACKLOG} queued tasks {how}. A worker remembers {REVOKES_KEPT} "
        "revoked ids here (CELERY_WORKER_REVOKES_MAX; 50,000 by default, for 3 hours), whichever a broadcast of more "
        "leaves it: a revoke alone cannot stop a backlog larger than that. First drop what no worker has taken yet: "
        "purge the queues the app sends to (connection.default_channel.queue_purge). Then ask the workers which of the "
        "ids they hold (inspect().query_task(*ids)), and revoke those with terminate=True in a broadcast of their own, "
        "sent last: they are then the newest ids each worker remembers.",
        f"StopAllTasks の後、キュー待ち {BACKLOG} 個のうち {len(tasks)} 個が{how}。ここでワーカーが覚える取り消し id は "
        f"{REVOKES_KEPT} 個だけで (CELERY_WORKER_REVOKES_MAX、既定は 50,000 個を 3 時間)、それより多い通知ではどれが残るか"
        "決まっていません。revoke だけではそれより大きな滞留を止められません。まず、まだ誰も取っていないものを捨てます: "
        "アプリが送るキューを purge します (connection.default_channel.queue_purge)。次に、ワーカーがどの id を持って"
        "いるか尋ね (inspect().query_task(*ids))、それを別の通知で最後に terminate=True で revoke します。するとそれが"
        "各ワーカーの覚える最も新しい id になります。",
    )
    wait_for(lambda: all(result_backend.state(task) == "REVOKED" for task in queued), timeout=REVOKE_WITHIN)
    states = {task: result_backend.state(task) for task in queued}
    page = dict(tasks_on_page(web.get("/handson").text))
    shown = [page.get(task) for task in queued]
    assert set(states.values()) == {"REVOKED"} and set(shown) == {"REVOKED"}, say(
        f"After StopAllTasks the queued tasks are stored as {sorted(map(str, set(states.values())))} and the page "
        f"shows {sorted(map(str, set(shown)))}: every one should be REVOKED. A task purged from the queue has no "
        "state yet (PENDING): revoke the purged ids too, in the same broadcast, and the workers store REVOKED for them.",
        f"StopAllTasks の後、キュー待ちだったタスクの保存状態は {sorted(map(str, set(states.values())))}、ページの表示は "
        f"{sorted(map(str, set(shown)))} です。すべて REVOKED のはずです。キューから捨てたタスクには状態がまだ"
        "ありません (PENDING)。捨てた id も同じ通知で revoke すると、ワーカーが REVOKED と保存します。",
    )
