"""Step 8 — scaling out: more processes, a second node, a queue for the slow work.
ステップ 8 — スケールアウト: プロセスを増やし、2 つ目のノードと遅い処理用のキューを用意する

What you see
    The "Step8" button will post to /handson/task_step8. Its view, which you write
    below, sends two long reports (``long_report``, 3 × HANDSON_SLEEP each) and then
    eight short thumbnails (``thumbnail``, HANDSON_SLEEP each). With the one worker of
    one process the starter declares, the eight thumbnails alone would take 8 × the
    sleep, and they would wait behind the long reports too.

Where the workers are declared: handson/Procfile
    A deployment declares its processes in a file, and so does this workspace:
    handson/Procfile has one line per worker, ``name: command``, as Heroku,
    honcho and foreman read it (the ``command:`` lines of a compose file are the
    same idea). `make run`, `docker compose up` and this lab start exactly the
    workers written there; a line they cannot start is refused with the reason.

What you build
    handson/Procfile:

        default: celery -A handson worker --concurrency=4 -n default@%h -l info
        slow: celery -A handson worker -Q slow --concurrency=1 --prefetch-multiplier=1 -n slow@%h -l info

    handson/settings.py:

        CELERY_TASK_ROUTES = {"handson.tasks.long_report": {"queue": "slow"}}

    handson/tasks.py, handson/views.py, handson/urls.py: the two tasks,

        @shared_task
        def thumbnail(number):              # sleeps settings.HANDSON_SLEEP
        @shared_task(acks_late=True)
        def long_report(number):            # sleeps 3 * settings.HANDSON_SLEEP

    a TaskStep8 view that sends long_report.delay(1), long_report.delay(2), then
    thumbnail.delay(1) ... thumbnail.delay(8), and its route
    path("handson/task_step8", views.TaskStep8.as_view(), name="task_step8").

    --concurrency=4     four pool processes: eight one-second thumbnails take about
                        two seconds instead of eight. More processes than cores
                        only help while tasks wait (sleep, network, disk).
    -n default@%h       a name per node (%h is the host name): two workers with
                        one name confuse remote control and monitoring. (The lab
                        and `make run` add six random characters to the name
                        you give, as in ``default-9bfd30@yourhost``, so that two
                        runs side by side never share a node name.)
    task_routes + -Q    long_report goes to the queue "slow"; only the node
                        started with -Q slow takes from it, and the default node
                        (no -Q: the queue "celery") never sees a long report. Short
                        tasks are no longer stuck behind long ones.
    prefetch            a worker reserves messages ahead: concurrency × 4 by
                        default (--prefetch-multiplier). A reserved message waits
                        inside that worker even when another worker is idle. For
                        long tasks reserve only what runs: --prefetch-multiplier=1,
                        plus acks_late=True on the task (with an early
                        acknowledgement the worker reserves one more), or
                        --disable-prefetch (Celery 5.6+, Redis only). Then the
                        second long report waits in Redis, in the list "slow",
                        where any slow worker you start next can take it.

How the lab checks it
    It reads handson/Procfile, starts those workers, presses Step8, and watches
    the result backend, each worker's log and the broker's list "slow" in Redis.
    The timings it asserts are relative (a fraction of the serial time), with
    wide margins for a busy machine.

見えること
    「Step8」ボタンは /handson/task_step8 に POST することになります。そのビュー (下で書きます) は
    長いレポート (``long_report``、各 3 × HANDSON_SLEEP) を 2 つ、次に短いサムネイル (``thumbnail``、
    各 HANDSON_SLEEP) を 8 つ送ります。スターターが宣言する 1 プロセスのワーカー 1 つでは、8 つの
    サムネイルだけで sleep の 8 倍かかり、さらに長いレポートの後ろで待たされることになります。

ワーカーを宣言する場所: handson/Procfile
    本番環境はプロセスをファイルに宣言します。このワークスペースも同じです。handson/Procfile には
    1 行に 1 つのワーカーを ``名前: コマンド`` の形で書きます (Heroku、honcho、foreman が読む形。
    compose ファイルの ``command:`` 行も同じ考え方です)。`make run`、`docker compose up`、このラボは
    ここに書かれたワーカーだけを起動し、起動できない行は理由つきで拒否します。

作るもの
    handson/Procfile、handson/settings.py、handson/tasks.py・views.py・urls.py (上のコード)。
    TaskStep8 ビューは long_report.delay(1)、long_report.delay(2)、次に thumbnail.delay(1) 〜
    thumbnail.delay(8) を送ります。URL は path("handson/task_step8", views.TaskStep8.as_view(),
    name="task_step8") です。

    --concurrency=4     プールプロセス 4 つ: 1 秒のサムネイル 8 つが 8 秒ではなく約 2 秒で終わります。
                        コア数より多いプロセスが役立つのは、タスクが待っている (sleep、ネットワーク、
                        ディスク) 間だけです。
    -n default@%h       ノードごとの名前 (%h はホスト名)。同じ名前のワーカーが 2 つあるとリモート制御や
                        監視が混乱します (ラボと `make run` は、並べて動かした 2 つの実行でノード名が
                        重ならないよう、``default-9bfd30@ホスト名`` のように名前に 6 文字のランダムな
                        文字を加えます)。
    task_routes + -Q    long_report はキュー "slow" へ送られ、そこから受け取るのは -Q slow で起動した
                        ノードだけです。既定のノード (-Q なし: キュー "celery") は長いレポートを見ません。
                        短いタスクが長いタスクの後ろで詰まらなくなります。
    prefetch            ワーカーはメッセージを先取り (予約) します。既定は concurrency × 4
                        (--prefetch-multiplier)。予約されたメッセージは、他のワーカーが空いていても
                        そのワーカーの中で待ちます。長いタスクには実行する分だけ予約させます:
                        --prefetch-multiplier=1 とタスクの acks_late=True (早い確認応答ではもう 1 つ
                        予約します)、または --disable-prefetch (Celery 5.6 以降、Redis のみ)。すると
                        2 つ目の長いレポートは Redis のリスト "slow" で待ち、次に起動した slow ワーカーが
                        受け取れます。

ラボの確かめ方
    handson/Procfile を読んでそのワーカーを起動し、Step8 を押し、結果バックエンド、各ワーカーのログ、
    Redis のブローカーのリスト "slow" を見ます。時間の判定は相対的 (直列の時間に対する割合) で、
    混んだマシンでも通るよう余裕を持たせています。
"""
import fnmatch
import time

