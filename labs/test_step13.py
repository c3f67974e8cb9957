"""Step 13 — when Redis goes away: answer at once, and take work again when it is back.
ステップ 13 — Redis がいなくなったとき: すぐに答え、戻ったら仕事を再開する

What you see
    Redis goes away in two ways, and the app meets both:

    - *Down*: Redis crashed or restarts. Every connection is closed, new ones fail at once.
      ``.delay()`` learns it at once: Celery retries the publish (``task_publish_retry``, on
      by default, with ``task_publish_retry_policy``: 3 retries, 0, 0.2 then 0.4 s apart) and
      raises ``kombu.exceptions.OperationalError``. Uncaught, that is a 500 page.
    - *Silent*: a network partition, a failover, a frozen host. The connections stay open and
      nothing answers. Kombu's Redis transport sets no time limit of its own on an answer
      unless it is given a ``socket_timeout`` (``broker_transport_options``; Kombu's default is
      None), so ``.delay()`` waits as long as the connection stays open: for as long as the
      outage lasts, or, if the peer is gone for good, until the kernel gives the connection up
      (its TCP retransmission timeout, ``net.ipv4.tcp_retries2``: about 15 minutes on Linux's
      defaults). Meanwhile the single-threaded web server hangs, and every other request waits
      behind it.

    The lab puts a relay between the app and Redis and cuts it both ways while the app runs
    (Redis itself keeps running, so nothing is lost): the Step13 view must answer a 503 that
    says Redis cannot be reached, within a second or so when Redis is down, and within
    SILENT_BOUND seconds when it is silent (the given task list, handson/tasklog.py, already
    waits up to 1 s for Redis before the publish; the rest is your publish's own bound).

    The worker, on the other hand, needs nothing from you here: when its connection drops it
    logs "consumer: Connection to broker lost. Trying to re-establish the connection...",
    tries again every 2 s, 4 s, 6 s ... (up to 30 s apart) for ``broker_connection_max_retries``
    attempts (100), and takes tasks again once Redis is back (``broker_connection_retry``, True
    by default). The lab checks that on the real worker: a task sent after the outage succeeds.
    (Should a worker stop anyway, production's answer is a supervisor that starts it again:
    systemd's ``Restart=always``, Docker's ``restart: unless-stopped``, Kubernetes.)
    ``broker_heartbeat`` does not apply to Redis (Kombu's Redis transport has no heartbeats);
    its own check of a silent connection is the transport option ``health_check_interval``
    (25 s): a consumer's BRPOP connection whose answer is overdue is dropped and made again,
    after about ``brpop_timeout + 2 × health_check_interval`` (51 s by default,
    ``kombu/transport/redis.py``). It is a consumer's check: it does nothing for a publisher
    waiting on a silent connection, which only a ``socket_timeout`` bounds.
    tests/test_celery_facts.py holds every default this lesson names.

What you build
        # handson/settings.py: bounded waits for the broker
        CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 1, "socket_connect_timeout": 1}

        # handson/views.py
        from kombu.exceptions import OperationalError

        class TaskStep13(View):
            def post(self, request, *args, **kwargs):
                try:
                    hello.apply_async(("hello world",), retry=False)
                except OperationalError as error:
                    return HttpResponse(f"Redis (the broker) cannot be reached, nothing was sent: {error}",
                                        status=503)
                return redirect(reverse("base"))

    ``retry=False``: one attempt, bounded by the socket timeout. With retries, a publish that
    fails makes Kombu reconnect before it tries again, and over a silent Redis every attempt to
    reconnect waits the socket timeout too (the new channel pings Redis first): with
    ``max_retries`` N, N + 2 timeouts in all, the publish's own and N + 1 reconnects
    (``kombu/connection.py``, ``ensure``). With Celery's default policy (3 retries) the 503 comes
    well after SILENT_BOUND s. A ``CELERY_TASK_PUBLISH_RETRY_POLICY`` already in
    handson/settings.py counts instead of that default. To keep one retry, give a small policy;
    the 503 still comes within the bound:
    ``CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}``.

Files to edit
    handson/settings.py  CELERY_BROKER_TRANSPORT_OPTIONS
    handson/views.py     TaskStep13
    handson/urls.py      path("handson/task_step13", views.TaskStep13.as_view(), name="task_step13")

Watch for
    - A 503 is the honest answer: the task was not sent. Saying "done" and losing it is worse;
      queueing it elsewhere (a database table a later job sends from) is the next step up, the
      "outbox" of step 9's transaction.
    - The result backend is a Redis client too: ``redis_socket_timeout`` (120 s by default) and
      ``redis_socket_connect_timeout`` bound its waits.

見えること
    Redis がいなくなり方は 2 通りあり、アプリはどちらにも出会います。

    - *ダウン*: Redis がクラッシュしたか再起動中です。接続はすべて閉じられ、新しい接続はすぐに失敗します。
      ``.delay()`` はすぐに気づきます。Celery は送信をリトライし (``task_publish_retry``、既定で有効、
      ``task_publish_retry_policy``: 3 回、間隔 0、0.2、0.4 秒)、``kombu.exceptions.OperationalError`` を
      送出します。捕まえなければ 500 のページです。
    - *無応答*: ネットワーク分断、フェイルオーバー、固まったホスト。接続は開いたままで、誰も答えません。
      Kombu の Redis トランスポートは ``socket_timeout`` (``broker_transport_options``。Kombu の既定は None)
      がない限り答えに自分の時間制限を設けないので、``.delay()`` は接続が開いている限り待ちます。障害が続く
      間ずっと、相手が二度と戻らなければカーネルが接続を諦めるまで (TCP の再送タイムアウト
      ``net.ipv4.tcp_retries2``、Linux の既定で約 15 分) です。その間シングルスレッドの Web サーバーは固まり、
      他のリクエストもすべてその後ろで待たされます。

    ラボはアプリと Redis の間に中継を置き、アプリの動作中にそれを両方の形で断ちます (Redis 自体は動き
    続けるので何も失われません)。Step13 ビューは Redis に届かないことを伝える 503 を、ダウンなら 1 秒
    ほどで、無応答なら SILENT_BOUND 秒以内に返す必要があります (用意済みのタスク一覧 handson/tasklog.py は
    送信の前に Redis を最大 1 秒待ちます。残りはあなたの送信自身の上限です)。

    一方ワーカーには、ここでは何もする必要がありません。接続が切れると "consumer: Connection to broker
    lost. Trying to re-establish the connection..." とログに出し、2 秒、4 秒、6 秒… (最大 30 秒間隔) ごとに
    ``broker_connection_max_retries`` 回 (100 回) まで再接続を試み、Redis が戻ればまたタスクを受け取ります
    (``broker_connection_retry``、既定で True)。ラボは本物のワーカーでそれを確かめます: 障害の後に送った
    タスクが成功すること。(それでもワーカーが止まったときの本番の答えは、それを再び起動するスーパー
    バイザーです: systemd の ``Restart=always``、Docker の ``restart: unless-stopped``、Kubernetes。)
    ``broker_heartbeat`` は Redis には効きません (Kombu の Redis トランスポートにはハートビートがありません)。
    無応答の接続を調べるのはトランスポートのオプション ``health_check_interval`` (25 秒) です。答えが遅れている
    コンシューマーの BRPOP 接続は、約 ``brpop_timeout + 2 × health_check_interval`` (既定で 51 秒、
    ``kombu/transport/redis.py``) の後に切って作り直されます。これはコンシューマーの検査で、無応答の接続で
    待つ送信側には何もしません。それを抑えるのは ``socket_timeout`` だけです。

作るもの
    上のコードのとおりです。``retry=False``: 試行は 1 回で、ソケットのタイムアウトで上限が決まります。
    リトライがあると、送信に失敗した Kombu はもう一度試す前に再接続し、無応答の Redis では再接続の
    試みもそれぞれソケットのタイムアウトを待ちます (新しいチャネルはまず Redis に ping します)。
    ``max_retries`` が N なら合計 N + 2 回のタイムアウト、送信自身の 1 回と再接続の N + 1 回です
    (``kombu/connection.py`` の ``ensure``)。Celery の既定のポリシー (リトライ 3 回) では 503 は
    SILENT_BOUND 秒をかなり過ぎてから返ります。handson/settings.py にすでに
    ``CELERY_TASK_PUBLISH_RETRY_POLICY`` があれば、既定ではなくそれが効きます。リトライを 1 回残すなら
    小さいポリシーにします。それでも 503 は上限内に返ります:
    ``CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}``。

編集するファイル
    handson/settings.py  CELERY_BROKER_TRANSPORT_OPTIONS
    handson/views.py     TaskStep13
    handson/urls.py      path("handson/task_step13", views.TaskStep13.as_view(), name="task_step13")

注意
    - 503 が正直な答えです。タスクは送られていません。「完了」と言って失うほうが悪いのです。別の場所
      (後でジョブが送り出すデータベースのテーブル) に貯めるのが次の段階で、ステップ 9 のトランザクションの
      「アウトボックス」です。
    - 結果バックエンドも Redis のクライアントです。``redis_socket_timeout`` (既定 120 秒) と
      ``redis_socket_connect_timeout`` がその待ち時間の上限です。
"""
import time

