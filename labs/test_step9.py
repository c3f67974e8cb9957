"""Step 9 — commit first, then enqueue; send the id, not the object.
ステップ 9 — コミットしてから送る。オブジェクトではなく id を送る

What you see
    The app keeps data now: handson/models.py has an Order, stored in SQLite, and
    handson/payments.py is a slow payment provider (both given). The "Step9" button
    orders a mug: the view creates the order, charges it, and a task sends the
    confirmation. Two mistakes are the ones Django users meet most:

    - The task is sent inside the transaction. ``.delay()`` puts the message in Redis
      at once, but the order is committed only when the ``with transaction.atomic()``
      block ends, after the slow payment. The worker looks for the order before that,
      in a connection of its own, finds nothing, and the confirmation ends FAILURE
      with ``Order.DoesNotExist``. Should the payment be declined, the transaction
      rolls back, but the message is already sent: a confirmation for an order that
      never existed.
    - The task is sent the order itself. Arguments travel through Redis as JSON
      (Celery's default serializer) and a model instance is not JSON:
      ``.delay(order)`` raises ``kombu.exceptions.EncodeError`` in the view, a 500.
      Send the id and let the task load the order: it then reads what is committed
      when it runs, not a copy of what was in memory when it was sent.

What you build
    In handson/tasks.py, a task that loads the order by its id:

        @shared_task
        def send_confirmation(order_id):
            order = Order.objects.get(pk=order_id)
            print(f"confirmation sent for {order}")
            return {"order": order.pk, "item": order.item, "amount": order.amount, "status": order.status}

    In handson/views.py, the Step9 view. It reads the form (``Order.from_form`` raises
    ValueError for a bad item or amount, which the view answers with a 400), and sends the
    confirmation on commit:

        class TaskStep9(View):
            def post(self, request, *args, **kwargs):
                try:
                    item, amount = Order.from_form(request.POST)
                except ValueError as wrong:
                    return HttpResponseBadRequest(str(wrong))
                try:
                    with transaction.atomic():
                        order = Order.objects.create(item=item, amount=amount)
                        send_confirmation.delay_on_commit(order.pk)
                        payments.charge(order)  # slow; raises payments.Declined
                        order.status = Order.PAID
                        order.save()
                except payments.Declined as declined:
                    return HttpResponse(f"Payment declined: {declined}. No order was kept.", status=402)
                return redirect(reverse("base"))

    ``delay_on_commit`` (Celery 5.4 and later) is there on every task of a Django project:
    Celery's Django fixup makes ``celery.contrib.django.task.DjangoTask`` the task class (unless
    the app names a task class of its own).
    It is ``transaction.on_commit(partial(send_confirmation.delay, order.pk))``: the
    message leaves after the commit, and never when the transaction rolls back. Outside
    a transaction (autocommit) on_commit runs it at once. It returns None, not an
    AsyncResult: no task id exists before the commit. A view that needs the id picks it
    itself: ``send_confirmation.apply_async_on_commit((order.pk,), task_id=task_id)``.

Files to edit
    handson/tasks.py   send_confirmation as above (``from .models import Order`` at the top)
    handson/views.py   TaskStep9 as above; at the top ``from django.db import transaction``,
                       HttpResponse and HttpResponseBadRequest in ``from django.http import ...``,
                       ``from . import payments``, ``from .models import Order``, and
                       send_confirmation in ``from .tasks import ...``
    handson/urls.py    path("handson/task_step9", views.TaskStep9.as_view(), name="task_step9")

How the lab knows
    The lab plays the payment provider. It holds its answer while it looks at what the
    worker received: it sends a task of Celery's own behind everything queued
    (``celery.accumulate``) and waits until the worker has run it. A confirmation sent
    inside the transaction before the payment has been received by then, one sent on commit
    cannot have been: that verdict never depends on which process happens to be faster. (A
    ``.delay()`` put after the payment, still inside the block, leaves only microseconds before
    the commit: the lab cannot make that race show. Send where the code above does.)

Watch for
    - Django's TestCase hides the race: it runs each test inside a transaction that it
      rolls back, so nothing commits and on_commit callbacks never run, unless the test
      asks for them (``self.captureOnCommitCallbacks(execute=True)``). A real commit, as
      here, shows it.
    - ``DATABASES["default"]["ATOMIC_REQUESTS"] = True`` puts every view inside a transaction
      (but those marked ``@transaction.non_atomic_requests``): then every ``.delay()`` in a
      view is sent before its commit.
    - A message that cannot be sent when the commit comes (an object JSON cannot carry, Redis
      unreachable) raises after the commit: the order is kept, and the view answers 500.

見えること
    アプリはデータを持つようになりました。handson/models.py の Order は SQLite に保存され、
    handson/payments.py は遅い決済サービスです (どちらも用意済み)。「Step9」ボタンはマグカップを
    注文します。ビューは注文を作り、決済し、タスクが確認メールを送ります。Django の利用者が最も
    よく出会う失敗は 2 つです:

    - トランザクションの中でタスクを送る。``.delay()`` はすぐにメッセージを Redis に入れますが、
      注文がコミットされるのは ``with transaction.atomic()`` ブロックの終わり、遅い決済の後です。
      ワーカーはその前に自分の接続で注文を探し、何も見つけられず、確認は ``Order.DoesNotExist``
      で FAILURE になります。決済が拒否されるとトランザクションはロールバックされますが、
      メッセージはもう送られています。存在しなかった注文の確認が届きます。
    - 注文そのものを送る。引数は JSON (Celery の既定のシリアライザー) で Redis を通ります。
      モデルのインスタンスは JSON にならないので、``.delay(order)`` はビューの中で
      ``kombu.exceptions.EncodeError`` を送出し、500 になります。id を送り、タスクで注文を
      読み込んでください。タスクは実行時にコミット済みの内容を読み、送った時点のメモリ上の
      コピーを使いません。

作るもの
    handson/tasks.py に、id で注文を読み込むタスク (上のコード)。
    handson/views.py に Step9 のビュー (上のコード)。フォームを読み (``Order.from_form`` は
    不正な品名や金額に ValueError を送出し、ビューが 400 を返します)、確認はコミット時に送ります。

    ``delay_on_commit`` (Celery 5.4 以降) は Django プロジェクトのすべてのタスクにあります。
    Celery の Django フィックスアップが ``celery.contrib.django.task.DjangoTask`` をタスククラスに
    するからです (アプリが独自のタスククラスを指定していなければ)。中身は ``transaction.on_commit(partial(send_confirmation.delay, order.pk))`` で、
    メッセージはコミットの後に送られ、ロールバックされたときは送られません。トランザクションの外
    (オートコミット) では on_commit はすぐに実行します。戻り値は AsyncResult ではなく None です。
    コミット前にはタスク id がありません。id が必要なビューは自分で決めます:
    ``send_confirmation.apply_async_on_commit((order.pk,), task_id=task_id)``。

編集するファイル
    handson/tasks.py   上の send_confirmation (先頭に ``from .models import Order``)
    handson/views.py   上の TaskStep9。先頭に ``from django.db import transaction``、
                       ``from django.http import ...`` に HttpResponse と HttpResponseBadRequest、
                       ``from . import payments``、``from .models import Order``、
                       ``from .tasks import ...`` に send_confirmation
    handson/urls.py    path("handson/task_step9", views.TaskStep9.as_view(), name="task_step9")

ラボの確かめ方
    ラボが決済サービスの役をします。答えを保留したまま、ワーカーが何を受け取ったかを見ます。
    キューにあるものすべての後ろに Celery 自身のタスク (``celery.accumulate``) を送り、ワーカーが
    それを実行するまで待ちます。トランザクションの中で送られた確認はそれまでに受け取られていて、
    コミット時に送られた確認はまだ受け取られていないはずです。決済の前に送られた確認については、
    どのプロセスが速いかで結果は変わりません。(決済の後、まだブロックの中で ``.delay()`` すると、
    コミットまで数マイクロ秒しかなく、ラボはこの競合を見せられません。上のコードの位置で送って
    ください。)

注意
    - Django の TestCase ではこの競合は見えません。各テストをロールバックするトランザクションの
      中で実行するので、何もコミットされず、on_commit のコールバックも実行されません
      (テストが ``self.captureOnCommitCallbacks(execute=True)`` で頼まない限り)。ここでのように
      本当にコミットすると見えます。
    - ``DATABASES["default"]["ATOMIC_REQUESTS"] = True`` はすべてのビューを
      (``@transaction.non_atomic_requests`` を付けたものを除き) トランザクションの中で実行します。
      するとビューの ``.delay()`` はすべてコミットの前に送られます。
    - コミットの時点で送れないメッセージ (JSON にできないオブジェクト、Redis に届かない) は
      コミットの後に例外を送出します。注文は残り、ビューは 500 を返します。
"""
import pytest

