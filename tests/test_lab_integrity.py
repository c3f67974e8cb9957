"""The lab grades what it claims to: every starter fails, every reference passes.

For each N, the reference of step N (1 = the untouched starter) runs every lab
module (labs/steps.toml) in a child pytest, as `make lab` would (two xdist workers). Steps up to N
must pass; later steps must FAIL with assertion messages, never error out (a
fixture traceback, a collection error) and never hang. No process of any run
may be left behind. The reference of the last step passing everything is the
"labs on the reference" run.
"""
import pytest

from labs.harness.reference import materialize
from labs.harness.steps import last_step

from .helpers import STEP_MODULES, run_marked


def _summary(run):
    return "\n".join(f"{o.module}::{o.name} {o.status}: {o.message[:300]}" for o in run.outcomes)


@pytest.mark.parametrize("reference", range(1, last_step() + 1), ids=lambda n: f"reference{n}")
def test_reference_passes_its_steps_and_fails_the_later_ones(reference):
    # Two xdist workers, each with a stack of its own, one module on one worker: half the wall time on 2 cores.
    run, left_behind = run_marked(STEP_MODULES, pytest_args=["--reference", str(reference), "-n", "2", "--dist", "loadfile"])

    assert run.outcomes and not run.timed_out, f"no outcome read (timed out: {run.timed_out}):\n{run.output[-3000:]}"
    assert not [o for o in run.outcomes if o.status in ("error", "skipped")], _summary(run)
    for number, module in enumerate(STEP_MODULES, start=1):
        statuses = {o.status for o in run.for_module(module)}
        if number <= reference:
            assert statuses == {"passed"}, f"{module} should pass on reference {reference}:\n{_summary(run)}\n{run.output[-4000:]}"
        else:
            assert "failed" in statuses, f"{module} should fail on reference {reference}:\n{_summary(run)}"
    assert not left_behind, f"processes left behind: {left_behind}"


def _run_edited(tmp_path, step, edit, modules):
    """Run ``modules`` on the reference of ``step`` after ``edit(handson_dir)``."""
    workspace = materialize(step, tmp_path / "workspace")
    edit(workspace / "handson")
    return run_marked(modules, pytest_args=["--workspace", str(workspace)])


def test_calling_hello_directly_fails_step2_naming_delay(tmp_path):
    """The classic mistake: hello("hello world") instead of hello.delay(...) runs the work in the request."""
    def call_directly(handson):
        views = handson / "views.py"
        views.write_text(views.read_text().replace("hello.delay(", "hello("))

    run, left_behind = _run_edited(tmp_path, 2, call_directly, ["labs/test_step2.py"])
    [first] = [o for o in run.outcomes if o.name == "test_step2_button_answers_at_once"]
    assert first.status == "failed" and ".delay" in first.message, _summary(run)
    assert not left_behind, left_behind


def test_a_syntax_error_in_the_workspace_fails_with_its_traceback(tmp_path):
    """A typo in handson/ shows Python's own complaint in the failure, fast, as a failure not an error."""
    def break_tasks(handson):
        (handson / "tasks.py").write_text((handson / "tasks.py").read_text() + "\ndef broken(:\n")

    run, left_behind = _run_edited(tmp_path, 2, break_tasks, ["labs/test_step2.py"])
    statuses = {o.status for o in run.outcomes}
    assert statuses == {"failed"}, _summary(run)
    assert any("SyntaxError" in o.message for o in run.outcomes), _summary(run)
    assert run.seconds < 60, f"took {run.seconds:.0f} s"
    assert not left_behind, left_behind


def test_a_hard_coded_broker_fails_naming_the_setting(tmp_path):
    """Redis addresses written into settings.py miss the lab's Redis: the message says which setting to use."""
    def hard_code(handson):
        settings = handson / "settings.py"
        settings.write_text(settings.read_text().replace(
            "CELERY_BROKER_URL = HANDSON_BROKER_URL", 'CELERY_BROKER_URL = "redis://127.0.0.1:1/1"'))

    run, left_behind = _run_edited(tmp_path, 2, hard_code, ["labs/test_step2.py"])
    assert run.outcomes and all(o.status == "failed" and "CELERY_BROKER_URL = HANDSON_BROKER_URL" in o.message
                                for o in run.outcomes), _summary(run)
    assert not left_behind, left_behind