import pytest

from labs.harness.i18n import say
from labs.harness.lesson.checks import find_button, press, received_ids, reported_settings, require, setting
from labs.harness.lesson.waiting import wait_for
from labs.harness.services.causes import ServiceProblem
from labs.harness.services.worker import WorkerSpec

# The app reaches Redis through a relay the lab can cut (services/link.py).
# The worker's hello sleeps 0.2 s here (HANDSON_SLEEP for the worker alone): nothing here waits on its work, and a
# hello still running when a test ends holds up the next one's start.
WORKER_SLEEP = 0.2
pytestmark = [pytest.mark.lab, pytest.mark.stack(workers=[WorkerSpec(env=(("HANDSON_SLEEP", str(WORKER_SLEEP)),))],
                                                 linked=True)]
STEP13 = ("Step13", "TaskStep13", "task_step13", "/handson/task_step13")
DOWN_BOUND = 3  # seconds: a Redis that is down is known at once (Celery's default retries add 0.6 s)
# seconds: the task list's 1 s, then the publish's own bound. With max_retries N: 1 s + N + 2 socket timeouts
# of 1 s + the policy's intervals, a floor no machine goes under: 2.0 s with retry=False, 4.0 s with one
# retry (the small policy above), 5.5 s with two (step 2's policy), 6.6 s with Celery's default three.
# The lab waits for the answer that long and no longer: past it, the answer is too late either way.
SILENT_BOUND = 5.3
HANG = 10  # seconds the lab waits for an answer before it calls the request hung (Redis down)
RETRYING = "Trying again in"  # the worker's words when an attempt to reconnect failed (celery/worker/consumer)
RETRYING_WITHIN = 10  # seconds: it notices a closed connection at once, and tries again at once
TRANSPORT_OPTIONS = 'CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 1, "socket_connect_timeout": 1}'
CATCH = ("except OperationalError as error: return HttpResponse(f\"Redis (the broker) cannot be reached, "
         "nothing was sent: {error}\", status=503)")


