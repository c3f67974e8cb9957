"""`make hint STEP=n`: the hints of step n, one more each time you ask (ALL=1: all of them).

    python -m labs.harness.tools.hints [N] [--all]

Without N it is the step to do next (as `make status` shows). How many hints of
each step you have seen is kept in .lab/hints.json, so the next call goes on
from there. The hints come from labs/steps.toml, in your language (HANDSON_LANG).
"""
import argparse
import sys

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from ..i18n import say
from ..plugin import progress
from ..state import read_json, write_json
from ..steps import load_steps
from .status import find_step, next_step

SEEN = "hints.json"


def show(step, show_all, console):
    hints = step.hint_list()
    seen = read_json(SEEN, {})
    shown = seen.get(str(step.number), 0)
    if show_all or shown >= len(hints):
        picked = range(len(hints))
        footer = say(f"Every hint of step {step.number}. Still stuck? Read the failure message of "
                     f"`make step{step.number}` again: it names the file to change.",
                     f"ステップ {step.number} のヒントはこれで全部です。まだ進めないときは `make step{step.number}` の"
                     "失敗メッセージをもう一度読んでください。直すファイルが書いてあります。")
    else:
        picked = [shown]
        footer = (say(f"More: make hint STEP={step.number}   All: make hint STEP={step.number} ALL=1",
                      f"次のヒント: make hint STEP={step.number}   全部: make hint STEP={step.number} ALL=1")
                  if shown + 1 < len(hints) else
                  say("That was the last hint.", "これが最後のヒントです。"))
    console.print(Text(say(f"Step {step.number}: {step.title}", f"ステップ {step.number}: {step.title}"),
                       style="bold"))
    for index in picked:
        console.print(Panel(Text(hints[index]), title=say(f"Hint {index + 1}/{len(hints)}",
                                                          f"ヒント {index + 1}/{len(hints)}"),
                            title_align="left"))
    console.print(Text(footer, style="dim"))
    seen[str(step.number)] = max(shown, max(picked) + 1)
    write_json(SEEN, seen)


def main(argv):
    parser = argparse.ArgumentParser(prog="make hint", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", nargs="?", help="step number (default: the next step to do)")
    parser.add_argument("--all", action="store_true", help="every hint of the step at once")
    args = parser.parse_args(argv)
    steps = load_steps()
    # Without a number: the step to do next; when every step passes there is none to hint at.
    if not args.step and next_step(steps, progress.load()) is None:
        Console().print(say(f"Every step passes ({len(steps)}/{len(steps)}): no hint needed. "
                            "`make hint STEP=n` shows a step's hints again.",
                            f"すべてのステップに合格しています ({len(steps)}/{len(steps)})。ヒントは不要です。"
                            "`make hint STEP=n` でステップのヒントをもう一度見られます。"))
        return 0
    step = find_step(steps, args.step) if args.step else next_step(steps, progress.load())
    if step is None:
        return 2
    show(step, args.all, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
