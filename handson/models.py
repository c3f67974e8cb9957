"""The hands-on's data (step 9). You do not need to edit this file.

An order a customer places from the page. The view creates it ``pending`` inside a
database transaction, asks the payment provider to charge it (handson/payments.py),
and marks it ``paid``. A declined payment raises, the transaction rolls back, and the
order never existed for anyone else: not for another request, not for a worker.
"""
from django.db import models

MAX_AMOUNT = 1_000_000  # yen


class Order(models.Model):
    PENDING, PAID = "pending", "paid"

    item = models.CharField(max_length=100)
    amount = models.PositiveIntegerField(help_text="yen")
    status = models.CharField(max_length=10, default=PENDING)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"order {self.pk}: {self.item}, {self.amount} yen, {self.status}"

    @staticmethod
    def from_form(form):
        """(item, amount) from the Step9 form; ValueError, saying what is wrong, for a bad one."""
        item = (form.get("item") or "").strip()
        if not item or len(item) > 100:
            raise ValueError("item: give the name of what is ordered (1 to 100 characters).")
        amount = (form.get("amount") or "").strip()
        if not (amount.isascii() and amount.isdigit()) or not 0 < int(amount) <= MAX_AMOUNT:
            raise ValueError(f"amount: give a whole number of yen from 1 to {MAX_AMOUNT}, not {amount!r}.")
        return item, int(amount)
