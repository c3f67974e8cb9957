"""Step 5 — failures and retries: a service that is down for a while.
ステップ 5 — 失敗とリトライ: しばらく落ちているサービス

What you see
    A real app calls other services over the network (a payment API, a mail
    server), and they fail now and then. handson/unreliable.py is such a service,
    given to you: ``unreliable.call(key, failures)`` raises ConnectionError for
    the first ``failures`` calls of a key (``failures=unreliable.DOWN``: always),
    and counts every call in Redis. A task that calls it without retries ends
    FAILURE at the first error, and the page shows the exception.

What you build
    The "Step5" button posts to /handson/task_step5. Its view sends two calls:

        order = uuid.uuid4().hex[:8]
        call_service.delay(f"{order}-recovers", 2)                # fails twice, then answers
        call_service.delay(f"{order}-down", unreliable.DOWN)      # never answers

    and the task retries on ConnectionError, with options on its decorator,
    where Celery users declare how each task retries:

        @shared_task(autoretry_for=(ConnectionError,), max_retries=2, retry_backoff=True)
        def call_service(key, failures):
            return unreliable.call(key, failures)

    autoretry_for   which exceptions mean "try again later" (not every error
                    does: a bug would fail again, retrying it only hides it).
    max_retries     retries after the first call: 2 means three calls in all,
                    then FAILURE with the last exception. Celery's default is 3.
    retry_backoff   wait 1 s, then 2 s, 4 s, ... (doubling; capped by
                    retry_backoff_max, 600 s). Without it an automatic retry
                    waits default_retry_delay: 3 minutes.
    retry_jitter    on by default with retry_backoff: each wait is a random
                    number of seconds up to the backoff (0-1, then 0-2, ...), so
                    a thousand clients that failed together do not all retry in
                    the same second. The worker's log says "Retry in 0s", "Retry
                    in 2s"...; with retry_jitter=False it says exactly 1s, 2s.

    Between calls the task is stored RETRY (with the last exception); a retry is
    a new message with the same task id and a countdown, which the worker holds
    until it is due, so its pool process is free for other tasks meanwhile.

Files to edit
    handson/tasks.py   call_service as above (``from . import unreliable``)
    handson/views.py   class TaskStep5(View) whose post() sends the two calls and
                       redirects to "base"; at the top of the file ``import uuid``,
                       ``from . import unreliable`` (for unreliable.DOWN) and
                       call_service in ``from .tasks import ...``
    handson/urls.py    path("handson/task_step5", views.TaskStep5.as_view(), name="task_step5")

Watch for
    - Retry only what can succeed later (timeouts, refused connections), and only
      tasks that can safely run again: a retry runs the whole task once more.
    - ``self.retry(exc=..., countdown=...)`` in a task with bind=True does the same
      by hand, when the decision needs code.

見えること
    実際のアプリはネットワーク越しに他のサービス (決済 API、メールサーバー) を呼び、それらは時々失敗します。
    handson/unreliable.py はそのようなサービスで、用意済みです。``unreliable.call(key, failures)`` は
    あるキーの最初の ``failures`` 回の呼び出しで ConnectionError を送出し (``failures=unreliable.DOWN``
    なら常に)、呼び出し回数を Redis に数えます。リトライなしでこれを呼ぶタスクは最初のエラーで FAILURE
    になり、ページに例外が表示されます。

作るもの
    「Step5」ボタンは /handson/task_step5 に POST します。そのビューは 2 つの呼び出しを送ります
    (上のコード: 2 回失敗してから応答するキーと、決して応答しないキー)。タスクは ConnectionError で
    リトライします。リトライの仕方はタスクごとに、デコレーターのオプションとして宣言します
    (上のコード)。Celery の利用者はふつうここに書きます。

    autoretry_for   「後でもう一度」を意味する例外 (すべてのエラーではありません。バグは何度やっても
                    失敗し、リトライはそれを隠すだけです)。
    max_retries     最初の呼び出しの後のリトライ回数。2 なら呼び出しは全部で 3 回、その後は最後の例外で
                    FAILURE。Celery の既定値は 3 です。
    retry_backoff   1 秒、2 秒、4 秒… と待ち時間を倍にします (上限 retry_backoff_max、600 秒)。ないと
                    自動リトライは default_retry_delay の 3 分待ちます。
    retry_jitter    retry_backoff と一緒に既定で有効。各待ち時間はバックオフ以下のランダムな秒数
                    (0〜1、次に 0〜2…) になり、同時に失敗した千のクライアントが同じ秒に一斉にリトライ
                    しません。ワーカーのログには "Retry in 0s"、"Retry in 2s" … と出ます。
                    retry_jitter=False なら正確に 1s、2s です。

    呼び出しの間、タスクは RETRY (最後の例外つき) として保存されます。リトライは同じタスク id と
    カウントダウンを持つ新しいメッセージで、ワーカーは時刻が来るまで保持します。その間プール
    プロセスは他のタスクに使えます。

編集するファイル
    handson/tasks.py   上の call_service (``from . import unreliable``)
    handson/views.py   TaskStep5(View) の post() で 2 つの呼び出しを送り "base" へリダイレクト。
                       ファイルの先頭に ``import uuid``、``from . import unreliable`` (unreliable.DOWN
                       のため)、``from .tasks import ...`` に call_service
    handson/urls.py    path("handson/task_step5", views.TaskStep5.as_view(), name="task_step5")

注意
    - リトライするのは後で成功しうるもの (タイムアウト、接続拒否) だけ、そして再実行しても安全な
      タスクだけにしてください。リトライはタスク全体をもう一度実行します。
    - bind=True のタスクで ``self.retry(exc=..., countdown=...)`` を呼べば、同じことを手で書けます
      (判断にコードが必要なとき)。
"""
import re

