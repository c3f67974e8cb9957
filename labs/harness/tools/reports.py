"""The reports of a grade besides result.json: junit.xml for CI servers and grade.md for people."""
import os
import re
import xml.etree.ElementTree as ElementTree

from ..i18n import say

ICON = {"passed": "✅", "failed": "❌", "error": "⚠️", "skipped": "⏭️", "timeout": "⏱️"}


def _status_word(status):
    return {"passed": say("passed", "合格"), "failed": say("failed", "不合格"), "error": say("error", "エラー"),
            "skipped": say("skipped", "スキップ"), "timeout": say("timed out", "時間切れ")}[status]


def junit(grades):
    """One <testcase> per lab test, its step as the class: what GitLab CI, Jenkins and most CI
    servers show. Anything but a pass is a <failure> (or an <error> for a fixture error), so a
    skipped test or a timeout, which score 0, never looks like a pass."""
    suites = ElementTree.Element("testsuites", name="celery-handson")
    suite = ElementTree.SubElement(suites, "testsuite", name="celery-handson")
    properties = ElementTree.SubElement(suite, "properties")
    for name, value in (("score", sum(t.points for t in grades)), ("max-score", sum(t.max_points for t in grades))):
        ElementTree.SubElement(properties, "property", name=name, value=str(value))
    for test in grades:
        case = ElementTree.SubElement(suite, "testcase", classname=f"step{test.step.number}", name=test.name,
                                      file=test.step.module, line=str(test.line), time=f"{test.seconds:.3f}")
        points = ElementTree.SubElement(case, "properties")
        ElementTree.SubElement(points, "property", name="points", value=str(test.points))
        ElementTree.SubElement(points, "property", name="max-points", value=str(test.max_points))
        if not test.passed:
            tag = "error" if test.status == "error" else "failure"
            first = test.message.strip().splitlines()[0] if test.message.strip() else test.status
            problem = ElementTree.SubElement(case, tag, message=first, type=test.status)
            problem.text = test.message
        ElementTree.SubElement(case, "system-out").text = say(f"{test.points}/{test.max_points} points",
                                                              f"{test.points}/{test.max_points} 点")
    counts = {"tests": len(grades),
              "failures": sum(not t.passed and t.status != "error" for t in grades),
              "errors": sum(t.status == "error" for t in grades), "skipped": 0,
              "time": f"{sum(t.seconds for t in grades):.3f}"}
    for element in (suites, suite):
        element.attrib.update({key: str(value) for key, value in counts.items()})
    return suites


def write_junit(path, grades):
    tree = ElementTree.ElementTree(junit(grades))
    ElementTree.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _cell(text):
    return str(text).replace("|", "/").replace("\n", " ")


def fenced(text, info="text"):
    """``text`` as a Markdown code block, shown as it is. A block ends at the first line of at
    least as many backticks as its opening fence, so the fence is one backtick longer than the
    longest run in ``text`` (and at least 3): a message quoting ``` cannot end its block early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def markdown(grades, changes=None):
    """grade.md: the total, a row per test with its points, then what did not pass and why."""
    score, top = sum(t.points for t in grades), sum(t.max_points for t in grades)
    lines = [say(f"## Celery hands-on: {score}/{top} points", f"## Celery ハンズオン: {score}/{top} 点"), "",
             say("| Step | Test | Result | Points | Time |", "| ステップ | テスト | 結果 | 点数 | 時間 |"),
             "| --- | --- | --- | --- | --- |"]
    for test in grades:
        lines.append(f"| {test.step.number}. {_cell(test.step.title)} | `{test.name}` "
                     f"| {ICON[test.status]} {_status_word(test.status)} | {test.points}/{test.max_points} "
                     f"| {test.seconds:.1f} s |")
    for test in grades:
        if not test.passed:
            where = say(f"{test.step.module}, line {test.line}", f"{test.step.module} の {test.line} 行目") \
                if test.line else test.step.module
            lines += ["", f"### {test.step.number}. `{test.name}` ({where})", "",
                      fenced(test.message)]
    if changes is not None:
        lines += ["", say("### Files changed outside handson/", "### handson/ の外で変更されたファイル"), "",
                  changes.describe()]
    return "\n".join(lines) + "\n"


def cannot_grade(reason):
    return "\n".join([say("## Celery hands-on: could not grade", "## Celery ハンズオン: 採点できませんでした"), "",
                      fenced(reason)]) + "\n"


def write_markdown(path, report):
    path.write_text(report, encoding="utf-8")
    # GitHub Actions shows this file on the run's page.
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write(report)
