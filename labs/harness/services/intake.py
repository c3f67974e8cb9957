"""A submission's handson/, taken in as data: the copy that grading runs, never a path into the submission.

    python -I labs/harness/services/intake.py   (the walker: started by ``take_in``, never by hand)

A submission is files someone else made. Copied by a grader running as root with shutil.copytree, a
symbolic link would be followed to whatever it names (a teacher's 0600 file, /proc/1/environ), a device
read for ever (/dev/zero, /dev/ptmx) and a loop of links copied until the disk is full. So the copy is
made in two halves:

- the **walker** (this file run as a script, with -I: it imports nothing from where it starts) is
  handed an open descriptor of handson/ and, as the unprivileged user the app will run as, walks it
  without following any link (every open is O_NOFOLLOW, relative to its folder's descriptor). It
  writes regular files, folders and the text of links as a tar stream on its stdout, and what it
  refused (devices, pipes, sockets, anything past the LIMITS) as JSON on stderr;
- ``take_in``, in the grader, writes that stream into the scratch folder itself (not with tarfile's
  extract): names are checked part by part, every file is created new (O_EXCL | O_NOFOLLOW), and a
  link is made only when it resolves inside the copy through real folders (``resolves_inside``), so
  nothing in the copy leads out of it.

The walker gets ``LIMITS.seconds`` in all; a submission past the limits is graded with what fitted,
and the report names what was left out.
"""
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

MAX_PATH = 1024  # bytes of a path inside handson/: the copy's folder adds its own to the system's 4096
SKIPPED_NAMES = ("__pycache__",)  # bytecode is the grader's own business (PYTHONDONTWRITEBYTECODE)
SKIPPED_SUFFIXES = (".pyc",)


@dataclass(frozen=True)
class Limits:
    files: int = 2000  # entries of every kind
    bytes: int = 32 << 20  # all regular files together
    depth: int = 24  # folders inside folders
    seconds: float = 30.0


LIMITS = Limits()

# Why an entry was left out: the reason's key, then its words (the grader's reports say them).
REASONS = {
    "special": ("a device, pipe or socket, not a file", "デバイス・パイプ・ソケットで、ファイルではありません"),
    "link_outside": ("a link that leads outside handson/ (or to another link, or to nothing)",
                     "handson/ の外 (または別のリンクや存在しないもの) を指すリンクです"),
    "unreadable": ("not readable by the grading user", "採点用ユーザーが読めません"),
    "too_many": ("past the limit of {files} entries", "{files} 個の上限を超えました"),
    "too_large": ("past the limit of {megabytes} MB in all", "合計 {megabytes} MB の上限を超えました"),
    "too_deep": ("folders nested deeper than {depth}", "フォルダーの入れ子が {depth} 段を超えました"),
    "too_slow": ("the copy ran out of its {seconds:g} s", "コピーが {seconds:g} 秒を超えました"),
    "bad_name": ("a name the copy cannot take", "コピーできない名前です"),
}


@dataclass
class Intake:
    """What ``take_in`` copied: the copy's folder and what it left out, as (path in handson/, reason key)."""

    folder: Path
    refused: list = field(default_factory=list)
    handson_is_link: bool = False  # handson/ itself was a link: nothing was copied
    limits: Limits = LIMITS

    def names(self):
        """The left-out paths as text any report can hold (escapes for what is not printable UTF-8)."""
        return [printable(name) for name, _ in self.refused] or (["handson"] if self.handson_is_link else [])

    def describe(self, say):
        """The report's words for what was left out ('' when nothing was)."""
        if self.handson_is_link:
            return say("handson/ is a symbolic link, not a folder: a submission is graded on its own files, so "
                       "nothing was taken in.",
                       "handson/ がフォルダーではなくシンボリックリンクです。提出物はそれ自身のファイルで採点する"
                       "ため、何も取り込みませんでした。")
        if not self.refused:
            return ""
        values = {"files": self.limits.files, "megabytes": self.limits.bytes >> 20, "depth": self.limits.depth,
                  "seconds": self.limits.seconds}
        lines = [f"handson/{printable(name)}: {say(*REASONS[reason]).format(**values)}"
                 for name, reason in self.refused[:50]]
        if len(self.refused) > 50:
            lines.append(say(f"... and {len(self.refused) - 50} more", f"... ほか {len(self.refused) - 50} 件"))
        return "\n".join(lines)


def printable(name):
    """``name`` with whatever could break a report escaped: bytes that are not UTF-8 (os.fsdecode's
    surrogates, as \\xff), control characters (\\n, \\x1b) and the backslash itself; the rest as it is."""
    out = []
    for char in name:
        if "\udc80" <= char <= "\udcff":
            out.append(f"\\x{ord(char) - 0xdc00:02x}")
        elif char == "\\" or not char.isprintable():
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


class IntakeFailed(RuntimeError):
    """The walker itself failed (not the submission's doing): the message says how."""