import pytest

from labs.harness.i18n import say
from labs.harness.lesson.checks import ENDED, press_for_new_tasks, task_events, tasks_on_page
from labs.harness.lesson.waiting import wait_for

pytestmark = pytest.mark.lab
CALL_SERVICE = "handson.tasks.call_service"
MAX_RETRIES = 2
CALLS = MAX_RETRIES + 1
DOWN = -1  # handson/unreliable.py: failures=DOWN, the service never answers
RETRIED_WITHIN = 12  # seconds: 1 s + 2 s of backoff at most, and the calls themselves
DECORATOR = "@shared_task(autoretry_for=(ConnectionError,), max_retries=2, retry_backoff=True)"


def _press_step5(web):
    """Press Step5: {"recovers": task, "down": task}, told apart by their ``failures`` argument."""
    tasks = press_for_new_tasks(web, "Step5", "TaskStep5", "task_step5", "/handson/task_step5", CALL_SERVICE, 2)
    sent = {}
    for task in tasks:
        try:
            key, failures = task["args"]
        except (ValueError, TypeError):
            key, failures = None, None
        sent["down" if failures == DOWN else "recovers"] = dict(task, key=key, failures=failures)
    assert set(sent) == {"recovers", "down"}, say(
        f"Step5 sent {[task['args'] for task in tasks]}; expected one call_service(key, 2) and one "
        "call_service(key, unreliable.DOWN), each with its own key, from TaskStep5.post in handson/views.py.",
        f"Step5 が {[task['args'] for task in tasks]} を送りました。handson/views.py の TaskStep5.post から "
        "call_service(key, 2) と call_service(key, unreliable.DOWN) を 1 つずつ (別々のキーで) 送ってください。",
    )
    return sent


def _delays(events):
    """The waits the worker's log announces before each retry ("Retry in 2s")."""
    return [int(found.group(1)) for _, event, rest in events if event == "retry"
            for found in [re.search(r"Retry in (\d+)s", rest)] if found]


def _too_slow(delays):
    """The first retry that waits longer than retry_backoff allows (1 s, 2 s, ...): (which, seconds) or None."""
    return next(((number, delay) for number, delay in enumerate(delays, start=1) if delay > 2 ** (number - 1)), None)


