"""`make status`: where you are in the hands-on.

A table of the steps with the verdict of each one's latest run on your handson/
(kept in .lab/progress.json by the progress plugin), the time it took and when,
the points, a progress bar, and the step to do next.
"""
import sys
from datetime import datetime

from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..i18n import say
from ..plugin import progress
from ..steps import load_steps
from .linebreak import Wrapped


def next_step(steps, record):
    """The first step, in order, whose latest run did not pass; None when all did."""
    return next((step for step in steps if _status(record, step) != "passed"), None)


def find_step(steps, number):
    """The step numbered ``number``, or None after telling the learner which numbers exist."""
    found = next((step for step in steps if str(step.number) == str(number).strip()), None)
    if found is None:
        numbers = ", ".join(str(step.number) for step in steps)
        print(say(f"There is no step {number!r}: choose one of {numbers} (e.g. STEP=2).",
                  f"ステップ {number!r} はありません。{numbers} から選んでください (例: STEP=2)。"),
              file=sys.stderr)
    return found


def _status(record, step):
    return record["steps"].get(str(step.number), {}).get("status", "not run")


def _when(entry):
    try:
        return datetime.fromisoformat(entry["at"]).strftime("%m-%d %H:%M")
    except (KeyError, ValueError):
        return ""


def render(steps, record):
    labels = {
        "passed": Text(say("✔ passed", "✔ 合格"), style="bold green"),
        "failed": Text(say("✘ failed", "✘ 不合格"), style="bold red"),
        "not run": Text(say("· not run", "· 未実行"), style="dim"),
    }
    upcoming = next_step(steps, record)
    table = Table(title=say("Celery hands-on: your progress", "Celery ハンズオン: 進捗"), title_justify="left")
    table.add_column(say("Next", "次"))  # the arrow marks the step to do next
    # Only the title may wrap, and only between words (Wrapped: Japanese has few spaces to break
    # at, and rich would fold it mid-word); numbers stay whole.
    table.add_column(say("Step", "ステップ"), ratio=1)
    for heading in (say("Result", "結果"), say("Tests", "テスト"), say("Time", "時間"),
                    say("When", "日時"), say("Points", "点数")):
        table.add_column(heading, no_wrap=True)
    earned = 0
    for step in steps:
        entry = record["steps"].get(str(step.number), {})
        status = _status(record, step)
        earned += step.points if status == "passed" else 0
        table.add_row(
            "→" if step is upcoming else "",
            Wrapped(f"{step.number}. {step.title}"),
            labels[status],
            f"{entry['passed']}/{entry['tests']}" if entry else "",
            f"{entry['seconds']:.1f} s" if entry else "",
            _when(entry),
            f"{step.points if status == 'passed' else 0}/{step.points}",
        )
    total = sum(step.points for step in steps)
    passed = sum(_status(record, step) == "passed" for step in steps)
    bar = Table.grid(padding=(0, 1))
    bar.add_row(ProgressBar(total=total, completed=earned, width=40),
                say(f"{earned}/{total} points, {passed}/{len(steps)} steps",
                    f"{earned}/{total} 点、{passed}/{len(steps)} ステップ"))
    return Group(table, bar, Text(_advice(upcoming)))


def _advice(step):
    if step is None:
        return say("Every step passes. Well done! `make grade` writes the report a teacher reads.",
                   "すべてのステップに合格しました。お疲れさまでした! `make grade` で採点レポートを作れます。")
    n = step.number
    return say(
        f"Next: step {n}, {step.title}\n"
        f"  make step{n}          check it\n"
        f"  make watch STEP={n}   check it again on every save\n"
        f"  make hint STEP={n}    one hint at a time",
        f"次は ステップ {n}: {step.title}\n"
        f"  make step{n}          確認する\n"
        f"  make watch STEP={n}   保存するたびに確認する\n"
        f"  make hint STEP={n}    ヒントを 1 つずつ見る",
    )


def main(argv):
    if argv:
        print(__doc__)
        return 2
    Console().print(render(load_steps(), progress.load()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
