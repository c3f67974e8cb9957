"""Step 10 — fan out, fan in: a chord, and no task that waits for another.
ステップ 10 — ファンアウトとファンイン: chord を使い、他のタスクを待つタスクを作らない

What you see
    A sales report adds up the sales of several regions. handson/sales.py (given) is a
    slow service: ``sales.count(region)`` takes HANDSON_SLEEP seconds per region. One
    task that counts the regions one after another takes as many times as long; the
    first idea that comes to mind, a task that sends one task per region and waits for
    each with ``.get()``, is refused by Celery:

        RuntimeError: Never call result.get() within a task!

    A task that waits for other tasks holds its pool process while they wait in the
    queue, perhaps behind it: with every process waiting, nothing runs any more. Celery
    raises instead of letting the worker deadlock (``celery.result.assert_will_not_block``).

What you build
    Fan out, then fan in: one task per region, run side by side by the worker's
    processes, and a callback that receives all their results once they have all
    succeeded. That is a chord: a group of tasks (the header) and a callback (the body).

        @shared_task
        def region_sales(region):
            return {"region": region, "sales": sales.count(region)}

        @shared_task
        def sales_report(parts):
            return {"regions": [part["region"] for part in parts],
                    "total": sum(part["sales"] for part in parts)}

    and in handson/views.py the Step10 view, which reads the regions of the form
    (``sales.regions_from_form`` raises ValueError for a bad list) and sends the chord:

        class TaskStep10(View):
            def post(self, request, *args, **kwargs):
                try:
                    regions = sales.regions_from_form(request.POST)
                except ValueError as wrong:
                    return HttpResponseBadRequest(str(wrong))
                try:
                    chord(region_sales.s(region) for region in regions)(sales_report.s())
                except OperationalError as error:  # Redis unreachable, as in steps 5-8
                    return HttpResponse(f"The broker (Redis) is not reachable: {error}", status=503)
                return redirect(reverse("base"))

    ``region_sales.s(region)`` is a signature: the task and its arguments, not yet sent.
    The callback gets the parts' results as its first argument, in the order the parts
    were given (not the order they finished). Nothing waits: the last part to end
    sends the callback (Redis counts the parts that have returned).

    A chain does the same for steps one after another: ``chain(a.s(1), b.s(), c.s())``,
    or ``a.s(1) | b.s() | c.s()``, sends b with a's result as its first argument once a
    has succeeded. A group followed by a task in a chain, ``group(...) | sales_report.s()``,
    is this very chord.

Files to edit
    handson/tasks.py   region_sales and sales_report as above (``from . import sales``)
    handson/views.py   class TaskStep10(View) whose post() reads the regions, sends the
                       chord and redirects to "base" (HttpResponseBadRequest(str(wrong))
                       for a ValueError); at the top ``from celery import chord``,
                       ``from . import sales``, region_sales and sales_report in
                       ``from .tasks import ...``
    handson/urls.py    path("handson/task_step10", views.TaskStep10.as_view(), name="task_step10")

Watch for
    - The callback runs only when every part has succeeded. One part that fails (the
      region "offline" here) fails the whole report: the callback never runs, and its
      result is FAILURE with ``ChordError: Dependency <the part's id> raised ...``. A part
      that may fail for a while should retry (step 5); one whose failure the report can
      live with should return a value that says so, not raise.
    - A chord needs a result backend (the parts' results travel through it): Redis here.

見えること
    売上レポートは複数の地域の売上を合計します。handson/sales.py (用意済み) は遅いサービスで、
    ``sales.count(region)`` は地域ごとに HANDSON_SLEEP 秒かかります。地域を 1 つずつ数えるタスクは
    その回数倍の時間がかかります。まず思いつく、地域ごとにタスクを送って ``.get()`` でそれぞれを待つ
    タスクは、Celery が拒否します (上の RuntimeError)。他のタスクを待つタスクは、それらがキューで
    (自分の後ろかもしれません) 待つ間もプールプロセスを占有します。すべてのプロセスが待つと何も動かなくなります。
    Celery はワーカーがデッドロックする代わりに例外を送出します
    (``celery.result.assert_will_not_block``)。

作るもの
    ファンアウトしてからファンイン: 地域ごとに 1 つのタスクをワーカーのプロセスで並べて実行し、
    すべて成功したら、その結果をすべて受け取るコールバックを 1 回呼びます。これが chord です。
    タスクのグループ (ヘッダー) とコールバック (ボディ) からなります (上のコード)。

    ``region_sales.s(region)`` はシグネチャです。タスクと引数で、まだ送られていません。
    コールバックは各部分の結果を最初の引数として、部分を渡した順に (終わった順ではなく) 受け取ります。
    何も待ちません。最後に終わった部分がコールバックを送ります (Redis が戻った部分を数えます)。

    chain は順に続く処理で同じことをします: ``chain(a.s(1), b.s(), c.s())`` または
    ``a.s(1) | b.s() | c.s()`` は a の成功後、a の結果を最初の引数として b を送ります。chain の中で
    グループの後にタスクが続く ``group(...) | sales_report.s()`` は、この chord そのものです。

編集するファイル
    handson/tasks.py   上の region_sales と sales_report (``from . import sales``)
    handson/views.py   TaskStep10(View) の post() で地域を読み、chord を送り "base" へリダイレクト
                       (ValueError には HttpResponseBadRequest(str(wrong)))。先頭に
                       ``from celery import chord``、``from . import sales``、``from .tasks import ...``
                       に region_sales と sales_report
    handson/urls.py    path("handson/task_step10", views.TaskStep10.as_view(), name="task_step10")

注意
    - コールバックはすべての部分が成功したときだけ実行されます。1 つの部分が失敗すると (ここでは
      地域 "offline")、レポート全体が失敗します。コールバックは実行されず、その結果は
      ``ChordError: Dependency <部分の id> raised ...`` の FAILURE になります。しばらく失敗しうる部分は
      リトライし (ステップ 5)、失敗してもレポートが成り立つ部分は例外ではなく、それを示す値を返します。
    - chord には結果バックエンドが必要です (部分の結果はそこを通ります)。ここでは Redis です。
"""

