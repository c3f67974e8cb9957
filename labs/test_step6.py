"""Step 6 — a worker dies mid-task: deliver the task again, and do its effect once.
ステップ 6 — ワーカーがタスクの途中で死ぬ: タスクを再配送し、その効果は 1 回だけにする

What you see
    The prefork worker runs each task in a pool process. If that process dies in
    the middle of a task (killed by the out-of-memory killer, a segfault in a C
    library, ``kill -9``), the worker notices, usually at once (it watches each
    pool process's exit) and otherwise at its pool check every 5 s. It starts a
    new pool process and, by default, stores the task FAILURE with
    ``WorkerLostError``. The work is lost: by default a message is acknowledged
    when a pool process *starts* the task, so the broker had already forgotten it.
    (Messages a worker has only reserved ahead, prefetched, are not acknowledged
    yet: step 8 relies on that.) The first test shows it with hello: it kills the
    pool process whose pid the STARTED result holds.

What you build
    The "Step6" button posts to /handson/task_step6. Its view sends
    ``send_receipt.delay(f"order-{uuid.uuid4().hex[:8]}")``. The task sends the
    order's receipt through the given mail service (handson/receipts.py), then
    does its slow part (sleep settings.HANDSON_SLEEP). The lab kills its pool
    process during that sleep. Make it survive:

        @shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
        def send_receipt(self, order):
            receipts.send(order, idempotency_key=self.request.id)
            time.sleep(settings.HANDSON_SLEEP)
            return f"{order} filed"

    bind=True               Celery passes the task itself as the first argument,
                            ``self``: ``self.request.id`` is the task's id. (Without
                            it, ``send_receipt(self, order)`` wants two arguments,
                            and ``.delay(order)`` fails in the view with
                            "TypeError: send_receipt() missing 1 required
                            positional argument".)
    acks_late               acknowledge the message when the task ends, not when
                            a pool process starts it.
    reject_on_worker_lost   when the pool process dies, give the message back to
                            the queue (reject with requeue) instead of storing
                            FAILURE: the task is delivered again and runs again.
                            (The worker's log still says "Task handler raised
                            error: WorkerLostError" when the process dies; then
                            "received" again, and "succeeded".)

    Running again means running twice: the receipt was already sent before the
    process died. So the side effect takes an *idempotency key* that is the same
    on every run of the task: ``self.request.id`` (the task id does not change
    when a message is delivered again), or the order number. The mail service
    sends once per key. The lab counts the receipts in Redis: exactly one.

    Declare these on the task, not for every task: CELERY_TASK_ACKS_LATE and
    CELERY_TASK_REJECT_ON_WORKER_LOST in settings.py apply to every task of the
    app, hello too (the first test then sees hello run again instead of being
    lost, and says so). Only a task whose effects are idempotent may safely run
    twice. Celery 5.7 also has ``retry_on_worker_lost=True``: the lost task is sent
    again as ``self.retry()`` would send it. It takes precedence over
    reject_on_worker_lost (which still applies if sending the retry fails), counts
    against max_retries, and waits default_retry_delay (180 s unless you set it).

When the whole worker dies, not a pool process
    Then nobody is left to give the message back. With acks_late on Redis, the
    message waits in the broker's unacked records (the hash ``unacked`` holds the
    message, the sorted set ``unacked_index`` the time it was delivered) until
    the *visibility timeout* has passed (CELERY_BROKER_TRANSPORT_OPTIONS =
    {"visibility_timeout": 3600}, one hour by default). Then a worker's sweep
    puts it back on the queue. Kombu sweeps about every 100 s by default
    (``unacked_restore_interval`` 10 s, scanning every ``unacked_restore_throttle``
    = 10th time), so the message comes back up to about 100 s after the timeout.
    Keep the timeout longer than your longest task and your longest
    countdown/ETA, or Redis hands a task that is merely slow (or not due yet) to
    a second worker.

Checked on the installed Celery
    tests/test_celery_facts.py asserts on real workers what this lesson says
    about the libraries: when the acknowledgement comes, the two unacked
    records, a whole worker killed and its message back after the visibility
    timeout, the defaults behind "about 100 s", and retry_on_worker_lost.

Files to edit
    handson/tasks.py   send_receipt as above (``from . import receipts``)
    handson/views.py   class TaskStep6(View) whose post() sends it and redirects to "base"
    handson/urls.py    path("handson/task_step6", views.TaskStep6.as_view(), name="task_step6")

見えること
    prefork ワーカーは各タスクをプールプロセスで実行します。そのプロセスがタスクの途中で死ぬと
    (メモリ不足で強制終了、C ライブラリのセグフォ、``kill -9``)、ワーカーはたいていすぐに
    (プールプロセスの終了を見張っています)、そうでなければ 5 秒ごとのプール点検で気づきます。
    新しいプールプロセスを起動し、既定ではタスクを ``WorkerLostError`` の FAILURE として保存します。
    処理は失われます。既定ではメッセージはプールプロセスがタスクを *開始した* 時点で確認応答 (ack)
    され、ブローカーはもう忘れているからです (先取り (prefetch) で予約しただけのメッセージはまだ
    ack されていません。ステップ 8 はこれを使います)。最初のテストは hello でこれを示します
    (STARTED の結果にある pid のプールプロセスを kill します)。

作るもの
    「Step6」ボタンは /handson/task_step6 に POST します。そのビューは
    ``send_receipt.delay(f"order-{uuid.uuid4().hex[:8]}")`` を送ります。タスクは用意済みのメール
    サービス (handson/receipts.py) で注文の領収書を送り、その後で重い部分 (settings.HANDSON_SLEEP
    秒の sleep) を行います。ラボはその sleep 中にプールプロセスを kill します。生き残るようにします
    (上のコード)。

    bind=True               Celery がタスク自身を最初の引数 ``self`` として渡します。
                            ``self.request.id`` がタスクの id です (これがないと
                            ``send_receipt(self, order)`` は引数を 2 つ求め、ビューの
                            ``.delay(order)`` が "TypeError: send_receipt() missing 1 required
                            positional argument" で失敗します)。
    acks_late               メッセージの確認応答を、プールプロセスが開始したときではなくタスクが
                            終わったときに行います。
    reject_on_worker_lost   プールプロセスが死んだら、FAILURE を保存する代わりにメッセージをキューに戻し
                            (requeue つき reject)、タスクは再配送されてもう一度実行されます (プロセスが
                            死んだときワーカーのログには "Task handler raised error: WorkerLostError" が
                            それでも出ます。その後もう一度 "received"、そして "succeeded" です)。

    もう一度実行するとは 2 回実行することです。プロセスが死ぬ前に領収書はもう送られています。そこで
    副作用には、タスクのどの実行でも同じ *冪等キー* を渡します: ``self.request.id`` (再配送されても
    タスク id は変わりません) か注文番号です。メールサービスはキーごとに 1 回だけ送ります。ラボは
    Redis で領収書を数えます: ちょうど 1 通です。

    これらは全タスクではなくこのタスクに宣言します。settings.py の CELERY_TASK_ACKS_LATE と
    CELERY_TASK_REJECT_ON_WORKER_LOST はアプリの全タスクに効き、hello にも効きます (最初のテストで
    hello が失われずに再実行され、テストがそう伝えます)。2 回実行してよいのは効果が冪等なタスク
    だけです。Celery 5.7 には ``retry_on_worker_lost=True`` もあり、失われたタスクを
    ``self.retry()`` と同じように送り直します。reject_on_worker_lost より優先され (リトライの
    送信に失敗したときは reject_on_worker_lost が効きます)、max_retries に数えられ、
    default_retry_delay (設定しなければ 180 秒) 待ちます。

プールプロセスではなく、ワーカー全体が死んだとき
    メッセージを戻す者がいません。Redis で acks_late のとき、メッセージはブローカーの未確認応答の
    記録 (ハッシュ ``unacked`` にメッセージ、ソート済みセット ``unacked_index`` に配送時刻) に残り、
    *visibility timeout* (CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}、既定
    1 時間) が過ぎると、ワーカーの見回りがキューに戻します。Kombu の見回りは既定でおよそ 100 秒
    ごと (``unacked_restore_interval`` 10 秒、実際に調べるのは ``unacked_restore_throttle`` = 10 回に
    1 回) なので、メッセージが戻るのはタイムアウトから最大 100 秒ほど後です。この値は最長のタスクや
    最長の countdown/ETA より長くしてください。短いと、遅いだけの (またはまだ時刻の来ていない)
    タスクを Redis が 2 つ目のワーカーにも渡してしまいます。

インストール済みの Celery で確認
    このレッスンがライブラリについて述べること (ack の時点、2 つの未確認応答の記録、ワーカー全体を
    kill したときに visibility timeout 後にメッセージが戻ること、「約 100 秒」の元の既定値、
    retry_on_worker_lost) は、tests/test_celery_facts.py が実際のワーカーで確かめます。

編集するファイル
    handson/tasks.py   上の send_receipt (``from . import receipts``)
    handson/views.py   TaskStep6(View) の post() で送り "base" へリダイレクト
    handson/urls.py    path("handson/task_step6", views.TaskStep6.as_view(), name="task_step6")
"""
import re

