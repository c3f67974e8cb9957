"""`make grade`: every lab test scored, as result.json, junit.xml and grade.md.

    python -m labs.harness.tools.grade [--workspace DIR] [--out DIR] [--timeout S] [--redis KIND]
                                       [--steps LIST] [pytest options, e.g. --solution]

Each step's module runs in a pytest process of its own, with a time limit. Every
test of a step carries points (labs/steps.toml: the step's points split over its
tests, or given per test); a test scores its points when it passed, and 0 when it
failed, errored (Redis, the worker or the server would not start), was skipped, or
did not finish before the time limit. The reports (written into --out, default the
current folder):

    result.json   the Classroom 50 result (classroom50/result/v1; tools/classroom50.py)
    junit.xml     one test case per lab test, its step as the class (GitLab, Jenkins, ...)
    grade.md      a table per test with the failure messages; also appended to
                  $GITHUB_STEP_SUMMARY when that is set

--steps LIST (`make grade STEPS=1-4`) grades only those steps, e.g. the ones a class has
covered so far: the scores and the maximum are theirs alone.

--workspace DIR grades DIR/handson/ with this checkout's labs, harness and settings:
handson/ is taken in as data into a scratch folder first (services/intake.py: no link
followed out of it, no device read, within limits of size, files and time), so nothing
else in DIR is read or run. Without it, this repository's handson/ is graded (taken in
the same way), and files changed outside handson/ since the lab's starting commit are
listed in grade.md (tools/outside.py): a warning, no penalty.

Exit code: 0 when every test passed, 1 when one did not (the reports are written
either way), 2 when the lab could not grade at all (Redis would not start, a lab
module is missing or collects no test): then result.json and junit.xml are not
written, and grade.md says why.
"""
import argparse
import os
import queue
import shutil
import signal
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..i18n import say
from ..paths import ROOT
from ..runner import collect, run_labs
from ..services import confine, intake, sweep
from ..services.app_env import minimal_env, restart_without_secrets, uses_docker
from ..services.redis import RedisUnavailable, choose_redis, wanted_kind
from ..steps import load_steps
from . import classroom50, outside, reports

MESSAGE_LIMIT = 2000  # characters per test: enough for the lesson's message, short enough to read
REPORTS = ("result.json", "junit.xml", "grade.md")


class CannotGrade(Exception):
    """The lab itself could not grade (not the learner's doing): no result is written."""


@dataclass
class TestGrade:
    step: object  # steps.Step
    name: str  # the test function
    status: str  # passed | failed | error | skipped | timeout
    points: int
    max_points: int
    message: str = ""
    seconds: float = 0.0
    line: int = 0  # 1-based line of the test in its module; 0 when unknown

    @property
    def passed(self):
        return self.status == "passed"


def _first_lines(text, count=12):
    # JUnit gives pytest's one-line message, then the full text that repeats it.
    lines = text.strip().removeprefix("Failed: ").splitlines()
    if len(lines) > 1 and lines[0] == lines[1]:
        lines = lines[1:]
    return "\n".join(lines[:count])


def _kind(status):
    """A word before the message when the test did not simply fail (its message says why it failed)."""
    return {"failed": "",
            "error": say("error (a fixture: Redis, the worker or the server did not start, or stopping them "
                         "failed)", "エラー (フィクスチャ: Redis・ワーカー・サーバーの起動または停止に失敗)"),
            "skipped": say("skipped (counts as not passed)", "スキップ (不合格扱い)")}[status]


def _signal_name(code):
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _why_unreported(run):
    """Why ``run`` reported nothing for a test that did not time out, in the grade's words."""
    if run.exit_code < 0:
        what = say(f"the step's pytest was killed ({_signal_name(run.exit_code)}) after {run.seconds:.0f} s",
                   f"ステップの pytest が {run.seconds:.0f} 秒後に強制終了されました ({_signal_name(run.exit_code)})")
    else:
        what = say(f"pytest did not report this test (exit code {run.exit_code})",
                   f"pytest がこのテストの結果を報告しませんでした (終了コード {run.exit_code})")
    if run.report_problem:
        what += say(f"; {run.report_problem}", f"。{run.report_problem}")
    return what + say(" (the memory, disk or process limits, or a crash of the lab itself?)",
                      " (メモリ・ディスク・プロセス数の上限、またはラボ自体の異常?)")