import re

import pytest

from labs.harness.i18n import say
from labs.harness.lesson.checks import (
    ENDED,
    find_button,
    listed_tasks,
    press,
    received_ids,
    require,
    task_events,
)
from labs.harness.lesson.waiting import wait_for
from labs.harness.services.worker import WorkerSpec

# Four processes: the four regions side by side.
pytestmark = [pytest.mark.lab, pytest.mark.stack(workers=[WorkerSpec(concurrency=4)])]
STEP10 = ("Step10", "TaskStep10", "task_step10", "/handson/task_step10")
REGION_SALES = "handson.tasks.region_sales"
SALES_REPORT = "handson.tasks.sales_report"
REGIONS = ["north", "south", "east", "west"]
SERIAL_SHARE = 0.6  # the report must take less than this share of counting the regions one by one
CHORD = "chord(region_sales.s(region) for region in regions)(sales_report.s())"
NEVER_GET = "Never call result.get() within a task"
# Logged by the worker whose part ended last, when calling the callback failed (celery/backends/redis.py,
# on_chord_part_return: the callback is then failed with a ChordError, never sent).
CALLBACK_RAISED = re.compile(r"Chord callback for '[^']+' raised: (.+)")


SENT_WITHIN = 1.0  # seconds: the parts are listed before the view answers (tasklog notes them as they are sent)
FROM_A_TASK_WITHIN = 3.0  # seconds: when the view sent none, a task of its may send them a moment later


