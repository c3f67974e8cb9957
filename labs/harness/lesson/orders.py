"""Step 9's doors: the Step9 form, the payment the lab answers, what the worker received, the database.

While the view waits for its payment, the single-threaded server answers nothing else: so the
lab looks only through Redis (handson/payments.py's keys, the queue) and the worker's log until
it has answered. The keys below are handson/payments.py's contract; the lab never imports it.
"""
import contextlib
import re
import sqlite3
import threading
from dataclasses import dataclass

from ..i18n import say
from ..services.causes import ServiceProblem
from .checks import find_button, received_ids, require
from .waiting import wait_for

STEP9 = ("Step9", "TaskStep9", "task_step9", "/handson/task_step9")
SEND_CONFIRMATION = "handson.tasks.send_confirmation"
WAITING = "handson:payments:waiting"  # the charges waiting for the lab's answer
CHARGED_WITHIN = 10  # seconds from the press to the view's payments.charge(order)
ANSWERED_WITHIN = 20  # seconds from the lab's answer to the view's
CONFIRMED_WITHIN = 15  # seconds from the view's answer to the confirmation's end
READY = ("SUCCESS", "FAILURE", "REVOKED")


def answer_key(charge_id):
    return f"handson:payments:answer:{charge_id}"


def confirmations_received(worker, mark):
    """The ids of the send_confirmation tasks the worker received since log offset ``mark``, in order."""
    return received_ids(worker.log(mark), SEND_CONFIRMATION)


def run_behind_the_queue(worker, control, timeout=20):
    """Send ``celery.accumulate`` (every Celery app has it) behind whatever is queued, and wait until the
    worker has run it. By then the worker has received every task sent before it: a queue in Redis is
    first in, first out, and the worker takes its messages in that order."""
    mark = worker.mark()
    task_id = control.send_builtin("celery.accumulate", args=("the lab's marker",))
    ran = wait_for(lambda: re.search(rf"celery\.accumulate\[{task_id}\] succeeded", worker.log(mark)), timeout)
    require(ran, say(
        f"The worker did not run the lab's marker task (celery.accumulate {task_id}) within {timeout} s: is it "
        f"consuming the default queue, \"celery\"? Its log since:\n{worker.log(mark)[-2000:]}",
        f"ワーカーがラボの目印のタスク (celery.accumulate {task_id}) を {timeout} 秒以内に実行しませんでした。"
        f"既定のキュー \"celery\" を受け取っていますか? それ以降のログ:\n{worker.log(mark)[-2000:]}",
    ))


@dataclass
class Confirmation:
    task_id: str
    state: str
    result: object
    error: str