import pytest

from labs.harness.i18n import say
from labs.harness.lesson import foundations
from labs.harness.lesson.checks import (
    ENDED,
    declared_workers,
    for_every_task,
    listed_tasks,
    press,
    reported_settings,
    setting,
)
from labs.harness.lesson.waiting import wait_for
from labs.harness.services.procfile import PROCFILE, ProcfileError, read_procfile
from labs.harness.services.stack import StackSpec
from labs.harness.services.worker import WorkerSpec

pytestmark = pytest.mark.lab
THUMBNAIL, LONG_REPORT = "handson.tasks.thumbnail", "handson.tasks.long_report"
THUMBNAILS, LONG_REPORTS = 8, 2
SERIAL_SHARE = 0.75  # eight thumbnails must take less than this share of 8 x the sleep
ROUTES = 'CELERY_TASK_ROUTES = {"handson.tasks.long_report": {"queue": "slow"}}'
SLOW_LINE = "slow: celery -A handson worker -Q slow --concurrency=1 --prefetch-multiplier=1 -n slow@%h -l info"


@pytest.fixture(scope="module")
def lab_stack_spec(workspace):
    """The workers handson/Procfile declares (one default worker if it cannot be read: the tests say why)."""
    try:
        return StackSpec(workers=tuple(spec for spec in read_procfile(workspace / PROCFILE) if isinstance(spec, WorkerSpec)))
    except ProcfileError:
        return StackSpec(workers=(WorkerSpec(),))