def _send_report(web, worker, mark, regions, sleep_seconds):
    """Press Step10 for ``regions``: the region_sales tasks it sent, as the task list shows them, in order.
    Fails at once, naming the wait, when the view answers only after the work (it waits for the parts),
    when the parts come one after another (a chain) or from inside a task (a task that waits for them)."""
    before = {task["id"] for task in listed_tasks(web)}
    answer = press(web, *STEP10, fields={"regions": ",".join(regions)})
    require(answer.seconds < sleep_seconds * 0.9, say(
        f"Step10 answered after {answer.seconds:.1f} s, as long as a region takes ({sleep_seconds:g} s): the view "
        "waits for the parts, e.g. with .get() on the chord or on a group, or .join(). The browser waits again, as "
        f"in step 1. Send the chord and redirect at once ({CHORD}): the report ends later, in the worker, and the "
        "page shows it.",
        f"Step10 の応答に {answer.seconds:.1f} 秒かかり、1 地域の処理時間 ({sleep_seconds:g} 秒) と同じです。ビューが"
        "部分を待っています (chord や group の .get()、.join() など)。ステップ 1 と同じくブラウザがまた待たされます。"
        f"chord を送ってすぐリダイレクトしてください ({CHORD})。レポートは後でワーカーの中で終わり、ページに表示されます。",
    ))

    def fresh():
        return [task for task in listed_tasks(web) if task["id"] not in before and task["name"] == REGION_SALES]

    def all_sent():
        found = fresh()
        return found if len(found) >= len(regions) else None

    parts = list(reversed(wait_for(all_sent, timeout=SENT_WITHIN) or fresh()))
    if not parts:  # none from the view: does a task it sent send them?
        parts = list(reversed(wait_for(fresh, timeout=FROM_A_TASK_WITHIN) or []))
    require(not _refused_waiting(worker, mark), _waiting_message())
    ids = {task["id"] for task in parts}
    chained = [task for task in parts if task.get("parent") in ids]
    require(not chained, say(
        f"Step10's region_sales tasks were sent one after another: each by the one before it, when it had ended (a "
        "chain, which also hands each one the result of the one before). The regions are counted side by side "
        f"only as a chord's header, all sent at once: {CHORD}.",
        f"Step10 の region_sales が 1 つずつ順に送られました。それぞれ前のタスクが終わってから、そのタスクが送って"
        f"います (chain。前の結果も次に渡します)。地域を並べて数えるには、chord のヘッダーとして一度に送ります: {CHORD}。",
    ))
    by_task = sorted({task["parent"] for task in parts if task.get("parent")})
    if by_task:  # a task that sent them and then waits is refused by Celery a moment after it sent them
        wait_for(lambda: _refused_waiting(worker, mark), timeout=1.0)
        require(not _refused_waiting(worker, mark), _waiting_message())
    require(not by_task, say(
        f"Step10's region_sales tasks were sent by a task ({', '.join(by_task)}), not by the view: a task that sends "
        "tasks and waits for their results holds its pool process while they wait in the queue, perhaps behind it "
        "(with allow_join_result() Celery lets it, and a busy worker locks up). Send the chord from the view: "
        f"{CHORD}; the callback gets the results when all the parts have succeeded.",
        f"Step10 の region_sales をビューではなくタスク ({', '.join(by_task)}) が送りました。タスクを送ってその結果を"
        "待つタスクは、それらがキュー (たぶん自分の後ろ) で待つ間もプールプロセスを占有します (allow_join_result() "
        f"なら Celery は許しますが、忙しいワーカーは止まります)。ビューから chord を送ってください: {CHORD}。"
        "すべての部分が成功するとコールバックが結果を受け取ります。",
    ))
    require(len(parts) == len(regions), say(
        f"Step10 for {len(regions)} regions sent {len(parts)} region_sales task(s) at once: send one per region, "
        f"all at once, as a chord's header, from TaskStep10.post: {CHORD}. (A chain sends the next one only when the "
        "one before has ended, with its result.)",
        f"{len(regions)} 地域の Step10 が一度に送った region_sales は {len(parts)} 個です。TaskStep10.post から地域ごとに "
        f"1 つ、まとめて chord のヘッダーとして送ってください: {CHORD}。(chain は前のタスクが終わってから、その結果と"
        "ともに次を送ります。)",
    ))
    sent_for = [task["args"][0] if task.get("args") else None for task in parts]
    require(sent_for == regions, say(
        f"Step10 sent region_sales for {sent_for}; expected one per region of the form, in its order: {regions}.",
        f"Step10 が {sent_for} の region_sales を送りました。フォームの地域ごとに 1 つ、その順で送ってください: {regions}。",
    ))
    return parts


def _refused_waiting(worker, mark):
    return NEVER_GET in worker.log(mark)


