"""Step 11 — periodic work, and exactly one scheduler.
ステップ 11 — 定期的な処理と、ただ 1 つのスケジューラー

What you see
    The task list of the page keeps its index in one Redis key (handson/tasklog.py, given):
    every task sent keeps that key alive, so in a busy app it never expires and only grows.
    Someone has to tidy it now and then: ``tasklog.forget_older_than(seconds)`` removes the
    tasks whose results are gone. Work that runs every so often, on no one's request, is what
    Celery's scheduler, ``celery beat``, is for: a process of its own that sends the tasks of
    its schedule when they are due. Workers run them like any other task.

What you build
    A task, a schedule, one scheduler, and results that do not live for ever.

        # handson/tasks.py
        from . import tasklog

        @shared_task(ignore_result=True)
        def housekeeping():
            removed = tasklog.forget_older_than(tasklog.keep_seconds())
            print(f"housekeeping: {removed} old entries removed from the task list")

        # handson/settings.py
        CELERY_RESULT_EXPIRES = 3600  # seconds a result is kept: one hour, not Celery's default day
        CELERY_BEAT_SCHEDULE = {
            "housekeeping": {"task": "handson.tasks.housekeeping", "schedule": HANDSON_SLEEP},
        }

        # handson/Procfile: one line more, the scheduler
        beat: celery -A handson beat -l info

    A ``schedule`` is seconds (or a timedelta, or ``celery.schedules.crontab(...)``); the lab
    asks for every HANDSON_SLEEP seconds to be quick, a real app would tidy every hour or so.

    Exactly one beat. Each beat process sends every entry of the schedule on its own: two
    of them (a second beat line, or ``-B`` on a worker, which runs a beat inside that worker)
    send each task twice, three of them three times. Nothing warns you: the work is simply
    done twice, which is harmless for this task and not for one that sends an email or bills
    a customer. ``-B`` is for a lone worker in development; deploy one ``celery beat`` next to
    as many workers as you like. The lab counts the runs over a few intervals, and fails when
    there are more than one scheduler sends.

    ``ignore_result=True``: a task whose result nobody reads stores none. Without it, every run
    writes a ``celery-task-meta-<id>`` key into the result backend, one per interval, each kept
    for ``result_expires``. That setting is one day by default (``celery/app/defaults.py``);
    the Redis backend gives each result key that lifetime itself (a TTL), so Redis forgets old
    results without help. (Result backends that cannot expire keys, a database for one, get a
    daily ``celery.backend_cleanup`` task from beat instead: ``celery/beat.py``,
    ``install_default_entries``, checked in tests/test_celery_facts.py. Redis needs none.)
    ``result_expires`` is also the time a result can still be read: after it, the state of
    that task id reads PENDING, as for a task nobody ever sent.

    Beat remembers when each entry last ran in a schedule file (``celerybeat-schedule``,
    beside where it starts, unless ``-s`` says otherwise). The lab and ``make run`` put it in
    the run's folder, so nothing is left in your workspace.

Files to edit
    handson/tasks.py     the housekeeping task above (``from . import tasklog``)
    handson/settings.py  CELERY_RESULT_EXPIRES and CELERY_BEAT_SCHEDULE, as above
    handson/Procfile     ``beat: celery -A handson beat -l info``, once

Watch for
    - A schedule entry names its task by its full name, ``handson.tasks.housekeeping``: a name
      the workers do not know is "Received unregistered task" in their log, and discarded.
    - Beat does not catch up: while it is stopped, nothing is sent; started again with its
      schedule file, an overdue entry runs once at once, then every interval, never once for
      every run it missed (``celery/schedules.py``, ``schedule.is_due``).

見えること
    ページのタスク一覧は、その索引を Redis の 1 つのキーに置いています (handson/tasklog.py、用意済み)。
    タスクを送るたびにそのキーの寿命が延びるので、忙しいアプリでは期限切れにならず、増える一方です。
    誰かがときどき片付ける必要があります: ``tasklog.forget_older_than(seconds)`` は結果がもう消えた
    タスクを一覧から除きます。誰かの要求ではなく一定の間隔で動く処理のためにあるのが、Celery の
    スケジューラー ``celery beat`` です。独立したプロセスで、スケジュールのタスクを時刻が来たら送ります。
    ワーカーは他のタスクと同じように実行します。

作るもの
    タスク、スケジュール、ただ 1 つのスケジューラー、そして永久には残らない結果 (上のコード)。
    ``schedule`` は秒数 (または timedelta、``celery.schedules.crontab(...)``) です。ラボは速さのために
    HANDSON_SLEEP 秒ごとにしています。実際のアプリなら 1 時間ごとなどにします。

    beat はちょうど 1 つ。beat プロセスはそれぞれ独立にスケジュールのすべてのエントリーを送ります。
    2 つあると (beat の行が 2 つ、またはワーカーの ``-B``: そのワーカーの中で beat を動かします)
    各タスクが 2 回、3 つなら 3 回送られます。警告は出ません。処理が 2 回行われるだけです。この
    タスクなら無害ですが、メールを送るタスクや課金するタスクではそうはいきません。``-B`` は開発用の
    ワーカー 1 台のためのものです。本番では ``celery beat`` を 1 つ、ワーカーはいくつでも並べます。
    ラボは数回の間隔で実行回数を数え、スケジューラー 1 つ分より多ければ失敗にします。

    ``ignore_result=True``: 誰も結果を読まないタスクは結果を保存しません。これがないと、実行のたびに
    結果バックエンドに ``celery-task-meta-<id>`` キーが 1 つずつ書かれ、それぞれ ``result_expires`` の
    間残ります。この設定の既定値は 1 日です (``celery/app/defaults.py``)。Redis バックエンドは結果の
    キーごとにその寿命 (TTL) を自分で付けるので、Redis は古い結果を自動で消します。(キーを期限切れに
    できない結果バックエンド、たとえばデータベースには、beat が毎日 ``celery.backend_cleanup`` タスクを
    送ります: ``celery/beat.py`` の ``install_default_entries``。Redis には不要です。)
    ``result_expires`` は結果を読める期間でもあります。過ぎると、そのタスク id の状態は、誰も送って
    いないタスクと同じく PENDING になります。

    beat は各エントリーを最後に実行した時刻をスケジュールファイル (``celerybeat-schedule``、``-s`` が
    なければ起動した場所) に記録します。ラボと ``make run`` はそれを実行フォルダーに置くので、
    ワークスペースには何も残りません。

編集するファイル
    handson/tasks.py     上の housekeeping タスク (``from . import tasklog``)
    handson/settings.py  上の CELERY_RESULT_EXPIRES と CELERY_BEAT_SCHEDULE
    handson/Procfile     ``beat: celery -A handson beat -l info`` を 1 行だけ

注意
    - スケジュールのエントリーはタスクを完全な名前 ``handson.tasks.housekeeping`` で指定します。
      ワーカーが知らない名前は、ログに "Received unregistered task" と出て捨てられます。
    - beat は遅れを取り戻しません。止まっている間は何も送られません。スケジュールファイルとともに
      再び起動すると、期限を過ぎたエントリーはすぐに 1 回だけ実行され、その後は間隔ごとです。逃した
      回数分実行されることはありません (``celery/schedules.py`` の ``schedule.is_due``)。
"""
import datetime