def _follow(task_id, result_backend, recorded, celery_worker, mark):
    """Watch one task until it ends (or waits too long for a retry): (every state the backend stored for it,
    in order, without repeats; log events). A RETRY can last milliseconds (jitter picks 0 s), so the states
    come from the backend's own notifications (``recorded``), not from polling."""
    def ended():
        # Or decided already: a retry that waits too long, or one retry more than max_retries allows.
        delays = _delays(task_events(celery_worker.log(mark), CALL_SERVICE, task_id))
        return result_backend.state(task_id) in ENDED or _too_slow(delays) or len(delays) > MAX_RETRIES

    wait_for(ended, timeout=RETRIED_WITHIN, interval=0.02)
    if result_backend.state(task_id) in ("SUCCESS", "FAILURE"):
        # The pool process stores the result first and writes its log line after: wait for that line.
        wait_for(lambda: any(event in ("succeeded", "raised") for _, event, _ in
                             task_events(celery_worker.log(mark), CALL_SERVICE, task_id)), timeout=5, interval=0.02)
    seen = []
    for state in recorded.states(task_id) + [result_backend.state(task_id)]:
        if not seen or seen[-1] != state:
            seen.append(state)
    return seen, task_events(celery_worker.log(mark), CALL_SERVICE, task_id)


def _calls(result_backend, key):
    raw = result_backend.client.get(f"handson:unreliable:{key}")
    return int(raw) if raw else 0


def _check_backoff(delays):
    slow = _too_slow(delays)
    assert not slow, say(
        f"The worker's log says retry {slow and slow[0]} waits {slow and slow[1]} s. Without retry_backoff an "
        "automatic retry waits default_retry_delay (180 s). Add retry_backoff=True to call_service's decorator in "
        f"handson/tasks.py: 1 s, then 2 s, 4 s... ({DECORATOR}).",
        f"ワーカーのログでは、{slow and slow[0]} 回目のリトライが {slow and slow[1]} 秒待ちます。retry_backoff が"
        "ないと自動リトライは default_retry_delay (180 秒) 待ちます。handson/tasks.py の call_service の"
        f"デコレーターに retry_backoff=True を加えてください: 1 秒、2 秒、4 秒… ({DECORATOR})。",
    )


def _check_spacing(events, delays):
    """Each call came when its retry said it would: the gaps between calls, from the log's timestamps."""
    ends = [when for when, event, _ in events if event in ("retry", "succeeded", "raised")]
    gaps = [round(later - earlier, 2) for earlier, later in zip(ends, ends[1:])]
    waited = all(delay - 0.3 <= gap <= delay + 2.0 for gap, delay in zip(gaps, delays))  # log lines, not the ETA itself
    assert len(gaps) == len(delays) and waited, say(
        f"The calls came {gaps} s apart, but the retries announced waits of {delays} s. Each retry should run "
        "when its countdown is due (retry_backoff on call_service in handson/tasks.py).",
        f"呼び出しの間隔が {gaps} 秒で、リトライが告げた待ち時間 {delays} 秒と合いません。各リトライは"
        "カウントダウンの時刻に実行されるはずです (handson/tasks.py の call_service の retry_backoff)。",
    )


def test_a_call_that_fails_is_retried_and_succeeds_when_the_service_recovers(
        web, celery_worker, result_backend, sleep_seconds):
    """The key that fails twice: stored RETRY between calls, retried after 1 s then up to 2 s, SUCCESS on call 3."""
    celery_worker.require_running()
    mark = celery_worker.mark()
    with result_backend.recording() as recorded:
        task = _press_step5(web)["recovers"]
        seen, events = _follow(task["id"], result_backend, recorded, celery_worker, mark)
    delays = _delays(events)
    _check_backoff(delays)
    assert "RETRY" in seen, say(
        f"The call went {' -> '.join(map(str, seen))}, never RETRY: the first ConnectionError ended it. Add "
        f"autoretry_for=(ConnectionError,) to call_service's decorator in handson/tasks.py ({DECORATOR}).",
        f"呼び出しは {' -> '.join(map(str, seen))} と変わり、RETRY になりませんでした。最初の ConnectionError で"
        "終わっています。handson/tasks.py の call_service のデコレーターに autoretry_for=(ConnectionError,) を"
        f"加えてください ({DECORATOR})。",
    )
    calls = _calls(result_backend, task["key"])
    assert seen[-1] == "SUCCESS" and calls == CALLS, say(
        f"The call that fails twice ended {seen[-1]!r} after {calls} call(s) of the service; expected SUCCESS on "
        f"call {CALLS}. max_retries={MAX_RETRIES} on call_service gives it two retries. Worker log:\n"
        f"{celery_worker.log(mark)[-2500:]}",
        f"2 回失敗する呼び出しが、サービスを {calls} 回呼んだ後 {seen[-1]!r} で終わりました。{CALLS} 回目で "
        f"SUCCESS のはずです。call_service の max_retries={MAX_RETRIES} でリトライは 2 回です。ワーカーのログ:\n"
        f"{celery_worker.log(mark)[-2500:]}",
    )
    _check_spacing(events, delays)