class PendingOrder:
    """A Step9 press whose request (in a thread of its own) waits for the lab to answer its payment."""

    def __init__(self, checkout, amount):
        self.checkout, self.amount = checkout, amount
        self.mark = checkout.worker.mark() if checkout.worker else 0
        redis = checkout.result_backend.client
        before = {member.decode() for member in redis.smembers(WAITING)}
        self._outcome, self._done = {}, threading.Event()
        threading.Thread(target=self._post, daemon=True).start()

        def charging():
            return self._done.is_set() or ({m.decode() for m in redis.smembers(WAITING)} - before)

        waiting = wait_for(charging, timeout=CHARGED_WITHIN, interval=0.02)
        self.charge_id = next(iter(waiting), None) if isinstance(waiting, set) else None
        self.answered = False

    def _post(self):
        try:
            self._outcome["answer"] = self.checkout.post_form({"item": "mug", "amount": str(self.amount)})
        except ServiceProblem as problem:  # a 5xx, or no answer: raised again in answer()
            self._outcome["problem"] = problem
        finally:
            self._done.set()

    @property
    def order_id(self):
        """The order's id, from the charge's name ("order-<id>-<random>", handson/payments.py)."""
        found = re.match(r"order-(\d+)-", self.charge_id or "")
        return int(found.group(1)) if found else None

    def answer_payment(self):
        """The provider's answer: the amount decides whether it is paid or declined (handson/payments.py)."""
        if self.charge_id and not self.answered:
            self.checkout.result_backend.client.rpush(answer_key(self.charge_id), "answered")
            self.answered = True

    def answer(self):
        """The view's answer, once it has one (a 5xx is raised: the lab explains it with the server's log)."""
        self._done.wait(ANSWERED_WITHIN)
        if "problem" in self._outcome:
            raise self._outcome["problem"]
        require("answer" in self._outcome, say(
            f"POST {STEP9[3]} did not answer within {ANSWERED_WITHIN} s of the payment's answer.",
            f"決済の応答から {ANSWERED_WITHIN} 秒たっても POST {STEP9[3]} が応答しませんでした。",
        ))
        return self._outcome["answer"]

    def require_redirect(self):
        answer = self.answer()
        require(answer.status == 302 and answer.location.rstrip("/").endswith("/handson"), say(
            f"A paid order was answered {answer.status} {answer.location!r}: TaskStep9.post should end with "
            f"`return redirect(reverse(\"base\"))`.\n{answer.text[:500]}",
            f"支払い済みの注文への応答が {answer.status} {answer.location!r} でした。TaskStep9.post の最後は "
            f"`return redirect(reverse(\"base\"))` にしてください。\n{answer.text[:500]}",
        ))

    def confirmation(self):
        """The one send_confirmation the worker received for this press, once it has ended."""
        worker, backend = self.checkout.worker, self.checkout.result_backend
        ids = wait_for(lambda: confirmations_received(worker, self.mark), timeout=CONFIRMED_WITHIN)
        require(ids, say(
            "No send_confirmation reached the worker after the order was paid: TaskStep9.post should send "
            "send_confirmation.delay_on_commit(order.pk) inside its `with transaction.atomic():` block.",
            "注文の支払い後、send_confirmation がワーカーに届きませんでした。TaskStep9.post の "
            "`with transaction.atomic():` ブロックの中で send_confirmation.delay_on_commit(order.pk) を送ってください。",
        ))
        require(len(ids) == 1, say(
            f"One order sent {len(ids)} confirmations ({', '.join(ids)}): send exactly one.",
            f"1 つの注文で確認が {len(ids)} 件送られました ({', '.join(ids)})。1 件だけ送ってください。",
        ))
        wait_for(lambda: backend.state(ids[0]) in READY, timeout=CONFIRMED_WITHIN)
        meta = backend.meta(ids[0]) or {}
        state = meta.get("status", "PENDING")
        error = ""
        if state == "FAILURE":
            result = meta.get("result") or {}
            error = f"{result.get('exc_type', '?')}: {result.get('exc_message', '')}"
        return Confirmation(ids[0], state, meta.get("result"), error)


class Checkout:
    """Orders through the Step9 form, with the lab as the payment provider."""

    def __init__(self, web, worker, result_backend):
        self.web, self.worker, self.result_backend = web, worker, result_backend
        self.action = None

    def _action(self):
        if self.action is None:
            self.action = find_button(self.web, *STEP9)
        return self.action

    def post_form(self, fields):
        return self.web.post(self._action(), fields)

    @contextlib.contextmanager
    def order(self, amount):
        """Press Step9 for ``amount`` yen; yields the PendingOrder once the view waits for its payment.
        Whatever happens in the block, the payment is answered at its end (the view must not wait for
        ever), and then the view's answer is awaited."""
        self._action()  # a greyed-out button fails here, before any thread waits on the view
        pending = PendingOrder(self, amount)
        if pending.charge_id is None:
            require(pending._done.is_set(), say(
                f"POST {STEP9[3]} neither called payments.charge(order) nor answered within {CHARGED_WITHIN} s: "
                "what does TaskStep9.post wait for before the payment?",
                f"POST {STEP9[3]} が {CHARGED_WITHIN} 秒以内に payments.charge(order) を呼ばず、応答もしませんでした。"
                "TaskStep9.post は決済の前に何を待っていますか?",
            ))
            answer = pending.answer()  # the view answered without charging: a 5xx is raised and explained
            require(False, say(
                f"TaskStep9 answered {answer.status} without charging the order ({answer.text[:300]!r}): inside "
                "`with transaction.atomic():` create the order, send the confirmation on commit, then call "
                "payments.charge(order).",
                f"TaskStep9 が注文を決済せずに {answer.status} を返しました ({answer.text[:300]!r})。"
                "`with transaction.atomic():` の中で注文を作り、確認をコミット時に送り、payments.charge(order) を"
                "呼んでください。",
            ))
        try:
            yield pending
        finally:
            pending.answer_payment()
            pending._done.wait(ANSWERED_WITHIN)


class Database:
    """The run's SQLite database (the app's, HANDSON_DATABASE), read-only, as any other client reads it."""

    def __init__(self, path):
        self.path = path

    def _rows(self, query, *args):
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(query, args)]
        finally:
            connection.close()

    def order(self, order_id):
        """The committed order ``order_id`` ({"id", "item", "amount", "status", ...}), or None."""
        rows = self._rows("SELECT * FROM handson_order WHERE id = ?", order_id)
        return rows[0] if rows else None

    def count(self):
        return self._rows("SELECT COUNT(*) AS n FROM handson_order")[0]["n"]