@pytest.fixture(scope="module")
def step8(lab_stack, workspace, result_backend, redis_server, sleep_seconds):
    """Press Step8 once and watch until every verdict is in (every task ended, or enough seen; or a
    deadline): what the tests read. Whatever still runs then is stopped by the next test's clean slate."""
    seen = {"problem": None, "tasks": {}, "left_in_queue": False, "hoarded": False, "short_done_while_long_runs": False}
    try:
        read_procfile(workspace / PROCFILE)
    except ProcfileError:
        return seen  # each test says why the Procfile cannot be started
    if lab_stack.problems():
        return seen  # each test names the worker that could not start
    web, marks = lab_stack.web.client(), {worker: worker.mark() for worker in lab_stack.workers}
    broker = redis_server.client(redis_server.broker_url)
    try:
        before = {task["id"] for task in listed_tasks(web)}
        press(web, "Step8", "TaskStep8", "task_step8", "/handson/task_step8")

        def new_tasks():
            fresh = {task["id"]: task["name"] for task in listed_tasks(web) if task["id"] not in before}
            return fresh if len(fresh) >= THUMBNAILS + LONG_REPORTS else None

        sent = wait_for(new_tasks, timeout=5) or {task["id"]: task["name"] for task in listed_tasks(web)
                                                  if task["id"] not in before}
    except pytest.fail.Exception as failure:
        seen["problem"] = str(failure)
        return seen
    tasks = seen["tasks"] = {task_id: {"name": name, "state": None, "started": None, "ended": None}
                             for task_id, name in sent.items()}

    def sample():
        """One look at the list "slow" and every state; true once every task has ended."""
        # The list first, the states after: a long report fetched from the list while the other one
        # still shows STARTED was reserved by a busy worker (a finished one is stored before it is acked).
        queued, now = broker.llen("slow"), time.monotonic()
        for task_id, task in tasks.items():
            state = result_backend.state(task_id)
            task["state"] = state
            if state == "STARTED" and task["started"] is None:
                task["started"] = now
            if state in ENDED and task["ended"] is None:
                task["ended"] = now
        longs = [task for task in tasks.values() if task["name"] == LONG_REPORT]
        shorts = [task for task in tasks.values() if task["name"] == THUMBNAIL]
        running = [task for task in longs if task["state"] == "STARTED"]
        waiting = [task for task in longs if task["state"] is None]
        if len(running) == 1 and waiting:
            seen["left_in_queue"] |= queued >= 1
            seen["hoarded"] |= queued == 0
        if running and shorts and all(task["state"] == "SUCCESS" for task in shorts):
            seen["short_done_while_long_runs"] = True
        if all(task["state"] in ENDED for task in tasks.values()):
            return True
        # Or every verdict is in already, and the long reports need not be waited out: the thumbnails
        # have ended (or are too slow already), and the prefetch has been seen while one long report ran.
        started = [task["started"] for task in shorts if task["started"]]
        too_slow = started and now - min(started) > SERIAL_SHARE * THUMBNAILS * sleep_seconds
        if too_slow and not all(task["state"] in ENDED for task in shorts):
            seen["thumbnails_cut_at"] = now
        thumbnails_known = all(task["state"] in ENDED for task in shorts) or too_slow
        prefetch_known = seen["left_in_queue"] or seen["hoarded"] or all(task["state"] for task in longs)
        short_known = seen["short_done_while_long_runs"] or not running or "thumbnails_cut_at" in seen
        return bool(shorts and thumbnails_known and prefetch_known and short_known)

    wait_for(sample, timeout=6 * sleep_seconds + 8, interval=0.02)
    seen["received"] = {worker.spec.node: worker.log(marks[worker]) for worker in lab_stack.workers}
    seen["queues"] = {worker.spec.node: worker.spec.queues for worker in lab_stack.workers}
    return seen