from labs.harness.i18n import say
from labs.harness.lesson.checks import require
from labs.harness.lesson.orders import Checkout, confirmations_received, run_behind_the_queue

pytestmark = pytest.mark.lab
PAID_AMOUNT = 3000  # yen: within the card's limit (handson/payments.py)
DECLINED_AMOUNT = 50_000  # over it
ON_COMMIT = "send_confirmation.delay_on_commit(order.pk)"


def _nothing_sent_inside(early, then_en="", then_ja=""):
    """Fail unless the worker received no confirmation while the order's transaction was open."""
    ids = ", ".join(early)
    assert not early, say(
        f"The worker received send_confirmation ({ids}) while the order's transaction was still open (the payment "
        f"had not answered yet): .delay() sends at once, before the commit, and the worker cannot see the order "
        f"yet.{then_en} In TaskStep9 (handson/views.py) write {ON_COMMIT}: it sends when the transaction commits, "
        "and never when it rolls back.",
        f"注文のトランザクションがまだ開いている間 (決済が答える前) に、ワーカーが send_confirmation ({ids}) を"
        f"受け取りました。.delay() はコミットの前にすぐ送るので、ワーカーにはまだ注文が見えません。{then_ja}"
        f"handson/views.py の TaskStep9 で {ON_COMMIT} と書いてください。トランザクションのコミット時に送り、"
        "ロールバックされたら送りません。",
    )


