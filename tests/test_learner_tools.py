"""The learner's tools: progress and status, hints, reset, watch, grade.

Every test keeps its records in a temporary .lab/ (HANDSON_LAB_DIR) and works on
a temporary workspace, so it never touches the repository's handson/ or .lab/.
Grading has its own tests: tests/test_grading.py.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from labs.harness.lesson.waiting import wait_for
from labs.harness.paths import ROOT
from labs.harness.reference import materialize
from labs.harness.steps import last_step, load_steps

from .helpers import child_pytest, run_marked


def tool(name, *args, lab_dir, lang="en", stdin="", extra_env=None):
    """Run ``python -m labs.harness.tools.<name> args``; return the CompletedProcess (text)."""
    env = dict(os.environ, HANDSON_LAB_DIR=str(lab_dir), HANDSON_LANG=lang, COLUMNS="120", **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", f"labs.harness.tools.{name}", *map(str, args)], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)


def step_row(output, number):
    return next(line for line in output.splitlines() if f" {number}. " in line)


# -- progress and status -----------------------------------------------------------
def test_status_after_a_partial_run_shows_the_next_step(tmp_path):
    """Steps 1 and 2 run on the starter: 1 passes, 2 fails, the later ones never ran; status points at step 2."""
    workspace = materialize(1, tmp_path / "workspace")
    run, left_behind = run_marked(["labs/test_step1.py", "labs/test_step2.py"],
                                  pytest_args=["--workspace", str(workspace)], HANDSON_LAB_DIR=str(tmp_path / "lab"))
    assert not left_behind, left_behind
    assert {o.status for o in run.for_module("labs/test_step1.py")} == {"passed"}, run.output[-2000:]

    record = json.loads((tmp_path / "lab" / "progress.json").read_text())["steps"]
    assert record["1"]["status"] == "passed" and record["1"]["tests"] == record["1"]["passed"] > 0
    assert record["2"]["status"] == "failed" and record["2"]["seconds"] > 0 and record["2"]["at"]
    assert set(record) == {"1", "2"}

    shown = tool("status", lab_dir=tmp_path / "lab")
    assert shown.returncode == 0, shown.stderr
    first, steps = load_steps()[0].points, len(load_steps())
    assert "✔ passed" in step_row(shown.stdout, 1) and f"{first}/{first}" in step_row(shown.stdout, 1)
    assert "→" in step_row(shown.stdout, 2) and "✘ failed" in step_row(shown.stdout, 2)
    assert "not run" in step_row(shown.stdout, 3) and "→" not in step_row(shown.stdout, 3)
    assert "Next: step 2" in shown.stdout and f"{first}/100 points, 1/{steps} steps" in shown.stdout

    japanese = tool("status", lab_dir=tmp_path / "lab", lang="ja")
    assert "次は ステップ 2" in japanese.stdout and "✔ 合格" in japanese.stdout


def test_runs_on_the_reference_are_not_recorded(tmp_path):
    run, left_behind = run_marked(["labs/test_step1.py"], pytest_args=["--reference", "1"],
                                  HANDSON_LAB_DIR=str(tmp_path / "lab"))
    assert {o.status for o in run.outcomes} == {"passed"} and not left_behind, run.output[-2000:]
    assert not (tmp_path / "lab" / "progress.json").exists()


def test_progress_gives_a_verdict_only_on_whole_runs(tmp_path):
    """A failure or a module that does not import fails its step; a run left partial by -k changes nothing.

    A stand-in lab (no services) in a folder of its own, with the progress plugin alone.
    """
    labs = tmp_path / "labs"
    labs.mkdir()
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (labs / "test_step1.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    (labs / "test_step2.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    assert 0\n")
    (labs / "test_step3.py").write_text("import no_such_module\n")
    (labs / "test_step4.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), HANDSON_LAB_DIR=str(tmp_path / "lab"))

    def pytest_run(*args):
        child_pytest("-p", "labs.harness.plugin.progress", "-q", *args, cwd=tmp_path, env=env)

    pytest_run("labs/test_step1.py", "labs/test_step2.py", "labs/test_step4.py", "-k", "not test_b or step2")
    pytest_run("labs/test_step3.py")  # pytest stops at a collection error: nothing else would run

    record = json.loads((tmp_path / "lab" / "progress.json").read_text())["steps"]
    assert record["2"]["status"] == "failed" and record["2"]["passed"] == 1
    assert record["3"]["status"] == "failed"
    assert "1" not in record and "4" not in record  # test_b left out: no verdict

    (labs / "test_step1.py").write_text("import os, signal\n\ndef test_a():\n    assert 0\n\n"
                                        "def test_b():\n    os.kill(os.getpid(), signal.SIGINT)\n")
    pytest_run("labs/test_step1.py")  # Ctrl-C: the learner stopped it, even its failure is no verdict
    assert "1" not in json.loads((tmp_path / "lab" / "progress.json").read_text())["steps"]


def test_a_step_run_ahead_of_the_record_says_where_to_start(tmp_path):
    """Step 3 failing with no pass recorded for steps 1-2 ends with where to start; once they pass, it does not.

    A stand-in lab (no services), with the progress plugin alone, as above."""
    labs = tmp_path / "labs"
    labs.mkdir()
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    for number in (1, 2):
        (labs / f"test_step{number}.py").write_text("def test_a():\n    pass\n")
    (labs / "test_step3.py").write_text("def test_a():\n    assert 0\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), HANDSON_LAB_DIR=str(tmp_path / "lab"), HANDSON_LANG="en")

    def pytest_run(*args, **extra):
        return child_pytest("-p", "labs.harness.plugin.progress", "-q", *args, cwd=tmp_path,
                            env=dict(env, **extra)).stdout

    ahead = "Step 3 builds on the steps before it, and no pass is recorded for steps 1-2 (make status): " \
            "start with make step1."
    assert ahead in pytest_run("labs/test_step3.py")
    assert "ステップ 1-2 の合格が記録されていません" in pytest_run("labs/test_step3.py", HANDSON_LANG="ja")
    # Step 1 passing in the same run counts; step 2 is still missing.
    assert "no pass is recorded for step 2 (make status): start with make step2." in \
        pytest_run("labs/test_step1.py", "labs/test_step3.py")
    pytest_run("labs/test_step2.py")
    assert "builds on" not in pytest_run("labs/test_step3.py")


def test_a_step_begun_from_the_earlier_steps_reference_is_not_a_place_to_start(tmp_path):
    """The message above leaves out a step whose files differ from the starter's: a learner who began from the
    earlier steps' reference (or did them without running their labs) is not sent back to step 1."""
    from labs.harness.plugin.progress import _begun

    given = materialize(1, tmp_path / "starter")
    ahead = materialize(8, tmp_path / "ahead")
    assert not any(_begun(step, given) for step in range(2, 9))
    assert all(_begun(step, ahead) for step in range(2, 9))


