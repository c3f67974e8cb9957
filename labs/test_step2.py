"""Step 2 — hand the slow work to a Celery worker through Redis.
ステップ 2 — 重い処理を Redis 経由で Celery ワーカーに任せる

What you build
    The view no longer does the slow work. It calls ``hello.delay("hello world")``,
    which only puts a message on a queue in Redis (the *broker*) and returns at
    once. A separate process, the Celery *worker*, takes the message, runs
    ``hello`` and stores its state in Redis (the *result backend*).

        browser --POST--> Django view --hello.delay()--> Redis queue --> celery worker
                  <--302 at once--                                        runs hello, prints "hello world"

Files to edit (the same shape as Celery's own Django example)
    handson/settings.py   CELERY_BROKER_URL = HANDSON_BROKER_URL
                          CELERY_RESULT_BACKEND = HANDSON_RESULT_BACKEND
                          (JSON only: CELERY_TASK_SERIALIZER, CELERY_RESULT_SERIALIZER,
                          CELERY_ACCEPT_CONTENT). Celery reads every Django setting
                          named CELERY_*, because celery.py says namespace="CELERY".
    handson/celery.py     new: app = Celery("handson"); app.config_from_object(
                          "django.conf:settings", namespace="CELERY");
                          app.autodiscover_tasks(). Set DJANGO_SETTINGS_MODULE
                          first (os.environ.setdefault): the worker does not start
                          through Django. The lab and `make run` set it for you;
                          `celery -A handson worker` in your own shell does not.
    handson/__init__.py   from .celery import app as celery_app
                          __all__ = ("celery_app",)   so that Django loads the app
                          when it starts, and ``.delay()`` in a view sends through
                          it. (The worker would find the app without this line:
                          `celery -A handson` tries handson.app, handson.celery
                          (your handson/celery.py), then any Celery instance in
                          the package; tests/test_celery_facts.py checks it.)
    handson/tasks.py      new: @shared_task def hello(message): sleep
                          settings.HANDSON_SLEEP seconds, then print(message).
    handson/views.py      class TaskStep2(View) whose post() calls
                          hello.delay("hello world") and redirects to "base".
    handson/urls.py       path("handson/task_step2", views.TaskStep2.as_view(),
                          name="task_step2")

Watch for
    - ``hello("hello world")`` runs the function right here, inside the request:
      the browser waits again. ``.delay()`` sends it to the worker.
    - Do not write Redis addresses into the code: the lab starts Redis on a free
      port and passes the URLs in the environment (settings.py reads them).
    - The worker loads your code when it starts: after an edit, restart it
      (`make run` again; the labs start a fresh one every run).

作るもの
    ビューは重い処理をしなくなります。``hello.delay("hello world")`` を呼ぶだけで、これは Redis の
    キュー (*ブローカー*) にメッセージを置いてすぐ戻ります。別プロセスの Celery *ワーカー* が
    メッセージを受け取って ``hello`` を実行し、状態を Redis (*結果バックエンド*) に保存します。

編集するファイル (Celery 公式の Django 例と同じ形)
    handson/settings.py   CELERY_BROKER_URL = HANDSON_BROKER_URL、CELERY_RESULT_BACKEND =
                          HANDSON_RESULT_BACKEND (JSON のみ: CELERY_TASK_SERIALIZER、
                          CELERY_RESULT_SERIALIZER、CELERY_ACCEPT_CONTENT)。celery.py で
                          namespace="CELERY" としているので、CELERY_ で始まる設定を Celery が読みます。
    handson/celery.py     新規: app = Celery("handson")、app.config_from_object("django.conf:settings",
                          namespace="CELERY")、app.autodiscover_tasks()。ワーカーは Django 経由で
                          起動しないので、先に DJANGO_SETTINGS_MODULE を設定します
                          (os.environ.setdefault)。ラボと `make run` は設定済みですが、自分のシェルで
                          `celery -A handson worker` を起動するときは設定されていません。
    handson/__init__.py   from .celery import app as celery_app と __all__ = ("celery_app",)
                          (Django の起動時にアプリが読み込まれ、ビューの ``.delay()`` がそのアプリで
                          送ります。ワーカーはこの行がなくてもアプリを見つけます。`celery -A handson` は
                          handson.app、handson.celery (handson/celery.py)、次にパッケージ内の任意の
                          Celery インスタンスを探します。tests/test_celery_facts.py で確認)。
    handson/tasks.py      新規: @shared_task の hello(message)。settings.HANDSON_SLEEP 秒 sleep して
                          print(message)。
    handson/views.py      TaskStep2(View) の post() で hello.delay("hello world") を呼び "base" へリダイレクト。
    handson/urls.py       path("handson/task_step2", views.TaskStep2.as_view(), name="task_step2")

注意
    - ``hello("hello world")`` はリクエストの中で関数をそのまま実行します (ブラウザはまた待たされます)。
      ``.delay()`` がワーカーに送ります。
    - Redis のアドレスをコードに書かないでください。ラボは空きポートで Redis を起動し、URL を
      環境変数で渡します (settings.py が読み込み済み)。
    - ワーカーは起動時にコードを読み込みます。編集したら再起動してください (`make run` をやり直す。
      ラボは毎回新しいワーカーを起動します)。
"""
import re