@pytest.fixture
def link(lab_stack):
    """The relay between the app and Redis, whole again after the test, whatever happened in it."""
    yield lab_stack.link
    lab_stack.link.restore()


def _healthy_press(web, celery_worker, result_backend, broker_control, sleep_seconds):
    """Step13 while Redis answers: it sends hello (302), and the worker starts it (its message acknowledged, none
    held unacknowledged). Returns the button's URL. The hello may still run when Redis goes away: it holds no
    message, and stores its result once Redis is back (Celery's Redis backend retries a store up to 20 times, at
    most a second apart: celery/backends/base.py, retry_policy; backends/redis.py, ensure)."""
    celery_worker.require_running()
    mark = celery_worker.mark()
    press(web, *STEP13)
    sent = wait_for(lambda: received_ids(celery_worker.log(mark)), timeout=10)
    require(sent, say(
        "The worker received no hello after Step13 (Redis answering): TaskStep13.post should send "
        "hello.apply_async((\"hello world\",), retry=False).",
        "Step13 の後 (Redis は応答中)、ワーカーが hello を受け取りませんでした。TaskStep13.post で "
        "hello.apply_async((\"hello world\",), retry=False) を送ってください。",
    ))
    # A worker whose connection drops while it holds a message it has not acknowledged yet restores it
    # while it closes the connection, and Celery 5.7 / Kombu 5.7 can crash there ("Unrecoverable error:
    # AttributeError ... 'hostname'", kombu/transport/redis.py _connparams, the transport already
    # closed by Connection.collect): a Celery bug, not the learner's. Every outage starts with nothing held
    # (none of what this worker received since the press is in kombu's "unacked" hash; other steps' workers
    # on a shared Redis may hold theirs): a hello that still runs holds nothing (acknowledged as it started).
    def settled():
        mine = set(received_ids(celery_worker.log(mark)))
        if mine & set(broker_control.unacknowledged()):
            return False
        # Received and no longer unacknowledged: a pool process has started it (acknowledged as it starts).
        return True

    done = wait_for(settled, timeout=sleep_seconds + 10)
    require(done, say(
        f"The worker received the hello sent by Step13 while Redis answered ({sent[-1]}), and did not start it "
        f"within {sleep_seconds + 10:g} s (it is {result_backend.state(sent[-1])}).",
        f"Redis の応答中に Step13 が送った hello ({sent[-1]}) をワーカーは受け取りましたが、{sleep_seconds + 10:g} 秒以内に"
        f"開始しませんでした (現在 {result_backend.state(sent[-1])})。",
    ))
    return find_button(web, *STEP13)


