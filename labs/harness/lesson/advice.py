"""Every sentence a learner reads about a service, once, in English and Japanese, keyed by cause.

The services say what they saw (services/causes.py); ``explain`` says what it
means and what to edit. The settings a learner writes are spelled here once, for
every message and lesson that names them.
"""
import re

from ..i18n import say
from ..services import confine

BROKER_SETTING = "CELERY_BROKER_URL = HANDSON_BROKER_URL"
BACKEND_SETTING = "CELERY_RESULT_BACKEND = HANDSON_RESULT_BACKEND"
APP_IMPORT = "from .celery import app as celery_app"


# What each service is called in a sentence: (English, Japanese).
_NAMES = {"worker": ("The worker", "ワーカー"), "beat": ("The beat scheduler", "beat スケジューラー"),
          "web": ("The Django server", "Django サーバー")}


def _log_block(cause):
    label = {"worker": say("Worker log:", "ワーカーのログ:"), "beat": say("Beat log:", "beat のログ:")}.get(
        cause.service, say("Server log:", "サーバーのログ:"))
    return f"\n\n{label}\n{cause.log}" if cause.log else ""


def _no_celery_app(cause):
    # celery/app/utils.py, find_app: handson.app, then handson.celery (the attribute, else the module
    # handson/celery.py and its `app`), then any Celery instance among handson's attributes.
    return say(
        "The worker found no Celery app: `celery -A handson worker` tries handson.app, then handson.celery "
        "(the module handson/celery.py and its `app`), then any Celery instance in the package handson. Create "
        f"handson/celery.py with app = Celery(\"handson\"), and in handson/__init__.py write `{APP_IMPORT}` "
        "(that line is for Django: it loads the app when the web server starts).",
        "ワーカーが Celery アプリを見つけられません。`celery -A handson worker` は handson.app、次に "
        "handson.celery (モジュール handson/celery.py とその `app`)、次に handson パッケージ内の任意の Celery "
        f"インスタンスを探します。handson/celery.py に app = Celery(\"handson\") を作り、handson/__init__.py に "
        f"`{APP_IMPORT}` と書いてください (この行は Django のためのもので、Web サーバーの起動時にアプリを読み込みます)。",
    )


def _broker_unreachable(cause):
    expected = cause.detail.get("expected")
    return say(
        f"The worker cannot reach its broker. The lab's Redis is {expected}; in handson/settings.py set "
        f"{BROKER_SETTING} (the app gets the address from the environment).",
        f"ワーカーがブローカーに接続できません。ラボの Redis は {expected} です。handson/settings.py に "
        f"{BROKER_SETTING} と書いてください (アドレスは環境変数から渡されます)。",
    )


def _wrong_broker(cause):
    transport, expected = cause.detail.get("transport"), cause.detail.get("expected")
    return say(
        f"The worker takes tasks from {transport}, not from the lab's Redis ({expected}). "
        f"Do not write Redis addresses in the code: in handson/settings.py set {BROKER_SETTING}.",
        f"ワーカーはラボの Redis ({expected}) ではなく {transport} からタスクを受け取っています。"
        f"Redis のアドレスをコードに書かず、handson/settings.py に {BROKER_SETTING} と書いてください。",
    )


# What an error says when the code hit one of grading's limits (services/confine.py).
_LIMIT_ERRORS = ("MemoryError", "Resource temporarily unavailable", "File too large", "No space left on device")


def _limits_note(headline):
    """A sentence on grading's limits when ``headline`` is an error they cause and the app is confined."""
    if not confine.confining_user() or not any(error in (headline or "") for error in _LIMIT_ERRORS):
        return ""
    limits, temp = confine.LIMITS, confine.TEMP_BYTES >> 20
    return say(f" While it is graded, the app may have {limits.processes} processes, {limits.memory >> 30} GB of "
               f"memory per process, files of {limits.file_size >> 20} MB and a /tmp of {temp} MB: your code went "
               "beyond one of these.",
               f" 採点中のアプリは、プロセス {limits.processes} 個、1 プロセスあたりメモリ {limits.memory >> 30} GB、"
               f"ファイル 1 つ {limits.file_size >> 20} MB、/tmp {temp} MB までです。コードがこのどれかを超えました。")