import pytest

from labs.harness.i18n import say
from labs.harness.lesson import foundations
from labs.harness.lesson.checks import (
    LOG_LINE,
    declared_processes,
    received_ids,
    reported_settings,
    require,
    send_hello_and_see_it_received,
    setting,
    succeeded_seconds,
)
from labs.harness.lesson.waiting import wait_for
from labs.harness.services.beat import BeatSpec
from labs.harness.services.procfile import PROCFILE, ProcfileError, read_procfile
from labs.harness.services.stack import StackSpec
from labs.harness.services.worker import WorkerSpec

pytestmark = pytest.mark.lab
HOUSEKEEPING = "handson.tasks.housekeeping"
BEAT_LINE = "beat: celery -A handson beat -l info"
SCHEDULE = 'CELERY_BEAT_SCHEDULE = {"housekeeping": {"task": "handson.tasks.housekeeping", "schedule": HANDSON_SLEEP}}'
RESULT_EXPIRES = 3600
WINDOW = 4  # intervals the runs are counted over


@pytest.fixture(scope="module")
def lab_stack_spec(workspace):
    """The workers and the beat handson/Procfile declares (one default worker if it cannot be read: the
    first test says why)."""
    try:
        return StackSpec.from_procfile(read_procfile(workspace / PROCFILE))
    except ProcfileError:
        return StackSpec(workers=(WorkerSpec(),))