# Classic wrong edits of the later steps: (step, file, text replaced, replacement, test, words the failure names).
WRONG_EDITS = {
    "step5-no-autoretry": (5, "tasks.py", "autoretry_for=(ConnectionError,), ", "",
                           "test_a_call_that_fails_is_retried_and_succeeds_when_the_service_recovers",
                           "autoretry_for=(ConnectionError,)"),
    "step5-no-backoff": (5, "tasks.py", ", retry_backoff=True", "",
                         "test_a_service_that_stays_down_fails_after_max_retries_plus_one_calls", "retry_backoff=True"),
    "step5-default-max-retries": (5, "tasks.py", ", max_retries=2", "",
                                  "test_a_service_that_stays_down_fails_after_max_retries_plus_one_calls",
                                  "max_retries=2"),
    "step6-defaults": (6, "tasks.py", ", acks_late=True, reject_on_worker_lost=True", "",
                       "test_a_killed_send_receipt_is_delivered_again_and_sends_one_receipt", "acks_late=True"),
    "step6-acks-late-only": (6, "tasks.py", ", reject_on_worker_lost=True", "",
                             "test_a_killed_send_receipt_is_delivered_again_and_sends_one_receipt",
                             "reject_on_worker_lost"),
    "step6-no-idempotency-key": (6, "tasks.py", "receipts.send(order, idempotency_key=self.request.id)",
                                 "receipts.send(order)",
                                 "test_a_killed_send_receipt_is_delivered_again_and_sends_one_receipt",
                                 "idempotency_key=self.request.id"),
    "step7-no-soft-limit": (7, "tasks.py", "soft_time_limit=settings.HANDSON_SLEEP, ", "",
                            "test_the_soft_limit_lets_a_hanging_task_clean_up_and_return", "soft_time_limit"),
    "step7-soft-limit-not-caught": (7, "tasks.py", "except SoftTimeLimitExceeded:", "except ValueError:",
                                    "test_the_soft_limit_lets_a_hanging_task_clean_up_and_return",
                                    "except SoftTimeLimitExceeded"),
    "step7-no-hard-limit": (7, "tasks.py", ", time_limit=2 * settings.HANDSON_SLEEP", "",
                            "test_the_hard_limit_kills_a_task_that_ignores_the_soft_one_and_the_worker_goes_on",
                            "time_limit above its soft_time_limit"),
    "step8-no-routes": (8, "settings.py", 'CELERY_TASK_ROUTES = {"handson.tasks.long_report": {"queue": "slow"}}', "",
                        "test_short_tasks_finish_while_a_long_one_runs", "CELERY_TASK_ROUTES"),
    "step8-one-process": (8, "Procfile", "--concurrency=4", "--concurrency=1",
                          "test_eight_thumbnails_on_more_processes_take_a_fraction_of_the_serial_time",
                          "--concurrency=4"),
    "step8-default-prefetch": (8, "Procfile", " --prefetch-multiplier=1", "",
                               "test_a_busy_slow_worker_leaves_the_next_long_report_in_the_queue",
                               "--prefetch-multiplier=1"),
    "step8-unknown-option": (8, "Procfile", "-n slow@%h", "--hostnme=slow@%h",
                             "test_long_reports_go_to_the_slow_queue_and_only_its_node_takes_them",
                             "handson/Procfile, line 10"),
}


@pytest.mark.parametrize("case", sorted(WRONG_EDITS))
def test_a_classic_wrong_edit_fails_naming_its_fix(tmp_path, case):
    """A learner's typical near-miss on a step fails that step's test with a message that names the fix."""
    step, name, old, new, test_name, fix = WRONG_EDITS[case]

    def edit(handson):
        path = handson / name
        assert old in path.read_text(), f"{case}: {old!r} is not in the reference's {name}"
        path.write_text(path.read_text().replace(old, new))

    run, left_behind = _run_edited(tmp_path, step, edit, [f"labs/test_step{step}.py"])
    [outcome] = [o for o in run.outcomes if o.name == test_name] or [None]
    assert outcome is not None and outcome.status == "failed" and fix in outcome.message, _summary(run)
    assert not left_behind, left_behind
