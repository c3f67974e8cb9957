"""services/confine.py: what the app may do while it is graded as root, tried by a process it starts.

Each test runs a small Python program through the launcher, as the grading user, and asks it to do
what a hostile or broken submission would: write the lab, fill the disk, eat memory, fork without end,
read a root-only file, become root again. The plan (which folders get covered) is checked without root.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from labs.harness.paths import ROOT
from labs.harness.services import confine


def test_the_plan_covers_the_temporary_folders_and_each_closed_folder_on_the_way(tmp_path):
    closed = tmp_path / "home"
    (closed / "lab" / "venv").mkdir(parents=True)
    (tmp_path / "open").mkdir()
    closed.chmod(0o700)
    stranger = SimpleNamespace(pw_uid=os.getuid() + 12345, pw_gid=os.getgid() + 12345)

    covers = confine.plan([closed / "lab" / "venv", tmp_path / "open"], stranger, temp_folders=())

    assert all(cover in (closed, *closed.parents) for cover in covers)  # tmp_path's own parents may be closed
    assert covers[closed] == {closed / "lab"}
    assert tmp_path / "open" not in covers


pytestmark_root = pytest.mark.skipif(os.geteuid() != 0 or not sys.platform.startswith("linux"),
                                     reason="the launcher needs root (it changes user and mounts)")


def confined(program, tmp_path):
    """Run ``program`` through the launcher as the grading user; its output and exit code."""
    assert confine.ensure_user(confine.DEFAULT_USER) is None
    argv = confine.wrap([sys.executable, "-c", textwrap.dedent(program)], tmp_path, user=confine.DEFAULT_USER)
    return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)


@pytestmark_root
def test_the_app_cannot_write_the_lab_or_read_root_only_files_or_become_root(tmp_path):
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
    """, tmp_path)

    assert "wrote" not in ran.stdout and "read the secret" not in ran.stdout, ran.stdout + ran.stderr
    assert ran.stdout.count("refused") == 3, ran.stdout + ran.stderr
    assert "uid 0" not in ran.stdout and "uid" in ran.stdout and "[]" in ran.stdout
    assert "PermissionError" in ran.stderr  # setuid(0) refused: no way back to root


@pytestmark_root
def test_memory_file_size_temporary_space_and_processes_are_limited(tmp_path):
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
    """, tmp_path)
    lines = ran.stdout.splitlines()

    assert "memory: refused" in lines, ran.stdout + ran.stderr
    assert "file: refused EFBIG" in lines, ran.stdout + ran.stderr
    assert "disk: refused ENOSPC" in lines, ran.stdout + ran.stderr
    forks = [line for line in lines if line.startswith("fork: refused after")]
    assert forks and forks[0].endswith("EAGAIN"), ran.stdout + ran.stderr
    assert int(forks[0].split()[3]) < confine.LIMITS.processes


@pytestmark_root
def test_the_private_tmp_shows_only_what_the_app_needs(tmp_path):
    tmp_path.chmod(0o755)
    (tmp_path / "visible").write_text("the run's own folder")
    Path("/tmp/celery-handson-test-not-for-the-app").write_text("another run's file")
    try:
        ran = confined("""
            import os
            print(sorted(os.listdir("/tmp")))
            print(open("visible").read())
        """, tmp_path)
    finally:
        Path("/tmp/celery-handson-test-not-for-the-app").unlink()

    assert "celery-handson-test-not-for-the-app" not in ran.stdout, ran.stdout
    assert "the run's own folder" in ran.stdout, ran.stdout + ran.stderr