# -- hints ---------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["en", "ja"])
def test_hint_shows_the_next_hint_each_time_in_the_chosen_language(tmp_path, lang):
    [step3] = [step for step in load_steps() if step.number == 3]
    hints, other = step3.hints[lang], step3.hints["ja" if lang == "en" else "en"]
    label = {"en": "Hint", "ja": "ヒント"}[lang]

    first = tool("hints", 3, lab_dir=tmp_path, lang=lang)
    second = tool("hints", 3, lab_dir=tmp_path, lang=lang)
    every = tool("hints", 3, "--all", lab_dir=tmp_path, lang=lang)

    def flat(text):  # rich wraps long lines inside its panels
        return "".join(part.strip(" │╭╮╰╯─") for part in text.splitlines())

    assert first.returncode == 0, first.stderr
    assert f"{label} 1/{len(hints)}" in first.stdout and flat(hints[0]).replace(" ", "") in flat(
        first.stdout).replace(" ", "")
    assert f"{label} 2/{len(hints)}" in second.stdout and f"{label} 1/" not in second.stdout
    assert all(f"{label} {n}/{len(hints)}" in every.stdout for n in range(1, len(hints) + 1))
    assert other[0][:20] not in first.stdout


def test_hint_refuses_an_unknown_step(tmp_path):
    unknown = last_step() + 1
    refused = tool("hints", unknown, lab_dir=tmp_path, lang="ja")
    assert refused.returncode == 2 and f"ステップ '{unknown}' はありません" in refused.stderr