import pytest

from labs.harness.i18n import say
from labs.harness.lesson.checks import (
    ENDED,
    HELLO,
    for_every_task,
    press_for_new_tasks,
    printed_hello_world,
    send_hello_tasks,
    wait_until_started,
)
from labs.harness.lesson.waiting import wait_for

pytestmark = pytest.mark.lab
SEND_RECEIPT = "handson.tasks.send_receipt"
NOTICED_WITHIN = 5  # seconds: the worker checks its pool processes every 5 s (it usually notices at once)
FIX = "@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)"
WORKER_LOST_OPTIONS = ("task_acks_late", "task_reject_on_worker_lost", "task_retry_on_worker_lost")


def _kill_the_pool_process_running(task_id, celery_worker, result_backend, broker_control, ready=lambda: True):
    """Wait until the task is STARTED (and ``ready()``), then SIGKILL the pool process its result names;
    return its pid, and whether Redis still held the task's message unacknowledged just before the kill
    (acks_late's doing)."""
    meta = wait_until_started(result_backend, task_id, ready=ready)
    pid = meta["result"]["pid"]
    assert pid in celery_worker.pool_pids(), say(
        f"The STARTED result names pid {pid}, which is not a pool process of the lab's worker "
        f"({celery_worker.pool_pids()}): is another worker using the lab's Redis?",
        f"STARTED の結果の pid {pid} はラボのワーカーのプールプロセス ({celery_worker.pool_pids()}) では"
        "ありません。別のワーカーがラボの Redis を使っていませんか？",
    )
    unacknowledged = task_id in broker_control.unacknowledged()
    celery_worker.kill_pool_process(pid)
    return pid, unacknowledged


