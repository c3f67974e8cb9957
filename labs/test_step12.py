"""Step 12 — deploys without losing work: stop workers warmly, and recycle leaky processes.
ステップ 12 — 処理を失わないデプロイ: ワーカーを穏やかに止め、メモリが漏れるプロセスを入れ替える

What you see
    A deploy stops the old workers and starts new ones. It stops a process the way `docker stop`
    and Kubernetes do: SIGTERM to the container's first process (PID 1) alone, then, after a grace
    period (`docker stop`: 10 s, Kubernetes: 30 s), SIGKILL. (systemd, by default, signals every
    process of the service at once, ``KillMode=control-group``: the shell trap below is docker's
    and Kubernetes'.) What the worker was doing in between is what this step is about.

    - SIGTERM is Celery's *warm* shutdown: the worker prints "worker: Warm shutdown
      (MainProcess)" on its standard output (``safe_say``, ``celery/apps/worker.py``: not through
      its logger, so a ``--logfile`` does not hold it), takes no new task, lets the running ones
      finish, and exits. The messages it had
      prefetched but not started go back to Redis ("Restoring 1 unacknowledged message(s)"),
      where the new workers take them. Nothing is lost.
    - SIGQUIT (or a second Ctrl-C) is the *cold* shutdown: the running tasks are cancelled. A
      task without acks_late had its message acknowledged when it started: its state is left
      RETRY and nothing runs it again (tests/test_celery_facts.py shows it). (Celery 5.5's soft shutdown,
      ``worker_soft_shutdown_timeout``, off by default, first lets them run that many seconds;
      ``worker_enable_soft_shutdown_on_idle`` waits even with nothing running.)
    - SIGKILL cannot be caught, and nothing ends the running task: its stored state stays what it
      was (STARTED, with ``task_track_started``) until the result key expires (``result_expires``,
      step 11), and then reads PENDING. With acks_late its message comes back only after Redis's
      visibility timeout (one hour).

    So a deploy must send SIGTERM to Celery itself, and wait for the longest task. The trap:
    the *shell form*. A Dockerfile's ``CMD celery -A handson worker`` runs
    ``/bin/sh -c "celery -A handson worker"``, and so does any ``sh -c '...'``: the process the
    deploy signals is the shell. Debian's /bin/sh (dash) runs celery as its child and does not
    pass SIGTERM on: the worker never hears it, goes on taking tasks, and the SIGKILL at the end
    of the grace period kills it mid-task. ``exec celery ...`` makes the shell replace itself
    with celery, which then gets the SIGTERM (or write the exec form, ``CMD ["celery", ...]``).

    The lab deploys your handson/Procfile that way: it starts the first worker line in shell
    form, sends it SIGTERM while a hello runs, and watches.

    Memory: a pool process lives as long as the worker, and runs task after task. A leak
    (handson/imports.py keeps 8 MiB for good on every call, as a cache that only grows would)
    makes it grow until the machine swaps or the kernel kills it. ``--max-tasks-per-child=N`` on
    a worker's line replaces its pool processes with fresh ones after N tasks each;
    ``--max-memory-per-child`` (KiB) after the task during which one grew past that much. Put it
    on the worker that runs the leaky work, not in settings.py for every worker
    (``CELERY_WORKER_MAX_TASKS_PER_CHILD``): a replacement costs a fork (the child inherits the
    app the worker imported: ``init_worker``, ``celery/loaders/base.py``, runs once, in the parent)
    and Celery's set-up of the child (``process_initializer``, ``celery/concurrency/prefork.py``),
    and the slot can stay empty for seconds (the main process may notice the exit only at its
    next pool check), which every other task of every worker would then pay; in this lab,
    step 5's retries came seconds late.

What you build
        # handson/Procfile: exec before every command; the default node, which runs the imports,
        # recycles its pool processes (real apps: hundreds of tasks; the lab's leak is quick)
        default: exec celery -A handson worker --concurrency=4 --max-tasks-per-child=5 -n default@%h -l info
        slow: exec celery -A handson worker -Q slow --concurrency=1 --prefetch-multiplier=1 -n slow@%h -l info
        beat: exec celery -A handson beat -l info

        # handson/tasks.py
        @shared_task
        def import_batch(batch):
            return imports.load(batch)  # {"batch", "pid", "leaked_mib", "rss_mib"}

        # handson/views.py: Step12 sends imports.BATCHES imports
        class TaskStep12(View):
            def post(self, request, *args, **kwargs):
                for batch in range(1, imports.BATCHES + 1):
                    import_batch.delay(batch)
                return redirect(reverse("base"))

    The lab presses Step12 and reads each import's result: no pool process may run more than 5
    of them, so none holds more than 5 x 8 MiB of leak.

Files to edit
    handson/Procfile     ``exec`` before ``celery`` on every line, ``--max-tasks-per-child=5`` on default
    handson/tasks.py     import_batch (``from . import imports``)
    handson/views.py     TaskStep12 (``from . import imports``, import_batch from .tasks)
    handson/urls.py      path("handson/task_step12", views.TaskStep12.as_view(), name="task_step12")

Watch for
    - A deploy waits for the longest task only as long as its grace period: a task longer than
      that is killed anyway. Give the platform a grace longer than your longest task, or make
      long tasks safe to run again (step 6: acks_late, idempotency).
    - ``--max-tasks-per-child`` counts tasks, not memory: pick it from how fast the leak grows,
      or use ``--max-memory-per-child`` when that varies.

見えること
    デプロイは古いワーカーを止めて新しいワーカーを起動します。止め方は `docker stop` や Kubernetes と同じで、
    コンテナの最初のプロセス (PID 1) だけに SIGTERM を送り、猶予期間 (`docker stop`: 10 秒、Kubernetes:
    30 秒) の後に SIGKILL を送ります。(systemd は既定でサービスのすべてのプロセスに一度に送ります
    (``KillMode=control-group``)。下のシェルの落とし穴は docker と Kubernetes のものです。) その間に
    ワーカーが何をするかが、このステップの主題です。

    - SIGTERM は Celery の *ウォーム* シャットダウンです。ワーカーは "worker: Warm shutdown (MainProcess)" を
      標準出力に書きます (``safe_say``、``celery/apps/worker.py``。ロガー経由ではないので ``--logfile`` には
      残りません)。新しいタスクを取らず、実行中のタスクを最後まで実行して終了します。先読みしたが始めていない
      メッセージは Redis に戻り ("Restoring 1 unacknowledged message(s)")、新しいワーカーが受け取ります。
      何も失われません。
    - SIGQUIT (または 2 回目の Ctrl-C) は *コールド* シャットダウンです。実行中のタスクは取り消されます。
      acks_late でないタスクのメッセージは開始時に確認応答済みなので、状態は RETRY のまま残り、
      もう誰も実行しません (tests/test_celery_facts.py で確認)。(Celery 5.5 のソフトシャットダウン ``worker_soft_shutdown_timeout``
      は既定で無効です。有効にすると、先にその秒数だけ実行を続けさせます。
      ``worker_enable_soft_shutdown_on_idle`` は実行中のタスクがなくても待ちます。)
    - SIGKILL は捕まえられず、実行中のタスクを終わらせるものはありません。保存された状態はそのまま
      (``task_track_started`` なら STARTED) 結果のキーが期限切れになるまで残り (``result_expires``、
      ステップ 11)、その後は PENDING と読まれます。
      acks_late なら、そのメッセージは Redis の可視性タイムアウト (1 時間) の後にだけ戻ります。

    つまりデプロイは SIGTERM を Celery 自身に送り、いちばん長いタスクを待つ必要があります。落とし穴は
    *シェル形式* です。Dockerfile の ``CMD celery -A handson worker`` は
    ``/bin/sh -c "celery -A handson worker"`` を実行します。``sh -c '...'`` も同じです。デプロイが
    シグナルを送るのはシェルです。Debian の /bin/sh (dash) は celery を子プロセスとして実行し、SIGTERM を
    渡しません。ワーカーはそれを知らずにタスクを取り続け、猶予期間の終わりの SIGKILL でタスクの途中で
    殺されます。``exec celery ...`` と書くとシェルは自分を celery に置き換え、celery が SIGTERM を受け取り
    ます (Dockerfile なら exec 形式 ``CMD ["celery", ...]``)。

    ラボは handson/Procfile をそのようにデプロイします。最初のワーカーの行をシェル形式で起動し、hello の
    実行中に SIGTERM を送って様子を見ます。

    メモリ: プールプロセスはワーカーと同じだけ生き、タスクを次々に実行します。メモリリーク
    (handson/imports.py は呼ばれるたびに 8 MiB を手放さずに持ちます。増える一方のキャッシュのように)
    があると、マシンがスワップするかカーネルに殺されるまで大きくなります。ワーカーの行の
    ``--max-tasks-per-child=N`` は、そのワーカーのプールプロセスをそれぞれ N タスクの後に新しいものに
    入れ替えます。``--max-memory-per-child`` (KiB) はその大きさを超えたタスクの後に入れ替えます。
    settings.py ですべてのワーカーに (``CELERY_WORKER_MAX_TASKS_PER_CHILD``) ではなく、漏れる処理を
    実行するワーカーに付けてください。入れ替えには fork (子はワーカーが import 済みのアプリを受け継ぎます:
    ``celery/loaders/base.py`` の ``init_worker`` は親で 1 回だけ) と、Celery による子の準備
    (``celery/concurrency/prefork.py`` の ``process_initializer``) がかかり、その枠は数秒空く
    ことがあります (メインプロセスが終了に気づくのが次のプール点検のときになりうるため)。それを
    すべてのワーカーのすべてのタスクが払うことになります。このラボではステップ 5 のリトライが数秒
    遅れました。

作るもの
    上のコードのとおりです。ラボは Step12 を押して各インポートの結果を読みます。5 個より多く実行した
    プールプロセスがあってはならず、したがってどのプロセスも 5 x 8 MiB より多くは漏らしません。

編集するファイル
    handson/Procfile     すべての行の ``celery`` の前に ``exec``、default に ``--max-tasks-per-child=5``
    handson/tasks.py     import_batch (``from . import imports``)
    handson/views.py     TaskStep12 (``from . import imports``、.tasks から import_batch)
    handson/urls.py      path("handson/task_step12", views.TaskStep12.as_view(), name="task_step12")

注意
    - デプロイがいちばん長いタスクを待つのは猶予期間の間だけです。それより長いタスクはやはり殺されます。
      猶予期間を最長のタスクより長くするか、長いタスクを再実行しても安全にします (ステップ 6: acks_late、
      冪等性)。
    - ``--max-tasks-per-child`` はメモリではなくタスクの数を数えます。リークの増え方から決めるか、
      それが一定でなければ ``--max-memory-per-child`` を使います。
"""
import os
import signal
from collections import Counter

