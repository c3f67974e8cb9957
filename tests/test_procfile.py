"""handson/Procfile is read into the workers the lab, `make run` and compose start; a bad line is refused
with its number and the reason, in the learner's language."""
import subprocess
import sys

import pytest

from labs.harness.paths import ROOT
from labs.harness.reference import materialize
from labs.harness.services.beat import BeatSpec
from labs.harness.services.procfile import ProcfileError, parse_line, read_procfile
from labs.harness.services.worker import WorkerSpec
from labs.harness.steps import last_step

from .test_languages import KANA


def test_the_starter_declares_the_original_worker():
    assert read_procfile(ROOT / "handson" / "Procfile") == [WorkerSpec(node="worker", concurrency=1)]


def test_the_reference_declares_a_default_and_a_slow_node_and_one_beat(tmp_path):
    processes = read_procfile(materialize(last_step(), tmp_path) / "handson" / "Procfile")
    assert processes == [
        WorkerSpec(node="default", concurrency=4, options=("--max-tasks-per-child=5",), execs=True),
        WorkerSpec(node="slow", concurrency=1, queues=("slow",), options=("--prefetch-multiplier=1",), execs=True),
        BeatSpec(name="beat", execs=True),
    ]


@pytest.mark.parametrize("line, spec", [
    ("beat: celery -A handson beat -l info", BeatSpec(name="beat")),
    ("beat: exec celery -A handson beat", BeatSpec(name="beat", execs=True)),
    ("sched: celery -A handson beat --loglevel=INFO -s /somewhere/schedule --max-interval 5",
     BeatSpec(name="sched", options=("--max-interval=5",))),
])
def test_a_beat_line_is_read_and_its_schedule_file_is_the_labs(line, spec, tmp_path):
    assert parse_line(1, line) == spec
    argv = spec.argv(tmp_path / "schedule")
    assert argv[:6] == [sys.executable, "-m", "celery", "-A", "handson", "beat"]
    assert f"--schedule={tmp_path / 'schedule'}" in argv and "/somewhere/schedule" not in " ".join(argv)


@pytest.mark.parametrize("line, spec", [
    ("w: celery -A handson worker -c 2 -n fast@%h -Q a,b -P threads -E -B --loglevel=INFO",
     WorkerSpec(node="fast", concurrency=2, queues=("a", "b"), pool="threads", events=True, beat=True)),
    ("w: celery --app=handson worker --concurrency 3 --disable-prefetch -O fair",
     WorkerSpec(node="w", concurrency=3, options=("--disable-prefetch", "-O", "fair"))),
    ("w: exec celery -A handson worker --max-tasks-per-child=5", WorkerSpec(node="w", options=("--max-tasks-per-child=5",),
                                                                     execs=True)),
])
def test_the_usual_forms_of_a_worker_line_are_read(line, spec):
    assert parse_line(1, line) == spec
    assert spec.argv("n@h")[:5] == [sys.executable, "-m", "celery", "-A", "handson"]


@pytest.mark.parametrize("text, words", [
    ("web: python manage.py runserver\n", "Only Celery workers"),
    ("b: celery -A handson beat -S django_celery_beat.schedulers:DatabaseScheduler\n", "'-S'"),
    ("b: celery -A handson beat --max-interval=soon\n", "--max-interval"),
    ("b: celery -A handson beat\n", "declares no worker"),
    ("w: celery -A app worker\n", "celery -A handson worker"),
    ("w: celery -A handson worker --concurrency=many\n", "--concurrency"),
    ("w: celery -A handson worker --hostnme=x@%h\n", "'--hostnme'"),
    ("w: celery -A handson worker -P fast\n", "--pool"),
    ("bad name: celery -A handson worker\n", "`name: command`"),
    ("# only a comment\n", "declares no worker"),
    ("a: celery -A handson worker -n x@%h\nb: celery -A handson worker -n x@%h\n", "line 1 already"),
    ("w: celery -A handson worker -Q 'slow\n", "split"),
])
def test_a_line_that_cannot_be_started_is_refused_with_its_reason(tmp_path, monkeypatch, text, words):
    procfile = tmp_path / "Procfile"
    procfile.write_text(text)
    monkeypatch.setenv("HANDSON_LANG", "en")
    with pytest.raises(ProcfileError) as refused:
        read_procfile(procfile)
    assert words in str(refused.value) and "handson/Procfile" in str(refused.value)
    monkeypatch.setenv("HANDSON_LANG", "ja")
    with pytest.raises(ProcfileError) as refused:
        read_procfile(procfile)
    assert KANA.search(str(refused.value))


def test_a_missing_procfile_is_named(tmp_path):
    with pytest.raises(ProcfileError, match="handson/Procfile"):
        read_procfile(tmp_path / "Procfile")


def test_make_run_refuses_a_bad_procfile_before_starting_anything(tmp_path):
    """`make run` reads the Procfile first: a refused line ends it with the reason, nothing started."""
    workspace = materialize(1, tmp_path)
    (workspace / "handson" / "Procfile").write_text("worker: celery -A handson worker --concurency=2\n")
    code = ("import sys; from labs.harness.tools.run import declared_stack; "
            f"declared_stack({str(workspace)!r})")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"HANDSON_LANG": "en", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1 and "handson/Procfile, line 1" in run.stderr and "--concurency" in run.stderr