def _require(step8, celery_workers, workspace):
    declared_workers(workspace)  # a Procfile the lab cannot start as written: its reason comes first
    for worker in celery_workers:
        worker.require_running()
    # The press's problem (a greyed-out button, a 405) in full once; the module's later tests point there.
    foundations.check("step8 press")
    if step8["problem"]:
        foundations.remember_missing("step8 press", step8["problem"])
        pytest.fail(step8["problem"], pytrace=False)
    counts = {name: sum(task["name"] == name for task in step8["tasks"].values()) for name in (THUMBNAIL, LONG_REPORT)}
    assert counts == {THUMBNAIL: THUMBNAILS, LONG_REPORT: LONG_REPORTS}, say(
        f"Step8 sent {counts[LONG_REPORT]} long_report and {counts[THUMBNAIL]} thumbnail task(s); TaskStep8.post in "
        "handson/views.py should send long_report.delay(1), long_report.delay(2), then thumbnail.delay(1) ... "
        "thumbnail.delay(8).",
        f"Step8 が送ったのは long_report {counts[LONG_REPORT]} 個と thumbnail {counts[THUMBNAIL]} 個でした。handson/views.py "
        "の TaskStep8.post で long_report.delay(1)、long_report.delay(2)、次に thumbnail.delay(1) 〜 "
        "thumbnail.delay(8) を送ってください。",
    )


def _of(step8, name):
    return {task_id: task for task_id, task in step8["tasks"].items() if task["name"] == name}


def _nodes_that_received(step8, name, task_id):
    pattern = f"Task {name}[{task_id}] received"
    return [node for node, log in step8["received"].items() if pattern in log]


def _routes_to_no_task(celery_workers, broker_control):
    """The keys of the app's task_routes that match no task the workers registered, and those names.
    A route's key is a task's full name, or a glob such as "handson.tasks.*" (Celery's routes)."""
    worker = celery_workers[0]
    routes = setting(reported_settings(worker, broker_control), "task_routes")[1] or {}
    registered = sorted({name for each in celery_workers for name in each.registered_tasks()
                         if not name.startswith("celery.")})
    unknown = [key for key in routes if isinstance(routes, dict) and not fnmatch.filter(registered, key)]
    return unknown, registered


def _what_reserves_ahead(celery_workers, broker_control):
    """Which of the two settings that keep a busy slow worker from reserving the next long report are
    missing: --prefetch-multiplier=1 on its Procfile line, acks_late=True on long_report (asked of the worker)."""
    slow = [worker for worker in celery_workers if worker.spec.queues == ("slow",)]
    missing = []
    if slow and not any(option in ("--prefetch-multiplier=1", "--disable-prefetch") for option in slow[0].spec.options):
        missing.append("--prefetch-multiplier=1 on the slow line of handson/Procfile")
    hostname = slow[0].hostname() if slow else None
    options = broker_control.task_options(hostname, LONG_REPORT, ("acks_late",)) if hostname else {}
    if options.get("acks_late") != "True" and not for_every_task(slow[0], broker_control, ("task_acks_late",)):
        missing.append("acks_late=True on long_report in handson/tasks.py")
    return missing


def _check_routed(step8, celery_workers, broker_control):
    slow_nodes = [node for node, queues in step8["queues"].items() if queues == ("slow",)]
    long_nodes = {node for task_id in _of(step8, LONG_REPORT) for node in _nodes_that_received(step8, LONG_REPORT, task_id)}
    assert slow_nodes, say(
        f"No worker of handson/Procfile consumes the queue \"slow\" only. Add: {SLOW_LINE}",
        f"handson/Procfile に、キュー \"slow\" だけを受け取るワーカーがありません。追加してください: {SLOW_LINE}",
    )
    if not (long_nodes and long_nodes <= set(slow_nodes)):
        unknown, registered = _routes_to_no_task(celery_workers, broker_control)
        foundations.must_have("routes", not unknown, say(
            f"CELERY_TASK_ROUTES in handson/settings.py routes {unknown}, which is no task the workers registered: "
            f"a route's key is the task's full name. The workers registered: {', '.join(registered)}. Write {ROUTES}",
            f"handson/settings.py の CELERY_TASK_ROUTES は {unknown} をルーティングしていますが、ワーカーが登録した"
            f"タスクにその名前はありません。ルートのキーはタスクの完全な名前です。ワーカーが登録したのは "
            f"{', '.join(registered)} です。{ROUTES} と書いてください。",
        ))
    assert long_nodes and long_nodes <= set(slow_nodes), say(
        f"The long reports were taken by {sorted(long_nodes) or 'no worker'}, not by the node of the queue \"slow\" "
        f"({', '.join(slow_nodes)}): they went to the default queue. Route them in handson/settings.py: {ROUTES}",
        f"長いレポートを受け取ったのは {sorted(long_nodes) or 'どのワーカーでもない'} で、キュー \"slow\" のノード "
        f"({', '.join(slow_nodes)}) ではありません。既定のキューに送られています。handson/settings.py でルーティング"
        f"してください: {ROUTES}",
    )
    return slow_nodes