import pytest

from labs.harness.i18n import say
from labs.harness.lesson.checks import (
    HELLO,
    STEP2,
    declared_processes,
    declared_workers,
    press_for_new_tasks,
    reported_settings,
    require,
    send_hello_and_see_it_received,
    setting,
    wait_until_started,
)
from labs.harness.lesson.waiting import wait_for
from labs.harness.services.worker import CeleryWorker, WorkerSpec, alive

# The web server only: every test starts the worker it needs from handson/Procfile, and stops it.
pytestmark = [pytest.mark.lab, pytest.mark.stack(workers=[])]
STEP12 = ("Step12", "TaskStep12", "task_step12", "/handson/task_step12")
IMPORT_BATCH = "handson.tasks.import_batch"
BATCHES = 32  # handson/imports.py's BATCHES: what one press of Step12 sends (more than 4 processes × 6: spread evenly, a
# process that is never replaced still holds more than MAX_LEAK_MIB)
MAX_TASKS = 5
LEAK_MIB = 8
MAX_LEAK_MIB = (MAX_TASKS + 1) * LEAK_MIB  # a memory limit replaces a process after the task that crossed it
ONE_EACH = 9  # imports ended in as many pool processes: replaced after every task (4 processes, 5 tasks each: 20)
WARM = "worker: Warm shutdown (MainProcess)"
EXEC_LINE = "default: exec celery -A handson worker --concurrency=4 -n default@%h -l info"
RECYCLING_LINE = f"default: exec celery -A handson worker --concurrency=4 --max-tasks-per-child={MAX_TASKS} -n default@%h -l info"
APP_WIDE = "worker_max_tasks_per_child"


