"""Classroom 50's checks of a result.json, as its runner applies them (foundation50/classroom50).

The runner reads ./result.json after `python autograder.py` exits 0, stamps the fields it
owns, then validates (cli/gh-teacher/skeleton/dotgithub/scripts/runner.py: finalize_result,
validate_result). Any error there means no Release and no grade. The gradebook's
collect_scores.py::validate_result applies the same rules to the published file.
`finalize` and `validate_result` below mirror those functions rule for rule, so a file
that passes here passes there.
"""
import json

RESULT_SCHEMA_V1 = "classroom50/result/v1"
RESULT_FILENAME = "result.json"
MAX_RESULT_BYTES = 10 * 1024 * 1024  # collect_scores.py: a larger asset is skipped


def _non_negative_int(value):
    # bool is an int subclass in Python: True/False must not pass as scores.
    return not isinstance(value, bool) and isinstance(value, int) and value >= 0


def validate_result(data, *, classroom, assignment, expected_type="individual", owner=None):
    """runner.py::validate_result: None, or why the runner rejects ``data``."""
    if not isinstance(data, dict):
        return f"{RESULT_FILENAME} is not a JSON object"
    if data.get("schema") != RESULT_SCHEMA_V1:
        return f"{RESULT_FILENAME} schema is {data.get('schema')!r}, want {RESULT_SCHEMA_V1!r}"
    if data.get("classroom") != classroom:
        return f"{RESULT_FILENAME} classroom is {data.get('classroom')!r}, want {classroom!r}"
    if data.get("assignment") != assignment:
        return f"{RESULT_FILENAME} assignment is {data.get('assignment')!r}, want {assignment!r}"
    result_owner = data.get("owner")
    if not isinstance(result_owner, str) or not result_owner:
        return f"{RESULT_FILENAME} 'owner' must be a non-empty string"
    if owner is not None and result_owner.lower() != owner.lower():
        return f"{RESULT_FILENAME} owner is {result_owner!r}, want {owner!r}"
    if data.get("assignment_type") != expected_type:
        return f"{RESULT_FILENAME} assignment_type is {data.get('assignment_type')!r}, want {expected_type!r}"
    submission = data.get("submission")
    if not isinstance(submission, str) or not submission.startswith("submit/"):
        return f"{RESULT_FILENAME} 'submission' must be a 'submit/*' string"
    for field in ("commit", "release", "review", "datetime"):
        value = data.get(field)
        if not isinstance(value, str) or not value:
            return f"{RESULT_FILENAME} {field!r} must be a non-empty string"
    score, max_score = data.get("score"), data.get("max-score")
    if not _non_negative_int(score):
        return f"{RESULT_FILENAME} 'score' must be a non-negative integer"
    if not _non_negative_int(max_score):
        return f"{RESULT_FILENAME} 'max-score' must be a non-negative integer"
    if score > max_score:
        return f"{RESULT_FILENAME} score ({score}) > max-score ({max_score})"
    tests = data.get("tests")
    if not isinstance(tests, list):
        return f"{RESULT_FILENAME} 'tests' is not a list"
    for i, test in enumerate(tests):
        if not isinstance(test, dict):
            return f"{RESULT_FILENAME} 'tests[{i}]' is not an object"
        name = test.get("test-name")
        if not isinstance(name, str) or not name:
            return f"{RESULT_FILENAME} 'tests[{i}].test-name' must be a non-empty string"
        if not isinstance(test.get("passed"), bool):
            return f"{RESULT_FILENAME} 'tests[{i}].passed' must be a boolean"
        test_score, test_max = test.get("score"), test.get("max-score")
        if not _non_negative_int(test_score):
            return f"{RESULT_FILENAME} 'tests[{i}].score' must be a non-negative integer"
        if not _non_negative_int(test_max):
            return f"{RESULT_FILENAME} 'tests[{i}].max-score' must be a non-negative integer"
        if test_score > test_max:
            return f"{RESULT_FILENAME} 'tests[{i}].score' ({test_score}) > 'tests[{i}].max-score' ({test_max})"
    submitted_by = data.get("submitted_by")
    if submitted_by is not None:
        if not isinstance(submitted_by, dict):
            return f"{RESULT_FILENAME} 'submitted_by' must be an object"
        username = submitted_by.get("username")
        if not isinstance(username, str) or not username:
            return f"{RESULT_FILENAME} 'submitted_by.username' must be a non-empty string"
        sid = submitted_by.get("id")
        if sid is not None and (isinstance(sid, bool) or not isinstance(sid, int)):
            return f"{RESULT_FILENAME} 'submitted_by.id' must be an integer or null"
    return None


def finalize(path, *, classroom, assignment, owner="learner", assignment_type="individual",
             submitted_at="2026-06-01T14:33:11Z"):
    """runner.py::finalize_result on the file at ``path``: (stamped data, None) or (None, the error)."""
    if not path.is_file():
        return None, f"autograder did not produce {RESULT_FILENAME}"
    raw = path.read_bytes()
    if len(raw) > MAX_RESULT_BYTES:
        return None, f"{RESULT_FILENAME} is larger than {MAX_RESULT_BYTES} bytes"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        return None, f"{RESULT_FILENAME} is not valid JSON: {problem}"
    if isinstance(data, dict):  # the fields the runner owns, whatever the autograder wrote
        data.update(owner=owner, assignment_type=assignment_type, datetime=submitted_at,
                    graded_at="2026-06-01T14:40:00Z")
        data.pop("submitted_by", None)
    problem = validate_result(data, classroom=classroom, assignment=assignment,
                              expected_type=assignment_type, owner=owner)
    return (None, problem) if problem else (data, None)