import pytest

from labs.harness.i18n import say
from labs.harness.lesson.advice import APP_IMPORT
from labs.harness.lesson.checks import (
    HELLO,
    package_exports,
    press_step2,
    send_hello_and_see_it_received,
    succeeded_seconds,
)
from labs.harness.lesson.waiting import wait_for

pytestmark = pytest.mark.lab


def test_the_package_hands_django_and_celery_the_app(lab_stack):
    """`from handson import *` works and gives `celery_app`: Django loads the Celery app through
    handson/__init__.py, so that a view's `.delay()` sends with it."""
    exports = package_exports(lab_stack.workspace, lab_stack.env)
    others = [name for name in exports["all"] or () if name != "celery_app"]

    assert exports["celery_app"] is not None, say(
        f"handson has no celery_app ({exports['error'] or 'not defined'}): in handson/__init__.py write "
        f"`{APP_IMPORT}` and __all__ = (\"celery_app\",), so Django loads the Celery app when it starts.",
        f"handson に celery_app がありません ({exports['error'] or '未定義'})。handson/__init__.py に "
        f"`{APP_IMPORT}` と __all__ = (\"celery_app\",) を書き、Django の起動時に Celery アプリが読み込まれるように"
        "してください。",
    )
    assert exports["error"] is None, say(
        f"`from handson import *` fails: {exports['error']}. handson/__init__.py lists {others} in __all__, "
        "a name it does not define: write __all__ = (\"celery_app\",).",
        f"`from handson import *` が失敗します: {exports['error']}。handson/__init__.py の __all__ に定義されていない"
        f"名前 {others} があります。__all__ = (\"celery_app\",) と書いてください。",
    )
    assert exports["celery_app"] == "celery.app.base.Celery", say(
        f"handson.celery_app is a {exports['celery_app']}, not a Celery app: write `{APP_IMPORT}` in handson/__init__.py.",
        f"handson.celery_app が Celery アプリではなく {exports['celery_app']} です。handson/__init__.py に "
        f"`{APP_IMPORT}` と書いてください。",
    )
    assert "celery_app" in exports["star"], say(
        f"`from handson import *` does not give celery_app (it gives {exports['star']}): "
        "write __all__ = (\"celery_app\",) in handson/__init__.py.",
        f"`from handson import *` で celery_app が得られません ({exports['star']})。"
        "handson/__init__.py に __all__ = (\"celery_app\",) と書いてください。",
    )


def test_step2_button_answers_at_once(web, sleep_seconds):
    """POST /handson/task_step2 redirects back before the work could be done: it is not done in the request.
    (How much sooner is for `make bench` to report: a busy machine takes its time over the first request.)"""
    answer = press_step2(web)

    assert answer.seconds < sleep_seconds * 0.9, say(
        f"Step2 took {answer.seconds:.2f} s, as long as the work itself ({sleep_seconds:g} s): the view runs "
        "hello(...) inside the request. Call hello.delay(\"hello world\") instead: .delay sends the task "
        "to the worker and returns at once.",
        f"Step2 が {answer.seconds:.2f} 秒かかりました (処理そのものの {sleep_seconds:g} 秒と同じ)。ビューが "
        "リクエストの中で hello(...) を実行しています。代わりに hello.delay(\"hello world\") を呼んでください。"
        ".delay はタスクをワーカーに送ってすぐ戻ります。",
    )