def _start_first_worker(lab_stack, broker_control, workspace, shell_form):
    """The first worker line of handson/Procfile, started on the lab's Redis (in shell form: /bin/sh -c, as
    a Dockerfile's `CMD <line>` runs it), with the default queue empty."""
    spec = declared_workers(workspace)[0]
    broker_control.purge({"celery", *spec.queues})
    worker = CeleryWorker(workspace, lab_stack.redis, lab_stack.env, lab_stack.log_dir, spec, shell_form=shell_form)
    return worker.start()


@pytest.fixture
def deployed_worker(lab_stack, broker_control, workspace):
    worker = _start_first_worker(lab_stack, broker_control, workspace, shell_form=True)
    yield worker
    worker.stop()  # the whole group: a shell's child that never heard SIGTERM too


@pytest.fixture
def first_worker(lab_stack, broker_control, workspace):
    worker = _start_first_worker(lab_stack, broker_control, workspace, shell_form=False)
    yield worker
    worker.stop()


def _lines_without_exec(workspace):
    return [spec.node if isinstance(spec, WorkerSpec) else spec.name for spec in declared_processes(workspace)
            if not spec.execs]


def _require_exec_everywhere(without):
    assert not without, say(
        f"handson/Procfile: {', '.join(without)} still start{'s' if len(without) == 1 else ''} without exec; in shell "
        "form a deploy's SIGTERM would not reach them. Write exec before celery on every line.",
        f"handson/Procfile: {', '.join(without)} はまだ exec なしで起動します。シェル形式ではデプロイの SIGTERM が"
        "届きません。すべての行で celery の前に exec を書いてください。",
    )