def judge(step, run, timeout, names=None):
    """Every test of ``step`` with the points it scored, from its LabRun (None: the module is missing).
    ``names``: the step's tests as collected before anything ran (runner.collect); without them, what
    the run itself collected. A test the run did not report (it crashed, was killed, or left no
    readable JUnit file) scores 0 and says why."""
    if run is None:
        raise CannotGrade(say(f"{step.module} is missing: this lab cannot grade step {step.number}.",
                              f"{step.module} がありません。ステップ {step.number} を採点できません。"))
    names = names or run.collected_in(step.module)
    tail = "\n".join(run.output.strip().splitlines()[-8:])
    if not names:
        raise CannotGrade(say(f"pytest collected no test of {step.module} (exit code {run.exit_code}):\n",
                              f"pytest が {step.module} のテストを 1 つも集められませんでした "
                              f"(終了コード {run.exit_code}):\n") + tail)
    try:
        shares = step.split(names)
    except ValueError as problem:
        raise CannotGrade(str(problem)) from None
    outcomes = {outcome.name: outcome for outcome in run.for_module(step.module)}
    all_passed = all(outcome.status == "passed" for outcome in outcomes.values())
    # pytest ended badly around tests that passed (exit code 1 without a failure, 2, 3, a signal, ...):
    # something failed that no test reports, so nothing of this step is trusted.
    odd_exit = not run.timed_out and (run.exit_code not in (0, 1) or (run.exit_code == 1 and all_passed))
    odd = say(f"pytest exited with code {run.exit_code}: something failed around the tests.\n",
              f"pytest が終了コード {run.exit_code} で終わりました。テストの前後で何かが失敗しています。\n") + tail
    grades = []
    for name in names:
        outcome = outcomes.get(name)
        grade = TestGrade(step, name, "passed", 0, shares[name],
                          seconds=outcome.duration if outcome else 0.0,
                          line=outcome.line + 1 if outcome else 0)  # JUnit counts lines from 0, editors from 1
        if outcome is None and run.timed_out:
            grade.status = "timeout"
            grade.message = say(f"Timed out after {timeout:g} s before this test finished: something never "
                                "finished, e.g. a request or a task that hangs.",
                                f"このテストが終わる前に {timeout:g} 秒で時間切れになりました。"
                                "終わらないリクエストやタスクがないか確認してください。")
        elif outcome is None:
            grade.status = "error"
            grade.message = _why_unreported(run) + "\n" + tail
        elif outcome.status != "passed":
            grade.status = outcome.status
            grade.message = "\n".join(filter(None, [_kind(outcome.status), _first_lines(outcome.message)]))
        elif odd_exit:
            grade.status = "error"
            grade.message = odd
        else:
            grade.points = shares[name]
        # Within limits, and text every report can hold (no lone surrogate of bytes that were not UTF-8).
        grade.message = grade.message[:MESSAGE_LIMIT].encode("utf-8", "backslashreplace").decode("utf-8")
        grades.append(grade)
    return grades


def check_redis(kind):
    """Start and stop the Redis the labs will use: when it cannot start, no test could pass,
    and the learner is not to blame."""
    scratch = Path(tempfile.mkdtemp(prefix="celery-handson-grade-redis-"))
    try:
        redis, _ = choose_redis(kind, scratch)
        try:
            redis.start()
        finally:
            redis.stop()
    except RedisUnavailable as problem:
        raise CannotGrade(say(f"Redis would not start, so nothing can be graded: {problem}",
                              f"Redis が起動しないため採点できません: {problem}")) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def take_in_handson(source, scratch, user=None):
    """DIR/handson/ alone, taken in as data (services/intake.py) into ``scratch``: the services then run
    with ``scratch`` as their folder and path, so no other file of DIR (a conftest.py, a sitecustomize.py,
    labs/) is read, and nothing in the copy leads out of it. The Intake says what was left out."""
    source = Path(source)
    if not source.is_dir():
        raise CannotGrade(say(f"--workspace {source}: no such folder.", f"--workspace {source}: フォルダがありません。"))
    try:
        return intake.take_in(source, scratch, user=user)
    except intake.IntakeFailed as problem:
        raise CannotGrade(say(f"The submission's handson/ could not be copied: {problem}",
                              f"提出物の handson/ をコピーできませんでした: {problem}")) from None