def test_make_targets_pass_their_variables():
    """The Makefile hands STEP, ALL, YES, SOLUTION, TIMEOUT, WORKSPACE and GRADE_DIR to the tools (dry run)."""
    def dry(*args):
        return subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout

    assert "-m labs.harness.tools.hints 3 --all" in dry("hint", "STEP=3", "ALL=1")
    assert "-m labs.harness.tools.reset 2 --yes" in dry("reset", "STEP=2", "YES=1")
    assert "-m labs.harness.tools.watch 2 --solution" in dry("watch", "STEP=2", "SOLUTION=1")
    assert "-m labs.harness.tools.grade --solution --out=. --timeout=60" in dry("grade", "SOLUTION=1", "TIMEOUT=60")
    assert "-m labs.harness.tools.grade --workspace=clones/ann --out=grades/ann" in dry(
        "grade", "WORKSPACE=clones/ann", "GRADE_DIR=grades/ann")
    assert "-m labs.harness.tools.status" in dry("status")


# -- reset ---------------------------------------------------------------------------
def _break_step2(handson):
    (handson / "views.py").write_text("broken = (\n")
    (handson / "urls.py").unlink()
    (handson / "celery.py").write_text("app = None\n")  # a file of step 2 the starter does not have
    (handson / "templates" / "handson" / "base.html").write_text("mine\n")  # not a step 2 file


def test_reset_step2_restores_the_starter_files_and_keeps_a_backup(tmp_path):
    starter = materialize(1, tmp_path / "starter") / "handson"
    workspace = materialize(1, tmp_path / "workspace")
    _break_step2(workspace / "handson")

    declined = tool("reset", 2, "--root", workspace, lab_dir=tmp_path / "lab", stdin="n\n")
    assert declined.returncode == 1 and (workspace / "handson" / "views.py").read_text() == "broken = (\n"

    done = tool("reset", 2, "--root", workspace, lab_dir=tmp_path / "lab", stdin="y\n")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("views.py", "urls.py", "settings.py", "__init__.py"):
        assert (workspace / "handson" / name).read_bytes() == (starter / name).read_bytes(), name
    assert not (workspace / "handson" / "celery.py").exists()
    assert (workspace / "handson" / "templates" / "handson" / "base.html").read_text() == "mine\n"
    [backup] = (tmp_path / "lab").glob("backup-*")
    assert (backup / "handson" / "views.py").read_text() == "broken = (\n"
    assert (backup / "handson" / "celery.py").read_text() == "app = None\n"

    again = tool("reset", 2, "--root", workspace, "--yes", lab_dir=tmp_path / "lab")
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_reset_everything_with_yes_matches_the_starter(tmp_path):
    starter = materialize(1, tmp_path / "starter") / "handson"
    workspace = materialize(1, tmp_path / "workspace")
    _break_step2(workspace / "handson")
    (workspace / "handson" / "notes.txt").write_text("mine\n")

    done = tool("reset", "--root", workspace, "--yes", lab_dir=tmp_path / "lab", lang="ja")
    assert done.returncode == 0 and "完了" in done.stdout, done.stdout + done.stderr
    files = sorted(p.relative_to(workspace / "handson") for p in (workspace / "handson").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(starter) for p in starter.rglob("*") if p.is_file())
    assert all((workspace / "handson" / f).read_bytes() == (starter / f).read_bytes() for f in files)


