"""Step 7 — time limits: a task that hangs must not hold a worker forever.
ステップ 7 — 時間制限: ハングしたタスクにワーカーを占有させない

What you see
    Some calls never return: a server that accepts the connection and then says
    nothing, a query stuck on a lock. handson/hanging.py, given to you, is such
    a source: ``hanging.fetch(source)`` writes what it received so far to a
    partial file (a key in Redis) and never ends. A task that calls it holds its
    pool process for good; with one process, every task behind it waits forever.

What you build
    The "Step7" button posts to /handson/task_step7. Its view sends two reports:

        report = uuid.uuid4().hex[:8]
        build_report.delay(f"{report}-hangs", False)
        build_report.delay(f"{report}-swallows", True)   # swallows every exception

    and the task gets two limits, declared on it (CELERY_TASK_SOFT_TIME_LIMIT and
    CELERY_TASK_TIME_LIMIT in settings.py would set them for every task):

        @shared_task(soft_time_limit=settings.HANDSON_SLEEP, time_limit=2 * settings.HANDSON_SLEEP)
        def build_report(source, swallow_errors):
            try:
                return hanging.fetch(source, swallow_errors)
            except SoftTimeLimitExceeded:      # from celery.exceptions
                hanging.discard(source)        # clean up: remove the partial file
                return f"no report from {source}: it took longer than {settings.HANDSON_SLEEP:g} s"

    soft_time_limit   after that many seconds Celery raises SoftTimeLimitExceeded
                      inside the task (the pool process gets a signal). The task
                      can catch it, clean up, and return a result: SUCCESS.
    time_limit        after that many seconds the worker stores the task FAILURE
                      with TimeLimitExceeded and ends its pool process: SIGTERM,
                      then SIGKILL 0.1 s later if it is still alive. SIGTERM raises
                      SystemExit inside the task, so a ``finally:`` block may run,
                      but only for that tenth of a second: do not count on it for
                      clean-up. The worker then starts a new pool process (usually
                      at once, else at its pool check every 5 s). This limit is
                      for code that never lets go: the second report swallows
                      SoftTimeLimitExceeded like any other exception (as badly
                      written libraries do with ``except Exception``).

    Set time_limit above soft_time_limit, so that the soft one gets its chance.

Why the solo and threads pools ignore them
    Both limits need a process to act on. The soft limit is a signal sent to the
    pool process running the task, and the hard limit kills that process. The
    solo pool runs the task inside the worker's own process (killing it would
    kill the worker), and the threads pool runs it in a thread of that process
    (Python cannot interrupt or kill a thread from outside). So with
    ``--pool=solo`` or ``--pool=threads`` a hanging task hangs for good: use
    prefork (the default) when tasks can hang. (tests/test_celery_facts.py checks
    this, and the SIGTERM-first hard limit, on the installed Celery.)

Files to edit
    handson/tasks.py   build_report as above (``from . import hanging``)
    handson/views.py   class TaskStep7(View) whose post() sends the two reports and
                       redirects to "base"
    handson/urls.py    path("handson/task_step7", views.TaskStep7.as_view(), name="task_step7")

見えること
    決して戻らない呼び出しがあります: 接続を受け付けて何も返さないサーバー、ロックで止まったクエリ。
    用意済みの handson/hanging.py はそのようなデータ元です。``hanging.fetch(source)`` は受信した分を
    途中ファイル (Redis のキー) に書き、決して終わりません。これを呼ぶタスクはプールプロセスを
    占有し続け、プロセスが 1 つなら後ろのタスクはすべて永遠に待ちます。

作るもの
    「Step7」ボタンは /handson/task_step7 に POST します。そのビューは 2 つのレポートを送ります
    (上のコード。2 つ目はあらゆる例外を握りつぶします)。タスクには 2 つの制限をタスク自身に宣言
    します (settings.py の CELERY_TASK_SOFT_TIME_LIMIT と CELERY_TASK_TIME_LIMIT なら全タスクに効きます)。

    soft_time_limit   その秒数が過ぎると、Celery はタスクの中で SoftTimeLimitExceeded を送出します
                      (プールプロセスにシグナルが届きます)。タスクはこれを捕まえて後片付けし、結果を
                      返せます: SUCCESS。
    time_limit        その秒数が過ぎると、ワーカーはタスクを TimeLimitExceeded の FAILURE として保存し、
                      プールプロセスを終了させます: SIGTERM、まだ生きていれば 0.1 秒後に SIGKILL。
                      SIGTERM はタスクの中で SystemExit を送出するので ``finally:`` は実行されえますが、
                      その 0.1 秒の間だけです。後片付けには頼れません。その後ワーカーは新しい
                      プールプロセスを起動します (たいていすぐに、そうでなければ 5 秒ごとのプール点検で)。
                      この制限は決して手放さないコードのためのものです。2 つ目のレポートは
                      SoftTimeLimitExceeded も他の例外と同様に握りつぶします (``except Exception`` を
                      書く出来の悪いライブラリのように)。

    soft_time_limit に機会を与えるため、time_limit はそれより長くします。

solo プールと threads プールで効かない理由
    どちらの制限も、働きかける相手のプロセスが必要です。ソフト制限はタスクを実行中のプール
    プロセスに送るシグナルで、ハード制限はそのプロセスを kill します。solo プールはタスクを
    ワーカー自身のプロセスで実行し (kill するとワーカーが死にます)、threads プールはそのプロセスの
    スレッドで実行します (Python は外からスレッドを中断も kill もできません)。そのため
    ``--pool=solo`` や ``--pool=threads`` では、ハングしたタスクはハングしたままです。タスクが
    ハングしうるなら prefork (既定) を使ってください (このことと、SIGTERM が先に来るハード制限は、
    tests/test_celery_facts.py がインストール済みの Celery で確かめます)。

編集するファイル
    handson/tasks.py   上の build_report (``from . import hanging``)
    handson/views.py   TaskStep7(View) の post() で 2 つのレポートを送り "base" へリダイレクト
    handson/urls.py    path("handson/task_step7", views.TaskStep7.as_view(), name="task_step7")
"""
import re