def _schedulers(workspace):
    """Every scheduler handson/Procfile declares: its beat lines, and its workers started with -B."""
    processes = declared_processes(workspace)
    return [f"{spec.name} (celery beat)" for spec in processes if isinstance(spec, BeatSpec)] + \
        [f"{spec.node} (worker -B)" for spec in processes if isinstance(spec, WorkerSpec) and spec.beat]


def _no_scheduler():
    return say(
        f"handson/Procfile declares no scheduler: nothing sends the periodic tasks. Add one line: {BEAT_LINE}",
        f"handson/Procfile にスケジューラーがありません。定期タスクを送るものがいません。1 行追加してください: {BEAT_LINE}",
    )


def _require_one_scheduler(workspace):
    foundations.check("one scheduler")
    found = _schedulers(workspace)
    foundations.must_have("one scheduler", found, _no_scheduler())
    embedded = [spec.node for spec in declared_processes(workspace) if isinstance(spec, WorkerSpec) and spec.beat]
    foundations.must_have("one scheduler", not embedded, say(
        f"The worker {', '.join(embedded)} runs a beat inside it (-B). Celery keeps -B for a lone worker in "
        "development: in a deployment, the worker that is restarted, scaled out or started twice takes its scheduler "
        f"along, and every copy sends every entry. Run the scheduler as a process of its own: {BEAT_LINE}, and no -B "
        "on any worker.",
        f"ワーカー {', '.join(embedded)} は自分の中で beat を動かしています (-B)。Celery は -B を開発中のワーカー 1 台の"
        "ためのものとしています。本番では、再起動・スケールアウト・二重起動されたワーカーがスケジューラーごと増え、"
        f"それぞれがすべてのエントリーを送ります。スケジューラーは独立したプロセスにしてください: {BEAT_LINE}。"
        "どのワーカーにも -B は付けません。",
    ))
    foundations.must_have("one scheduler", len(found) == 1, say(
        f"handson/Procfile declares {len(found)} schedulers: {', '.join(found)}. Each one sends every entry of "
        f"the schedule on its own, so every periodic task runs {len(found)} times. Keep exactly one: {BEAT_LINE}, "
        "and no -B on the workers.",
        f"handson/Procfile にスケジューラーが {len(found)} 個あります: {', '.join(found)}。それぞれが独立にすべての"
        f"エントリーを送るので、定期タスクが {len(found)} 回ずつ実行されます。ちょうど 1 つにしてください: "
        f"{BEAT_LINE} だけを残し、ワーカーに -B は付けません。",
    ))


def _runs(lab_stack):
    """[(time in seconds, task id)] of every housekeeping task the workers received, in time order."""
    runs = []
    for worker in lab_stack.workers:
        for stamp, millis, text in LOG_LINE.findall(worker.log()):
            for task_id in received_ids(text, HOUSEKEEPING):
                runs.append((_seconds(stamp, millis), task_id))
    return sorted(runs)


def _seconds(stamp, millis):
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").timestamp() + int(millis) / 1000


def _unregistered(lab_stack):
    return any(f"unregistered task of type '{HOUSEKEEPING}'" in worker.log() for worker in lab_stack.workers)


def _first_run(lab_stack, workspace, sleep_seconds):
    """The first housekeeping run the workers received (waits up to two intervals after beat started)."""
    foundations.check("a scheduler")
    foundations.must_have("a scheduler", _schedulers(workspace), _no_scheduler())
    for service in (*lab_stack.workers, *lab_stack.beats):
        service.require_running()
    foundations.check("housekeeping runs")
    waited = 2 * sleep_seconds + 5
    runs = wait_for(lambda: _runs(lab_stack) or _unregistered(lab_stack), timeout=waited)
    if _unregistered(lab_stack) or not runs:
        foundations.remember_missing("housekeeping runs", "housekeeping never ran.")
    require(not _unregistered(lab_stack), say(
        f"Beat sends {HOUSEKEEPING}, and the workers do not know it (\"Received unregistered task\"): define it "
        "in handson/tasks.py with @shared_task(ignore_result=True).",
        f"beat は {HOUSEKEEPING} を送っていますが、ワーカーはそれを知りません (\"Received unregistered task\")。"
        "handson/tasks.py に @shared_task(ignore_result=True) で定義してください。",
    ))
    sent = [task for beat in lab_stack.beats for _, task in beat.sent()]
    require(runs, say(
        f"No housekeeping ran within {waited:g} s of beat's start. Beat sent "
        f"{sorted(set(sent)) or 'nothing'}: in handson/settings.py write {SCHEDULE}.",
        f"beat の起動から {waited:g} 秒以内に housekeeping が実行されませんでした。beat が送ったもの: "
        f"{sorted(set(sent)) or 'なし'}。handson/settings.py に {SCHEDULE} と書いてください。",
    ))
    return runs[0]