def test_reset_of_a_later_step_goes_back_to_its_start_and_keeps_earlier_steps(tmp_path):
    """Step 3's files go back to the reference of step 2: step 2 stays done, steps 3-4 are 'not run' again."""
    before_step3 = materialize(2, tmp_path / "before") / "handson"
    workspace = materialize(4, tmp_path / "workspace")
    progress = tmp_path / "lab" / "progress.json"
    progress.parent.mkdir()
    progress.write_text(json.dumps({"steps": {str(n): {"status": "passed"} for n in range(1, 5)}}))

    done = tool("reset", 3, "--root", workspace, "--yes", lab_dir=tmp_path / "lab")

    assert done.returncode == 0, done.stdout + done.stderr
    settings = (workspace / "handson" / "settings.py").read_text()
    assert settings == (before_step3 / "settings.py").read_text()
    assert "CELERY_BROKER_URL" in settings and "CELERY_TASK_TRACK_STARTED" not in settings
    assert sorted(json.loads(progress.read_text())["steps"]) == ["1", "2"]


# -- watch ---------------------------------------------------------------------------
class _Watch:
    """`python -m labs.harness.tools.watch` on a scratch folder, running a cheap command; lines timestamped."""

    def __init__(self, tmp_path, path, extra_env=None):
        self.runs = tmp_path / "runs.txt"
        command = f"{sys.executable} -c \"open({str(self.runs)!r}, 'a').write('run\\n'); print('RUN')\""
        env = dict(os.environ, HANDSON_LAB_DIR=str(tmp_path / "lab"), HANDSON_LANG="en", **(extra_env or {}))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labs.harness.tools.watch", "2", "--path", str(path), "--command", command],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line))

    def text(self):
        return "".join(line for _, line in self.lines)

    def run_count(self):
        return self.runs.read_text().count("run") if self.runs.exists() else 0

    def stop(self):
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=15)


def test_watch_reruns_within_two_seconds_of_a_save(tmp_path):
    handson = tmp_path / "handson"
    handson.mkdir()
    (handson / "views.py").write_text("first\n")
    watch = _Watch(tmp_path, handson)
    try:
        assert wait_for(lambda: "Watching" in watch.text(), timeout=20), watch.text()
        assert watch.run_count() == 1
        saved = time.monotonic()
        (handson / "views.py").write_text("second\n")
        assert wait_for(lambda: watch.run_count() == 2, timeout=2), watch.text()
        assert time.monotonic() - saved < 2
        assert wait_for(lambda: "saved views.py" in watch.text(), timeout=2), watch.text()
    finally:
        code = watch.stop()
    assert code == 0 and "Watch stopped" in watch.text(), watch.text()


def test_watch_falls_back_to_enter_and_says_so(tmp_path):
    """A folder that cannot be watched (here: missing) leaves Enter, with a message saying why."""
    watch = _Watch(tmp_path, tmp_path / "not-there")
    try:
        assert wait_for(lambda: "File watching stopped working" in watch.text(), timeout=20), watch.text()
        watch.process.stdin.write("\n")
        watch.process.stdin.flush()
        assert wait_for(lambda: watch.run_count() == 2, timeout=10), watch.text()
    finally:
        assert watch.stop() == 0


def test_watch_enter_only_mode(tmp_path):
    handson = tmp_path / "handson"
    handson.mkdir()
    watch = _Watch(tmp_path, handson, extra_env={"WATCH_ENTER": "1"})
    try:
        assert wait_for(lambda: "Press Enter to run again" in watch.text(), timeout=20), watch.text()
        (handson / "views.py").write_text("saved, but nobody watches\n")
        watch.process.stdin.write("\n")
        watch.process.stdin.flush()
        assert wait_for(lambda: watch.run_count() == 2, timeout=10), watch.text()
        assert "Enter" in watch.text().split("run 2", 1)[1].splitlines()[0]
    finally:
        assert watch.stop() == 0


