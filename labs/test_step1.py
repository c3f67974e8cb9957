"""Step 1 — slow work inside the request blocks the browser.
ステップ 1 — リクエストの中の重い処理がブラウザを待たせる

What you see
    Press "Step1" on http://127.0.0.1:8000/handson (`make run`). The browser waits
    HANDSON_SLEEP seconds (10 in `make run`, about 1 in the labs) before the page
    comes back. Open the page in a second tab meanwhile: it waits too.

Why
    `TaskStep1.post` in handson/views.py calls ``time.sleep()`` before it answers.
    The server is Django's runserver with ``--nothreading --noreload``: one thread
    (``--nothreading``) in one process (``--noreload``: no autoreloader process
    that runs the server in a child), one request at a time, like a small
    production server whose workers are all busy. Slow work done inside a request holds the browser that asked
    and everyone queued behind it.

What to do
    Nothing to write: the starter passes this step. Read the view, run
    `make step1`, and try it by hand. Step 2 moves the slow work out of the request.

見えること
    `make run` で http://127.0.0.1:8000/handson を開き「Step1」を押すと、ページが戻るまで
    HANDSON_SLEEP 秒 (make run では 10 秒、ラボでは約 1 秒) 待たされます。その間に別タブで
    ページを開くと、そちらも待たされます。

なぜ
    handson/views.py の `TaskStep1.post` は応答の前に ``time.sleep()`` を呼びます。サーバーは
    ``--nothreading --noreload`` の runserver で、1 プロセス (``--noreload``: サーバーを子プロセスで動かす
    自動リロードのプロセスなし) 1 スレッド (``--nothreading``)、一度に 1 リクエストしか処理しません。
    リクエストの中で重い処理をすると、そのブラウザも後ろに並んだ全員も待たされます。

やること
    書くものはありません (スターターのままで合格します)。ビューを読み、`make step1` を実行し、
    手でも試してください。ステップ 2 で重い処理をリクエストの外へ出します。
"""
import http.client
import threading
import time

import pytest

from labs.harness.i18n import say
from labs.harness.services.web import ANSWER_LIMIT

pytestmark = pytest.mark.lab


def _post_form(client):
    """Headers and body of a POST that passes Django's CSRF check."""
    page = client.get("/handson")
    assert page.status == 200, say(
        f"GET /handson answered {page.status}; handson/urls.py must route `handson` to the Base view.",
        f"GET /handson が {page.status} を返しました。handson/urls.py で `handson` を Base ビューに割り当ててください。",
    )
    token = client.session.cookies.get("csrftoken", "")
    body = f"csrfmiddlewaretoken={token}"
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={token}",
               "Referer": client.server.url + "/handson"}
    return headers, body


def test_step1_button_makes_the_browser_wait(web, sleep_seconds):
    """POST /handson/task_step1 answers only after the sleep, with a redirect back to the page."""
    answer = web.post("/handson/task_step1")

    assert answer.status == 302, say(
        f"POST /handson/task_step1 answered {answer.status}, expected 302 (a redirect to /handson). "
        "Keep the route `handson/task_step1` (name task_step1) and `return redirect(reverse(\"base\"))`.",
        f"POST /handson/task_step1 が {answer.status} を返しました (期待値 302: /handson へのリダイレクト)。"
        "URL `handson/task_step1` (名前 task_step1) と `return redirect(reverse(\"base\"))` を残してください。",
    )
    assert answer.seconds >= sleep_seconds * 0.95, say(
        f"The Step1 request took {answer.seconds:.2f} s, less than HANDSON_SLEEP ({sleep_seconds:g} s): "
        "step 1 is about slow work that runs inside the request. Keep time.sleep(settings.HANDSON_SLEEP) in TaskStep1.post.",
        f"Step1 のリクエストが {answer.seconds:.2f} 秒で、HANDSON_SLEEP ({sleep_seconds:g} 秒) より短いです。"
        "ステップ 1 はリクエストの中の重い処理がテーマです。TaskStep1.post の time.sleep(settings.HANDSON_SLEEP) を残してください。",
    )


def test_a_second_tab_waits_for_the_first(web, django_server, sleep_seconds):
    """While Step1 sleeps, a GET of the page from a second tab is answered only after it.

    Both requests are sent before either is answered; the kernel queues the
    connections in the order they were made, so the single-threaded server
    takes the POST first and the GET has to wait for it.
    """
    headers, body = _post_form(web)
    host, port = "127.0.0.1", django_server.port
    first_tab = http.client.HTTPConnection(host, port, timeout=sleep_seconds + 30)
    second_tab = http.client.HTTPConnection(host, port, timeout=sleep_seconds + 30)
    finished = {}

    def answer_time(name, connection):
        try:
            connection.getresponse().read(ANSWER_LIMIT)  # within limits, whatever the app sends
        except OSError:  # no answer (the run was interrupted): the assertion below says so
            return
        finished[name] = time.monotonic()

    sent = time.monotonic()
    first_tab.request("POST", "/handson/task_step1", body=body, headers=headers)
    second_tab.request("GET", "/handson")
    readers = [threading.Thread(target=answer_time, args=pair)
               for pair in (("step1", first_tab), ("page", second_tab))]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=sleep_seconds + 30)
    first_tab.close()
    second_tab.close()

    assert set(finished) == {"step1", "page"}, say(
        "One of the two requests got no answer.", "2 つのリクエストのどちらかに応答がありませんでした。")
    page_wait = finished["page"] - sent
    assert page_wait >= sleep_seconds * 0.95, say(
        f"The second tab got the page after {page_wait:.2f} s, without waiting for Step1 "
        f"({sleep_seconds:g} s). The server must serve one request at a time: "
        "runserver --nothreading, as `make run` starts it.",
        f"2 つ目のタブは Step1 ({sleep_seconds:g} 秒) を待たずに {page_wait:.2f} 秒でページを受け取りました。"
        "サーバーは一度に 1 リクエストだけ処理する必要があります (`make run` と同じ runserver --nothreading)。",
    )