def _report_run(worker, mark, timeout):
    """(id, events) of the one sales_report the worker received since ``mark``, once it has ended; (None, [])
    when none came, or at once when the worker could not call the chord's callback (then require() says why)."""
    def ended():
        log = worker.log(mark)
        if _refused_waiting(worker, mark) or CALLBACK_RAISED.search(log):
            return None, []
        for task_id in received_ids(log, SALES_REPORT):
            events = task_events(log, SALES_REPORT, task_id)
            if any(event in ("succeeded", "raised") for _, event, _ in events):
                return task_id, events
        return None

    found = wait_for(ended, timeout=timeout, interval=0.05) or (None, [])
    raised = CALLBACK_RAISED.search(worker.log(mark))
    require(not raised, _callback_message(raised.group(1) if raised else ""))
    return found


def _callback_message(error):
    """The worker could not call the chord's callback with the parts' results (``error``: what it raised)."""
    immutable = "missing 1 required positional argument" in error
    return say(
        f"The chord's callback could not be called with the parts' results: {error}. "
        + ("An immutable signature, sales_report.si(), is called with no results at all: the callback takes the "
           "list of results as its first argument, so give it as sales_report.s()." if immutable else
           "The callback gets the list of the parts' results as its first argument: def sales_report(parts).")
        + f" ({CHORD})",
        f"chord のコールバックを部分の結果で呼べませんでした: {error}。"
        + ("不変のシグネチャ sales_report.si() は結果なしで呼ばれます。コールバックは結果のリストを最初の引数に取る"
           "ので、sales_report.s() と書いてください。" if immutable else
           "コールバックは最初の引数に部分の結果のリストを受け取ります: def sales_report(parts)。")
        + f" ({CHORD})",
    )


def _waiting_message():
    return say(
        f"The worker refused a task that waits for others: \"RuntimeError: {NEVER_GET}!\". A task that waits holds "
        f"its process while the tasks it waits for queue behind it. Send a chord from the view instead: {CHORD}.",
        f"ワーカーが他のタスクを待つタスクを拒否しました: \"RuntimeError: {NEVER_GET}!\"。待つタスクは、待っている"
        f"タスクが後ろに並ぶ間もプロセスを占有します。代わりにビューから chord を送ってください: {CHORD}。",
    )