def step_numbers(text):
    """The step numbers in ``text``: "1-4", "2,5", "1-3,6"; ValueError, saying why, for anything else."""
    known = [step.number for step in load_steps()]
    chosen = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last if dash else first)
        except ValueError:
            raise ValueError(say(f"{part.strip()!r} is not a step or a range of steps (write e.g. 1-4 or 2,5)",
                                 f"{part.strip()!r} はステップでも範囲でもありません (例: 1-4、2,5)")) from None
        wanted = set(range(low, high + 1))
        if not wanted or not wanted <= set(known):
            raise ValueError(say(f"{part.strip()!r}: the steps are {known[0]} to {known[-1]}",
                                 f"{part.strip()!r}: ステップは {known[0]} から {known[-1]} までです"))
        chosen |= wanted
    return sorted(chosen)


@dataclass
class Graded:
    """What ``grade`` found: every test's grade, and what the copy of the submission left out."""

    tests: list
    intake: object = None  # services/intake.Intake, when a workspace was taken in


def grade(pytest_args=(), timeout=300.0, redis=None, workspace=None, echo=print, jobs=None, users=None, steps=None):
    """Every lab test of every step (or of the step numbers ``steps``), graded: a Graded. ``workspace``:
    the folder whose handson/ is graded (taken in as data first); None with --solution/--reference.
    With ``users`` (services/confine.py), the app runs as one of them, in a root of its own, within
    limits: as many steps at a time as there are users."""
    redis = redis or wanted_kind()
    args = [*pytest_args, f"--redis={redis}"]
    scratch = Path(tempfile.mkdtemp(prefix="celery-handson-grade-")) if workspace else None
    taken = None
    try:
        if workspace:
            taken = take_in_handson(workspace, scratch, user=users[0] if users else None)
            args.append(f"--workspace={scratch}")
            if users:
                scratch.chmod(0o755)  # the copy is the app's to read, not to write (its files are the grader's)
        # The services' logs of a failed step would stay in a temporary folder that nobody is told
        # about (grading keeps pytest's output to itself): the reports carry the messages instead.
        # The child pytest, and the app it starts, get only what they need (services/app_env.py):
        # the grader's secrets stay with the grader.
        env = dict(minimal_env(os.environ, uses_docker(redis)), HANDSON_GRADING="1",
                   HANDSON_DISCARD_LOGS=os.environ.get("HANDSON_DISCARD_LOGS", "1"))
        steps = [step for step in load_steps() if steps is None or step.number in steps]
        # The tests of every step, named before any of the learner's code runs (beside Redis's check):
        # a step whose run crashes, is killed or breaks its report is still graded, test by test.
        with ThreadPoolExecutor(max_workers=1) as aside:
            collecting = aside.submit(collect, [step.module for step in steps if step.path.exists()],
                                      pytest_args=args, env=env)
            check_redis(redis)
            collected = collecting.result()
        grades = []
        # Steps side by side (each pytest starts a stack of its own): the tasks mostly sleep, so two at a
        # time on two cores halve the wall time; the report still comes in step order. Confined, each
        # step graded at the same time as another runs as a user of its own (confine.slots).
        slots = users or [None] * (jobs or default_jobs())
        free = queue.SimpleQueue()
        for slot_user in slots:
            free.put(slot_user)

        def run_step(step):
            if not step.path.exists():
                return None
            slot_user = free.get()
            try:
                step_env = dict(env, **{confine.USER_VARIABLE: slot_user}) if slot_user else env
                return run_labs([step.module], pytest_args=args, env=step_env, timeout=timeout)
            finally:
                free.put(slot_user)

        with ThreadPoolExecutor(max_workers=len(slots)) as pool:
            runs = pool.map(run_step, steps)
            for step, run in zip(steps, runs):
                names = [name for module, name in collected if module == step.module]
                grades += _report_step(step, run, timeout, echo, names)
        return Graded(grades, taken)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def default_jobs():
    return confine.slots()


def _report_step(step, run, timeout, echo, names=None):
    """The step's grades, with one line about them for the console."""
    step_grades = judge(step, run, timeout, names)
    passed = sum(test.passed for test in step_grades)
    seconds = run.seconds if run else 0.0
    echo(say(f"Step {step.number}: {sum(t.points for t in step_grades)}/{step.points} points, "
             f"{passed}/{len(step_grades)} tests passed ({seconds:.1f} s)",
             f"ステップ {step.number}: {sum(t.points for t in step_grades)}/{step.points} 点、"
             f"合格 {passed}/{len(step_grades)} テスト ({seconds:.1f} 秒)"))
    return step_grades