def _did_not_start(cause):
    seconds, found = cause.detail.get("seconds"), cause.detail.get("headline")
    stopped = cause.what == "crashed_on_start"
    if cause.service in ("worker", "beat"):
        name_en, name_ja = _NAMES[cause.service]
        en = f"{name_en} stopped while starting" if stopped else f"{name_en} was not ready within {seconds} s"
        ja = f"{name_ja}が起動中に終了しました" if stopped else f"{name_ja}が {seconds} 秒以内に起動しませんでした"
    else:
        en = "The Django server stopped while starting" if stopped else \
            f"The Django server did not answer within {seconds} s"
        ja = "Django サーバーが起動中に終了しました" if stopped else f"Django サーバーが {seconds} 秒以内に応答しませんでした"
    return say(en + (f": {found}" if found else " (look for an error in your handson/ files)") + ".",
               ja + (f": {found}" if found else " (handson/ のファイルのエラーを確認してください)") + "。") \
        + _limits_note(found)


def _stopped(cause):
    name_en, name_ja = _NAMES.get(cause.service, _NAMES["web"])
    return say(f"{name_en} has stopped.", f"{name_ja}が停止しました。")


def _no_answer(cause):
    d = cause.detail
    return say(f"{d['method']} {d['path']} got no answer: {d['error']}",
               f"{d['method']} {d['path']} に応答がありません: {d['error']}")


def _no_remote_control(cause):
    node = cause.detail["node"]
    return say(f"The worker {node} started but does not answer Celery's remote control (a ping to it through "
               "Redis): without it no revoke or inspect reaches it. Leave CELERY_WORKER_ENABLE_REMOTE_CONTROL "
               "at its default (True), and let `celery -A handson worker` be Celery's own worker: nothing in "
               "handson/ should take messages off the queue itself.",
               f"ワーカー {node} は起動しましたが、Celery のリモート制御 (Redis 経由の ping) に応答しません。これでは "
               "revoke も inspect も届きません。CELERY_WORKER_ENABLE_REMOTE_CONTROL は既定 (True) のままにし、"
               "`celery -A handson worker` を Celery 自身のワーカーにしてください。handson/ の中でキューから"
               "メッセージを取り出してはいけません。")


def _answer_too_large(cause):
    d = cause.detail
    megabytes = d["limit"] >> 20
    return say(f"{d['method']} {d['path']} sent more than {megabytes} MB, or did not finish its answer within "
               f"{d['seconds']:g} s: the lab stopped reading. A view answers with a page of kilobytes (or a "
               "redirect), once, and returns.",
               f"{d['method']} {d['path']} が {megabytes} MB を超える応答を送ったか、{d['seconds']:g} 秒以内に応答を"
               "終えませんでした。ラボは読むのをやめました。ビューは数 KB のページ (またはリダイレクト) を一度返して"
               "終わります。")


def _not_json(headline):
    """What to send instead of a value that is not JSON, for the type the error names."""
    named = re.search(r"Object of type (\w+) is not JSON serializable", headline)
    kind = named.group(1) if named else None
    text = say(f" A task's arguments travel through Redis as JSON (Celery's default serializer), and "
               f"{kind or 'this value'} is not JSON: send plain values (ids, numbers, text, lists, dicts).",
               f" タスクの引数は JSON (Celery の既定のシリアライザー) で Redis を通ります。{kind or 'この値'} は JSON に"
               "なりません。単純な値 (id、数値、文字列、リスト、辞書) を送ってください。")
    if kind and kind.endswith(("Error", "Exception")):
        return text + say(
            f" A {kind} as an argument is a failed task's result, as .get(propagate=False) returns it: a view that "
            "waits for results makes the browser wait (step 1), and a chord passes the parts' results on by itself.",
            f" 引数の {kind} は失敗したタスクの結果で、.get(propagate=False) がそれを返します。結果を待つビューはブラウザを"
            "待たせます (ステップ 1)。chord なら部分の結果を自分で渡します。")
    return text + say(
        " A model instance is not JSON: send its id, e.g. send_confirmation.delay_on_commit(order.pk), and load the "
        "object in the task (Order.objects.get(pk=order_id)), which then reads what is committed.",
        " モデルのインスタンスは JSON になりません。id を送り (例: send_confirmation.delay_on_commit(order.pk))、"
        "タスクの中で読み込んでください (Order.objects.get(pk=order_id))。するとタスクはコミット済みの内容を読みます。")