def _publish_retries(broker_control, celery_worker):
    """(the publish retries the app runs with, in words; their number, or None when unknown or unlimited),
    from the settings the worker reports (the web server reads the same handson/settings.py); asked while
    Redis answers."""
    reported = reported_settings(celery_worker, broker_control)
    if not reported:  # no answer in time: say nothing that is not known
        return say("the retry policy in force; the worker did not report it",
                   "有効なリトライのポリシー。ワーカーは報告しませんでした"), None
    _, policy = setting(reported, "task_publish_retry_policy")
    if policy is None:
        return say("Celery's default policy: 3 retries", "Celery の既定のポリシー: リトライ 3 回"), 3
    retries = policy.get("max_retries") if isinstance(policy, dict) else None
    if retries is None:
        return say("CELERY_TASK_PUBLISH_RETRY_POLICY in handson/settings.py gives no max_retries: no limit",
                   "handson/settings.py の CELERY_TASK_PUBLISH_RETRY_POLICY に max_retries がありません: 無制限"), None
    if not isinstance(retries, int) or retries < 0:
        return say(f"CELERY_TASK_PUBLISH_RETRY_POLICY in handson/settings.py: max_retries {retries!r}",
                   f"handson/settings.py の CELERY_TASK_PUBLISH_RETRY_POLICY: max_retries {retries!r}"), None
    return say(f"CELERY_TASK_PUBLISH_RETRY_POLICY in handson/settings.py: {retries} retr{'y' if retries == 1 else 'ies'}",
               f"handson/settings.py の CELERY_TASK_PUBLISH_RETRY_POLICY: リトライ {retries} 回"), retries


def _socket_timeout(broker_control, celery_worker):
    """The broker's socket_timeout the app runs with (CELERY_BROKER_TRANSPORT_OPTIONS), as the worker reports
    it; None when there is none (or the worker did not say)."""
    _, options = setting(reported_settings(celery_worker, broker_control), "broker_transport_options")
    return options.get("socket_timeout") if isinstance(options, dict) else None


def _post_during_outage(web, action, waited=HANG):
    """(answer or None when none came within ``waited`` s, seconds, the server error's cause or None) of one
    Step13 POST."""
    started = time.monotonic()
    try:
        return web.post(action, timeout=waited, accept=(503,)), time.monotonic() - started, None
    except ServiceProblem as problem:
        return None, time.monotonic() - started, problem.cause


def _server_free_again(web):
    """After the outage: the web server answers again (a request that hung ends when Redis is back)."""
    def answers():
        try:
            return web.get("/handson").status == 200
        except ServiceProblem:
            return False
    return wait_for(answers, timeout=30, interval=0.2)