import pytest

from labs.harness.i18n import say
from labs.harness.lesson.checks import ENDED, for_every_task, press_for_new_tasks, send_hello_tasks
from labs.harness.lesson.waiting import wait_for
from labs.harness.services.worker import WorkerSpec

# Two pool processes: the worker replaces a killed one at its next pool check (every 5 s);
# meanwhile the other one runs the next task.
pytestmark = [pytest.mark.lab, pytest.mark.stack(workers=[WorkerSpec(concurrency=2)])]
BUILD_REPORT = "handson.tasks.build_report"
TIME_LIMITS = ("soft_time_limit", "time_limit")
HELLO_MARGIN = 1.0  # seconds: an every-task limit within this of hello's sleep decides hello's fate by chance
LIMITS = "@shared_task(soft_time_limit=settings.HANDSON_SLEEP, time_limit=2 * settings.HANDSON_SLEEP)"
CATCH = ("try: return hanging.fetch(source, swallow_errors) / except SoftTimeLimitExceeded: "
         "hanging.discard(source); return a text")


def _press_step7(web):
    """Press Step7: {"hangs": task, "swallows": task}, told apart by their swallow_errors argument."""
    tasks = press_for_new_tasks(web, "Step7", "TaskStep7", "task_step7", "/handson/task_step7", BUILD_REPORT, 2)
    sent = {}
    for task in tasks:
        try:
            source, swallow = task["args"]
        except (ValueError, TypeError):
            source, swallow = None, None
        sent["swallows" if swallow is True else "hangs"] = dict(task, source=source)
    assert set(sent) == {"hangs", "swallows"}, say(
        f"Step7 sent {[task['args'] for task in tasks]}; expected build_report(source, False) and "
        "build_report(source, True), each with its own source, from TaskStep7.post in handson/views.py.",
        f"Step7 が {[task['args'] for task in tasks]} を送りました。handson/views.py の TaskStep7.post から "
        "build_report(source, False) と build_report(source, True) を (別々の source で) 送ってください。",
    )
    return sent


