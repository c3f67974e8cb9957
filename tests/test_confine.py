"""services/confine.py: what the app may do while it is graded as root, tried by a process it starts.

Each test runs a small Python program through the launcher, as the grading user, and asks it to do
what a hostile or broken submission would: write the lab, fill the disk, eat memory, fork without end,
read a root-only file, become root again. The plan (which folders get covered) is checked without root.
"""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labs.harness.lesson.waiting import wait_for
from labs.harness.paths import ROOT
from labs.harness.services import confine


def test_the_plan_shows_each_folder_once_and_never_the_machine_or_a_temporary_folder(tmp_path):
    lab = tmp_path / "lab"
    (lab / "labs").mkdir(parents=True)
    (lab / ".venv").mkdir()
    data = tmp_path / "run" / "data"
    data.mkdir(parents=True)

    shown = confine.plan([lab / "labs", lab / ".venv", lab / "labs" / "harness", "/", "/usr/bin", "/tmp", tmp_path / "run"],
                         writable=[data])

    assert shown == [(tmp_path / "run", False), (lab / ".venv", False), (lab / "labs", False), (data, True)], shown


pytestmark_root = pytest.mark.skipif(os.geteuid() != 0 or not sys.platform.startswith("linux"),
                                     reason="the launcher needs root (it changes user and mounts)")


@pytest.fixture
def app_user():
    """A uid claimed as grading claims one (no account has it), given back afterwards."""
    [user] = confine.claim_uids(1)
    yield user
    confine.release([user])


def confined(program, tmp_path, user, readable=()):
    """Run ``program`` through the launcher as ``user``, in ``tmp_path``; its output and exit code."""
    argv = confine.wrap([sys.executable, "-c", textwrap.dedent(program)], tmp_path, user=user, readable=readable)
    return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)


@pytestmark_root
def test_the_app_cannot_write_the_lab_or_read_root_only_files_or_become_root(tmp_path, app_user):
    tmp_path.chmod(0o755)
    secret = tmp_path / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    ran = confined(f"""
        import os, subprocess
        for path in [{str(ROOT / 'labs' / 'steps.toml')!r}, {str(tmp_path / 'new')!r}]:
            try:
                open(path, "a").write("x")
                print("wrote", path)
            except OSError as error:
                print("refused", error.strerror)
        try:
            open({str(secret)!r}).read()
            print("read the secret")
        except OSError as error:
            print("refused", error.strerror)
        print("uid", os.getuid(), os.geteuid(), os.getgroups())
        os.setuid(0)
    """, tmp_path, app_user)

    assert "wrote" not in ran.stdout and "read the secret" not in ran.stdout, ran.stdout + ran.stderr
    assert ran.stdout.count("refused") == 3, ran.stdout + ran.stderr
    assert "uid 0" not in ran.stdout and "uid" in ran.stdout and "[]" in ran.stdout
    assert "PermissionError" in ran.stderr  # setuid(0) refused: no way back to root


@pytestmark_root
def test_memory_file_size_temporary_space_and_processes_are_limited(tmp_path, app_user):
    tmp_path.chmod(0o755)
    ran = confined("""
        import errno, os, time
        try:
            hog = bytearray(8 << 30)
            print("memory: got 8 GiB")
        except MemoryError:
            print("memory: refused")
        try:
            with open("/tmp/big", "wb") as big:
                for _ in range(200):
                    big.write(b"x" * (1 << 20))
            print("file: wrote 200 MiB")
        except OSError as error:
            print("file: refused", errno.errorcode[error.errno])
        os.remove("/tmp/big")
        try:
            for index in range(400):
                with open(f"/tmp/part{index}", "wb") as part:
                    part.write(b"x" * (1 << 20))
            print("disk: wrote 400 MiB")
        except OSError as error:
            print("disk: refused", errno.errorcode[error.errno])
        children = []
        try:
            for _ in range(5000):
                pid = os.fork()
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                children.append(pid)
            print("fork: 5000")
        except OSError as error:
            print("fork: refused after", len(children), errno.errorcode[error.errno])
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    """, tmp_path, app_user)
    lines = ran.stdout.splitlines()

    assert "memory: refused" in lines, ran.stdout + ran.stderr
    assert "file: refused EFBIG" in lines, ran.stdout + ran.stderr
    assert "disk: refused ENOSPC" in lines, ran.stdout + ran.stderr
    forks = [line for line in lines if line.startswith("fork: refused after")]
    assert forks and forks[0].endswith("EAGAIN"), ran.stdout + ran.stderr
    assert int(forks[0].split()[3]) < confine.LIMITS.processes