def test_by_default_a_task_whose_pool_process_dies_is_lost(
        web, celery_worker, result_backend, broker_control, sleep_seconds):
    """hello's pool process is killed mid-task: FAILURE WorkerLostError, no "hello world", and the worker
    carries on with a new pool process."""
    celery_worker.require_running()
    found = for_every_task(celery_worker, broker_control, WORKER_LOST_OPTIONS)
    written = ", ".join(found.values())
    where = "handson/settings.py" if all(text.startswith("CELERY_") for text in found.values()) else "handson/celery.py"
    redelivers = {"task_acks_late", "task_reject_on_worker_lost"} <= set(found) or "task_retry_on_worker_lost" in found
    # Decided before any task runs: with these for every task, hello itself would run again.
    assert not redelivers, say(
        f"{where} sets {written}: a task setting of the app applies to every task, so hello would run again "
        f"instead of being lost. Remove {'them' if len(found) > 1 else 'it'} from {where} and declare the options "
        "on send_receipt alone, in "
        f"handson/tasks.py: {FIX}.",
        f"{where} で {written} としています。アプリのタスク設定は全タスクに効くので、hello も失われずに"
        f"再実行されてしまいます。{where} から消し、handson/tasks.py の send_receipt だけに宣言してください: {FIX}。",
    )
    mark = celery_worker.mark()
    [task_id] = send_hello_tasks(web)

    pid, _ = _kill_the_pool_process_running(task_id, celery_worker, result_backend, broker_control)
    wait_for(lambda: result_backend.state(task_id) in ENDED, timeout=NOTICED_WITHIN + sleep_seconds + 10)
    meta = result_backend.meta(task_id)

    assert meta["status"] == "FAILURE" and meta["result"].get("exc_type") == "WorkerLostError", say(
        f"hello's pool process (pid {pid}) was killed; the task should end FAILURE WorkerLostError, it is "
        f"{meta['status']} {meta['result']!r}. hello keeps Celery's defaults: leave acks_late off for it.",
        f"hello のプールプロセス (pid {pid}) を kill しました。タスクは FAILURE WorkerLostError になるはずですが、"
        f"{meta['status']} {meta['result']!r} です。hello は Celery の既定のままにしてください (acks_late なし)。",
    )
    log = celery_worker.log(mark)
    assert f"pid:{pid} exited with 'signal 9 (SIGKILL)'" in log and not printed_hello_world(log), say(
        f"The worker's log should say pool process {pid} exited with SIGKILL, and show no \"hello world\":\n{log}",
        f"ワーカーのログには、プールプロセス {pid} が SIGKILL で終了したことが出て、\"hello world\" は出ないはずです:\n{log}",
    )
    new_pool = wait_for(lambda: [p for p in celery_worker.pool_pids() if p != pid], timeout=10)
    celery_worker.require_running()
    assert new_pool, say(
        "The worker did not start a new pool process after the old one died.",
        "古いプールプロセスが死んだ後、ワーカーが新しいプールプロセスを起動しませんでした。",
    )
    assert re.search(rf"Task {re.escape(HELLO)}\[{re.escape(task_id)}\] received", log), say(
        f"The worker's log does not show hello {task_id} received.",
        f"ワーカーのログに hello {task_id} の受信がありません。",
    )