def _confinement_note(users, why_not):
    """What grade.md says about the rights the graded code had."""
    if users:
        named = [confine.lookup(name).describe() for name in users]
        fresh = users[0].startswith(confine.UID_PREFIX)
        who = say(f"as {' and '.join(f'`{name}`' for name in named)}"
                  + (" (uids of this grade's own, one per step graded at a time)" if fresh else
                     " (one per step graded at a time)"),
                  f"{'・'.join(f'`{name}`' for name in named)} として"
                  + (" (この採点専用の uid、同時に採点するステップごとに 1 つ)" if fresh else " (同時に採点するステップごとに 1 つ)"))
        bound = confine.app_memory_bound()
        memory = say(f" Together its processes of a step could hold {bound >> 20} MB (a cgroup).",
                     f" 1 ステップのプロセスは合わせて {bound >> 20} MB まででした (cgroup)。") if bound else \
            say(" Their memory together was not bounded: no memory cgroup could be made here.",
                " プロセス全体のメモリには上限がありませんでした (ここではメモリ cgroup を作れません)。")
        return "\n" + say(f"The graded code ran {who}, in a root of its own: it saw the copy of the submission, the "
                          "lab's labs/ and the venv, read-only, and nothing else of this machine's files (no other "
                          "submission, no checkout, no home folder), nor any other user's processes; its /tmp was "
                          "private and small, its data folder a small tmpfs, its processes, memory and file sizes "
                          "were limited.",
                          f"採点中のコードは{who}、専用のルートで動きました。提出物のコピー・ラボの labs/・venv を"
                          "読み取り専用で見られるだけで、このマシンのほかのファイル (ほかの提出物、チェックアウト、"
                          "ホームフォルダー) も、ほかのユーザーのプロセスも見えません。/tmp は専用で小さく、データ"
                          "フォルダーは小さな tmpfs、プロセス数・メモリ・ファイルサイズに上限がありました。") + memory + "\n"
    return "\n" + say(f"The graded code ran with the grader's own rights, as {why_not}: it could have written "
                      "to the lab or to this report while it ran.",
                      f"採点中のコードは採点者と同じ権限で動きました ({why_not})。実行中にラボやこの報告を"
                      "書き換えることができた状態です。") + "\n"


def _intake_note(taken):
    """What grade.md says about files of the submission the copy left out ('' when none)."""
    listed = taken.describe(say) if taken is not None else ""
    if not listed:
        return ""
    return "\n" + "\n".join([say("### Files not taken in", "### 取り込まなかったファイル"), "",
                              say("The copy that was graded takes a submission's handson/ as data: regular files, "
                                  "folders, and links that stay inside it. These were left out (the app ran "
                                  "without them):",
                                  "採点したコピーは提出物の handson/ をデータとして取り込みます (通常のファイル、"
                                  "フォルダー、その中で完結するリンク)。次のものは除きました (アプリはこれらなしで"
                                  "動きました):"), "",
                              reports.fenced(listed)]) + "\n"


def _sweep_note(guarded, stopped):
    """What grade.md says about the processes the graded code may have left running."""
    if not guarded:
        return "\n" + say("This grade ran without the guard that stops every process the graded code starts "
                          "(it needs Linux): a process it left running could still change files here.",
                          "この採点は、採点中のコードが起動したプロセスをすべて止める仕組みなしで行われました "
                          "(Linux が必要です)。残ったプロセスがここのファイルを変えうる状態です。") + "\n"
    if not stopped:
        return ""
    listed = "\n".join(f"- `{line}`" for line in stopped[:20])
    return "\n" + say(f"The graded code left {len(stopped)} process(es) running after its tests; they were "
                      "stopped before this report was written:",
                      f"採点中のコードが、テストの後も {len(stopped)} 個のプロセスを動かしたままにしていました。"
                      "この報告を書く前に止めました:") + "\n" + listed + "\n"


def _give_back(out):
    """Started again as root by sudo: the reports are the caller's, as if it had written them."""
    owner = os.environ.get("HANDSON_GRADE_OWNER")
    if not owner or os.geteuid() != 0:
        return
    uid, gid = (int(part) for part in owner.split(":"))
    for path in [out, *(out / name for name in REPORTS)]:
        if path.exists():
            os.chown(path, uid, gid)


