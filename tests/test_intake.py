"""services/intake.py: a submission's handson/ is taken in as data.

Every entry a hostile (or careless) submission could hold is tried: links inside and out, links through
links, loops of links, a link to a device, a pipe, handson/ itself as a link, and more files, bytes or
depth than the limits. The copy must hold only the submission's own files, never lead out of itself, and
finish within its time, naming what it left out. As root the walker reads as another user: a file only
the grader could read is not taken in.
"""
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labs.harness.i18n import say
from labs.harness.services import confine, intake

AS_ROOT = os.geteuid() == 0 and sys.platform.startswith("linux")


def _walk_tree(folder):
    """{path in the copy: "file"/"dir"/"link -> target"}."""
    found = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        found[name] = f"link -> {os.readlink(path)}" if path.is_symlink() else "dir" if path.is_dir() else "file"
    return found


@pytest.fixture
def submission(tmp_path):
    """A workspace whose handson/ holds every kind of entry, and a secret outside it."""
    outside = tmp_path / "teacher"
    outside.mkdir()
    (outside / "notes.txt").write_text("canary-notes")
    handson = tmp_path / "workspace" / "handson"
    (handson / "templates").mkdir(parents=True)
    (handson / "views.py").write_text("print('own code')\n")
    (handson / "templates" / "page.html").write_text("<p>own</p>")
    links = {
        "alias.py": "views.py",  # inside: kept
        "pages": "templates",  # a folder inside: kept
        "templates/up.py": "../views.py",  # inside, through a real folder: kept
        "loop": ".",  # a loop, kept as a link, never followed
        "also_loop": ".",
        "leak.txt": "../../teacher/notes.txt",  # out of handson/
        "absolute": str(outside / "notes.txt"),
        "environ": "/proc/1/environ",
        "zero": "/dev/zero",
        "ptmx": "/dev/ptmx",
        "escape": "loop/..",  # through a link: refused
        "dangling": "nothing-here",
        "chain": "alias.py",  # to another link: refused
    }
    for name, target in links.items():
        (handson / name).symlink_to(target)
    os.mkfifo(handson / "pipe")
    return tmp_path / "workspace", links


def _take(workspace, tmp_path, **kwargs):
    scratch = tmp_path / "copy"
    scratch.mkdir()
    started = time.monotonic()
    taken = intake.take_in(workspace, scratch, **kwargs)
    return taken, scratch / "handson", time.monotonic() - started


def test_the_copy_keeps_the_own_files_and_links_that_stay_inside(submission, tmp_path):
    workspace, _ = submission
    taken, copy, seconds = _take(workspace, tmp_path)

    tree = _walk_tree(copy)
    assert tree == {"alias.py": "link -> views.py", "also_loop": "link -> .", "loop": "link -> .",
                    "pages": "link -> templates", "templates": "dir", "templates/page.html": "file",
                    "templates/up.py": "link -> ../views.py", "views.py": "file"}, tree
    assert (copy / "pages" / "page.html").read_text() == "<p>own</p>"
    refused = dict(taken.refused)
    assert refused == {"leak.txt": "link_outside", "absolute": "link_outside", "environ": "link_outside",
                       "zero": "link_outside", "ptmx": "link_outside", "escape": "link_outside",
                       "dangling": "link_outside", "chain": "link_outside", "pipe": "special"}, refused
    assert seconds < 10, seconds  # a device or a loop would have held it for ever
    described = taken.describe(say)
    assert "handson/pipe: a device, pipe or socket" in described and "canary" not in described


def test_no_path_in_the_copy_leads_out_of_it(submission, tmp_path):
    workspace, _ = submission
    _, copy, _ = _take(workspace, tmp_path)

    for path in copy.rglob("*"):
        real = Path(os.path.realpath(path))
        assert real == copy.resolve() or copy.resolve() in real.parents, (path, real)


def test_handson_as_a_link_is_taken_in_as_nothing(tmp_path):
    peer = tmp_path / "peer" / "handson"
    peer.mkdir(parents=True)
    (peer / "settings.py").write_text("# a peer's finished work\n")
    (tmp_path / "learner").mkdir()
    (tmp_path / "learner" / "handson").symlink_to(peer)

    taken, copy, _ = _take(tmp_path / "learner", tmp_path)

    assert taken.handson_is_link and list(copy.iterdir()) == []
    assert "symbolic link" in taken.describe(say)


@pytest.mark.parametrize("limit, make, reason", [
    (intake.Limits(files=10), lambda h: [(h / f"f{i}.py").write_text("x") for i in range(30)], "too_many"),
    (intake.Limits(bytes=1000), lambda h: (h / "big.bin").write_bytes(b"x" * 5000), "too_large"),
    (intake.Limits(depth=3), lambda h: (h / "a" / "b" / "c" / "d" / "e").mkdir(parents=True), "too_deep"),
], ids=["files", "bytes", "depth"])
def test_the_copy_stops_at_its_limits_and_says_so(tmp_path, limit, make, reason):
    handson = tmp_path / "workspace" / "handson"
    handson.mkdir(parents=True)
    make(handson)

    taken, _, _ = _take(tmp_path / "workspace", tmp_path, limits=limit)

    assert reason in dict(taken.refused).values(), taken.refused
    assert taken.describe(say)


