"""`make reset` / `make reset STEP=n`: put handson/ back to the starter, or step n back to its start.

    python -m labs.harness.tools.reset [N] [--yes] [--root DIR]

Without N: all of handson/ back to the starter (files you added are removed).
With N: only the files step N's reference adds or changes (labs/solutions/stepN.patch),
back to how step N begins: the reference of step N-1 (the starter for steps 1
and 2). So your earlier steps stay done; a file that did not exist yet is removed. It shows what will change and asks first
(--yes, or YES=1 with make, does not ask). Every file it replaces or removes is
copied to .lab/backup-<time>/ before, so nothing you wrote is lost.
"""
import argparse
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from rich.console import Console

from ..i18n import say
from ..paths import ROOT
from ..plugin.progress import forget_steps
from ..reference import materialize
from ..state import lab_dir
from ..steps import load_steps
from .status import find_step


def _files(folder):
    """Paths (handson/...) of the files under folder/handson, leaving out Python's caches."""
    base = Path(folder)
    return {path.relative_to(base).as_posix() for path in (base / "handson").rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}


def plan(root, starter, names=None):
    """[(name, action)] that turn root's files ``names`` (default: all) into the starter's.

    action: "restore" (differs from the starter), "create" (missing), "remove" (not in the starter).
    """
    names = sorted(set(names) if names is not None else _files(root) | _files(starter))
    actions = []
    for name in names:
        mine, theirs = Path(root) / name, Path(starter) / name
        if not theirs.exists():
            if mine.exists():
                actions.append((name, "remove"))
        elif not mine.exists():
            actions.append((name, "create"))
        elif mine.read_bytes() != theirs.read_bytes():
            actions.append((name, "restore"))
    return actions


def apply(root, starter, actions):
    """Carry out ``actions``, backing up what they overwrite or delete; return the backup folder."""
    root = Path(root)
    stamp = f"backup-{datetime.now():%Y%m%d-%H%M%S}"
    backup, suffix = lab_dir(root) / stamp, 1
    while backup.exists():  # two resets within a second keep both backups
        suffix += 1
        backup = lab_dir(root) / f"{stamp}-{suffix}"
    for name, action in actions:
        mine = root / name
        if action in ("restore", "remove"):
            (backup / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(mine, backup / name)
        if action == "remove":
            mine.unlink()
        else:
            mine.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(starter) / name, mine)
    return backup if backup.exists() else None


def _confirm():
    try:
        answer = input(say("Go ahead? [y/N] ", "実行しますか? [y/N] "))
    except EOFError:  # no terminal to answer from (a script): only --yes may go ahead
        print()
        return False
    return answer.strip().lower() in ("y", "yes", "はい")


def main(argv):
    parser = argparse.ArgumentParser(prog="make reset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", nargs="?", help="only the files of this step (default: all of handson/)")
    parser.add_argument("--yes", action="store_true", help="do not ask (YES=1)")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)  # tests use a copy
    args = parser.parse_args(argv)
    step = find_step(load_steps(), args.step) if args.step else None
    if args.step and step is None:
        return 2
    console = Console(highlight=False)
    with tempfile.TemporaryDirectory(prefix="celery-handson-starter-") as scratch:
        starter = materialize(max(step.number - 1, 1) if step else 1, scratch)
        actions = plan(args.root, starter, step.files() if step else None)
        if not actions:
            console.print(say("These files already match the starter: nothing to do.",
                              "対象のファイルはすでにスターターと同じです。何もしません。"))
            return 0
        if step and step.number > 2:
            base = step.number - 1
            words = {"restore": say(f"back to the step-{base} reference (how step {step.number} begins)",
                                    f"ステップ {base} の模範解答 (ステップ {step.number} の開始時) に戻す"),
                     "create": say(f"create, as in the step-{base} reference (it was missing)",
                                   f"ステップ {base} の模範解答のとおり作成 (ありませんでした)"),
                     "remove": say(f"remove (not in the step-{base} reference)",
                                   f"削除 (ステップ {base} の模範解答にありません)")}
        else:
            words = {"restore": say("back to the starter", "スターターに戻す"),
                     "create": say("create (it was missing)", "作成 (ありませんでした)"),
                     "remove": say("remove (not in the starter)", "削除 (スターターにありません)")}
        if step and step.number > 2:
            console.print(say(f"This puts these files of {args.root / 'handson'} back to how step {step.number} "
                              f"begins (the reference of step {step.number - 1}):",
                              f"{args.root / 'handson'} の次のファイルを、ステップ {step.number} の開始時の状態 "
                              f"(ステップ {step.number - 1} の模範解答) に戻します:"))
        else:
            console.print(say(f"This puts these files of {args.root / 'handson'} back to the starter:",
                              f"{args.root / 'handson'} の次のファイルをスターターに戻します:"))
        for name, action in actions:
            console.print(f"  {name:<40} {words[action]}", markup=False)
        console.print(say("A copy of every file replaced or removed goes to .lab/backup-<time>/ first.",
                          "置き換え・削除するファイルは先に .lab/backup-<日時>/ にコピーします。"))
        if not args.yes and not _confirm():
            console.print(say("Nothing changed. (YES=1 skips the question.)",
                              "何も変更していません。(YES=1 で確認を省略できます)"))
            return 1
        backup = apply(args.root, starter, actions)
    # The steps whose work was in those files are not done any more: no stale "passed".
    forget_steps(range(step.number if step else 1, len(load_steps()) + 1), args.root)
    console.print(say(f"Done: {len(actions)} file(s) reset.", f"完了: {len(actions)} 個のファイルを戻しました。"))
    if backup:
        console.print(say(f"Your previous versions are in {backup}", f"以前の内容は {backup} にあります"),
                      markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