def _wait_for_end(result_backend, task_id, seconds_after_start, sleep_seconds):
    """Wait until the task starts (behind whatever runs first), then at most ``seconds_after_start``."""
    wait_for(lambda: result_backend.state(task_id), timeout=4 * sleep_seconds + 10, interval=0.02)
    wait_for(lambda: result_backend.state(task_id) in ENDED, timeout=seconds_after_start, interval=0.02)
    return result_backend.meta(task_id) or {"status": None, "result": None}


def _seconds(text):
    try:
        return float(text)
    except ValueError:
        return float("inf")


def _declared_limits(celery_worker, broker_control):
    """{"soft_time_limit": ..., "time_limit": ...} as the worker has them for build_report: the task's own
    options (reported by the worker), else the app's setting for every task; None where neither sets one."""
    hostname = celery_worker.hostname()
    own = broker_control.task_options(hostname, BUILD_REPORT, TIME_LIMITS) if hostname else {}
    every = for_every_task(celery_worker, broker_control, [f"task_{name}" for name in TIME_LIMITS])
    return {name: own.get(name) or every.get(f"task_{name}") for name in TIME_LIMITS}


def test_the_soft_limit_lets_a_hanging_task_clean_up_and_return(
        web, celery_worker, result_backend, broker_control, sleep_seconds):
    """The report that hangs: "Soft time limit exceeded" in the log, then SUCCESS with a result, and no
    partial file left."""
    celery_worker.require_running()
    limits = _declared_limits(celery_worker, broker_control)
    # Decided before the press: without a soft limit nothing gives the report its chance to clean up.
    assert limits["soft_time_limit"] or not limits["time_limit"], say(
        f"build_report has no soft_time_limit (the worker reports time_limit={limits['time_limit']} only): a hanging "
        f"report is killed at the hard limit without a chance to clean up. Give it both limits in handson/tasks.py: "
        f"{LIMITS}.",
        f"build_report に soft_time_limit がありません (ワーカーが報告するのは time_limit={limits['time_limit']} だけ)。"
        f"ハングしたレポートは後片付けの機会なしにハード制限で kill されます。handson/tasks.py で両方の制限を"
        f"付けてください: {LIMITS}。",
    )
    mark = celery_worker.mark()
    sent = _press_step7(web)
    task = sent["hangs"]

    meta = _wait_for_end(result_backend, task["id"], 2 * sleep_seconds + 5, sleep_seconds)
    log = celery_worker.log(mark)
    soft = re.search(rf"Soft time limit \(([0-9.]+)s\) exceeded for {re.escape(BUILD_REPORT)}\[{re.escape(task['id'])}\]",
                     log)
    assert meta["status"] in ENDED, say(
        f"The report from a source that hangs was still {meta['status']!r} {2 * sleep_seconds + 5:g} s after it "
        f"started: nothing stops it. Give build_report time limits in handson/tasks.py: {LIMITS}.",
        f"ハングするデータ元のレポートが、開始から {2 * sleep_seconds + 5:g} 秒後も {meta['status']!r} でした。"
        f"止めるものがありません。handson/tasks.py の build_report に時間制限を付けてください: {LIMITS}。",
    )
    assert soft, say(
        f"The report ended {meta['status']} {meta['result']!r} without \"Soft time limit ... exceeded\" in the "
        f"worker's log: build_report has no soft_time_limit, so it got no chance to clean up. {LIMITS}.",
        f"レポートは {meta['status']} {meta['result']!r} で終わりましたが、ワーカーのログに \"Soft time limit ... "
        f"exceeded\" がありません。build_report に soft_time_limit がなく、後片付けの機会がありませんでした。{LIMITS}。",
    )
    assert meta["status"] == "SUCCESS", say(
        f"At the soft limit the report ended {meta['status']} {meta['result']!r}: SoftTimeLimitExceeded went out "
        f"of the task. Catch it in build_report (handson/tasks.py), clean up and return a result: {CATCH} "
        "(from celery.exceptions import SoftTimeLimitExceeded).",
        f"ソフト制限でレポートが {meta['status']} {meta['result']!r} で終わりました。SoftTimeLimitExceeded が"
        f"タスクの外に出ています。handson/tasks.py の build_report で捕まえ、後片付けして結果を返してください: "
        f"{CATCH} (from celery.exceptions import SoftTimeLimitExceeded)。",
    )
    assert isinstance(meta["result"], str) and meta["result"], say(
        f"The report stored {meta['result']!r}; return a text that says why there is no report.",
        f"レポートの結果が {meta['result']!r} でした。レポートがない理由を述べる文字列を返してください。",
    )
    partial = result_backend.client.exists(f"handson:hanging:partial:{task['source']}")
    assert not partial, say(
        "The partial file of the report is still there: call hanging.discard(source) where build_report "
        "catches SoftTimeLimitExceeded (handson/tasks.py). The soft limit is the task's chance to clean up.",
        "レポートの途中ファイルが残っています。handson/tasks.py の build_report で SoftTimeLimitExceeded を"
        "捕まえたところで hanging.discard(source) を呼んでください。ソフト制限はタスクが後片付けする機会です。",
    )
    # The other report (it swallows the soft limit) ends before the next test, so that one starts idle
    # (without a hard limit it never would: the next test's clean slate stops it).
    if limits["time_limit"]:
        _wait_for_end(result_backend, sent["swallows"]["id"], 2 * sleep_seconds + 5, sleep_seconds)