@pytestmark_root
def test_the_private_tmp_shows_only_what_the_app_needs(tmp_path, app_user):
    tmp_path.chmod(0o755)
    (tmp_path / "visible").write_text("the run's own folder")
    Path("/tmp/celery-handson-test-not-for-the-app").write_text("another run's file")
    try:
        ran = confined("""
            import os
            print(sorted(os.listdir("/tmp")))
            print(open("visible").read())
        """, tmp_path, app_user)
    finally:
        Path("/tmp/celery-handson-test-not-for-the-app").unlink()

    assert "celery-handson-test-not-for-the-app" not in ran.stdout, ran.stdout
    assert "the run's own folder" in ran.stdout, ran.stdout + ran.stderr


@pytestmark_root
def test_the_app_sees_its_folders_and_nothing_beside_them(tmp_path, app_user):
    """Beside the folder it runs in: a peer's clone, a checkout's .git/config (where a CI checkout keeps
    its token), a teacher's notes. None is shown; the way to the shown folder is, and only it."""
    tmp_path.chmod(0o755)
    graded = tmp_path / "class" / "alice"
    graded.mkdir(parents=True)
    (graded / "mine.txt").write_text("alice's own")
    peer = tmp_path / "class" / "bob" / "handson"
    peer.mkdir(parents=True)
    (peer / "urls.py").write_text("canary-peer")
    (tmp_path / "checkout" / ".git").mkdir(parents=True)
    (tmp_path / "checkout" / ".git" / "config").write_text("extraheader = AUTHORIZATION: canary-token")
    (tmp_path / "notes.txt").write_text("canary-notes")
    for folder in (tmp_path / "class", tmp_path / "class" / "bob", peer, tmp_path / "checkout"):
        folder.chmod(0o755)
    ran = confined(f"""
        import os
        print("top", sorted(os.listdir("/")))
        print("mine", open("mine.txt").read())
        print("class", os.listdir({str(tmp_path / 'class')!r}))
        for path in [{str(peer / 'urls.py')!r}, {str(tmp_path / 'checkout' / '.git' / 'config')!r},
                     {str(tmp_path / 'notes.txt')!r}]:
            try:
                print("read", open(path).read())
            except OSError as error:
                print("hidden", error.strerror)
    """, graded, app_user)

    assert "canary" not in ran.stdout and ran.stdout.count("hidden No such file") == 3, ran.stdout + ran.stderr
    assert "mine alice's own" in ran.stdout and "class ['alice']" in ran.stdout, ran.stdout
    top = eval(ran.stdout.splitlines()[0][4:])
    assert set(top) <= {*confine.SYSTEM, "proc", "tmp", "var", "run", *Path(tmp_path).parts[1:2],
                        *(Path(p).resolve().parts[1] for p in (sys.prefix, sys.base_prefix, ROOT))}, top


@pytestmark_root
def test_the_app_sees_no_process_of_another_user(tmp_path, app_user):
    """Its /proc is its own (hidepid=2): not the grader's command lines, nor another grade's processes."""
    tmp_path.chmod(0o755)
    ran = confined(f"""
        import os
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        print("mine", os.getpid() in pids, "grader", {os.getpid()} in pids, "init", 1 in pids)
        try:
            open("/proc/{os.getpid()}/cmdline").read()
            print("read the grader's command line")
        except OSError as error:
            print("hidden", error.strerror)
    """, tmp_path, app_user)

    assert "mine True grader False init False" in ran.stdout, ran.stdout + ran.stderr
    assert "hidden" in ran.stdout, ran.stdout


