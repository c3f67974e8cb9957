"""Files a learner changed outside handson/, for `make grade` in their own repository.

There the labs are the learner's to edit too (replacing labs/test_step2.py with a test
that always passes would give its points), so grade.md lists every file that differs
outside handson/: a warning for the teacher to read, not a penalty. A teacher grades
with WORKSPACE= (or Classroom 50's autograder), which uses only handson/.

The lab's starting commit is, in this order:
  1. $HANDSON_START, any git revision the teacher names;
  2. the tag `handson-start`, when the repository has it (a teacher can tag the commit
     they hand out);
  3. the repository's root commit (the oldest, if there are several): a repository made
     from a template starts with one commit holding the lab as given.
Committed, uncommitted and untracked (not ignored) files all count.
"""
import os
from dataclasses import dataclass, field

from ..i18n import say
from ..reference import git

START_TAG = "handson-start"
OWN_REPORTS = {"result.json", "junit.xml", "grade.md"}  # what `make grade` itself writes


@dataclass
class Changes:
    files: list = field(default_factory=list)
    start: str = ""  # the starting commit, as found
    note: str = ""  # why there is no list, when there is none

    def describe(self):
        if self.note:
            return self.note
        if not self.files:
            return say(f"None since {self.start}.", f"{self.start} 以降、ありません。")
        listed = "\n".join(f"- `{name}`" for name in self.files)
        return say(f"Since {self.start} (a warning, not a penalty: these files are not graded, but "
                   f"the labs here are the learner's to edit):\n\n{listed}",
                   f"{self.start} 以降 (警告であり減点ではありません。これらは採点対象外ですが、"
                   f"ここでは labs も学習者が編集できます):\n\n{listed}")


def _start(root):
    named = os.environ.get("HANDSON_START", "").strip()
    if named:
        return named, f"$HANDSON_START ({named})"
    if git(["rev-parse", "-q", "--verify", f"refs/tags/{START_TAG}"], root).returncode == 0:
        return START_TAG, say(f"the tag {START_TAG}", f"タグ {START_TAG}")
    roots = git(["rev-list", "--max-parents=0", "HEAD"], root).stdout.split()
    if roots:
        return roots[-1], say(f"the root commit {roots[-1][:10]}", f"ルートコミット {roots[-1][:10]}")
    return None, ""


def changes(root):
    """Changes (files outside handson/ that differ from the lab's starting commit) for ``root``."""
    if git(["rev-parse", "--is-inside-work-tree"], root).returncode != 0:
        return Changes(note=say("Not a git repository: files outside handson/ cannot be checked.",
                                "git リポジトリではないため、handson/ の外の変更を確認できません。"))
    if git(["rev-parse", "--is-shallow-repository"], root).stdout.strip() == "true":
        return Changes(note=say("A shallow clone: its history does not reach the lab's starting commit, so "
                                "files outside handson/ cannot be checked (in CI: fetch-depth: 0).",
                                "shallow clone のため履歴が開始コミットまで届かず、handson/ の外の変更を確認できません "
                                "(CI では fetch-depth: 0)。"))
    start, described = _start(root)
    diff = git(["-c", "core.quotepath=off", "diff", "--name-only", "--no-renames", start or "HEAD", "--"], root)
    if start is None or diff.returncode != 0:
        return Changes(note=say(f"The lab's starting commit was not found ({start or 'no commit'}): "
                                "files outside handson/ cannot be checked.",
                                f"ラボの開始コミットが見つからないため ({start or 'コミットなし'})、"
                                "handson/ の外の変更を確認できません。"))
    untracked = git(["-c", "core.quotepath=off", "ls-files", "--others", "--exclude-standard"], root)
    names = set(diff.stdout.splitlines()) | set(untracked.stdout.splitlines())
    files = sorted(name for name in names if name and not name.startswith("handson/") and name not in OWN_REPORTS)
    return Changes(files=files, start=described)
