"""What the tests of hostile grading share: a drop box for what the graded code sends out, a copy of the
lab to attack, and one way to grade a submission through `make grade WORKSPACE=` or the autograder with
canaries in the grader's environment (tests/test_grading_hostile.py, tests/test_grading_submissions.py)."""
import contextlib
import hashlib
import json
import os
import shutil
import socketserver
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

from labs.harness.paths import ROOT
from labs.harness.reference import materialize
from labs.harness.services import confine
from labs.harness.services.redis import embedded_redis_binary
from labs.harness.steps import load_steps

from .helpers import marked_env, processes_marked
from .test_grading import AUTOGRADER, autograde

AS_ROOT = os.geteuid() == 0
HONEST = load_steps()[0].points  # the untouched starter passes step 1 only
CANARY = "canary-4f1c9a0e7b"
SECRETS = {"SECRET": CANARY, "GITHUB_TOKEN": CANARY, "AWS_SECRET_ACCESS_KEY": CANARY,
           # The grader's own settings and the Docker kind's: never the app's (services/app_env.py).
           "HANDSON_LAB_REPO": f"https://x-access-token:{CANARY}@example.invalid/lab.git",
           "DOCKER_CERT_PATH": f"/{CANARY}", "TESTCONTAINERS_HOST_OVERRIDE": CANARY,
           "HTTP_PROXY": f"http://{CANARY}.invalid:3128", "https_proxy": f"http://{CANARY}.invalid:3128"}


class DropBox(socketserver.ThreadingTCPServer):
    """What the graded code sends out, collected on a free port of 127.0.0.1."""

    daemon_threads = True

    def __init__(self):
        self.received = []
        super().__init__(("127.0.0.1", 0), _Collect)

    @property
    def port(self):
        return self.server_address[1]

    def reports(self):
        return [json.loads(line) for line in self.received if line.strip()]


class _Collect(socketserver.StreamRequestHandler):
    def handle(self):
        self.server.received.append(self.rfile.read().decode("utf-8", "replace"))


def lab_copy(folder):
    """This lab, copied (its venv linked; another Python's venv, CI's .venv-3.13, left out): what an
    attack that worked would change."""
    shutil.copytree(ROOT, folder, ignore=shutil.ignore_patterns(".git", ".venv", ".venv-*", ".lab", "*.egg-info",
                                                                *IGNORE_NAMES),
                    symlinks=True)
    (folder / ".venv").symlink_to(ROOT / ".venv")
    return folder


IGNORE_NAMES = ("__pycache__", ".pytest_cache", ".ruff_cache", "node_modules")


