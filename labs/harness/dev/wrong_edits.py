"""The classic wrong edits of each step: the mistakes learners make, as edits of a reference.

One list, read by the project's tests (each edit must fail its step, and its first failure must
name the fix) and by `make bench` (how many seconds each takes to be judged). An edit starts
from the reference of ``base`` (a step number) and changes text in its files.

Beside it, ALSO_RIGHT: the other answers a lesson offers besides its reference ("or give a small
retry policy"), as edits of the reference; the test they name must pass with them.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    name: str
    step: int  # the step whose lab judges it
    base: int  # the reference it starts from
    file: str  # handson/...
    old: str  # text that must be in the file (replaced by ``new``)
    new: str

    def apply(self, workspace):
        for file, old, new in ((self.file, self.old, self.new), *self.also):
            path = workspace / file
            text = path.read_text()
            if old not in text:
                raise ValueError(f"{self.name}: {old!r} is not in {file} of reference {self.base}")
            path.write_text(text.replace(old, new))


@dataclass(frozen=True)
class WrongEdit(Edit):
    fix_named: tuple  # words the failure must contain (any one of them)
    test: str = ""  # the test that must fail naming the fix; "" for the module's first failure
    also: tuple = ()  # more changes of the same edit, in other files: (file, old, new), ...

    def judged_by(self, outcomes):
        """The outcome that must name the fix: ``test``'s, or the first failure's (None if none failed)."""
        if self.test:
            return next((o for o in outcomes if o.name == self.test and o.status == "failed"), None)
        return next((o for o in outcomes if o.status == "failed"), None)


@dataclass(frozen=True)
class AlsoRight(Edit):
    test: str  # the test that must pass with it
    also: tuple = ()


# Step 10's chord, and the import a group needs.
_CHORD = "chord(region_sales.s(region) for region in regions)(sales_report.s())"
_IMPORT_GROUP = ("handson/views.py", "from celery import chord", "from celery import chord, group")
# Step 4's purge of the queues the app sends to, before its revoke.
_PURGE = """            with celery_app.connection_for_write() as connection:
                for queue in _queues():
                    connection.default_channel.queue_purge(queue)
"""
_TWO_BROADCASTS = """            if set(task_ids) - held:
                celery_app.control.revoke(sorted(set(task_ids) - held))
            celery_app.control.revoke(sorted(held) or task_ids, terminate=True)