def _grades_a_reference(pytest_args):
    return any(arg.startswith(("--solution", "--reference")) for arg in pytest_args)


def main(argv):
    parser = argparse.ArgumentParser(prog="make grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=None, metavar="DIR",
                        help="grade DIR/handson/ (a learner's clone or submission) with this checkout's labs")
    parser.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                        help="folder for result.json, junit.xml and grade.md (default: the current one)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per step (default 300)")
    parser.add_argument("--redis", default=wanted_kind(), metavar="KIND",
                        help="local, docker, auto or a redis:// URL (default: $HANDSON_REDIS, else local, as the labs)")
    parser.add_argument("--steps", default=None, metavar="LIST",
                        help="grade only these steps, e.g. 1-4 or 2,5 (default: every step)")
    args, pytest_args = parser.parse_known_args(argv)
    try:
        steps = step_numbers(args.steps) if args.steps else None
    except ValueError as wrong:
        parser.error(str(wrong))
    # From here on the grader's environment holds nothing the graded code may not read (app_env.py).
    # With HANDSON_GRADE_SUDO=1 and a sudo that needs no password, that is as root (services/confine.py).
    restart_without_secrets("labs.harness.tools.grade", argv, keep=("GITHUB_STEP_SUMMARY", *classroom50.RUNNER_FIELDS),
                            as_root=confine.sudo_command(), docker=uses_docker(args.redis))
    if args.workspace and (_grades_a_reference(pytest_args) or any(a.startswith("--workspace") for a in pytest_args)):
        parser.error(say("--workspace grades a learner's handson/: leave out --solution and --reference.",
                         "--workspace は学習者の handson/ を採点します。--solution と --reference は付けないでください。"))
    args.out.mkdir(parents=True, exist_ok=True)
    for name in REPORTS:  # a report left from an earlier grade must never stand for this one
        (args.out / name).unlink(missing_ok=True)
    # In the learner's own repository the labs are theirs too: say what changed outside handson/.
    reference = _grades_a_reference(pytest_args)
    changes = None if args.workspace or reference else outside.changes(ROOT)
    # Every process the graded code starts ends before a report is written (services/sweep.py).
    guarded = sweep.become_subreaper()
    # As root, the app runs as users of this grade's own (services/confine.py); the report says when it did not.
    users, why_not = confine.prepare()
    try:
        # The learner's own handson/ is taken in as data too: a link in it leads nowhere, even here.
        workspace = None if reference else (args.workspace or ROOT)
        graded = grade(pytest_args, args.timeout, args.redis, workspace, users=users, steps=steps)
    except CannotGrade as problem:
        return _could_not_grade(args.out, users, str(problem))
    except Exception as problem:  # the lab's own fault, never a learner's 0: said as such, exit 2
        return _could_not_grade(args.out, users, say(f"The lab failed while grading: {problem!r}",
                                                     f"採点中にラボが失敗しました: {problem!r}"))
    except BaseException:
        _last_sweep(users)
        raise
    stopped = _last_sweep(users)
    grades = graded.tests
    result = classroom50.result(grades)
    if changes is not None:
        result["changed-outside-handson"] = changes.files
    if graded.intake is not None and graded.intake.names():
        result["not-taken-in"] = graded.intake.names()
    classroom50.write(args.out / "result.json", result)
    reports.write_junit(args.out / "junit.xml", grades)
    reports.write_markdown(args.out / "grade.md", reports.markdown(grades, changes) + _intake_note(graded.intake)
                           + _confinement_note(users, why_not) + _sweep_note(guarded, stopped))
    _give_back(args.out)
    score, top = result["score"], result["max-score"]
    written = ", ".join(str(args.out / name) for name in REPORTS)
    print(say(f"{score}/{top} points: {written}", f"{score}/{top} 点: {written}"))
    return 0 if all(test.passed for test in grades) else 1


def _could_not_grade(out, users, reason):
    """No grade: the reason in grade.md (result.json and junit.xml are not written), exit code 2."""
    _last_sweep(users)
    reports.write_markdown(out / "grade.md", reports.cannot_grade(reason))
    _give_back(out)
    print(reason, file=sys.stderr)
    return 2


def _last_sweep(users):
    """Whatever happened: every process below the grade, and every process of the grade's users (one
    that escaped below, say, when a step's pytest was killed), killed; the first ones, described."""
    stopped = sweep.kill_descendants()
    if users:
        confine.release(users)
    return stopped


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