def _while_the_payment_waits(pending, celery_worker, broker_control, lab_database):
    """What the worker received, and whether the order was committed, while its payment was pending."""
    run_behind_the_queue(celery_worker, broker_control)
    early = confirmations_received(celery_worker, pending.mark)
    committed = lab_database.order(pending.order_id)
    pending.answer_payment()
    assert committed is None, say(
        f"The order was committed before its payment answered ({committed}): with no transaction around them, "
        "each query commits at once. Create the order, send the confirmation and charge it inside one "
        "`with transaction.atomic():` block, so that a declined payment undoes the order.",
        f"決済が答える前に注文がコミットされていました ({committed})。トランザクションがないと、クエリは"
        "1 つずつすぐにコミットされます。注文の作成、確認の送信、決済を 1 つの `with transaction.atomic():` "
        "ブロックの中で行い、決済の拒否で注文が取り消されるようにしてください。",
    )
    return early


def test_a_paid_order_is_confirmed_after_its_commit_with_the_committed_order(
        web, celery_worker, broker_control, result_backend, lab_database):
    """Nothing is received while the payment is pending; after the commit one send_confirmation
    loads the order by id and returns it as committed: status "paid"."""
    celery_worker.require_running()
    checkout = Checkout(web, celery_worker, result_backend)
    with checkout.order(PAID_AMOUNT) as pending:
        early = _while_the_payment_waits(pending, celery_worker, broker_control, lab_database)
    _nothing_sent_inside(early)
    pending.require_redirect()
    confirmation = pending.confirmation()
    require(confirmation.state == "SUCCESS", say(
        f"send_confirmation {confirmation.task_id} ended {confirmation.state}: {confirmation.error}. It should load the "
        "order by its id, `Order.objects.get(pk=order_id)`, and return it (handson/tasks.py).",
        f"send_confirmation {confirmation.task_id} が {confirmation.state} で終わりました: {confirmation.error}。"
        "id で注文を読み込み (`Order.objects.get(pk=order_id)`)、それを返してください (handson/tasks.py)。",
    ))
    expected = {"order": pending.order_id, "item": "mug", "amount": PAID_AMOUNT, "status": "paid"}
    assert confirmation.result == expected, say(
        f"send_confirmation returned {confirmation.result!r}; expected {expected!r}, the order as committed: "
        "return {\"order\": order.pk, \"item\": order.item, \"amount\": order.amount, \"status\": order.status}.",
        f"send_confirmation が {confirmation.result!r} を返しました。コミットされた注文 {expected!r} のはずです: "
        "{\"order\": order.pk, \"item\": order.item, \"amount\": order.amount, \"status\": order.status} を返してください。",
    )


