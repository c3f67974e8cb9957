"""`make grade`: every step's lab, scored, as GitHub Classroom reads it.

    python -m labs.harness.tools.grade [--timeout S] [--out DIR] [pytest options, e.g. --solution]

Each step's module runs in a pytest process of its own, with a time limit, and
the outcome is written to grade.json in the Classroom result format
({"version": 1, "status", "max_score", "tests": [...]}, one test per step) and
to grade.md, a table, which is also appended to $GITHUB_STEP_SUMMARY when set.

A step scores its points only when every one of its tests passed and pytest
ended cleanly. A failing test, a fixture error (Redis, the worker or the server
would not start), a crashed service, a skipped test or a timeout scores 0, and
the message says which.

Exit code: 0 when every step passed, 1 otherwise (grade.json is written either
way). Classroom's reporter takes the points from grade.json and marks the run
failed itself when its status is not "pass"; a grader that reads only the exit
code (autograding-command-grader) must therefore never see 0 for a failing lab.
"""
import argparse
import json
import os
import sys
from pathlib import Path

from ..i18n import say
from ..paths import ROOT
from ..runner import run_labs
from ..steps import load_steps

MESSAGE_LIMIT = 2000  # characters per step: enough for the first failures, short enough to read


def _first_lines(text, count=12):
    # JUnit gives pytest's one-line message, then the full text that repeats it.
    lines = text.strip().removeprefix("Failed: ").splitlines()
    if len(lines) > 1 and lines[0] == lines[1]:
        lines = lines[1:]
    return "\n".join(lines[:count])


def judge(step, run, timeout, test_code):
    """One Classroom test entry for ``step`` from its LabRun (None: the module is missing)."""
    outcomes = run.for_module(step.module) if run else []
    unpassed = [outcome for outcome in outcomes if outcome.status != "passed"]
    status, message = "fail", ""
    if run is None:
        status = "error"
        message = say(f"{step.module} is missing: this step cannot be graded.",
                      f"{step.module} がありません。このステップは採点できません。")
    elif run.timed_out:
        done = sum(outcome.status == "passed" for outcome in outcomes)
        message = say(f"Timed out after {timeout:g} s ({done} test(s) had passed): something never "
                      "finished, e.g. a request or a task that hangs.",
                      f"{timeout:g} 秒で時間切れになりました (合格済みのテスト {done} 個)。"
                      "終わらないリクエストやタスクがないか確認してください。")
    elif not outcomes:
        status = "error"
        message = say(f"pytest ran no test of this step (exit code {run.exit_code}):\n",
                      f"pytest がこのステップのテストを 1 つも実行しませんでした (終了コード {run.exit_code}):\n") \
            + "\n".join(run.output.strip().splitlines()[-8:])
    elif unpassed:
        parts = []
        for outcome in unpassed:
            kind = {"failed": say("failed", "不合格"),
                    "error": say("error (a fixture: Redis, the worker or the server did not start, "
                                 "or stopping them failed)",
                                 "エラー (フィクスチャ: Redis・ワーカー・サーバーの起動または停止に失敗)"),
                    "skipped": say("skipped (counts as not passed)", "スキップ (不合格扱い)")}[outcome.status]
            parts.append(f"{outcome.name}: {kind}\n{_first_lines(outcome.message)}")
        message = "\n\n".join(parts)
    elif run.exit_code != 0:
        message = say(f"Every test passed but pytest exited with code {run.exit_code}: "
                      "something failed around the tests.\n",
                      f"テストはすべて合格しましたが、pytest が終了コード {run.exit_code} で終わりました。"
                      "テストの前後で何かが失敗しています。\n") + "\n".join(run.output.strip().splitlines()[-8:])
    else:
        status = "pass"
        message = say(f"{len(outcomes)} test(s) passed.", f"{len(outcomes)} 個のテストに合格しました。")
    pointer = unpassed[0] if unpassed else (outcomes[0] if outcomes else None)
    return {
        "name": say(f"Step {step.number}: {step.title}", f"ステップ {step.number}: {step.title}"),
        "status": status,
        "score": step.points if status == "pass" else 0,
        "message": message[:MESSAGE_LIMIT],
        "test_code": test_code,
        "filename": step.module,
        "line_no": pointer.line + 1 if pointer else 0,  # JUnit lines count from 0, editors from 1
        "duration": round(run.seconds, 2) if run else 0.0,
    }


def grade(pytest_args=(), timeout=300.0):
    tests = []
    for step in load_steps():
        run = None
        if (ROOT / step.module).exists():
            run = run_labs([step.module], pytest_args=list(pytest_args), timeout=timeout)
        tests.append(judge(step, run, timeout, " ".join(["pytest", step.module, *pytest_args])))
        entry = tests[-1]
        print(f"{entry['name']}: {entry['status']} {entry['score']}/{step.points} ({entry['duration']:.1f} s)",
              flush=True)
    statuses = {entry["status"] for entry in tests}
    overall = "fail" if "fail" in statuses else "error" if "error" in statuses else "pass"
    return {"version": 1, "status": overall, "max_score": sum(step.points for step in load_steps()),
            "tests": tests}


def markdown(result):
    score = sum(entry["score"] for entry in result["tests"])
    icon = {"pass": "✅", "fail": "❌", "error": "⚠️"}
    lines = [say(f"## Celery hands-on: {score}/{result['max_score']} points",
                 f"## Celery ハンズオン: {score}/{result['max_score']} 点"), "",
             say("| Step | Result | Points | Time |", "| ステップ | 結果 | 点数 | 時間 |"),
             "| --- | --- | --- | --- |"]
    points = {step.module: step.points for step in load_steps()}
    for entry in result["tests"]:
        lines.append(f"| {entry['name'].replace('|', '/')} | {icon[entry['status']]} {entry['status']} "
                     f"| {entry['score']}/{points[entry['filename']]} | {entry['duration']:.1f} s |")
    for entry in result["tests"]:
        if entry["status"] != "pass":
            lines += ["", f"### {entry['name']}", "",
                      say(f"`{entry['test_code']}` ({entry['filename']}, line {entry['line_no']})",
                          f"`{entry['test_code']}` ({entry['filename']} の {entry['line_no']} 行目)"),
                      "", "```text", entry["message"].replace("```", "'''"), "```"]
    return "\n".join(lines) + "\n"


def main(argv):
    parser = argparse.ArgumentParser(prog="make grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per step (default 300)")
    parser.add_argument("--out", type=Path, default=ROOT, help="folder for grade.json and grade.md")
    args, pytest_args = parser.parse_known_args(argv)
    result = grade(pytest_args, args.timeout)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grade.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    report = markdown(result)
    (args.out / "grade.md").write_text(report, encoding="utf-8")
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write(report)
    score = sum(entry["score"] for entry in result["tests"])
    print(say(f"{score}/{result['max_score']} points ({result['status']}): {args.out / 'grade.json'}, "
              f"{args.out / 'grade.md'}",
              f"{score}/{result['max_score']} 点 ({result['status']}): {args.out / 'grade.json'}, "
              f"{args.out / 'grade.md'}"))
    return 0 if result["status"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