def test_every_tool_prints_its_usage():
    """Each tool runs as `python -m labs.harness.tools.<name>`; --help works without a workspace."""
    for name in ("tools.status", "tools.hints", "tools.watch", "tools.reset", "tools.grade", "plugin.progress"):
        shown = subprocess.run([sys.executable, "-m", f"labs.harness.{name}", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=60, check=False)
        assert shown.returncode in (0, 2) and "make" in shown.stdout + shown.stderr, name



def test_status_names_every_column(tmp_path):
    shown = tool("status", lab_dir=tmp_path / "lab")
    header = next(line for line in shown.stdout.splitlines() if "Step" in line and "Result" in line)
    assert "Next" in header and all(word in header for word in ("Tests", "Time", "When", "Points")), header


@pytest.mark.parametrize("lang", ["en", "ja"])
def test_status_wraps_a_title_between_words_only(monkeypatch, lang):
    """At 80 columns and wider, every line of the Step column is whole pieces of a title
    (step 8's Japanese title is never cut inside キュー, as rich's own folding did)."""
    import io

    from rich.console import Console

    from labs.harness.tools.linebreak import pieces
    from labs.harness.tools.status import render

    monkeypatch.setenv("HANDSON_LANG", lang)
    whole = set()  # every run of consecutive pieces of a title: what one line of it may show
    for step in load_steps():
        parts = pieces(f"{step.number}. {step.title}")
        whole |= {"".join(parts[i:j]).strip() for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)}
    for width in (80, 100, 120):
        console = Console(width=width, file=io.StringIO(), record=True)
        console.print(render(load_steps(), {"steps": {}}))
        rows = [line.split("│")[2].strip() for line in console.export_text().splitlines() if line.count("│") > 2]
        assert rows and all(row in whole for row in rows if row), (width, [row for row in rows if row not in whole])


def test_hint_says_so_when_every_step_passes(tmp_path):
    steps = load_steps()
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "progress.json").write_text(json.dumps({"steps": {
        str(step.number): {"status": "passed", "tests": 1, "passed": 1, "seconds": 1, "at": "now"} for step in steps}}))
    shown = tool("hints", lab_dir=tmp_path / "lab")
    assert shown.returncode == 0 and f"Every step passes ({len(steps)}/{len(steps)})" in shown.stdout, shown.stdout
    assert "Hint 1/" not in shown.stdout


def test_reset_of_a_later_step_says_what_each_file_goes_back_to(tmp_path):
    last = load_steps()[-1]
    workspace = materialize(last.number, tmp_path / "workspace")
    for name in last.files():
        (workspace / name).write_text("# mine\n")
    shown = tool("reset", last.number, "--root", workspace, lab_dir=tmp_path / "lab", stdin="n\n")
    rows = [line for line in shown.stdout.splitlines() if line.strip().startswith("handson/")]
    assert rows and all(f"step-{last.number - 1} reference" in row for row in rows), shown.stdout
    assert "starter" not in "\n".join(rows), shown.stdout


# -- doctor ----------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["en", "ja"])
def test_doctor_reports_this_machine_and_names_a_taken_port(tmp_path, lang):
    """`make doctor` on this machine: Python, venv and Redis fine; a port that is taken is named with
    the variable that moves it; nothing is changed."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        shown = tool("doctor", lab_dir=tmp_path, lang=lang, extra_env={"PORT": str(port)})

    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f"Python {sys.version.split()[0]}" in shown.stdout
    assert ("Redis: " in shown.stdout) and "✘" not in shown.stdout, shown.stdout
    taken_line = {"en": f"Port {port} (make run) is taken: `PORT=8001 make run`",
                  "ja": f"ポート {port} (make run) は使用中です: `PORT=8001 make run`"}[lang]
    assert taken_line in shown.stdout, shown.stdout


def test_doctor_sends_native_windows_to_wsl_or_the_dev_container(monkeypatch):
    from labs.harness.tools import doctor

    monkeypatch.setattr(doctor.platform, "system", lambda: "Windows")
    monkeypatch.setenv("HANDSON_LANG", "en")
    status, line = doctor._system()
    assert status == doctor.MISSING and "WSL 2" in line and ".devcontainer/" in line and "fork" in line