def test_a_leaky_pool_process_is_replaced_after_five_tasks(web, first_worker, result_backend, broker_control,
                                                          sleep_seconds):
    """Step12 sends BATCHES imports, each of which leaks 8 MiB in the pool process that runs it: no pool process
    runs more than MAX_TASKS of them (--max-tasks-per-child on the first worker's line), fresh ones take over, and
    the limit is that worker's, not the whole app's."""
    worker = first_worker
    worker.require_running()
    # An app-wide limit is known before any import runs: said first.
    spelled, value = setting(reported_settings(worker, broker_control), APP_WIDE)
    written = f"{spelled} = {value!r}" if spelled else None
    assert written is None, say(
        f"handson/settings.py sets {written}: every worker of the app then recycles its pool processes, and each "
        "replacement can leave a slot empty for seconds (step 5's retries come late). Remove it and recycle only "
        f"the worker that runs the leaky imports: {RECYCLING_LINE}.",
        f"handson/settings.py で {written} としています。アプリのすべてのワーカーがプールプロセスを入れ替えることになり、"
        "入れ替えのたびに枠が数秒空くことがあります (ステップ 5 のリトライが遅れます)。消して、漏れるインポートを"
        f"実行するワーカーだけで入れ替えてください: {RECYCLING_LINE}。",
    )
    sent = press_for_new_tasks(web, *STEP12, IMPORT_BATCH, BATCHES)
    ids = [task["id"] for task in sent]

    def judged():
        """True once every import has ended, or as soon as the verdict is known before: a process that holds
        more than MAX_LEAK_MIB (nothing replaced it in time), or ONE_EACH imports ended in as many processes
        (replaced after every task: with --max-tasks-per-child=5, 4 processes run the first 20)."""
        metas = [result_backend.meta(task_id) or {} for task_id in ids]
        ended = [meta for meta in metas if meta.get("status") in ("SUCCESS", "FAILURE")]
        answers = [meta["result"] for meta in ended if isinstance(meta.get("result"), dict)]
        if any((answer.get("leaked_mib") or 0) > MAX_LEAK_MIB for answer in answers):
            return True
        if len(answers) >= ONE_EACH and len({answer.get("pid") for answer in answers}) == len(answers):
            return True
        return len(ended) == len(ids)

    wait_for(judged, timeout=sleep_seconds + 30)
    results = {task_id: result_backend.meta(task_id) or {} for task_id in ids}
    if not all(meta.get("status") in ("SUCCESS", "FAILURE") for meta in results.values()):
        # Judged early: the imports still running are left out of the verdict (none of theirs changes it).
        results = {task_id: meta for task_id, meta in results.items() if meta.get("status") in ("SUCCESS", "FAILURE")}
    failed = [(task_id, meta.get("status"), meta.get("result")) for task_id, meta in results.items()
              if meta.get("status") != "SUCCESS" or not isinstance(meta.get("result"), dict)]
    require(not failed, say(
        f"{len(failed)} of {BATCHES} imports did not end SUCCESS with imports.load's answer, e.g. {failed[0] if failed else ''}: "
        "import_batch(batch) should return imports.load(batch).",
        f"{BATCHES} 個のうち {len(failed)} 個のインポートが imports.load の答えで SUCCESS になりませんでした "
        f"(例: {failed[0] if failed else ''})。import_batch(batch) は imports.load(batch) を返します。",
    ))
    ran = Counter(meta["result"]["pid"] for meta in results.values())
    held, rss, start_mib = {}, {}, []
    for meta in results.values():
        pid, leaked = meta["result"]["pid"], meta["result"]["leaked_mib"]
        held[pid] = max(held.get(pid, 0), leaked)
        rss[pid] = max(rss.get(pid, 0), meta["result"].get("rss_mib") or 0)
        if leaked == LEAK_MIB and meta["result"].get("rss_mib"):
            start_mib.append(meta["result"]["rss_mib"] - LEAK_MIB)  # what a fresh pool process holds
    busiest = max(held, key=held.get)
    memory = next((option.split("=", 1)[1] for option in worker.spec.options
                   if option.startswith("--max-memory-per-child=")), None)
    if held[busiest] > MAX_LEAK_MIB and memory and memory.isdigit():
        fresh = min(start_mib) if start_mib else 0
        assert False, say(
            f"Pool process {busiest} ran {ran[busiest]} imports and grew to {rss[busiest]} MiB ({held[busiest]} MiB of "
            f"leak) without being replaced. --max-memory-per-child={memory} is in KiB: {int(memory) // 1024} MiB of "
            "resident memory, and a process is replaced after the task during which it grew past that. A fresh pool "
            f"process holds about {fresh} MiB here and each import adds {LEAK_MIB} MiB: for at most {MAX_TASKS} imports "
            f"a process, --max-memory-per-child={(fresh + MAX_TASKS * LEAK_MIB) * 1024} (or count them: "
            f"--max-tasks-per-child={MAX_TASKS}).",
            f"プールプロセス {busiest} は {ran[busiest]} 個のインポートを実行し、入れ替えられずに {rss[busiest]} MiB "
            f"({held[busiest]} MiB のリーク) まで大きくなりました。--max-memory-per-child={memory} の単位は KiB で、"
            f"常駐メモリ {int(memory) // 1024} MiB です。プロセスはそれを超えたタスクの後に入れ替えられます。ここでは"
            f"新しいプールプロセスが約 {fresh} MiB を持ち、インポート 1 回で {LEAK_MIB} MiB 増えます。1 プロセス "
            f"{MAX_TASKS} 回までなら --max-memory-per-child={(fresh + MAX_TASKS * LEAK_MIB) * 1024} です (回数で数えるなら "
            f"--max-tasks-per-child={MAX_TASKS})。",
        )
    assert held[busiest] <= MAX_LEAK_MIB, say(
        f"Pool process {busiest} ran {ran[busiest]} of the {BATCHES} imports and held {held[busiest]} MiB of leak at "
        f"the end ({len(ran)} pool processes in all): nothing replaces a process that leaks. On the worker's line in "
        f"handson/Procfile add --max-tasks-per-child={MAX_TASKS}: {RECYCLING_LINE}.",
        f"プールプロセス {busiest} が {BATCHES} 個のインポートのうち {ran[busiest]} 個を実行し、最後には {held[busiest]} "
        f"MiB のリークを抱えていました (プールプロセスは全部で {len(ran)} 個)。漏れるプロセスを入れ替えるものがありません。"
        f"handson/Procfile のワーカーの行に --max-tasks-per-child={MAX_TASKS} を加えてください: {RECYCLING_LINE}。",
    )
    assert max(ran.values()) > 1, say(
        f"{len(ran)} pool processes ran {len(results)} of the {BATCHES} imports, one each: every process was replaced after a single "
        "task. Each replacement costs a fork and Celery's set-up of the child, and can leave the slot empty for "
        f"seconds: replace a process when its leak matters, here after {MAX_TASKS} imports "
        f"(--max-tasks-per-child={MAX_TASKS}), not after every task.",
        f"{BATCHES} 個のうち {len(results)} 個のインポートを {len(ran)} 個のプールプロセスが 1 つずつ実行しました。どのプロセスも 1 タスクごとに"
        "入れ替えられています。入れ替えのたびに fork と Celery による子の準備がかかり、枠が数秒空くこともあります。"
        f"リークが問題になるところで、ここでは {MAX_TASKS} 回のインポートの後に入れ替えてください "
        f"(--max-tasks-per-child={MAX_TASKS})。毎タスクではありません。",
    )