# -- the grader's half ------------------------------------------------------------------
def take_in(workspace, scratch, user=None, limits=LIMITS):
    """Copy ``workspace``/handson/ into ``scratch``/handson/ as data; the Intake. ``user`` (a user name or
    "#uid", as services/confine.py takes them) is who the walker reads as, when the grader is root."""
    target = Path(scratch) / "handson"
    target.mkdir(mode=0o755)
    intake = Intake(Path(scratch), limits=limits)
    try:
        folder = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return intake
    try:
        handson = os.open("handson", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder)
    except OSError:
        intake.handson_is_link = os.path.islink(os.path.join(workspace, "handson"))
        return intake  # none: every test fails, saying handson/settings.py is missing
    finally:
        os.close(folder)
    try:
        stream, refused = _walk_as(user, handson, limits)
    finally:
        os.close(handson)
    intake.refused = refused + _write(stream, target)
    return intake


def _walk_as(user, handson, limits):
    """Run the walker on the descriptor ``handson`` (as ``user`` when we are root): (tar bytes, refused)."""
    from . import confine  # the launcher: the user's rights, and a root that shows nothing of the machine's

    argv = [sys.executable, "-I", str(Path(__file__).resolve()), str(handson), json.dumps(asdict(limits))]
    if user is not None and os.geteuid() == 0:
        argv = confine.wrap(argv, None, user=user)
    try:
        done = subprocess.run(argv, cwd="/", pass_fds=(handson,), capture_output=True, timeout=limits.seconds + 10,
                              env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, check=False)
    except subprocess.TimeoutExpired:
        raise IntakeFailed(f"the copy's walker did not finish within {limits.seconds + 10:g} s") from None
    if done.returncode != 0:
        raise IntakeFailed(f"the copy's walker failed (exit {done.returncode}): "
                           f"{done.stderr.decode('utf-8', 'replace')[-500:]}")
    # Names and link texts count in the walker's bytes; an entry's headers take a few blocks more.
    if len(done.stdout) > limits.bytes + (limits.files + 2) * 6 * tarfile.BLOCKSIZE:
        raise IntakeFailed("the copy's walker wrote more than its limits allow")
    refused = json.loads(done.stderr.decode("utf-8", "replace").strip().splitlines()[-1])
    return done.stdout, [tuple(entry) for entry in refused]


def _parts(name):
    """The parts of a member's name, or None when it is absolute, empty or climbs out ('..')."""
    if not name or "\0" in name or name.startswith("/"):
        return None
    parts = PurePosixPath(name).parts
    if any(part in ("", ".", "..") for part in parts) or not parts:
        return None
    return parts


def _write(stream, target):
    """Write the walker's stream into ``target``; what could not be written, as (name, reason)."""
    refused, links = [], []
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
        for member in tar:
            parts = _parts(member.name)
            if parts is None:
                refused.append((member.name, "bad_name"))
                continue
            path = target.joinpath(*parts)
            try:
                if not path.parent.is_dir() or path.parent.is_symlink():  # only folders made here hold entries
                    refused.append((member.name, "bad_name"))
                elif member.isdir():
                    path.mkdir(mode=0o755)
                elif member.isreg():
                    mode = 0o755 if member.mode & 0o111 else 0o644
                    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
                    with os.fdopen(handle, "wb") as out:
                        out.write(tar.extractfile(member).read())
                elif member.issym():
                    links.append((member.name, parts, member.linkname))
                else:
                    refused.append((member.name, "special"))
            except OSError:  # a name too long here (the copy's folder is longer than the submission's), ...
                refused.append((member.name, "bad_name"))
    # Links last, every one judged against the real files and folders only (no link is made before all
    # are judged): a link through another link, or out of the copy, is never made.
    made = [(parts, linkname) for name, parts, linkname in links if resolves_inside(target, parts, linkname)]
    refused += [(name, "link_outside") for name, parts, linkname in links
                if not resolves_inside(target, parts, linkname)]
    for parts, linkname in made:
        try:
            os.symlink(linkname, target.joinpath(*parts))
        except OSError:
            refused.append(("/".join(parts), "bad_name"))
    return refused


def resolves_inside(root, parts, linkname):
    """Whether the link at ``parts`` (inside ``root``) saying ``linkname`` leads to a file or folder of
    ``root`` through real folders only, the way the kernel would resolve it: relative, never above
    ``root``, and no part of the way (nor its end) a link or missing."""
    if not linkname or linkname.startswith("/") or "\0" in linkname:
        return False
    here = list(parts[:-1])
    for part in linkname.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not here:
                return False
            here.pop()
            continue
        here.append(part)
        try:
            info = os.lstat(Path(root).joinpath(*here))
        except OSError:
            return False
        if stat.S_ISLNK(info.st_mode):
            return False
    return True


# -- reading one file of a submission ------------------------------------------------------
class LeadsOutside(OSError):
    """A file of handson/ that is a link out of it: the lab does not read it."""


_READ_AS_USER = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
if not __import__("stat").S_ISREG(os.fstat(fd).st_mode):
    sys.exit(3)