def test_the_procfile_declares_a_default_node_and_a_node_for_the_slow_queue(workspace):
    """handson/Procfile: a worker on the default queue with several processes, and one that consumes only "slow"."""
    workers = declared_workers(workspace)
    slow = [spec for spec in workers if spec.queues == ("slow",)]
    default = [spec for spec in workers if not spec.queues or "celery" in spec.queues]
    assert len(workers) >= 2 and slow, say(
        f"handson/Procfile declares {len(workers)} worker(s), none that consumes only the queue \"slow\". Add a "
        f"line for a second node: {SLOW_LINE}",
        f"handson/Procfile のワーカーは {len(workers)} 個で、キュー \"slow\" だけを受け取るものがありません。2 つ目の"
        f"ノードの行を追加してください: {SLOW_LINE}",
    )
    assert default and max(spec.concurrency for spec in default) >= 4, say(
        "handson/Procfile needs a worker on the default queue (no -Q) with --concurrency=4 or more, for the short "
        "tasks: default: celery -A handson worker --concurrency=4 -n default@%h -l info",
        "handson/Procfile には、短いタスク用に既定のキュー (-Q なし) を受け取る --concurrency=4 以上のワーカーが"
        "必要です: default: celery -A handson worker --concurrency=4 -n default@%h -l info",
    )


def test_eight_thumbnails_on_more_processes_take_a_fraction_of_the_serial_time(step8, celery_workers, workspace, sleep_seconds):
    """Eight thumbnails of HANDSON_SLEEP s each end SUCCESS in less than 0.75 x 8 x HANDSON_SLEEP."""
    _require(step8, celery_workers, workspace)
    thumbnails = _of(step8, THUMBNAIL).values()
    serial = THUMBNAILS * sleep_seconds
    starts = [task["started"] or task["ended"] for task in thumbnails if task["started"] or task["ended"]]
    cut = step8.get("thumbnails_cut_at")
    assert not cut, say(
        f"The eight thumbnails were not done {cut - min(starts):.1f} s after the first started, about as long as one "
        f"process doing them one after another ({serial:g} s). Give the default worker in handson/Procfile more "
        "processes: --concurrency=4.",
        f"最初のサムネイルの開始から {cut - min(starts):.1f} 秒たっても 8 つのサムネイルが終わらず、1 プロセスで順に処理する"
        f"のとほぼ同じです ({serial:g} 秒)。handson/Procfile の既定のワーカーのプロセスを増やしてください: --concurrency=4。",
    )
    assert all(task["state"] == "SUCCESS" for task in thumbnails), say(
        f"Not every thumbnail ended SUCCESS: {sorted(str(task['state']) for task in thumbnails)}. Does a worker of "
        "handson/Procfile consume the default queue (a line without -Q)?",
        f"すべてのサムネイルが SUCCESS になったわけではありません: {sorted(str(task['state']) for task in thumbnails)}。"
        "handson/Procfile に既定のキューを受け取るワーカー (-Q のない行) がありますか？",
    )
    wall = max(task["ended"] for task in thumbnails) - min(starts)
    assert wall < SERIAL_SHARE * serial, say(
        f"The eight thumbnails took {wall:.1f} s, about as long as one process doing them one after another "
        f"({serial:g} s). Give the default worker in handson/Procfile more processes: --concurrency=4.",
        f"8 つのサムネイルに {wall:.1f} 秒かかり、1 プロセスで順に処理するのとほぼ同じです ({serial:g} 秒)。"
        "handson/Procfile の既定のワーカーのプロセスを増やしてください: --concurrency=4。",
    )