def test_the_report_combines_every_region_in_one_callback(web, celery_worker, result_backend, sleep_seconds):
    """One region_sales per region, each SUCCESS on the page; then one sales_report whose result lists the
    regions in order and adds up exactly the parts' results."""
    celery_worker.require_running()
    mark = celery_worker.mark()
    parts = _send_report(web, celery_worker, mark, REGIONS, sleep_seconds)
    report_id, _ = _report_run(celery_worker, mark, timeout=len(REGIONS) * sleep_seconds + 20)
    require(not _refused_waiting(celery_worker, mark), _waiting_message())
    require(report_id, say(
        f"No sales_report ran after the {len(REGIONS)} regions: send it as the chord's callback, {CHORD}, so that "
        "Celery calls it once every part has succeeded.",
        f"{len(REGIONS)} 地域の後に sales_report が実行されませんでした。chord のコールバックとして送ってください: "
        f"{CHORD}。すべての部分が成功すると Celery が 1 回呼びます。",
    ))
    states = {task["id"]: result_backend.state(task["id"]) for task in parts}
    assert set(states.values()) != {None}, say(
        "The report ran, but no region's result was stored: the result backend knows none of them, so the page "
        "shows them PENDING for ever. Does region_sales ignore its result (@shared_task(ignore_result=True), or "
        "CELERY_TASK_IGNORE_RESULT)? On Redis the chord still passes the parts' results to the callback through "
        "keys of its own, but the parts' own states are lost: keep them.",
        "レポートは実行されましたが、地域の結果が 1 つも保存されていません。結果バックエンドはどれも知らないので、"
        "ページでは永遠に PENDING と表示されます。region_sales が結果を無視していませんか "
        "(@shared_task(ignore_result=True) または CELERY_TASK_IGNORE_RESULT)? Redis では chord は専用のキーで"
        "部分の結果をコールバックに渡しますが、部分そのものの状態は失われます。保存してください。",
    )
    wait_for(lambda: all(result_backend.state(task["id"]) in ENDED for task in parts), timeout=sleep_seconds + 10)
    counted = [(result_backend.meta(task["id"]) or {}).get("result") for task in parts]
    expected = {"regions": REGIONS, "total": sum(part["sales"] for part in counted if isinstance(part, dict))}
    report = result_backend.meta(report_id) or {}
    assert report.get("status") == "SUCCESS" and report.get("result") == expected, say(
        f"sales_report {report_id} ended {report.get('status')} with {report.get('result')!r}; expected {expected!r}: "
        "the chord calls it once every part has succeeded, with the list of the parts' results in the order of the "
        f"regions ({CHORD}).",
        f"sales_report {report_id} が {report.get('status')} で {report.get('result')!r} になりました。{expected!r} の"
        f"はずです。chord はすべての部分が成功してから、各部分の結果のリストを地域の順に渡して呼びます ({CHORD})。",
    )
    states = {task["id"]: result_backend.state(task["id"]) for task in parts}
    assert set(states.values()) == {"SUCCESS"}, say(
        f"The regions ended {sorted(map(str, states.values()))}; each should be SUCCESS "
        "(region_sales returns {\"region\": region, \"sales\": sales.count(region)}).",
        f"地域のタスクが {sorted(map(str, states.values()))} で終わりました。すべて SUCCESS のはずです "
        "(region_sales は {\"region\": region, \"sales\": sales.count(region)} を返します)。",
    )
    listed = {task["id"]: task["state"] for task in listed_tasks(web)}
    assert all(listed.get(task["id"]) == "SUCCESS" for task in parts), say(
        f"The page lists the regions as {[listed.get(task['id']) for task in parts]}, not SUCCESS, although the "
        "result backend holds SUCCESS for each: the page reads every state from the result backend "
        "(handson/tasklog.py, given), so the two should agree. Was handson/tasklog.py changed? (make reset STEP=10)",
        f"結果バックエンドではすべて SUCCESS なのに、ページでは地域のタスクが {[listed.get(task['id']) for task in parts]} "
        "と表示され、SUCCESS ではありません。ページは状態を結果バックエンドから読むので (用意済みの handson/tasklog.py)、"
        "両者は一致するはずです。handson/tasklog.py を変更しましたか? (make reset STEP=10)",
    )


def test_the_regions_are_counted_side_by_side(web, celery_worker, sleep_seconds):
    """From the first part received to the report's end takes less than 0.6 x the regions x HANDSON_SLEEP."""
    celery_worker.require_running()
    mark = celery_worker.mark()
    parts = _send_report(web, celery_worker, mark, REGIONS, sleep_seconds)
    serial = len(REGIONS) * sleep_seconds
    report_id, events = _report_run(celery_worker, mark, timeout=serial + 20)
    require(not _refused_waiting(celery_worker, mark), _waiting_message())
    require(report_id, say(f"No sales_report ran: send {CHORD}.", f"sales_report が実行されませんでした: {CHORD} を送ってください。"))
    log = celery_worker.log(mark)
    received = [when for task in parts for when, event, _ in task_events(log, REGION_SALES, task["id"])
                if event == "received"]
    require(received, say(f"The worker's log shows no region_sales received since Step10:\n{log[-2000:]}",
                          f"Step10 の後、ワーカーのログに受け取った region_sales がありません:\n{log[-2000:]}"))
    wall = max(when for when, _, _ in events) - min(received)
    assert wall < SERIAL_SHARE * serial, say(
        f"The report took {wall:.1f} s from the first region to its end, about as long as counting the "
        f"{len(REGIONS)} regions one after another ({serial:g} s). Each region should be a task of its own, in a "
        f"chord ({CHORD}), so that the worker's processes count them side by side.",
        f"最初の地域からレポートの終わりまで {wall:.1f} 秒かかり、{len(REGIONS)} 地域を順に数えるのとほぼ同じです "
        f"({serial:g} 秒)。地域ごとに別のタスクにして chord ({CHORD}) で送り、ワーカーのプロセスで並べて数えて"
        "ください。",
    )