@pytestmark_root
def test_each_grade_claims_uids_no_one_has_and_a_dead_grade_s_are_swept():
    """Claimed uids have no account and no process; a process left by a grade that was killed (its
    claim's owner is gone) is killed when the next grade claims, and its claim dropped."""
    first, second = confine.claim_uids(2)
    accounts = {entry.pw_uid for entry in confine.pwd.getpwall()}
    assert first != second and not {confine.lookup(first).pw_uid, confine.lookup(second).pw_uid} & accounts
    survivor = subprocess.Popen(confine.wrap(["sleep", "120"], None, user=first))
    try:
        uid = confine.lookup(first).pw_uid
        assert wait_for(lambda: confine._processes_of({uid}), timeout=10), "the survivor did not start"
        claim = confine.CLAIMS / str(uid)
        (claim / "owner.json").write_text('{"pid": 999999999, "started": 0}')  # its grade is gone

        [third] = confine.claim_uids(1)

        assert wait_for(lambda: survivor.poll() is not None, timeout=10), "the dead grade's survivor still runs"
        assert not claim.exists()
        confine.release([second, third])
        assert not (confine.CLAIMS / str(confine.lookup(second).pw_uid)).exists()
    finally:
        survivor.kill()
        survivor.wait()


@pytestmark_root
def test_the_app_s_processes_together_stay_within_their_memory(tmp_path, app_user, monkeypatch):
    """Three processes of 100 MB each, each within its own limit, in a cgroup of 200 MB for them all: the
    kernel kills one of theirs (SIGKILL), and the launcher's caller, outside the cgroup, goes on."""
    cgroup = confine.app_cgroup(f"{confine.CGROUP_PREFIX}test-{os.getpid()}", 200 << 20)
    if cgroup is None:
        pytest.skip("no memory cgroup can be made here (cgroup v1's memory hierarchy or v2's memory controller)")
    monkeypatch.setenv(confine.CGROUP_VARIABLE, str(cgroup))
    tmp_path.chmod(0o755)
    try:
        ran = confined("""
            import os, signal
            children = []
            for _ in range(3):
                pid = os.fork()
                if pid == 0:
                    hog = bytearray(100 << 20)
                    for index in range(0, len(hog), 4096):
                        hog[index] = 1
                    signal.pause()
                children.append(pid)
            import time
            time.sleep(3)
            for pid in children:
                os.kill(pid, signal.SIGTERM)
            print("ends", sorted(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children))
        """, tmp_path, app_user)
    finally:
        confine.remove_cgroup(cgroup)

    assert "ends" in ran.stdout, ran.stdout + ran.stderr
    ends = eval(ran.stdout.split("ends", 1)[1])
    assert -signal.SIGKILL in ends, ends  # the out-of-memory killer, inside the cgroup
    assert not cgroup.exists()


@pytestmark_root
def test_a_named_grading_user_s_leftovers_are_killed_before_its_grade():
    """HANDSON_GRADE_USER names a user of the teacher's: what an earlier grade left running as it (a grade
    killed outright) is killed before the app starts again as it."""
    name = "celery-handson-named"
    assert confine.ensure_user(name) is None
    leftover = subprocess.Popen(confine.wrap(["sleep", "120"], None, user=name))
    try:
        uid = confine.lookup(name).pw_uid
        assert wait_for(lambda: confine._processes_of({uid}), timeout=10), "the leftover did not start"

        users, why_not = confine.prepare({**os.environ, "HANDSON_GRADE_USER": name})

        assert users and users[0] == name, why_not
        assert wait_for(lambda: leftover.poll() is not None, timeout=10), "the leftover still runs"
        confine.release(users)
    finally:
        leftover.kill()
        leftover.wait()