def _require_503(answer, seconds, cause, bound, outage, policy, timeout=None):
    outage_ja = {"down": "ダウン", "silent": "無応答"}[outage]
    words, count = policy  # from _publish_retries
    # One retry is what the small policy keeps: offer it only to a policy that allows more (or no limit).
    fewer = count is None or count > 1
    fewer_en = ", or give CELERY_TASK_PUBLISH_RETRY_POLICY a max_retries of 1" if fewer else ""
    fewer_ja = " (または CELERY_TASK_PUBLISH_RETRY_POLICY の max_retries を 1 に)" if fewer else ""
    if cause is not None and cause.what == "server_error":
        pytest.fail(say(
            f"With Redis {outage}, Step13 answered {cause.detail.get('status')} ({cause.detail.get('headline')}): "
            f"the publish raised, and nothing caught it. In TaskStep13.post catch it and say so: {CATCH}.",
            f"Redis が{outage_ja}のとき、Step13 は {cause.detail.get('status')} "
            f"({cause.detail.get('headline')}) を返しました。送信が例外を出し、誰も捕まえていません。"
            f"TaskStep13.post で捕まえて伝えてください: {CATCH}。",
        ), pytrace=False)
    require(answer is not None or timeout is None, say(
        f"With Redis {outage}, Step13 had not answered after {seconds:.1f} s (at most {bound:g} s): the socket "
        f"timeout is set ({timeout} s), but before each publish retry Kombu reconnects, and each attempt waits it "
        f"again ({words}). Send with hello.apply_async((\"hello world\",), retry=False){fewer_en}.",
        f"Redis が{outage_ja}のとき、Step13 は {seconds:.1f} 秒たっても答えませんでした (上限 {bound:g} 秒)。ソケットの"
        f"タイムアウト ({timeout} 秒) はありますが、送信をリトライする前に Kombu は再接続し、その試みのたびに"
        f"もう一度待ちます ({words})。hello.apply_async((\"hello world\",), retry=False) で送ってください{fewer_ja}。",
    ))
    require(answer is not None, say(
        f"With Redis {outage}, Step13 did not answer within {seconds:.0f} s: .delay() waits for Redis without limit, and "
        "the single-threaded server with it (Kombu's Redis transport has no socket timeout by default). In "
        f"handson/settings.py write {TRANSPORT_OPTIONS}.",
        f"Redis が{outage_ja}のとき、Step13 は {seconds:.0f} 秒以内に答えませんでした。"
        ".delay() は Redis を無制限に待ち、シングルスレッドのサーバーも一緒に止まります (Kombu の Redis "
        f"トランスポートには既定でソケットのタイムアウトがありません)。handson/settings.py に {TRANSPORT_OPTIONS} と"
        "書いてください。",
    ))
    require(answer.status == 503, say(
        f"With Redis {outage}, Step13 answered {answer.status} {answer.location or answer.text[:200]!r}: the task "
        f"cannot have been sent. Answer 503 and say so: {CATCH}.",
        f"Redis が{outage_ja}のとき、Step13 は {answer.status} "
        f"{answer.location or answer.text[:200]!r} を返しました。タスクは送れていないはずです。503 で伝えてください: "
        f"{CATCH}。",
    ))
    require(any(word in answer.text.lower() for word in ("redis", "broker")), say(
        f"Step13's 503 says {answer.text[:200]!r}: say what is wrong, that Redis (the broker) cannot be reached.",
        f"Step13 の 503 は {answer.text[:200]!r} です。何が起きたか、Redis (ブローカー) に届かないことを伝えてください。",
    ))
    require(seconds <= bound, say(
        f"With Redis {outage}, Step13's 503 took {seconds:.1f} s (at most {bound:g} s): before each publish retry "
        f"Kombu reconnects, and each attempt waits the socket timeout again ({words}). Send with "
        f"hello.apply_async((\"hello world\",), retry=False){fewer_en}.",
        f"Redis が{outage_ja}のとき、Step13 の 503 に {seconds:.1f} 秒かかりました "
        f"(上限 {bound:g} 秒)。送信をリトライする前に Kombu は再接続し、その試みのたびにソケットのタイムアウトを"
        f"もう一度待ちます ({words})。hello.apply_async((\"hello world\",), retry=False) で送ってください{fewer_ja}。",
    ))