def _check_worker_setup(celery_worker):
    celery_worker.require_running()
    assert HELLO in celery_worker.registered_tasks(), say(
        f"The worker knows no task {HELLO} (its [tasks] list: {celery_worker.registered_tasks()}). Write "
        "`@shared_task def hello(message)` in handson/tasks.py; app.autodiscover_tasks() in handson/celery.py "
        "finds tasks.py in every installed app ('handson' is in INSTALLED_APPS).",
        f"ワーカーがタスク {HELLO} を知りません ([tasks] 一覧: {celery_worker.registered_tasks()})。handson/tasks.py に "
        "`@shared_task def hello(message)` を書いてください。handson/celery.py の app.autodiscover_tasks() が "
        "インストール済みアプリ (INSTALLED_APPS の 'handson') の tasks.py を見つけます。",
    )
    backend = celery_worker.banner("results")
    assert backend and backend.startswith("redis"), say(
        f"The worker stores results in {backend!r}, not in Redis: set CELERY_RESULT_BACKEND = "
        "HANDSON_RESULT_BACKEND in handson/settings.py.",
        f"ワーカーの結果の保存先が Redis ではなく {backend!r} です。handson/settings.py に "
        "CELERY_RESULT_BACKEND = HANDSON_RESULT_BACKEND と書いてください。",
    )


def test_the_worker_runs_hello_and_stores_success(web, celery_worker, result_backend, sleep_seconds):
    """The worker's log shows the task received, "hello world" and "succeeded in ~HANDSON_SLEEP s"; the backend holds SUCCESS."""
    _check_worker_setup(celery_worker)
    mark, task_id = send_hello_and_see_it_received(web, celery_worker)
    ended = wait_for(lambda: re.search(rf"{re.escape(task_id)}\] (succeeded|raised|retry)", celery_worker.log(mark)),
                     timeout=sleep_seconds + 20)
    log = celery_worker.log(mark)
    assert ended and ended.group(1) == "succeeded", say(
        f"Task {task_id} did not succeed. Worker log since Step2:\n{log}",
        f"タスク {task_id} が成功しませんでした。Step2 以降のワーカーのログ:\n{log}",
    )
    assert "hello world" in log.split(f"{task_id}] succeeded")[0], say(
        "The worker never printed \"hello world\": hello(message) should print(message), and the view "
        "should send hello.delay(\"hello world\").",
        "ワーカーが \"hello world\" を出力しませんでした。hello(message) は print(message) し、ビューは "
        "hello.delay(\"hello world\") を送ってください。",
    )
    ran = succeeded_seconds(log, task_id)
    assert ran is not None and ran >= sleep_seconds * 0.95, say(
        f"hello ran for {ran} s; it should sleep settings.HANDSON_SLEEP ({sleep_seconds:g} s) first.",
        f"hello の実行時間が {ran} 秒でした。最初に settings.HANDSON_SLEEP ({sleep_seconds:g} 秒) sleep してください。",
    )
    state = wait_for(lambda: result_backend.state(task_id), timeout=5)
    assert state == "SUCCESS", say(
        f"The result backend holds {state!r} for task {task_id}, expected 'SUCCESS': check "
        "CELERY_RESULT_BACKEND = HANDSON_RESULT_BACKEND in handson/settings.py.",
        f"結果バックエンドのタスク {task_id} の状態が {state!r} です ('SUCCESS' のはず)。handson/settings.py の "
        "CELERY_RESULT_BACKEND = HANDSON_RESULT_BACKEND を確認してください。",
    )


def test_the_page_answers_while_the_task_runs(web, celery_worker, result_backend, sleep_seconds):
    """While the worker runs hello, the single-threaded server is free: GET /handson answers at once."""
    _check_worker_setup(celery_worker)
    mark, task_id = send_hello_and_see_it_received(web, celery_worker)

    page = web.get("/handson")
    still_running = result_backend.state(task_id) != "SUCCESS"

    assert page.status == 200 and page.seconds < sleep_seconds * 0.5, say(
        f"GET /handson took {page.seconds:.2f} s (status {page.status}) while the task ran: the server "
        "should be free as soon as Step2 has sent the task.",
        f"タスク実行中の GET /handson に {page.seconds:.2f} 秒かかりました (status {page.status})。Step2 が "
        "タスクを送った時点でサーバーは空いているはずです。",
    )
    assert still_running, say(
        "The task had already finished when the page answered, so this run shows nothing: rerun the step "
        "(the machine may be very busy) or raise HANDSON_SLEEP.",
        "ページの応答時にはタスクが終わっていたため、この実行では確認できません。ステップを再実行するか "
        "(マシンが非常に混んでいる可能性)、HANDSON_SLEEP を大きくしてください。",
    )