def test_a_declined_payment_rolls_the_order_back_and_sends_no_confirmation(
        web, celery_worker, broker_control, result_backend, lab_database):
    """A 402 that says so, no order left in the database, and no send_confirmation at all."""
    celery_worker.require_running()
    checkout = Checkout(web, celery_worker, result_backend)
    with checkout.order(DECLINED_AMOUNT) as pending:
        early = _while_the_payment_waits(pending, celery_worker, broker_control, lab_database)
    _nothing_sent_inside(early, " The payment was then declined: this confirmation is for an order that never "
                                "existed.", "その後決済は拒否されました。これは存在しなかった注文の確認です。")
    answer = pending.answer()
    assert answer.status == 402 and "declined" in answer.text.lower(), say(
        f"A declined payment was answered {answer.status}: {answer.text[:300]!r}. Catch payments.Declined around the "
        "transaction and answer 402: HttpResponse(f\"Payment declined: {declined}. No order was kept.\", status=402).",
        f"拒否された決済への応答が {answer.status} でした: {answer.text[:300]!r}。トランザクションの外側で "
        "payments.Declined を捕まえ、402 を返してください: HttpResponse(f\"Payment declined: {declined}. No order was "
        "kept.\", status=402)。",
    )
    left = lab_database.order(pending.order_id)
    assert left is None, say(
        f"The declined order is still in the database ({left}): create it and charge it inside one "
        "`with transaction.atomic():` block, so that Declined rolls the order back.",
        f"拒否された注文がデータベースに残っています ({left})。注文の作成と決済を 1 つの "
        "`with transaction.atomic():` ブロックの中で行い、Declined で注文がロールバックされるようにしてください。",
    )
    run_behind_the_queue(celery_worker, broker_control)
    late = confirmations_received(celery_worker, pending.mark)
    assert not late, say(
        f"A declined order was confirmed ({', '.join(late)}): {ON_COMMIT} sends nothing "
        "when the transaction rolls back; a .delay() on the declined path (in the `except` branch, or a "
        "`finally:`) sends it anyway.",
        f"拒否された注文の確認が送られました ({', '.join(late)})。{ON_COMMIT} は"
        "ロールバックされたトランザクションでは何も送りません。拒否された経路 (`except` 節や `finally:`) の "
        ".delay() は送ってしまいます。",
    )


def test_a_bad_amount_is_a_400_that_says_why(web, result_backend, lab_database):
    """The form's amount must be a whole number of yen above 0: anything else is refused before any order."""
    before = lab_database.count()
    answer = Checkout(web, None, result_backend).post_form({"item": "mug", "amount": "three"})
    assert answer.status == 400 and "amount" in answer.text.lower(), say(
        f"POST /handson/task_step9 with amount=three answered {answer.status}: {answer.text[:300]!r}. Read the form with "
        "Order.from_form(request.POST) and answer HttpResponseBadRequest(str(wrong)) on ValueError.",
        f"amount=three で POST /handson/task_step9 すると {answer.status} でした: {answer.text[:300]!r}。"
        "Order.from_form(request.POST) でフォームを読み、ValueError なら HttpResponseBadRequest(str(wrong)) を"
        "返してください。",
    )
    assert lab_database.count() == before, say(
        "A refused form still created an order: read the form before the transaction.",
        "拒否したフォームで注文が作られました。トランザクションの前にフォームを読んでください。",
    )