def test_the_procfile_declares_exactly_one_scheduler(workspace):
    """handson/Procfile has one ``celery -A handson beat`` line and no worker with -B."""
    _require_one_scheduler(workspace)


def test_housekeeping_keeps_no_result(lab_stack, workspace, result_backend, sleep_seconds):
    """Its runs succeed and leave no ``celery-task-meta-<id>`` key in the result backend (ignore_result=True)."""
    _first_run(lab_stack, workspace, sleep_seconds)

    def succeeded():
        # Not a run the lab revoked between tests (one in flight then): another worker may have stored REVOKED.
        logs = "".join(worker.log() for worker in lab_stack.workers)
        return [task_id for _, task_id in _runs(lab_stack) if f"{HOUSEKEEPING}[{task_id}] succeeded" in logs
                and task_id not in lab_stack.revoked_by_lab] or None

    done = wait_for(succeeded, timeout=sleep_seconds + 10)
    require(done, say(
        f"No housekeeping run succeeded. Worker log:\n{lab_stack.worker.log_tail(20)}",
        f"housekeeping の実行が 1 つも成功していません。ワーカーのログ:\n{lab_stack.worker.log_tail(20)}",
    ))
    kept = {task_id: meta["status"] for task_id in done if (meta := result_backend.meta(task_id)) is not None}
    # Which state was stored says who stored it (SUCCESS: the result; FAILURE or REVOKED: an error kept anyway).
    first = next(iter(kept.items()), ("", ""))
    require(not kept, say(
        f"The result backend keeps a result for {len(kept)} of {len(done)} housekeeping runs (celery-task-meta-"
        f"{first[0]}, {first[1]}): one more key every interval that nobody reads. Declare the task with "
        "@shared_task(ignore_result=True).",
        f"結果バックエンドに housekeeping の実行 {len(done)} 回のうち {len(kept)} 回分の結果があります "
        f"(celery-task-meta-{first[0]}、{first[1]})。誰も読まないキーが間隔ごとに増えます。"
        "@shared_task(ignore_result=True) で宣言してください。",
    ))
    # The page's task list (handson/tasklog.py, given) leaves periodic runs out, so they add no key there either.
    noted = [task_id for task_id in done if result_backend.client.exists(f"handson:task:{task_id}")]
    require(not noted, say(
        f"handson/tasklog.py noted {len(noted)} of {len(done)} housekeeping runs in the page's task list "
        f"(handson:task:{noted[0] if noted else ''}). That file is given and leaves out the tasks of "
        "CELERY_BEAT_SCHEDULE in handson/settings.py: declare the schedule there (not as app.conf.beat_schedule), "
        "and keep the file as given (git checkout handson/tasklog.py).",
        f"handson/tasklog.py が housekeeping の実行 {len(done)} 回のうち {len(noted)} 回をページのタスク一覧に記録しました "
        f"(handson:task:{noted[0] if noted else ''})。このファイルは配布物で、handson/settings.py の "
        "CELERY_BEAT_SCHEDULE のタスクは記録しません。スケジュールはそこに宣言し (app.conf.beat_schedule ではなく)、"
        "ファイルは配布されたままにしてください (git checkout handson/tasklog.py)。",
    ))