def test_with_redis_silent_step13_answers_503_within_the_bound(web, celery_worker, result_backend, broker_control,
                                                               link, sleep_seconds):
    """Redis silent (connections open, no answer): Step13 answers 503 within SILENT_BOUND s instead of hanging."""
    action = _healthy_press(web, celery_worker, result_backend, broker_control, sleep_seconds)
    policy = _publish_retries(broker_control, celery_worker)
    timeout = _socket_timeout(broker_control, celery_worker)
    link.go_silent()
    # Waited for as long as the bound and no longer: an answer later than that is too late whatever it says.
    answer, seconds, cause = _post_during_outage(web, action, waited=SILENT_BOUND)
    link.restore()
    _server_free_again(web)
    _require_503(answer, seconds, cause, SILENT_BOUND, "silent", policy, timeout)


def test_with_redis_down_step13_answers_503_at_once(web, celery_worker, result_backend, broker_control, link,
                                                    sleep_seconds):
    """Redis down (every connection closed): Step13 answers 503, saying Redis cannot be reached, within DOWN_BOUND s."""
    action = _healthy_press(web, celery_worker, result_backend, broker_control, sleep_seconds)
    policy = _publish_retries(broker_control, celery_worker)
    link.go_down()
    answer, seconds, cause = _post_during_outage(web, action)
    link.restore()
    _require_503(answer, seconds, cause, DOWN_BOUND, "down", policy)


def test_when_redis_is_back_the_worker_takes_work_again(web, celery_worker, result_backend, broker_control, link,
                                                        sleep_seconds):
    """Redis goes down until the worker has logged the lost connection and a failed attempt to reconnect; once
    Redis is back the worker reconnects by itself: a hello sent by Step13 then ends SUCCESS."""
    _healthy_press(web, celery_worker, result_backend, broker_control, sleep_seconds)
    mark = celery_worker.mark()
    link.go_down()
    retried = wait_for(lambda: RETRYING in celery_worker.log(mark), timeout=RETRYING_WITHIN)
    link.restore()
    log = celery_worker.log(mark)
    require("Connection to broker lost" in log and retried, say(
        f"Within {RETRYING_WITHIN} s of Redis going down the worker did not log the lost connection and a new "
        f"attempt (\"Connection to broker lost\", \"{RETRYING}\"):\n{celery_worker.log_tail(15)}",
        f"Redis のダウンから {RETRYING_WITHIN} 秒以内に、ワーカーが接続の切断と再接続の試み (\"Connection to broker "
        f"lost\"、\"{RETRYING}\") をログに出しませんでした:\n{celery_worker.log_tail(15)}",
    ))
    press(web, *STEP13)
    back = wait_for(lambda: received_ids(celery_worker.log(mark)), timeout=45)
    require(back, say(
        "Redis is back, and the worker took no task within 45 s: it should reconnect by itself "
        "(broker_connection_retry, True by default; do not set CELERY_BROKER_CONNECTION_RETRY = False). "
        f"Its log:\n{celery_worker.log_tail(15)}",
        "Redis は戻りましたが、ワーカーは 45 秒以内にタスクを受け取りませんでした。自分で再接続するはずです "
        "(broker_connection_retry、既定で True。CELERY_BROKER_CONNECTION_RETRY = False にしないでください)。"
        f"ログ:\n{celery_worker.log_tail(15)}",
    ))
    done = wait_for(lambda: result_backend.state(back[-1]) == "SUCCESS", timeout=sleep_seconds + 10)
    assert done, say(
        f"The hello sent after the outage ({back[-1]}) is {result_backend.state(back[-1])}, not SUCCESS.",
        f"障害の後に送った hello ({back[-1]}) は SUCCESS ではなく {result_backend.state(back[-1])} です。",
    )
    assert celery_worker.process.running(), say(
        "The worker exited during the outage: it should reconnect and go on (a supervisor would restart it).",
        "障害の間にワーカーが終了しました。再接続して続けるはずです (スーパーバイザーなら再起動します)。",
    )