def test_a_region_that_fails_fails_the_report_with_a_chord_error(web, celery_worker, result_backend, sleep_seconds):
    """With the region "offline" among them, its part ends FAILURE (ConnectionError) and the report never runs:
    its result is FAILURE, ChordError "Dependency <the part's id> raised ConnectionError(...)"."""
    celery_worker.require_running()
    mark = celery_worker.mark()
    before = result_backend.task_ids()
    parts = _send_report(web, celery_worker, mark, ["north", "offline"], sleep_seconds)
    offline = parts[1]["id"]

    def chord_error():
        for task_id in result_backend.task_ids() - before - {task["id"] for task in parts}:
            meta = result_backend.meta(task_id) or {}
            if meta.get("status") == "FAILURE" and (meta.get("result") or {}).get("exc_type") == "ChordError":
                return meta
        return None

    def report_ran():
        return received_ids(celery_worker.log(mark), SALES_REPORT)

    # Until the callback is failed, or has run (it should not), or the worker refused a waiting task.
    wait_for(lambda: chord_error() or report_ran() or _refused_waiting(celery_worker, mark),
             timeout=sleep_seconds + 15)
    wait_for(lambda: result_backend.state(offline) in ENDED, timeout=2)  # its own result, stored just before
    found = chord_error()
    require(not _refused_waiting(celery_worker, mark), _waiting_message())
    assert not report_ran(), say(
        "sales_report ran although a region failed: send it as the chord's callback, which Celery runs only when "
        f"every part succeeded ({CHORD}).",
        "地域が失敗したのに sales_report が実行されました。chord のコールバックとして送ってください。Celery は"
        f"すべての部分が成功したときだけ実行します ({CHORD})。",
    )
    assert result_backend.state(offline) is not None, say(
        "The region \"offline\" failed, but its result was not stored: the result backend does not know it, so the "
        "page shows it PENDING for ever. Does region_sales ignore its result (@shared_task(ignore_result=True), or "
        "CELERY_TASK_IGNORE_RESULT)? Keep it.",
        "地域 \"offline\" は失敗しましたが、その結果が保存されていません。結果バックエンドが知らないので、ページでは"
        "永遠に PENDING と表示されます。region_sales が結果を無視していませんか (@shared_task(ignore_result=True) "
        "または CELERY_TASK_IGNORE_RESULT)? 保存してください。",
    )
    assert result_backend.state(offline) == "FAILURE", say(
        f"The region \"offline\" ended {result_backend.state(offline)}, not FAILURE: region_sales should let "
        "sales.count's ConnectionError end it.",
        f"地域 \"offline\" が FAILURE ではなく {result_backend.state(offline)} で終わりました。region_sales は "
        "sales.count の ConnectionError でそのまま失敗させてください。",
    )
    message = (found or {}).get("result", {}).get("exc_message")
    message = " ".join(message) if isinstance(message, list) else str(message)
    assert found and offline in message and "ConnectionError" in message, say(
        f"No callback ended FAILURE with a ChordError naming the failed part {offline} (found: {found!r}). Send "
        f"sales_report as the chord's callback ({CHORD}): Celery then fails it, without running it, when a part fails.",
        f"失敗した部分 {offline} を示す ChordError で FAILURE になったコールバックがありません (見つかったもの: "
        f"{found!r})。sales_report を chord のコールバックとして送ってください ({CHORD})。部分が失敗すると Celery は"
        "それを実行せずに失敗させます。",
    )


def test_a_bad_region_list_is_a_400_that_says_why(web):
    """Regions are letters only, separated by commas: anything else is refused before any task is sent."""
    action = find_button(web, *STEP10)
    answer = web.post(action, {"regions": "north;drop table"})
    assert answer.status == 400 and "regions" in answer.text.lower(), say(
        f"POST {STEP10[3]} with regions=\"north;drop table\" answered {answer.status}: {answer.text[:300]!r}. Read "
        "them with sales.regions_from_form(request.POST) and answer HttpResponseBadRequest(str(wrong)) on ValueError.",
        f"regions=\"north;drop table\" で POST {STEP10[3]} すると {answer.status} でした: {answer.text[:300]!r}。"
        "sales.regions_from_form(request.POST) で読み、ValueError なら HttpResponseBadRequest(str(wrong)) を返して"
        "ください。",
    )