def test_a_result_is_kept_for_an_hour(web, celery_worker, result_backend, broker_control, sleep_seconds):
    """A hello task's result key in Redis lives RESULT_EXPIRES seconds (its TTL), not Celery's default day."""
    mark, task_id = send_hello_and_see_it_received(web, celery_worker)
    ended = wait_for(lambda: result_backend.state(task_id) == "SUCCESS"
                     or succeeded_seconds(celery_worker.log(mark), task_id) is not None, timeout=sleep_seconds + 10)
    stored = wait_for(lambda: result_backend.state(task_id) == "SUCCESS", timeout=1 if ended else 0)
    if ended and not stored:  # it succeeded, and nothing was kept of it
        spelled, value = setting(reported_settings(celery_worker, broker_control), "task_ignore_result")
        require(False, say(
            f"The hello task {task_id} succeeded (the worker's log says so), but no result of it was stored"
            + (f": {spelled} = {value!r} ignores the results of every task" if value else "")
            + ". ignore_result belongs on the housekeeping task alone, @shared_task(ignore_result=True): the other "
            "tasks' results are what the page, the chord of step 10 and your callers read.",
            f"hello タスク {task_id} は成功しました (ワーカーのログにあります) が、その結果が保存されていません"
            + (f"。{spelled} = {value!r} がすべてのタスクの結果を無視しています" if value else "")
            + "。ignore_result は housekeeping タスクだけに付けます (@shared_task(ignore_result=True))。ほかのタスクの"
            "結果は、ページ、ステップ 10 の chord、呼び出し元が読むものです。"))
    require(stored, say(f"The hello task {task_id} did not succeed: the worker's log shows no success for it.",
                        f"hello タスク {task_id} が成功しませんでした (ワーカーのログに成功がありません)。"))
    ttl = result_backend.seconds_left(task_id)
    require(ttl is not None and RESULT_EXPIRES - 60 <= ttl <= RESULT_EXPIRES, say(
        f"The result of {task_id} expires in {ttl} s; it should be kept for an hour: in handson/settings.py write "
        f"CELERY_RESULT_EXPIRES = {RESULT_EXPIRES} (Celery's default is a day, 86400 s).",
        f"{task_id} の結果は {ttl} 秒後に消えます。1 時間保存してください: handson/settings.py に "
        f"CELERY_RESULT_EXPIRES = {RESULT_EXPIRES} と書きます (Celery の既定は 1 日、86400 秒です)。",
    ))


def test_housekeeping_runs_once_every_interval(lab_stack, workspace, sleep_seconds):
    """Over WINDOW intervals after its first run, housekeeping runs about once per HANDSON_SLEEP seconds:
    never more than one scheduler can send (a second scheduler doubles the runs), nor far fewer."""
    start, _ = _first_run(lab_stack, workspace, sleep_seconds)
    end, most = start + WINDOW * sleep_seconds, WINDOW + 1

    def in_window():
        return [run for run in _runs(lab_stack) if start < run[0] <= end]

    def evidence():
        runs = _runs(lab_stack)
        return len(in_window()) > most or (runs and runs[-1][0] > end)

    wait_for(evidence, timeout=WINDOW * sleep_seconds + 10)
    counted = len(in_window())
    schedulers = _schedulers(workspace)
    require(counted <= most, say(
        f"housekeeping ran {counted} times in {WINDOW} intervals of {sleep_seconds:g} s: more than one scheduler "
        f"sends it. handson/Procfile declares {', '.join(schedulers)}; keep exactly one ({BEAT_LINE}, no -B on the "
        "workers).",
        f"housekeeping が {sleep_seconds:g} 秒の間隔 {WINDOW} 回分で {counted} 回実行されました。複数のスケジューラーが"
        f"送っています。handson/Procfile には {', '.join(schedulers)} があります。ちょうど 1 つにしてください "
        f"({BEAT_LINE} だけ、ワーカーに -B なし)。",
    ))
    require(counted >= WINDOW - 2, say(
        f"housekeeping ran {counted} times in {WINDOW} intervals of {sleep_seconds:g} s: its schedule should be "
        f"every HANDSON_SLEEP seconds, \"schedule\": HANDSON_SLEEP in {SCHEDULE}.",
        f"housekeeping が {sleep_seconds:g} 秒の間隔 {WINDOW} 回分で {counted} 回しか実行されませんでした。スケジュールは "
        f"HANDSON_SLEEP 秒ごと、{SCHEDULE} の \"schedule\": HANDSON_SLEEP にしてください。",
    ))
    _require_one_scheduler(workspace)  # the runs look right: the Procfile must say so too
