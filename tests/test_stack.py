"""A lab module declares the stack it needs; modules that declare the same one share it.

Two stand-in lab modules run in a child pytest on the reference: one declares two
workers (other node names, concurrency and queues, no web server) with a marker,
one redefines the ``lab_stack_spec`` fixture, and two more use the default stack.
Each writes what its services are; this test reads it back.
"""
import json

from labs.harness.paths import ROOT

from .helpers import child_pytest, marked_env, processes_marked

PLUGINS = ("labs.harness.plugin.options", "labs.harness.plugin.header", "labs.harness.plugin.fixtures")

REPORT = '''
import json, os


def report(name, lab_stack):
    record = {"stack": [w.node for w in lab_stack.workers], "web": lab_stack.web is not None, "workers": [
        {"node": w.node, "hostname": w.hostname(), "pool": len(w.pool_pids()), "problem": repr(w.problem),
         "queues": w.spec.queues, "log": w.log()} for w in lab_stack.workers]}
    with open(os.environ["STACK_REPORT"], "a") as out:
        out.write(json.dumps({name: record}) + "\\n")
'''

TWO_WORKERS = '''
import pytest
from labs.harness.services.worker import WorkerSpec
from report import report

pytestmark = pytest.mark.stack(workers=[
    WorkerSpec(node="alpha", concurrency=2),
    WorkerSpec(node="beta", concurrency=1, queues=("slow",)),
], web=False)


def test_two_workers(lab_stack, celery_workers):
    assert celery_workers == lab_stack.workers
    report("two", lab_stack)
'''

OVERRIDE = '''
import pytest
from labs.harness.services.stack import StackSpec
from labs.harness.services.worker import WorkerSpec
from report import report


@pytest.fixture(scope="module")
def lab_stack_spec():
    return StackSpec(workers=(WorkerSpec(node="gamma", concurrency=3),), web=False)


def test_override(lab_stack):
    report("override", lab_stack)
'''

DEFAULT = '''
from report import report


def test_default(lab_stack, django_server):
    report("{name}", lab_stack)
'''


def test_a_module_declares_its_workers_and_equal_declarations_share_a_stack(tmp_path):
    (tmp_path / "report.py").write_text(REPORT)
    (tmp_path / "test_a_two.py").write_text(TWO_WORKERS)
    (tmp_path / "test_b_override.py").write_text(OVERRIDE)
    (tmp_path / "test_c_default.py").write_text(DEFAULT.format(name="default1"))
    (tmp_path / "test_d_default.py").write_text(DEFAULT.format(name="default2"))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    mark, env = marked_env(STACK_REPORT=str(tmp_path / "report.jsonl"))
    env["PYTHONPATH"] = f"{tmp_path}:{ROOT}"
    plugins = [arg for name in PLUGINS for arg in ("-p", name)]

    result = child_pytest(*plugins, "-c", tmp_path / "pytest.ini", "--rootdir", tmp_path, "--solution", "-q",
                          tmp_path, cwd=tmp_path, env=env, timeout=180)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    seen = {}
    for line in (tmp_path / "report.jsonl").read_text().splitlines():
        seen.update(json.loads(line))
    alpha, beta = seen["two"]["workers"]
    assert alpha["node"].startswith("alpha-") and beta["node"].startswith("beta-")
    assert alpha["hostname"] != beta["hostname"] and all(w["problem"] == "None" for w in (alpha, beta))
    assert (alpha["pool"], beta["pool"]) == (2, 1)
    assert "concurrency: 2 (prefork)" in alpha["log"] and "concurrency: 1 (prefork)" in beta["log"]
    assert ".> slow" in beta["log"] and ".> celery" in alpha["log"], beta["log"]
    assert seen["two"]["web"] is False
    [gamma] = seen["override"]["workers"]
    assert gamma["node"].startswith("gamma-") and gamma["pool"] == 3
    assert seen["default1"]["web"] and seen["default1"]["stack"] == seen["default2"]["stack"]
    assert seen["default1"]["workers"][0]["node"].startswith("default-")
    assert len({tuple(seen[name]["stack"]) for name in ("two", "override", "default1")}) == 3
    assert not processes_marked(mark), processes_marked(mark)