def digest(lab):
    """{path: sha256} of every file of the lab but the venv and the bytecode the grader writes."""
    return {str(path.relative_to(lab)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(lab.rglob("*"))
            if path.is_file() and not {".venv", *IGNORE_NAMES}.intersection(path.parts)}


def processes_by_user(users):
    """{user: how many live processes it has, of any run} for each of ``users``."""
    counts = dict.fromkeys(users, 0)
    for proc in psutil.process_iter(["username", "status"]):
        if proc.info["username"] in counts and proc.info["status"] != psutil.STATUS_ZOMBIE:
            counts[proc.info["username"]] += 1
    return counts


class ProcessCount(threading.Thread):
    """The most processes one of grading's users (``user``, and ``user``-2 for the step graded
    alongside) had at once, sampled while a grade runs: the kernel's limit counts each user's
    processes together, whichever run they belong to. Without a named user: nothing is counted."""

    def __init__(self, user):
        super().__init__(daemon=True)
        self.users, self.most, self.done = ((user, f"{user}-2") if user else ()), 0, threading.Event()

    def run(self):
        while self.users and not self.done.wait(0.5):
            self.most = max(self.most, *processes_by_user(self.users).values())


@dataclass
class HostileGrade:
    finished: subprocess.CompletedProcess
    result_path: Path
    lab: Path
    lab_before: dict
    left_behind: list
    sent: list  # what the graded code sent to the drop box
    most_processes: int
    sudoer: str = None  # the user the grader ran as, when not the tests' own

    def result(self):
        return json.loads(self.result_path.read_text())

    def output(self):
        return self.finished.stdout[-2000:] + self.finished.stderr[-2000:]

    def grade_md(self):
        for path in (self.result_path.parent / "grade.md", self.result_path.parent / "release-body.md"):
            if path.exists():
                return path.read_text()
        return ""

    def everything_reported(self):
        """Every report and everything the grader printed, as one text: where no canary may be."""
        folder = self.result_path.parent
        texts = [self.finished.stdout, self.finished.stderr]
        for name in ("result.json", "junit.xml", "grade.md", "release-body.md"):
            if (folder / name).exists():
                texts.append((folder / name).read_text(errors="replace"))
        return "\n".join(texts)


def grade_hostile(folder, code, grader, user=None, sudoer=None, steps=None, base=1, prepare=None, **extra_env):
    """Grade the reference of step ``base`` (1: the untouched starter) plus ``code`` in handson/__init__.py,
    through ``grader`` ("make grade" or "autograder"), from a copy of the lab, with the canary secrets in
    the grader's environment; as root, with the app running as uids of the grade's own, or as ``user``
    (HANDSON_GRADE_USER). ``prepare(checkout, drop_port)`` changes the submission further. With ``sudoer``,
    the grader runs as that user, who may use sudo: `make grade` is asked to (HANDSON_GRADE_SUDO=1), the
    autograder is told it is on a GitHub-hosted runner. ``steps`` ("1-3"): only those are graded."""
    if AS_ROOT and user:
        assert confine.ensure_user(user) is None
    drop = DropBox()
    threading.Thread(target=drop.serve_forever, daemon=True).start()
    lab = lab_copy(folder / "lab")
    checkout = materialize(base, folder / "checkout")
    out = folder / "out" if grader == "make grade" else checkout
    targets = [str(lab / "labs" / "test_step8.py"), str(lab / "written-by-the-graded-code"),
               str(out / "written-by-the-graded-code")]
    init = checkout / "handson" / "__init__.py"
    init.write_text(init.read_text() + textwrap.dedent(code).replace("DROP_PORT", str(drop.port))
                    .replace("WRITE_TARGETS", repr(targets)).replace("RESULT_JSON", repr(str(out / "result.json"))))
    if prepare:
        prepare(checkout, drop.port)
    if sudoer:  # the job's user's, as the lab it fetched and the checkout are on a runner
        owner = confine.pwd.getpwnam(sudoer)
        for path in [folder, *folder.rglob("*")]:
            os.lchown(path, owner.pw_uid, owner.pw_gid)
    lab_before = digest(lab)
    counter = ProcessCount(user)
    counter.start()
    named = {"HANDSON_GRADE_USER": user} if user else {}
    try:
        if grader == "make grade":
            mark, env = marked_env(TMPDIR=str(folder), HANDSON_LAB_DIR=str(folder / "state"), **named, **SECRETS,
                                   **extra_env)
            argv = [sys.executable, "-m", "labs.harness.tools.grade", "--workspace", str(checkout), "--out", str(out),
                    *([f"--steps={steps}"] if steps else [])]
            if sudoer:
                env["HANDSON_GRADE_SUDO"] = "1"
                argv = confine.wrap(argv, lab, user=sudoer, writable=[folder], keep_privileges=True,
                                    readable=SERVER_FOLDER)
            finished = subprocess.run(argv, cwd=lab, env=env, capture_output=True, text=True, timeout=900)
            left = processes_marked(mark, folder=folder)
        else:
            runner = {}
            if sudoer:  # what a GitHub-hosted runner says of itself
                runner = dict(RUNNER_ENVIRONMENT="github-hosted",
                              via=lambda argv: confine.wrap(argv, checkout, user=sudoer, writable=[folder],
                                                            keep_privileges=True,
                                                            readable=[*SERVER_FOLDER, AUTOGRADER.parent]))
            graded = autograde(checkout, folder / "scratch", HANDSON_LAB=str(lab), **named,
                               **({"HANDSON_GRADE_STEPS": steps} if steps else {}), **runner, **SECRETS, **extra_env)
            finished, left = graded.finished, graded.left_behind
    finally:
        counter.done.set()
        counter.join()
        drop.shutdown()
        drop.server_close()
    return HostileGrade(finished, out / "result.json", lab, lab_before, left,
                        drop.reports(), counter.most, sudoer)


GRADERS = ["make grade", "autograder"]
HOSTILE_STEPS = "1-2"  # the honest part passes step 1; the hostile one runs in every step's web server and worker
# A user for each grader's bomb: the two tests may run at the same time, and one bomb's processes would
# count against the other grade's limit (its honest part could not start: seen with four test jobs).
BOMB_USERS = {"make grade": "celery-handson-bomb-m", "autograder": "celery-handson-bomb-a"}
# The grader as a sudoer sees little of this machine (confine.wrap): the Redis it will start, it must.
SERVER_FOLDER = [Path(embedded_redis_binary()).resolve().parent] if embedded_redis_binary() else []
SUDOER = "celery-handson-sudoer"
SUDOERS_FOLDER = Path("/etc/sudoers.d")  # a file per test (sudo skips names with a dot)


WITH_SUDO = AS_ROOT and bool(shutil.which("sudo"))


@contextlib.contextmanager
def a_sudoer(name):
    """``name``, a user who may use sudo without a password while this lasts (one sudoers file per
    test: xdist runs them side by side; sudo skips file names with a dot)."""
    assert confine.ensure_user(SUDOER) is None
    sudoers = SUDOERS_FOLDER / f"celery-handson-tests-{name}-{os.getpid()}"
    sudoers.write_text(f"{SUDOER} ALL=(ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    try:
        yield SUDOER
    finally:
        sudoers.unlink()