def test_a_killed_send_receipt_is_delivered_again_and_sends_one_receipt(
        web, celery_worker, result_backend, broker_control, sleep_seconds):
    """send_receipt's pool process is killed after the receipt went out: the task is delivered again,
    ends SUCCESS, and the customer has exactly one receipt."""
    celery_worker.require_running()
    mark = celery_worker.mark()
    [task] = press_for_new_tasks(web, "Step6", "TaskStep6", "task_step6", "/handson/task_step6", SEND_RECEIPT, 1)
    try:
        [order] = task["args"]
    except (ValueError, TypeError):
        order = None
    assert isinstance(order, str), say(
        f"Step6 sent send_receipt{tuple(task['args'])}; expected one argument, the order number: "
        "send_receipt.delay(f\"order-{uuid.uuid4().hex[:8]}\") in TaskStep6.post (handson/views.py).",
        f"Step6 が send_receipt{tuple(task['args'])} を送りました。引数は注文番号 1 つのはずです: handson/views.py の "
        "TaskStep6.post で send_receipt.delay(f\"order-{uuid.uuid4().hex[:8]}\")。",
    )

    def receipts():
        raw = result_backend.client.get(f"handson:receipts:{order}")
        return int(raw) if raw else 0

    _, held = _kill_the_pool_process_running(task["id"], celery_worker, result_backend, broker_control, ready=receipts)
    wait_for(lambda: result_backend.state(task["id"]) in ENDED, timeout=NOTICED_WITHIN + 2 * sleep_seconds + 10)
    meta = result_backend.meta(task["id"])
    received = len(re.findall(rf"Task {re.escape(SEND_RECEIPT)}\[{re.escape(task['id'])}\] received",
                              celery_worker.log(mark)))

    assert meta["status"] != "FAILURE" or held, say(
        f"The killed send_receipt ended FAILURE {meta['result']!r}: its message had been acknowledged when a pool "
        f"process started it (Redis held no unacknowledged message for it), so nothing was left to deliver again. "
        f"In handson/tasks.py declare {FIX}: acks_late acknowledges only at the end, reject_on_worker_lost puts the "
        "message back on the queue when the pool process dies.",
        f"kill された send_receipt が FAILURE {meta['result']!r} で終わりました。メッセージはプールプロセスが開始した"
        "時点で確認応答されていた (Redis に未確認応答のメッセージがなかった) ので、再配送するものが残っていません"
        f"でした。handson/tasks.py で {FIX} と宣言してください。acks_late は終了時にだけ確認応答し、"
        "reject_on_worker_lost はプールプロセスが死んだときメッセージをキューに戻します。",
    )
    assert meta["status"] != "FAILURE", say(
        f"The killed send_receipt ended FAILURE {meta['result']!r}. acks_late kept its message unacknowledged while "
        "it ran, but when the pool process died the worker stored FAILURE and acknowledged it. Add "
        f"reject_on_worker_lost=True, which puts the message back on the queue instead: {FIX}.",
        f"kill された send_receipt が FAILURE {meta['result']!r} で終わりました。acks_late により実行中はメッセージが"
        "未確認応答のままでしたが、プールプロセスが死ぬとワーカーは FAILURE を保存して確認応答しました。"
        f"代わりにメッセージをキューに戻す reject_on_worker_lost=True を加えてください: {FIX}。",
    )
    assert meta["status"] == "SUCCESS" and received >= 2, say(
        f"The killed send_receipt is {meta['status']} after being received {received} time(s); it should be "
        f"delivered again and end SUCCESS ({FIX} in handson/tasks.py).",
        f"kill された send_receipt は {received} 回受信された後 {meta['status']} です。再配送されて SUCCESS に"
        f"なるはずです (handson/tasks.py に {FIX})。",
    )
    assert receipts() == 1, say(
        f"The customer got {receipts()} receipts for {order}: the task ran twice and sent one each time. Pass "
        "the mail service a key that is the same on every run of the task: "
        "receipts.send(order, idempotency_key=self.request.id) (bind=True gives the task `self`).",
        f"{order} の領収書が {receipts()} 通届きました。タスクが 2 回実行され、それぞれ送りました。タスクの"
        "どの実行でも同じキーをメールサービスに渡してください: receipts.send(order, idempotency_key=self.request.id) "
        "(bind=True でタスクに `self` が渡ります)。",
    )