sys.stdout.buffer.write(os.read(fd, int(sys.argv[2])))
"""
_read_cache = {}


def read_submitted(path, limit=64 << 10):
    """The text of ``path``, a file of a workspace's handson/ (handson/Procfile, say), read as the app
    would read it: only when it is a regular file that stays inside handson/ (LeadsOutside, else), at
    most ``limit`` bytes, and, while grading confines the app (services/confine.py), by the app's user.
    FileNotFoundError when it is missing. What the lab quotes from it is then the submission's own text."""
    from . import confine
    from .app_env import app_only_env  # it runs as the app's user: it holds nothing of the grader's

    path = Path(path)
    handson = next((folder for folder in path.parents if folder.name == "handson"), path.parent)
    real = Path(os.path.realpath(path))
    if not real.exists():
        raise FileNotFoundError(str(path))
    if real != Path(os.path.realpath(handson)) and Path(os.path.realpath(handson)) not in real.parents:
        raise LeadsOutside(str(path))
    info = real.stat()
    key = (str(real), info.st_ino, info.st_mtime_ns, info.st_size, limit)
    if key not in _read_cache:
        user = confine.confining_user()
        if user is None or os.geteuid() != 0:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise LeadsOutside(str(path))
                data = handle.read(limit)
        else:
            done = subprocess.run(confine.wrap([sys.executable, "-I", "-c", _READ_AS_USER, str(real), str(limit)],
                                               handson.parent), cwd=handson.parent, capture_output=True,
                                  env=app_only_env(os.environ), timeout=30, check=False)
            if done.returncode != 0:
                raise LeadsOutside(str(path))
            data = done.stdout[:limit]
        _read_cache[key] = data.decode("utf-8", "replace")
    return _read_cache[key]


# -- the walker's half (runs as a script) -------------------------------------------------
def _skipped(name):
    return name in SKIPPED_NAMES or name.endswith(SKIPPED_SUFFIXES)


class _Walker:
    def __init__(self, out, limits):
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
        self.limits = limits
        self.refused, self.entries, self.bytes = [], 0, 0
        self.deadline = time.monotonic() + limits.seconds
        self.stopped = None  # the reason the walk stopped early

    def _add(self, name, kind, size=0, mode=0o644, linkname="", data=None):
        info = tarfile.TarInfo(name)
        info.type, info.size, info.mode, info.linkname = kind, size, mode, linkname
        self.tar.addfile(info, io.BytesIO(data) if data is not None else None)

    def walk(self, folder, prefix="", depth=0):
        try:
            names = sorted(entry.name for entry in os.scandir(folder))
        except OSError:
            self.refused.append((prefix.rstrip("/") or ".", "unreadable"))
            return
        for name in names:
            if self.stopped:
                return
            if _skipped(name):
                continue
            path = prefix + name
            if time.monotonic() > self.deadline:
                self.stopped = "too_slow"
            elif self.entries >= self.limits.files:
                self.stopped = "too_many"
            if self.stopped:
                self.refused.append((path, self.stopped))
                return
            self.entries += 1
            self._entry(folder, name, path, depth)

    def _entry(self, folder, name, path, depth):
        try:
            info = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except OSError:
            self.refused.append((path, "unreadable"))
            return
        if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH:
            self.refused.append((path, "bad_name"))
            return
        self.bytes += len(path.encode("utf-8", "surrogateescape"))  # names take room in the stream too
        if stat.S_ISLNK(info.st_mode):
            linkname = os.readlink(name, dir_fd=folder)
            self.bytes += len(linkname.encode("utf-8", "surrogateescape"))
            if self.bytes > self.limits.bytes:
                self.refused.append((path, "too_large"))
                return
            self._add(path, tarfile.SYMTYPE, linkname=linkname)
        elif stat.S_ISDIR(info.st_mode):
            if depth >= self.limits.depth:
                self.refused.append((path, "too_deep"))
                return
            try:
                inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder)
            except OSError:
                self.refused.append((path, "unreadable"))
                return
            try:
                self._add(path, tarfile.DIRTYPE, mode=0o755)
                self.walk(inner, path + "/", depth + 1)
            finally:
                os.close(inner)
        elif stat.S_ISREG(info.st_mode):
            self._file(folder, name, path, info)
        else:
            self.refused.append((path, "special"))

    def _file(self, folder, name, path, info):
        if self.bytes + info.st_size > self.limits.bytes:
            self.refused.append((path, "too_large"))
            return
        try:
            handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
        except OSError:
            self.refused.append((path, "unreadable"))
            return
        with os.fdopen(handle, "rb") as source:
            opened = os.fstat(source.fileno())
            if not stat.S_ISREG(opened.st_mode) or opened.st_ino != info.st_ino:  # swapped since it was looked at
                self.refused.append((path, "special"))
                return
            data = source.read(self.limits.bytes - self.bytes + 1)
        if self.bytes + len(data) > self.limits.bytes:
            self.refused.append((path, "too_large"))
            return
        self.bytes += len(data)
        self._add(path, tarfile.REGTYPE, size=len(data), mode=0o755 if info.st_mode & 0o111 else 0o644, data=data)

    def close(self):
        self.tar.close()


def _main(argv):
    walker = _Walker(sys.stdout.buffer, Limits(**json.loads(argv[1])))
    walker.walk(int(argv[0]))
    walker.close()
    sys.stdout.flush()
    sys.stderr.write(json.dumps(walker.refused) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