def _server_error(cause):
    d = cause.detail
    what = (d["headline"] or say("the app raised an error", "アプリでエラー")) if d["status"] == 500 else d["body"]
    text = say(f"{d['method']} {d['path']} answered {d['status']} ({what}).",
               f"{d['method']} {d['path']} が {d['status']} を返しました ({what})。")
    seen, where = d.get("seen") or (None, "")
    text += _limits_note(d.get("headline"))
    if "missing 1 required positional argument" in (d.get("headline") or ""):
        text += say(
            " If that task's first parameter is `self`, declare it with @shared_task(bind=True, ...): only then does "
            "Celery pass the task itself as `self`; without it, what you send fills `self` and the last parameter "
            "is missing.",
            " そのタスクの最初の引数が `self` なら @shared_task(bind=True, ...) と宣言してください。そうして初めて "
            "Celery はタスク自身を `self` として渡します。ないと、送った値が `self` に入り、最後の引数が足りなく"
            "なります。",
        )
    if "on_commit()'s callback must be a callable" in (d.get("headline") or ""):
        text += say(
            " transaction.on_commit(send_confirmation.delay(order.pk)) calls .delay() on that line: the task is sent "
            "there and then, inside the transaction, and on_commit is handed what .delay() returned (an AsyncResult), "
            "not a function to call later. Write send_confirmation.delay_on_commit(order.pk), which sends when the "
            "transaction commits (or transaction.on_commit(lambda: send_confirmation.delay(order.pk))).",
            " transaction.on_commit(send_confirmation.delay(order.pk)) はその行で .delay() を呼びます。タスクはその場で、"
            "トランザクションの中で送られ、on_commit には後で呼ぶ関数ではなく .delay() の戻り値 (AsyncResult) が渡ります。"
            "send_confirmation.delay_on_commit(order.pk) と書いてください。トランザクションのコミット時に送ります "
            "(または transaction.on_commit(lambda: send_confirmation.delay(order.pk)))。",
        )
    if "EncodeError" in (d.get("headline") or "") or "is not JSON serializable" in (d.get("headline") or ""):
        text += _not_json(d.get("headline") or "")
    if seen == "redis_refused":
        text += say(
            f" Django could not reach Redis at {where}: the lab's Redis is elsewhere, on a free port. "
            f"Do not write Redis addresses in the code: {BROKER_SETTING} and {BACKEND_SETTING} in handson/settings.py.",
            f" Django が {where} の Redis に接続できませんでした。ラボの Redis は別の空きポートにあります。"
            f"Redis のアドレスをコードに書かず、handson/settings.py に {BROKER_SETTING} と {BACKEND_SETTING} と"
            "書いてください。",
        )
    elif seen == "default_amqp":
        text += say(
            " Django sent the task to Celery's default broker (amqp://localhost), not to Redis: the Celery "
            f"app is not loaded when Django starts. In handson/__init__.py write `{APP_IMPORT}`.",
            " Django がタスクを Redis ではなく Celery の既定のブローカー (amqp://localhost) に送りました。"
            f"Django の起動時に Celery アプリが読み込まれていません。handson/__init__.py に `{APP_IMPORT}` と"
            "書いてください。",
        )
    return text


_EXPLAIN = {
    "no_celery_app": _no_celery_app,
    "broker_unreachable": _broker_unreachable,
    "wrong_broker": _wrong_broker,
    "crashed_on_start": _did_not_start,
    "not_ready": _did_not_start,
    "stopped": _stopped,
    "no_answer": _no_answer,
    "answer_too_large": _answer_too_large,
    "no_remote_control": _no_remote_control,
    "server_error": _server_error,
}


def explain(cause, with_log=True):
    """The learner's sentence for ``cause``, followed by the service's last log lines."""
    text = _EXPLAIN[cause.what](cause)
    return text + (_log_block(cause) if with_log and cause.what != "wrong_broker" else "")