def test_the_hard_limit_kills_a_task_that_ignores_the_soft_one_and_the_worker_goes_on(
        web, celery_worker, result_backend, broker_control, sleep_seconds):
    """The report that swallows every exception: "Hard time limit exceeded", its pool process killed,
    FAILURE TimeLimitExceeded; then the worker runs the next task (hello) to SUCCESS."""
    celery_worker.require_running()
    limits = _declared_limits(celery_worker, broker_control)
    # Decided before the press: only a hard limit stops a report that swallows the soft one.
    assert limits["time_limit"] or not limits["soft_time_limit"], say(
        f"build_report has a soft_time_limit ({limits['soft_time_limit']}) and no time_limit: the report that "
        "swallows every exception catches SoftTimeLimitExceeded too and would hang for good. Give build_report "
        f"a time_limit above its soft_time_limit in handson/tasks.py: {LIMITS}.",
        f"build_report には soft_time_limit ({limits['soft_time_limit']}) があり time_limit がありません。あらゆる例外を"
        "握りつぶすレポートは SoftTimeLimitExceeded も捕まえ、ハングし続けます。handson/tasks.py の "
        f"build_report に soft_time_limit より長い time_limit を付けてください: {LIMITS}。",
    )
    every = for_every_task(celery_worker, broker_control, [f"task_{name}" for name in TIME_LIMITS])
    cutting = [text for text in every.values() if _seconds(text.split(" = ", 1)[1]) <= sleep_seconds + HELLO_MARGIN]
    # Decided before the press too: a limit for every task that short stops hello (or may, by a hair).
    assert not cutting, say(
        f"The app sets {', '.join(cutting)} for every task, hello too, which sleeps {sleep_seconds:g} s: hello would "
        f"be stopped (or not, by a hair). Remove the time limits from handson/settings.py and declare them on "
        f"build_report alone, in handson/tasks.py: {LIMITS}.",
        f"アプリが {', '.join(cutting)} を全タスクに設定しており、{sleep_seconds:g} 秒 sleep する hello にも効きます。"
        f"hello が止められます (またはぎりぎりで止められません)。handson/settings.py から時間制限を消し、"
        f"handson/tasks.py の build_report だけに宣言してください: {LIMITS}。",
    )
    mark = celery_worker.mark()
    task = _press_step7(web)["swallows"]
    [next_task] = send_hello_tasks(web)

    meta = _wait_for_end(result_backend, task["id"], 2 * sleep_seconds + 5, sleep_seconds)
    assert meta["status"] in ENDED, say(
        f"The report that swallows every exception was still {meta['status']!r} {2 * sleep_seconds + 5:g} s after "
        "it started: it catches SoftTimeLimitExceeded too, so only the hard limit can stop it. Give build_report "
        f"a time_limit above its soft_time_limit in handson/tasks.py: {LIMITS}.",
        f"あらゆる例外を握りつぶすレポートが、開始から {2 * sleep_seconds + 5:g} 秒後も {meta['status']!r} でした。"
        "SoftTimeLimitExceeded も捕まえてしまうので、止められるのはハード制限だけです。handson/tasks.py の "
        f"build_report に soft_time_limit より長い time_limit を付けてください: {LIMITS}。",
    )
    assert meta["status"] == "FAILURE" and (meta["result"] or {}).get("exc_type") == "TimeLimitExceeded", say(
        f"The report that ignores the soft limit ended {meta['status']} {meta['result']!r}; expected FAILURE "
        f"TimeLimitExceeded from time_limit ({LIMITS}).",
        f"ソフト制限を無視するレポートが {meta['status']} {meta['result']!r} で終わりました。time_limit による "
        f"FAILURE TimeLimitExceeded のはずです ({LIMITS})。",
    )
    # The worker stores the FAILURE a moment before it logs the line; the "exited with signal 9" line
    # comes only at the pool's next check (up to 5 s later), so it is not waited for.
    hard_limit = re.compile(rf"Hard time limit \([0-9.]+s\) exceeded for {re.escape(BUILD_REPORT)}\[{re.escape(task['id'])}\]")
    logged = wait_for(lambda: hard_limit.search(celery_worker.log(mark)), timeout=5)
    log = celery_worker.log(mark)
    assert logged, say(
        f"The worker's log should say \"Hard time limit ... exceeded\" for {task['id']}: time_limit kills the pool "
        f"process running it. Log:\n{log[-2500:]}",
        f"ワーカーのログには {task['id']} の \"Hard time limit ... exceeded\" が出るはずです (time_limit は実行中の"
        f"プールプロセスを kill します)。ログ:\n{log[-2500:]}",
    )
    ran = wait_for(lambda: result_backend.state(next_task) in ENDED, timeout=sleep_seconds + 15)
    celery_worker.require_running()
    hello_meta = result_backend.meta(next_task) or {}
    if hello_meta.get("status") == "FAILURE":
        found = for_every_task(celery_worker, broker_control, ("task_soft_time_limit", "task_time_limit"))
        written = ", ".join(found.values())
        assert not found, say(
            f"hello ended FAILURE {hello_meta.get('result')!r}: the app sets {written} for every task, hello too "
            f"(hello sleeps {sleep_seconds:g} s). Remove the time limits from handson/settings.py and declare them "
            f"on build_report alone, in handson/tasks.py: {LIMITS}.",
            f"hello が FAILURE {hello_meta.get('result')!r} で終わりました。アプリが {written} を全タスクに設定して"
            f"おり、hello にも効いています (hello は {sleep_seconds:g} 秒 sleep します)。handson/settings.py から"
            f"時間制限を消し、handson/tasks.py の build_report だけに宣言してください: {LIMITS}。",
        )
    assert ran and result_backend.state(next_task) == "SUCCESS", say(
        f"After the hard limit the worker should run the next task: hello is {result_backend.state(next_task)!r}.",
        f"ハード制限の後、ワーカーは次のタスクを実行するはずです。hello は {result_backend.state(next_task)!r} です。",
    )
