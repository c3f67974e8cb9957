"""result.json in Classroom 50's `classroom50/result/v1` shape, from the graded tests.

Classroom 50's runner (foundation50/classroom50, runner.py::validate_result) drops a
result that breaks its rules, and then publishes no grade at all. The rules this
shape keeps (tests/classroom50_contract.py checks every result.json against them):

* schema, classroom, assignment: "classroom50/result/v1", $CLASSROOM, $ASSIGNMENT exactly;
* submission starts with "submit/"; commit, release, review, datetime are non-empty strings;
* score and max-score, at the top and per test, are ints (never floats, never null),
  >= 0, score <= max-score; passed is a JSON boolean; test-name a non-empty string.

Inside the runner the values come from its environment (CLASSROOM, ASSIGNMENT,
SUBMISSION_TAG, COMMIT_URL, RELEASE_URL, REVIEW_URL). Elsewhere (`make grade` on a
laptop, in plain CI) placeholders stand in, so the file has the same shape
everywhere. Extra keys are allowed by the contract: each test carries its step and
status, and its failure message under "message".
"""
import json
import os
from datetime import datetime, timezone

SCHEMA = "classroom50/result/v1"
PLACEHOLDER = "local"  # outside a runner: no classroom, no release, no review


RUNNER_FIELDS = ("CLASSROOM", "ASSIGNMENT", "SUBMISSION_TAG", "COMMIT_URL", "RELEASE_URL", "REVIEW_URL")


def _env(env, name, fallback):
    return env.get(name) or fallback


def result(grades, env=None, now=None):
    """The v1 result for ``grades`` (tools/grade.TestGrade, in step order)."""
    env = os.environ if env is None else env
    now = now or datetime.now(timezone.utc)
    commit = _env(env, "COMMIT_URL", PLACEHOLDER)
    tests = [{
        "test-name": f"{test.step.module}::{test.name}",
        "passed": test.passed,
        "score": int(test.points),
        "max-score": int(test.max_points),
        "step": test.step.number,
        "status": test.status,
        "message": test.message,
    } for test in grades]
    return {
        "schema": SCHEMA,
        "classroom": _env(env, "CLASSROOM", PLACEHOLDER),
        "assignment": _env(env, "ASSIGNMENT", PLACEHOLDER),
        "submission": _env(env, "SUBMISSION_TAG", f"submit/{PLACEHOLDER}"),
        "commit": commit,
        "release": _env(env, "RELEASE_URL", PLACEHOLDER),
        "review": _env(env, "REVIEW_URL", commit),  # older runners set no REVIEW_URL
        # The runner overwrites it with the graded commit's date; elsewhere: when it was graded.
        "datetime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "score": sum(test["score"] for test in tests),
        "max-score": sum(test["max-score"] for test in tests),
        "tests": tests,
    }


def write(path, data):
    # allow_nan=False: NaN is not JSON, and a score must be an int anyway.
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False) + "\n", encoding="utf-8")