def test_a_deploy_sigterm_lets_the_running_task_finish(web, deployed_worker, result_backend, broker_control,
                                                      workspace, sleep_seconds):
    """SIGTERM to the process the deploy started (the first worker line in shell form) while a hello runs:
    the worker shuts down warm, the hello ends SUCCESS, the worker exits, and a hello sent after the SIGTERM
    waits in Redis for the next worker."""
    worker = deployed_worker
    worker.require_running()
    first, without = declared_workers(workspace)[0].node, _lines_without_exec(workspace)
    if without and first not in without:  # the deploy below would show nothing new: say it now
        _require_exec_everywhere(without)
    _, running = send_hello_and_see_it_received(web, worker)
    wait_until_started(result_backend, running)
    started_pid, celery_pid = worker.process.pid, worker.main_pid()
    os.kill(started_pid, signal.SIGTERM)  # what `docker stop` does: to the process it started, and only to it
    [after] = press_for_new_tasks(web, *STEP2, HELLO, 1)

    # The evidence: the process the deploy started is gone, or celery says it shuts down warm.
    wait_for(lambda: not worker.process.running() or WARM in worker.log(), timeout=10)
    exited = not worker.process.running()
    require(not (exited and celery_pid != started_pid and celery_pid and alive(celery_pid)), say(
        f"The deploy sent SIGTERM to the process it started, /bin/sh (pid {started_pid}): the shell exited, and "
        f"celery under it (pid {celery_pid}) never heard it; it goes on taking tasks, and the platform's SIGKILL "
        "after its grace period (docker stop: 10 s) kills the running task mid-way. A shell-form line must replace "
        f"the shell with celery: write exec before celery in handson/Procfile, {EXEC_LINE}.",
        f"デプロイは起動したプロセス /bin/sh (pid {started_pid}) に SIGTERM を送りました。シェルは終了し、その下の "
        f"celery (pid {celery_pid}) は何も知りません。タスクを取り続け、猶予期間の後のプラットフォームの SIGKILL "
        "(docker stop: 10 秒) で実行中のタスクが途中で殺されます。シェル形式の行ではシェルを celery に置き換えて"
        f"ください: handson/Procfile で celery の前に exec を書きます。{EXEC_LINE}",
    ))
    require(WARM in worker.log(), say(
        f"celery's log does not say \"{WARM}\" after SIGTERM:\n{worker.log_tail(15)}",
        f"SIGTERM の後、celery のログに \"{WARM}\" がありません:\n{worker.log_tail(15)}",
    ))
    wait_for(lambda: not worker.process.running(), timeout=sleep_seconds + 15)
    require(not worker.process.running(), say(
        f"The worker was still running {sleep_seconds + 15:g} s after SIGTERM, with a hello of {sleep_seconds:g} s "
        "to finish: a warm shutdown waits for the running tasks only.",
        f"SIGTERM から {sleep_seconds + 15:g} 秒たってもワーカーが動いています。残りは {sleep_seconds:g} 秒の hello "
        "だけでした。ウォームシャットダウンが待つのは実行中のタスクだけです。",
    ))
    finished = result_backend.state(running)
    assert finished == "SUCCESS", say(
        f"The hello that ran when SIGTERM came ended {finished}: a warm shutdown lets it finish (SUCCESS).",
        f"SIGTERM が来たとき実行中だった hello が {finished} で終わりました。ウォームシャットダウンでは最後まで"
        "実行されます (SUCCESS)。",
    )
    waiting = broker_control.queued("celery")
    assert after["id"] in waiting and result_backend.state(after["id"]) is None, say(
        f"The hello sent after SIGTERM ({after['id']}) is {result_backend.state(after['id'])}, and "
        f"{'in' if after['id'] in waiting else 'not in'} the queue: a stopping worker starts no new task, and what "
        "it had prefetched goes back to Redis for the next worker.",
        f"SIGTERM の後に送った hello ({after['id']}) は {result_backend.state(after['id'])} で、キューに"
        f"{'あります' if after['id'] in waiting else 'ありません'}。停止中のワーカーは新しいタスクを始めず、先読みした"
        "ものは次のワーカーのために Redis に戻ります。",
    )
    _require_exec_everywhere(_lines_without_exec(workspace))