def test_a_service_that_stays_down_fails_after_max_retries_plus_one_calls(
        web, celery_worker, result_backend, sleep_seconds):
    """The key that never answers: FAILURE with the ConnectionError after exactly max_retries + 1 = 3 calls,
    and the page shows the exception."""
    celery_worker.require_running()
    mark = celery_worker.mark()
    with result_backend.recording() as recorded:
        task = _press_step5(web)["down"]
        seen, events = _follow(task["id"], result_backend, recorded, celery_worker, mark)
    delays = _delays(events)
    _check_backoff(delays)
    calls = _calls(result_backend, task["key"])
    assert len(delays) <= MAX_RETRIES, say(
        f"After {calls} calls the worker announced retry number {len(delays)}: call_service retries more than "
        f"{MAX_RETRIES} times (Celery's default max_retries is 3). Set max_retries={MAX_RETRIES} on call_service "
        f"in handson/tasks.py: {DECORATOR}.",
        f"{calls} 回の呼び出しの後、ワーカーは {len(delays)} 回目のリトライを告げました。call_service が "
        f"{MAX_RETRIES} 回より多くリトライします (Celery の既定の max_retries は 3)。handson/tasks.py の call_service に "
        f"max_retries={MAX_RETRIES} を指定してください: {DECORATOR}。",
    )
    assert seen[-1] in ENDED, say(
        f"The call to a service that never answers was still {seen[-1]!r} after {RETRIED_WITHIN} s "
        f"({calls} calls). With {DECORATOR} it ends FAILURE after {CALLS} calls, within about 4 s.",
        f"決して応答しないサービスへの呼び出しが {RETRIED_WITHIN} 秒後も {seen[-1]!r} でした (呼び出し {calls} 回)。"
        f"{DECORATOR} なら {CALLS} 回の呼び出しの後、4 秒ほどで FAILURE になります。",
    )
    assert calls != 1, say(
        "The service was called once and the task gave up: add autoretry_for=(ConnectionError,) to call_service's "
        f"decorator in handson/tasks.py ({DECORATOR}).",
        "サービスは 1 回だけ呼ばれ、タスクはあきらめました。handson/tasks.py の call_service のデコレーターに "
        f"autoretry_for=(ConnectionError,) を加えてください ({DECORATOR})。",
    )
    assert calls == CALLS, say(
        f"The service was called {calls} times before the task gave up; expected max_retries + 1 = {CALLS}. "
        f"Set max_retries={MAX_RETRIES} on call_service in handson/tasks.py (Celery's default is 3 retries).",
        f"タスクがあきらめるまでにサービスが {calls} 回呼ばれました。max_retries + 1 = {CALLS} 回のはずです。"
        f"handson/tasks.py の call_service に max_retries={MAX_RETRIES} を指定してください (Celery の既定は 3 回)。",
    )
    meta = result_backend.meta(task["id"])
    assert meta["status"] == "FAILURE" and meta["result"].get("exc_type") == "ConnectionError", say(
        f"The task should end FAILURE with the service's ConnectionError; the backend holds {meta['status']} "
        f"{meta['result']!r}.",
        f"タスクはサービスの ConnectionError で FAILURE になるはずです。バックエンドは {meta['status']} "
        f"{meta['result']!r} です。",
    )
    _check_spacing(events, delays)
    page = web.get("/handson").text
    row = re.search(rf'data-id="{re.escape(task["id"])}".*?</tr>', page, flags=re.S)
    assert dict(tasks_on_page(page)).get(task["id"]) == "FAILURE" and row and "ConnectionError" in row.group(0), say(
        "The page should list the call FAILURE with its ConnectionError in the result column.",
        "ページには、この呼び出しが FAILURE で、結果欄に ConnectionError が表示されるはずです。",
    )