def test_the_walker_gives_up_after_its_time(tmp_path):
    handson = tmp_path / "workspace" / "handson"
    handson.mkdir(parents=True)
    for index in range(300):
        (handson / f"f{index}.py").write_text("x")

    taken, _, seconds = _take(tmp_path / "workspace", tmp_path, limits=intake.Limits(seconds=0))

    assert dict(taken.refused).get("f0.py") == "too_slow", taken.refused
    assert seconds < 10


def test_a_link_is_judged_through_real_folders_only(tmp_path):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "file").write_text("x")
    (root / "link").symlink_to("real")

    assert intake.resolves_inside(root, ("a",), "real/file")
    assert intake.resolves_inside(root, ("real", "b"), "../real/file")
    assert not intake.resolves_inside(root, ("a",), "link/file")  # through a link
    assert not intake.resolves_inside(root, ("a",), "../outside")
    assert not intake.resolves_inside(root, ("a",), "/etc/passwd")
    assert not intake.resolves_inside(root, ("a",), "missing")


def test_reading_a_file_of_the_submission_stays_inside_it(tmp_path):
    handson = tmp_path / "handson"
    handson.mkdir()
    (handson / "Procfile").write_text("default: celery -A handson worker\n")
    (handson / "Alias").symlink_to("Procfile")
    (tmp_path / "secret").write_text("canary")
    (handson / "Out").symlink_to(tmp_path / "secret")
    os.mkfifo(handson / "Pipe")

    assert intake.read_submitted(handson / "Procfile").startswith("default:")
    assert intake.read_submitted(handson / "Alias").startswith("default:")
    with pytest.raises(intake.LeadsOutside):
        intake.read_submitted(handson / "Out")
    with pytest.raises(intake.LeadsOutside):
        intake.read_submitted(handson / "Pipe")  # opened without blocking: not a file, refused
    with pytest.raises(FileNotFoundError):
        intake.read_submitted(handson / "Missing")
    assert len(intake.read_submitted(handson / "Procfile", limit=5)) == 5


@pytest.mark.skipif(not AS_ROOT, reason="reading as another user needs root (CI runs as root)")
def test_as_root_the_walker_reads_as_the_app_s_user(tmp_path):
    """A hard link (or any file) the grader could read but the app's user could not stays out."""
    tmp_path.chmod(0o755)
    handson = tmp_path / "workspace" / "handson"
    handson.mkdir(parents=True)
    (tmp_path / "workspace").chmod(0o755)
    handson.chmod(0o755)
    (handson / "views.py").write_text("print('own code')\n")
    (handson / "views.py").chmod(0o644)
    (handson / "private.txt").write_text("canary-private")
    (handson / "private.txt").chmod(0o600)
    [user] = confine.claim_uids(1)
    try:
        taken, copy, _ = _take(tmp_path / "workspace", tmp_path, user=user)
    finally:
        confine.release([user])

    assert (copy / "views.py").read_text() == "print('own code')\n"
    assert not (copy / "private.txt").exists()
    assert dict(taken.refused) == {"private.txt": "unreadable"}, taken.refused


@pytest.mark.skipif(not AS_ROOT, reason="a device node can be made by root only")
def test_a_device_in_the_submission_is_refused(tmp_path):
    handson = tmp_path / "workspace" / "handson"
    handson.mkdir(parents=True)
    os.mknod(handson / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))

    taken, copy, seconds = _take(tmp_path / "workspace", tmp_path)

    assert dict(taken.refused) == {"zero": "special"} and not (copy / "zero").exists()
    assert seconds < 10


def test_the_walker_imports_nothing_from_where_it_runs(tmp_path):
    """It runs with -I from /: a sitecustomize.py or a json.py of the submission's is never its module."""
    handson = tmp_path / "workspace" / "handson"
    handson.mkdir(parents=True)
    (handson / "json.py").write_text("raise SystemExit('the submission ran')\n")
    (handson / "tarfile.py").write_text("raise SystemExit('the submission ran')\n")
    done = subprocess.run([sys.executable, "-c", "import json"], cwd=handson, capture_output=True, text=True)
    assert done.returncode != 0  # the case: run from there without -I, the submission's json.py is imported

    taken, copy, _ = _take(tmp_path / "workspace", tmp_path)

    assert (copy / "json.py").exists() and taken.refused == []


def test_names_no_report_can_hold_are_left_out_and_named_safely(tmp_path):
    """A name that is not UTF-8, one with a newline and ESC, and a path too long for the copy's folder:
    none breaks the copy or a report."""
    handson = tmp_path / "workspace" / "handson"
    handson.mkdir(parents=True)
    os.symlink("/etc/passwd", os.path.join(os.fsencode(handson), b"\xff-link"))
    (handson / "new\nline\x1b[31m").symlink_to("/etc/passwd")
    deep = handson
    for _ in range(6):
        deep = deep / ("d" * 200)
    deep.mkdir(parents=True)
    (deep / "f.py").write_text("x")

    taken, _, _ = _take(tmp_path / "workspace", tmp_path)

    names = taken.names()
    assert "\\xff-link" in names and "new\\nline\\x1b[31m" in names, names
    assert "bad_name" in dict(taken.refused).values(), taken.refused
    described = taken.describe(say)
    described.encode("utf-8")  # no lone surrogate left
    assert "\x1b" not in described and "new\nline" not in described