"""
# What the reference of step 2 writes in settings.py (three quick tries while Redis is down).
_STEP2_POLICY = 'CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}\n'
# Step 13's view, with the app's publish retries instead of retry=False: (file, old, new).
_WITH_RETRIES = ("handson/views.py", 'hello.apply_async(("hello world",), retry=False)', 'hello.delay("hello world")')
_SILENT_TEST = "test_with_redis_silent_step13_answers_503_within_the_bound"

EDITS = [
    WrongEdit("hello() instead of hello.delay()", 2, 2, "handson/views.py",
              "hello.delay(", "hello(", (".delay",)),
    WrongEdit("no celery_app import in handson/__init__.py", 2, 2, "handson/__init__.py",
              "from .celery import app as celery_app", "", ("from .celery import app as celery_app",)),
    WrongEdit("__all__ = ('app',) (the original's typo)", 2, 2, "handson/__init__.py",
              '__all__ = ("celery_app",)', '__all__ = ("app",)', ("__all__",)),
    WrongEdit("a hard-coded broker address", 2, 2, "handson/settings.py",
              "CELERY_BROKER_URL = HANDSON_BROKER_URL", 'CELERY_BROKER_URL = "redis://127.0.0.1:1/1"',
              ("CELERY_BROKER_URL = HANDSON_BROKER_URL",)),
    WrongEdit("a syntax error in tasks.py", 2, 2, "handson/tasks.py",
              "@shared_task", "def broken(:\n\n\n@shared_task", ("SyntaxError",)),
    WrongEdit("no task_track_started", 3, 3, "handson/settings.py",
              "CELERY_TASK_TRACK_STARTED = True", "", ("CELERY_TASK_TRACK_STARTED = True",)),
    WrongEdit("revoke() without terminate=True", 4, 4, "handson/views.py",
              "revoke(sorted(held) or task_ids, terminate=True)", "revoke(sorted(held) or task_ids)", ("terminate=True",)),
    WrongEdit("revoking only the STARTED tasks", 4, 4, "handson/views.py",
              "task_ids = tasklog.unfinished()",
              'task_ids = [t for t in tasklog.unfinished() if celery_app.AsyncResult(t).state == "STARTED"]',
              ("tasklog.unfinished()",)),
    WrongEdit("a revoke alone for a backlog (no purge)", 4, 4, "handson/views.py", _PURGE, "", ("purge",),
              "test_stop_all_tasks_stops_a_backlog_larger_than_a_worker_remembers"),
    WrongEdit("purged, then every id in one broadcast", 4, 4, "handson/views.py", _TWO_BROADCASTS,
              "            celery_app.control.revoke(task_ids, terminate=True)\n", ("sent last",),
              "test_stop_all_tasks_stops_a_backlog_larger_than_a_worker_remembers"),
    # Steps 5-8: the test that judges each is named (a step's first test may fail on another edit first).
    WrongEdit("no autoretry_for", 5, 5, "handson/tasks.py", "autoretry_for=(ConnectionError,), ", "",
              ("autoretry_for=(ConnectionError,)",),
              "test_a_call_that_fails_is_retried_and_succeeds_when_the_service_recovers"),
    WrongEdit("no retry_backoff", 5, 5, "handson/tasks.py", ", retry_backoff=True", "", ("retry_backoff=True",),
              "test_a_service_that_stays_down_fails_after_max_retries_plus_one_calls"),
    WrongEdit("the default max_retries", 5, 5, "handson/tasks.py", ", max_retries=2", "", ("max_retries=2",),
              "test_a_service_that_stays_down_fails_after_max_retries_plus_one_calls"),
    WrongEdit("neither acks_late nor reject_on_worker_lost", 6, 6, "handson/tasks.py",
              ", acks_late=True, reject_on_worker_lost=True", "", ("acks_late=True",),
              "test_a_killed_send_receipt_is_delivered_again_and_sends_one_receipt"),
    WrongEdit("acks_late without reject_on_worker_lost", 6, 6, "handson/tasks.py", ", reject_on_worker_lost=True", "",
              ("reject_on_worker_lost",), "test_a_killed_send_receipt_is_delivered_again_and_sends_one_receipt"),
    WrongEdit("acks_late and reject_on_worker_lost for every task (settings.py)", 6, 6, "handson/settings.py",
              "CELERY_TASK_TRACK_STARTED = True",
              "CELERY_TASK_TRACK_STARTED = True\nCELERY_TASK_ACKS_LATE = True\nCELERY_TASK_REJECT_ON_WORKER_LOST = True",
              ("applies to every task",), "test_by_default_a_task_whose_pool_process_dies_is_lost"),
    WrongEdit("send_receipt(self, order) without bind=True", 6, 6, "handson/tasks.py",
              "@shared_task(bind=True, acks_late=True", "@shared_task(acks_late=True", ("bind=True",),
              "test_a_killed_send_receipt_is_delivered_again_and_sends_one_receipt"),
    WrongEdit("no idempotency key", 6, 6, "handson/tasks.py", "receipts.send(order, idempotency_key=self.request.id)",
              "receipts.send(order)", ("idempotency_key=self.request.id",),
              "test_a_killed_send_receipt_is_delivered_again_and_sends_one_receipt"),
    WrongEdit("no soft_time_limit", 7, 7, "handson/tasks.py", "soft_time_limit=settings.HANDSON_SLEEP, ", "",
              ("soft_time_limit",), "test_the_soft_limit_lets_a_hanging_task_clean_up_and_return"),
    WrongEdit("SoftTimeLimitExceeded not caught", 7, 7, "handson/tasks.py", "except SoftTimeLimitExceeded:",
              "except ValueError:", ("except SoftTimeLimitExceeded",),
              "test_the_soft_limit_lets_a_hanging_task_clean_up_and_return"),
    WrongEdit("no time_limit", 7, 7, "handson/tasks.py", ", time_limit=2 * settings.HANDSON_SLEEP", "",
              ("time_limit above its soft_time_limit",),
              "test_the_hard_limit_kills_a_task_that_ignores_the_soft_one_and_the_worker_goes_on"),
    WrongEdit("time limits for every task (settings.py)", 7, 7, "handson/settings.py",
              "CELERY_TASK_TRACK_STARTED = True",
              "CELERY_TASK_TRACK_STARTED = True\nCELERY_TASK_SOFT_TIME_LIMIT = HANDSON_SLEEP\n"
              "CELERY_TASK_TIME_LIMIT = 2 * HANDSON_SLEEP", ("for every task",),
              "test_the_hard_limit_kills_a_task_that_ignores_the_soft_one_and_the_worker_goes_on"),
    WrongEdit("a route keyed by the short task name", 8, 8, "handson/settings.py",
              '{"handson.tasks.long_report": {"queue": "slow"}}', '{"long_report": {"queue": "slow"}}',
              ("full name",), "test_long_reports_go_to_the_slow_queue_and_only_its_node_takes_them"),
    WrongEdit("no task_routes", 8, 8, "handson/settings.py",
              'CELERY_TASK_ROUTES = {"handson.tasks.long_report": {"queue": "slow"}}', "", ("CELERY_TASK_ROUTES",),
              "test_short_tasks_finish_while_a_long_one_runs"),
    WrongEdit("one process", 8, 8, "handson/Procfile", "--concurrency=4", "--concurrency=1", ("--concurrency=4",),
              "test_eight_thumbnails_on_more_processes_take_a_fraction_of_the_serial_time"),
    WrongEdit("the default prefetch", 8, 8, "handson/Procfile", " --prefetch-multiplier=1", "",
              ("--prefetch-multiplier=1",), "test_a_busy_slow_worker_leaves_the_next_long_report_in_the_queue"),
    WrongEdit("long_report without acks_late", 8, 8, "handson/tasks.py", "@shared_task(acks_late=True)\ndef long_report",
              "@shared_task\ndef long_report", ("acks_late=True on long_report",),
              "test_a_busy_slow_worker_leaves_the_next_long_report_in_the_queue"),
    WrongEdit("the slow node started without -Q slow", 8, 8, "handson/Procfile", "worker -Q slow ", "worker ",
              ("consumes only the queue",)),
    WrongEdit("an unknown worker option", 8, 8, "handson/Procfile", "-n slow@%h", "--hostnme=slow@%h",
              ("handson/Procfile, line 10",), "test_long_reports_go_to_the_slow_queue_and_only_its_node_takes_them"),
    WrongEdit("enqueue inside the transaction", 9, 9, "handson/views.py",
              "send_confirmation.delay_on_commit(order.pk)", "send_confirmation.delay(order.pk)",
              ("delay_on_commit(order.pk)",)),
    WrongEdit("pass the order, not its id", 9, 9, "handson/views.py",
              "send_confirmation.delay_on_commit(order.pk)", "send_confirmation.delay_on_commit(order)",
              ("send its id",)),
    WrongEdit("enqueue after the block, even when declined", 9, 9, "handson/views.py",
              "        except payments.Declined as declined:\n"
              "            return HttpResponse(f\"Payment declined: {declined}. No order was kept.\", status=402)",
              "        except payments.Declined as declined:\n"
              "            send_confirmation.delay(order.pk)\n"
              "            return HttpResponse(f\"Payment declined: {declined}. No order was kept.\", status=402)",
              ("sends nothing when the transaction rolls back",),
              "test_a_declined_payment_rolls_the_order_back_and_sends_no_confirmation"),
    WrongEdit("on_commit(send_confirmation.delay(...)): sent on that line", 9, 9, "handson/views.py",
              "send_confirmation.delay_on_commit(order.pk)", "transaction.on_commit(send_confirmation.delay(order.pk))",
              ("delay_on_commit(order.pk)",)),
    WrongEdit("no transaction", 9, 9, "handson/views.py",
              "            with transaction.atomic():\n", "            if True:  # no transaction\n",
              ("with transaction.atomic():",)),
    WrongEdit(".get() inside a task", 10, 10, "handson/views.py",
              "chord(region_sales.s(region) for region in regions)(sales_report.s())",
              "sales_report_waiting.delay(regions)", ("Never call result.get() within a task",),
              also=(("handson/views.py", "region_sales, sales_report,", "region_sales, sales_report, sales_report_waiting,"),
                    ("handson/tasks.py", "@shared_task\ndef sales_report(parts):",
                     "@shared_task\ndef sales_report_waiting(regions):\n"
                     "    parts = [region_sales.delay(region) for region in regions]\n"
                     "    return sales_report([part.get() for part in parts])\n\n\n"
                     "@shared_task\ndef sales_report(parts):"))),
    WrongEdit("a chord header that ignores its results", 10, 10, "handson/tasks.py",
              "@shared_task\ndef region_sales", "@shared_task(ignore_result=True)\ndef region_sales",
              ("ignore_result",)),
    WrongEdit("the report sent beside the parts, not after them", 10, 10, "handson/views.py",
              "chord(region_sales.s(region) for region in regions)(sales_report.s())",
              "group(region_sales.s(region) for region in regions).delay()\n            sales_report.delay([])",
              ("the chord calls it once every part has succeeded",),
              also=(("handson/views.py", "from celery import chord", "from celery import group"),)),
    WrongEdit("the view waits for the chord", 10, 10, "handson/views.py", _CHORD,
              _CHORD + ".get(timeout=30, propagate=False)", ("the view waits for the parts",)),
    WrongEdit("a group waited for in the view", 10, 10, "handson/views.py", _CHORD,
              "sales_report.delay(group(region_sales.s(region) for region in regions)().get(timeout=30))",
              ("the view waits for the parts",), also=(_IMPORT_GROUP,)),
    WrongEdit("a group waited for in the view, propagate=False", 10, 10, "handson/views.py", _CHORD,
              "sales_report.delay(group(region_sales.s(region) for region in regions)().get(timeout=30, "
              "propagate=False))", ("the view waits for the parts",), also=(_IMPORT_GROUP,)),
    WrongEdit("a chain instead of a chord", 10, 10, "handson/views.py", _CHORD,
              "chain(*(region_sales.s(region) for region in regions), sales_report.s())()", ("chain sends the next",),
              also=(("handson/views.py", "from celery import chord", "from celery import chain, chord"),)),
    WrongEdit("the callback as .si() (it gets no results)", 10, 10, "handson/views.py", _CHORD,
              "chord(region_sales.s(region) for region in regions)(sales_report.si())", (".si()",)),
    WrongEdit("a task that waits with allow_join_result()", 10, 10, "handson/views.py", _CHORD,
              "sales_report_waiting.delay(regions)", ("not by the view",),
              also=(("handson/views.py", "region_sales, sales_report,", "region_sales, sales_report, sales_report_waiting,"),
                    ("handson/tasks.py", "@shared_task\ndef sales_report(parts):",
                     "@shared_task\ndef sales_report_waiting(regions):\n"
                     "    from celery import group\n    from celery.result import allow_join_result\n\n"
                     "    parts = group(region_sales.s(region) for region in regions)()\n"
                     "    with allow_join_result():\n        return sales_report(parts.get())\n\n\n"
                     "@shared_task\ndef sales_report(parts):"))),
    WrongEdit("a second beat", 11, 11, "handson/Procfile", "beat: celery -A handson beat -l info",
              "beat: celery -A handson beat -l info\nbeat2: celery -A handson beat -l info",
              ("more than one scheduler",), "test_housekeeping_runs_once_every_interval"),
    WrongEdit("-B on the worker as well as a beat", 11, 11, "handson/Procfile",
              "default: celery -A handson worker --concurrency=4 -n default@%h -l info",
              "default: celery -A handson worker --concurrency=4 -n default@%h -l info -B",
              ("more than one scheduler",), "test_housekeeping_runs_once_every_interval"),
    WrongEdit("-B on the only worker instead of a beat line", 11, 11, "handson/Procfile",
              "beat: celery -A handson beat -l info",
              "", ("a process of its own",),
              also=(("handson/Procfile", "default: celery -A handson worker --concurrency=4 -n default@%h -l info",
                     "default: celery -A handson worker --concurrency=4 -n default@%h -l info -B"),)),
    WrongEdit("housekeeping keeps its results", 11, 11, "handson/tasks.py",
              "@shared_task(ignore_result=True)\ndef housekeeping", "@shared_task\ndef housekeeping",
              ("ignore_result=True",)),
    WrongEdit("ignore_result for every task (settings.py)", 11, 11, "handson/settings.py",
              "CELERY_RESULT_EXPIRES = 3600\n", "CELERY_RESULT_EXPIRES = 3600\nCELERY_TASK_IGNORE_RESULT = True\n",
              ("belongs on the housekeeping task alone",), "test_a_result_is_kept_for_an_hour"),
    WrongEdit("results kept for Celery's default day", 11, 11, "handson/settings.py",
              "CELERY_RESULT_EXPIRES = 3600\n", "", ("CELERY_RESULT_EXPIRES = 3600",)),
    WrongEdit("the worker line without exec (its shell keeps SIGTERM)", 12, 12, "handson/Procfile",
              "default: exec celery", "default: celery", ("write exec before celery",),
              "test_a_deploy_sigterm_lets_the_running_task_finish"),
    WrongEdit("beat's line without exec", 12, 12, "handson/Procfile", "beat: exec celery", "beat: celery",
              ("Write exec before celery on every line",), "test_a_deploy_sigterm_lets_the_running_task_finish"),
    WrongEdit("no recycling of leaky pool processes", 12, 12, "handson/Procfile",
              " --max-tasks-per-child=5", "", ("--max-tasks-per-child=5",),
              "test_a_leaky_pool_process_is_replaced_after_five_tasks"),
    WrongEdit("recycling after every task", 12, 12, "handson/Procfile", " --max-tasks-per-child=5",
              " --max-tasks-per-child=1", ("not after every task",), "test_a_leaky_pool_process_is_replaced_after_five_tasks"),
    WrongEdit("a memory limit taken for MiB (it is KiB)", 12, 12, "handson/Procfile", " --max-tasks-per-child=5",
              " --max-memory-per-child=150000", ("is in KiB",), "test_a_leaky_pool_process_is_replaced_after_five_tasks"),
    WrongEdit("recycling every worker of the app (settings.py)", 12, 12, "handson/Procfile",
              " --max-tasks-per-child=5", "", ("Remove it and recycle only",),
              "test_a_leaky_pool_process_is_replaced_after_five_tasks",
              also=(("handson/settings.py", "CELERY_BEAT_SCHEDULE = {", "CELERY_WORKER_MAX_TASKS_PER_CHILD = 5\n"
                     "CELERY_BEAT_SCHEDULE = {"),)),
    WrongEdit("OperationalError not caught (a 500 while Redis is down)", 13, 13, "handson/views.py",
              """        try:
            # retry=False: one attempt, bounded by the broker's socket timeouts (settings.py), no retries.
            hello.apply_async(("hello world",), retry=False)
        except OperationalError as error:
            return HttpResponse(f"Redis (the broker) cannot be reached, nothing was sent: {error}", status=503)
""", """        hello.apply_async(("hello world",), retry=False)
""", ("except OperationalError",), "test_with_redis_down_step13_answers_503_at_once"),
    WrongEdit("an unbounded publish (no socket timeout for the broker)", 13, 13, "handson/settings.py",
              'CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 1, "socket_connect_timeout": 1}\n', "",
              ("CELERY_BROKER_TRANSPORT_OPTIONS",), _SILENT_TEST),
    WrongEdit("Celery's default publish retries over a silent Redis", 13, 13, *_WITH_RETRIES, ("retry=False",),
              _SILENT_TEST, also=(("handson/settings.py", _STEP2_POLICY, ""),)),
    WrongEdit("step 2's publish retry policy (2 retries) over a silent Redis", 13, 13, *_WITH_RETRIES,
              ("RETRY_POLICY in handson/settings.py: 2 retries",), _SILENT_TEST),
]

ALSO_RIGHT = [
    AlsoRight("retries kept, with the small policy step 13 gives", 13, 13, *_WITH_RETRIES, _SILENT_TEST,
              also=(("handson/settings.py", _STEP2_POLICY, 'CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, '
                     '"interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}\n'),)),
]