def test_long_reports_go_to_the_slow_queue_and_only_its_node_takes_them(
        step8, celery_workers, workspace, broker_control):
    """Both long reports are received by the node that consumes "slow", no thumbnail is; both nodes take tasks."""
    _require(step8, celery_workers, workspace)
    slow_nodes = _check_routed(step8, celery_workers, broker_control)
    short_nodes = {node for task_id in _of(step8, THUMBNAIL) for node in _nodes_that_received(step8, THUMBNAIL, task_id)}
    assert short_nodes and not short_nodes & set(slow_nodes), say(
        f"Thumbnails were taken by {sorted(short_nodes)}; the node of the queue \"slow\" should take none (start it "
        "with -Q slow in handson/Procfile) and a default node should take them all.",
        f"サムネイルを受け取ったのは {sorted(short_nodes)} です。キュー \"slow\" のノードは 1 つも受け取らず "
        "(handson/Procfile で -Q slow をつけて起動)、既定のノードがすべて受け取るはずです。",
    )


def test_short_tasks_finish_while_a_long_one_runs(step8, celery_workers, workspace, broker_control):
    """While a long report runs, every thumbnail has already ended SUCCESS."""
    _require(step8, celery_workers, workspace)
    if not step8["short_done_while_long_runs"]:
        _check_routed(step8, celery_workers, broker_control)  # a route that names no task: said first
    assert step8["short_done_while_long_runs"], say(
        "The thumbnails did not all finish while a long report was running: they waited behind the long reports. "
        f"Send long_report to a queue of its own ({ROUTES} in handson/settings.py) and give that queue its own "
        f"worker in handson/Procfile ({SLOW_LINE}).",
        "長いレポートの実行中に、サムネイルがすべて終わりませんでした。長いレポートの後ろで待たされています。"
        f"long_report を専用のキューに送り (handson/settings.py に {ROUTES})、そのキューに専用のワーカーを "
        f"handson/Procfile で用意してください ({SLOW_LINE})。",
    )


def test_a_busy_slow_worker_leaves_the_next_long_report_in_the_queue(
        step8, celery_workers, workspace, broker_control):
    """While the slow node runs one long report, the other waits in Redis (the list "slow"), not reserved
    inside the busy worker."""
    _require(step8, celery_workers, workspace)
    _check_routed(step8, celery_workers, broker_control)
    if step8["left_in_queue"] and not step8["hoarded"]:
        return
    missing = _what_reserves_ahead(celery_workers, broker_control)
    assert not missing, say(
        "While the slow worker ran one long report, it had reserved the next one as well (the list \"slow\" in "
        "Redis was empty): a slow worker started now could not take it. Reserve only what runs: "
        f"{' and '.join(missing)} (or --disable-prefetch).",
        "slow ワーカーは長いレポートを 1 つ実行しながら、次のものも予約していました (Redis のリスト \"slow\" が空)。"
        f"今 slow ワーカーを追加しても受け取れません。実行する分だけ予約させてください: {'、'.join(missing)} "
        "(または --disable-prefetch)。",
    )
    assert False, say(
        "While the slow worker ran one long report, it had reserved the next one as well (the list \"slow\" in "
        "Redis was empty), although --prefetch-multiplier=1 and acks_late=True are set: is another worker "
        "consuming the queue \"slow\"?",
        "slow ワーカーは長いレポートを 1 つ実行しながら、次のものも予約していました (Redis のリスト \"slow\" が空)。"
        "--prefetch-multiplier=1 と acks_late=True は設定されています。別のワーカーもキュー \"slow\" を受け取って"
        "いませんか？",
    )
