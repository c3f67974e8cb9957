"""A service forked from the pre-warmed Python (labs/harness/services/prewarmed.py) is the process a
fresh `python -m` would be: the same argv, folder, path, environment, streams, session, parent and
death signal, the same exit code, and nothing of the learner's code loaded before it runs.

Both starts run in a child Python that is the subreaper of what it starts, as a lab pytest is.
"""
import json
import subprocess
import sys

from labs.harness.paths import ROOT

COMPARE = r'''
import json, os, sys, time
from labs.harness.services import processes, sweep

assert sweep.become_subreaper()
folder, code = sys.argv[1], int(sys.argv[2])
env = dict(os.environ, PYTHONPATH=folder, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", TMPDIR=folder,
           HANDSON_PROBE="yes")


def probe(name):
    service = processes.ServiceProcess(name, [sys.executable, "-m", "tests.probe_process", str(code)], env=env,
                                       cwd=os.getcwd(), log_path=f"{folder}/{name}.log").start()
    kind = type(service.popen).__name__
    returncode = service.popen.wait(timeout=60)
    return {"kind": kind, "returncode": returncode, "client": os.getpid(), "seen": json.loads(service.log_text())}


fresh = probe("fresh")
processes.prewarm()
warm = probe("warm")
print(json.dumps({"fresh": fresh, "warm": warm}))
'''


def _compare(tmp_path, code):
    done = subprocess.run([sys.executable, "-c", COMPARE, str(tmp_path), str(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_a_prewarmed_service_sees_what_a_fresh_one_sees(tmp_path):
    runs = _compare(tmp_path, 3)
    fresh, warm = runs["fresh"], runs["warm"]
    assert (fresh["kind"], warm["kind"]) == ("Popen", "AdoptedProcess"), "the second start was not pre-warmed"
    assert fresh["returncode"] == warm["returncode"] == 3
    seen_fresh, seen_warm = fresh["seen"], warm["seen"]
    assert seen_warm["parent"] == warm["client"], "the service must be the client's own child"
    assert seen_fresh.pop("parent") == fresh["client"]
    seen_warm.pop("parent")
    assert seen_warm == seen_fresh
    assert seen_warm["death_signal"] == 9 and seen_warm["own_session"] and seen_warm["fds"] == [0, 1, 2, 3]
    assert seen_warm["env"]["HANDSON_PROBE"] == "yes" and not seen_warm["learner_code_loaded"]
