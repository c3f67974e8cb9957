"""The graded code's rights: a user of its own, a view of the machine with nothing of the grader's, limits.

While grading as root (tools/grade.py sets HANDSON_CONFINE_USER), every service that runs the
learner's code (and Redis, which that code can command) starts through this launcher:

    python -I labs/harness/services/confine.py --user NAME --reveal DIR ... -- ARGV...

(-I and a path, not -m: as root it must import nothing from the folder it starts in, the learner's.)

Still root, the launcher enters a mount namespace of its own (unshare CLONE_NEWNS) and builds there
a root of its own on a small tmpfs, then chroots into it. That root holds:
- the system's folders (SYSTEM: /usr, /etc, /dev, /sys and the links /bin, /lib, ... to them);
- a fresh /proc with hidepid=2: the code sees its own user's processes and no other's, so not the
  grader's command lines, nor another grading run's;
- each DIR it must read, at its own path and read-only: the workspace copy, the lab's labs/ (the app
  imports labs.harness.services.runserver), the venv and the Python it comes from; the folders on
  the way to them are empty but for the way on (so no sibling: no other submission, no checkout,
  no home folder's other files);
- private, small tmpfs for /tmp, /var/tmp, /dev/shm and /run/lock (TEMP_BYTES): the code cannot
  fill the disk, see other runs' files, or leave any behind;
then it sets LIMITS, drops to the user (no supplementary groups, no_new_privs: no sudo, no setuid
program gives root back) and execs ARGV. So the code can write nowhere but its private /tmp and its
data folder, nor read the grader's environment (/proc/PID/environ of another user), nor signal the
grader's processes.
The user's processes count together against RLIMIT_NPROC, so a fork bomb stops at LIMITS.processes
(the kernel exempts root from that limit, kernel/fork.c: the grader can still fork and kill).

Users: by default every grading run claims uids of its own (``claim_uids``: numbers no account and no
process has, with no entry in /etc/passwd), so a process one run left behind can never see, signal
or count against the next; HANDSON_GRADE_USER names an existing user instead.
"""
import ctypes
import json
import os
import pwd
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

USER_VARIABLE = "HANDSON_CONFINE_USER"  # set by tools/grade.py for the pytest that starts the services
UID_PREFIX = "#"  # HANDSON_CONFINE_USER=#1500000123: a uid claimed for this run, with no account
TEMP_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
TEMP_BYTES = 256 << 20  # a service's private /tmp
OTHER_TEMP_BYTES = 32 << 20  # its /var/tmp, /dev/shm and /run/lock
APP_MEMORY = 4 << 30  # all the app's processes of one step together, their tmpfs included (a cgroup)
CGROUP_VARIABLE = "HANDSON_APP_CGROUP"  # the step's cgroup for the app (plugin/options.py), read by wrap()
CGROUP_PREFIX = "celery-handson-"
DATA_BYTES = 256 << 20  # a lab run's folder (the services' logs and the app's data: plugin/options.py)
# What the code sees of the machine's own folders: the system, and nothing anyone keeps files in.
SYSTEM = ("usr", "etc", "dev", "sys", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Uids claimed per run: far above any account's (useradd stops at 60000, subordinate ranges start
# at 100000 and grow by 65536) and below 2**31, which some tools read as a signed number.
UID_BASE, UID_SPAN = 1_500_000_000, 1 << 24
# One folder per claimed uid, root's only; in /run (emptied at boot, when no process of any uid is left).
CLAIMS = (Path("/run") if Path("/run").is_dir() else Path(tempfile.gettempdir())) / "celery-handson-uids"


@dataclass(frozen=True)
class Limits:
    processes: int = 512  # of the user, all services of all steps together (threads count too)
    memory: int = 4 << 30  # address space per process
    file_size: int = 128 << 20  # per file written


LIMITS = Limits()

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWIPC = 0x00020000, 0x08000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = \
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38


@dataclass(frozen=True)
class User:
    """Who the app runs as: an account (``name``), or a uid claimed for one run (``name`` is "#uid")."""

    name: str
    pw_uid: int
    pw_gid: int

    @property
    def pw_name(self):
        return self.name

    def describe(self):
        """How a report names it."""
        return f"uid {self.pw_uid}" if self.name.startswith(UID_PREFIX) else self.name

    @property
    def login(self):
        """What USER and LOGNAME say inside the app."""
        return f"handson-{self.pw_uid}" if self.name.startswith(UID_PREFIX) else self.name


def lookup(name):
    """The User ``name`` stands for: "#uid" (a claimed uid, its group the same number) or an account."""
    if name.startswith(UID_PREFIX):
        uid = int(name[len(UID_PREFIX):])
        return User(name, uid, uid)
    entry = pwd.getpwnam(name)
    return User(name, entry.pw_uid, entry.pw_gid)


def confining_user():
    """The user the app runs as while grading, or None (not grading as root)."""
    name = os.environ.get(USER_VARIABLE)
    return lookup(name) if name else None


def hand_over(folder):
    """Make ``folder`` the confined app's own (its data: the step 9 database), when grading confines it."""
    user = confining_user()
    if user is not None:
        os.chown(folder, user.pw_uid, user.pw_gid)


def ensure_user(name, create=True):
    """None when the system user ``name`` exists (made here, as root, if ``create``), else why not."""
    try:
        pwd.getpwnam(name)
        return None
    except KeyError:
        if not create:
            return f"no user {name}"
    made = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                           "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True, check=False) if shutil.which("useradd") else None
    if made is None or made.returncode != 0:
        return f"the user {name} could not be created ({made.stderr.strip() if made else 'no useradd'})"
    return None


def sudo_command(env=os.environ):
    """["sudo", "-n", "--"] when grading should start again as root to have the user guard: asked for
    (HANDSON_GRADE_SUDO=1, which the autograder sets on GitHub-hosted runners) and allowed without a
    password; else None."""
    if (env.get("HANDSON_GRADE_SUDO") != "1" or os.geteuid() == 0 or not sys.platform.startswith("linux")
            or env.get("HANDSON_GRADE_USER") == "none" or not shutil.which("sudo")):
        return None
    allowed = subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False, timeout=30)
    return ["sudo", "-n", "--"] if allowed.returncode == 0 else None


# -- the users of one grading run --------------------------------------------------------
def _processes_of(uids):
    """Pids of the live processes whose real or effective uid is one of ``uids`` (read from /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:"):
                real, effective = (int(value) for value in line.split()[1:3])
                if real in uids or effective in uids:
                    found.append(int(entry.name))
                break
    return found


def kill_users(uids, timeout=5.0):
    """SIGKILL every process of ``uids``, whoever its parent (a double-forked survivor of a grader that
    was itself killed has none of ours), until none is left; how many were killed."""
    uids, killed = set(uids), set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in _processes_of(uids) if _state(pid) != "Z"]
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGSTOP)  # stopped first: it cannot fork a replacement while it is killed
            except OSError:
                pass
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.02)
    return len(killed)


def _state(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def _started(pid):
    """The process's start time (clock ticks since boot), to tell it from a later process with its pid."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _account_uids():
    return {entry.pw_uid for entry in pwd.getpwall()}


def sweep_stale_claims():
    """Uids claimed by a grading run that is gone (killed before it could clean up): their processes
    are killed and the claims dropped. Returns how many processes were killed."""
    killed = 0
    for claim in CLAIMS.glob("[0-9]*") if CLAIMS.is_dir() else ():
        try:
            owner = json.loads((claim / "owner.json").read_text())
        except (OSError, ValueError):
            owner = {}
        if owner.get("pid") and _started(owner["pid"]) == owner.get("started"):
            continue  # its run is still grading
        killed += kill_users([int(claim.name)])
        shutil.rmtree(claim, ignore_errors=True)
    sweep_stale_cgroups()
    return killed


def claim_uids(count):
    """``count`` uids for this grading run alone: no account has them, no process runs as them, and no
    other run holds them (each is a folder in CLAIMS, made atomically). Give them back with release_uids."""
    CLAIMS.mkdir(mode=0o700, exist_ok=True)
    os.chmod(CLAIMS, 0o700)
    sweep_stale_claims()
    accounts, claimed = _account_uids(), []
    owner = json.dumps({"pid": os.getpid(), "started": _started(os.getpid())})
    while len(claimed) < count:
        uid = UID_BASE + random.randrange(UID_SPAN)
        if uid in accounts or _processes_of({uid}) or (CLAIMS / str(uid)).exists():
            continue
        # Made whole, then renamed into place: a sweep never sees a claim without its owner.
        draft = Path(tempfile.mkdtemp(prefix=f".{uid}-", dir=CLAIMS))
        (draft / "owner.json").write_text(owner)
        try:
            os.rename(draft, CLAIMS / str(uid))
        except OSError:  # another grade claimed it first
            shutil.rmtree(draft, ignore_errors=True)
            continue
        claimed.append(uid)
    return [f"{UID_PREFIX}{uid}" for uid in claimed]


def release(names):
    """The grade's last sweep: kill every process of the users ``names`` (claimed uids, or the named
    users of HANDSON_GRADE_USER: theirs are this run's alone), whatever failed before, and drop the
    claims; how many processes were killed."""
    users = [lookup(name) for name in names]
    killed = kill_users([user.pw_uid for user in users])
    for user in users:
        # A claim whose uid still has a process (one that would not die in time) stays: the next grade's
        # sweep finds its owner gone and tries again.
        if user.name.startswith(UID_PREFIX) and not _processes_of({user.pw_uid}):
            shutil.rmtree(CLAIMS / str(user.pw_uid), ignore_errors=True)
    return killed


def prepare(env=os.environ):
    """Before grading: (the users the app's steps will run as, None) when it can be confined here, else
    (None, why not). As root: uids claimed for this run alone (``claim_uids``), one per step graded at
    a time; HANDSON_GRADE_USER names an existing user instead (and ``name``-2, ... made beside it),
    whose processes are the run's: ``release`` kills them all; HANDSON_GRADE_USER=none turns the guard
    off. The launcher is tried once. Give the users back with ``release``."""
    name = env.get("HANDSON_GRADE_USER")
    if not sys.platform.startswith("linux"):
        return None, "it needs Linux (mount namespaces)"
    if name == "none":
        return None, "HANDSON_GRADE_USER=none turned it off"
    if os.geteuid() != 0:
        if env.get("HANDSON_GRADE_SUDO") == "1":
            return None, "HANDSON_GRADE_SUDO=1 asked for root, but `sudo -n` was refused"
        return None, ("the grader is not root (grade as root, or with HANDSON_GRADE_SUDO=1 where sudo "
                      "needs no password, to have it)")
    count = slots()
    if name:
        problem = ensure_user(name, create=False)
        if problem:
            return None, problem
        users = [name] + [f"{name}-{slot}" for slot in range(2, count + 1) if ensure_user(f"{name}-{slot}") is None]
        # The named users are this grade's: whatever an earlier grade of theirs left running goes first.
        kill_users([lookup(user).pw_uid for user in users])
    else:
        users = claim_uids(count)
    from .app_env import app_only_env  # the probe runs as the app's user: none of the grader's variables

    probe = subprocess.run(wrap([sys.executable, "-c", "import celery, django"], None, user=users[0]),
                           env=app_only_env(env), capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        release(users)
        return None, (f"the app could not start as {lookup(users[0]).describe()}: "
                      f"{(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    return users, None


def slots():
    """Steps graded at a time (each as a user of its own: the process limit counts a user's processes
    together, so a fork bomb in one step would stop another's services from starting)."""
    return min(2, os.cpu_count() or 1)


# -- one cgroup for the app's processes of a step: their memory together -------------------------
def _cgroup_base():
    """The folder where a memory cgroup for the app can be made: beside the grader's own in cgroup v1's
    memory hierarchy (its limit still applies above), or at the top of cgroup v2's, where the memory
    controller is enabled for children; None where neither is (not Linux, no root, no memory controller)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            if base.is_dir():
                return base
    unified = Path("/sys/fs/cgroup")
    try:
        if "memory" in (unified / "cgroup.subtree_control").read_text().split():
            return unified
    except OSError:
        pass
    return None


def app_memory_bound():
    """The bytes the app's processes of a step may hold together where app_cgroup can bound them, else None."""
    if os.geteuid() != 0 or _cgroup_base() is None:
        return None
    return int(os.environ.get("HANDSON_GRADE_APP_MEMORY") or APP_MEMORY)


def app_cgroup(name, limit=None):
    """A cgroup called ``name`` whose processes may hold ``limit`` bytes together (APP_MEMORY; swap not
    beyond): the folder, or None where none can be made. What a process of it writes to a tmpfs counts
    too, so an app that fills its private folders is stopped there, and the kernel's out-of-memory
    killer picks among its processes, never the grader's."""
    limit = limit or int(os.environ.get("HANDSON_GRADE_APP_MEMORY") or APP_MEMORY)
    base = _cgroup_base() if os.geteuid() == 0 else None
    if base is None:
        return None
    folder = base / name
    try:
        folder.mkdir(exist_ok=True)
        if (folder / "memory.max").exists():  # cgroup v2
            (folder / "memory.max").write_text(str(limit))
            settings = {"memory.swap.max": "0"}
        else:
            (folder / "memory.limit_in_bytes").write_text(str(limit))
            settings = {"memory.memsw.limit_in_bytes": str(limit)}
        for setting, value in settings.items():
            try:
                (folder / setting).write_text(value)
            except OSError:
                pass  # no swap accounting here: the memory limit alone
    except OSError:
        remove_cgroup(folder)
        return None
    return folder


def remove_cgroup(folder):
    """Kill what is left in the cgroup ``folder`` and remove it."""
    folder = Path(folder)
    for _ in range(50):
        try:
            pids = [int(pid) for pid in (folder / "cgroup.procs").read_text().split()]
        except OSError:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            folder.rmdir()
            return
        except OSError:
            time.sleep(0.02)


def sweep_stale_cgroups():
    """Remove the app cgroups of lab runs that are gone (named after their pytest's pid)."""
    base = _cgroup_base() if os.geteuid() == 0 else None
    for folder in base.glob(f"{CGROUP_PREFIX}*") if base is not None else ():
        pid = folder.name[len(CGROUP_PREFIX):]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            remove_cgroup(folder)


# -- the launcher's command line -----------------------------------------------------------
def wrap(argv, cwd, user=None, writable=(), keep_privileges=False, readable=()):
    """``argv`` started through the launcher as ``user`` (a name or "#uid"; by default the one grading
    confines the app to, and when there is none, ``argv`` unchanged), in ``cwd`` (None: /). ``readable``
    folders are shown too, ``writable`` ones stay writable (for the app: only its data folder,
    app_env.data_folders), and ``keep_privileges`` leaves sudo usable (for the project's own tests,
    never for the app)."""
    confined = confining_user()
    user = user or (confined.name if confined else None)
    if not user:
        return list(argv)
    from ..paths import LABS  # here: the launcher itself runs as a script, outside the package

    # What the command needs to read: its own program's folder (a redis-server on PATH), its folder,
    # the lab's labs/ (labs.harness.services.runserver), the venv and the Python it comes from.
    program = shutil.which(argv[0]) or argv[0]
    reveal = {LABS, sys.prefix, sys.base_prefix, Path(sys.executable).resolve().parent,
              Path(program).resolve().parent, *readable, *([cwd] if cwd is not None else [])}
    options = ["--user", user, *(["--keep-privileges"] if keep_privileges else [])]
    if os.environ.get(CGROUP_VARIABLE) and not keep_privileges:  # the app's, never the project's own tests'
        options += ["--cgroup", os.environ[CGROUP_VARIABLE]]
    # As given (made absolute, links kept): the launcher shows the real folder and the links on the way.
    options += [arg for folder in sorted({os.path.abspath(f) for f in reveal}) for arg in ("--reveal", folder)]
    options += [arg for folder in writable for arg in ("--writable", os.path.abspath(folder))]
    return [sys.executable, "-I", str(Path(__file__).resolve()), *options, "--", *argv]


# -- the launcher (runs as a script, as root) -----------------------------------------------
def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source, target, kind, flags, data=None):
    _check(_libc.mount(source and str(source).encode(), str(target).encode(), kind and kind.encode(), flags,
                       data and data.encode()), f"mount {target}")


def plan(reveal, writable=()):
    """The folders to show, as [(path, writable)], outermost first; a folder inside another shown one is
    left out unless it is writable inside a read-only one. "/", the system's own folders and the temporary
    folders themselves (always private) are never a reveal."""
    chosen = {}
    for folder, can_write in [*((f, False) for f in reveal), *((f, True) for f in writable)]:
        path = Path(os.path.realpath(folder))
        if path == Path("/") or path.parts[1] in SYSTEM or str(path) in TEMP_FOLDERS:
            continue  # the whole machine, or shown anyway, or private in any case
        chosen[path] = chosen.get(path, False) or can_write
    shown = []
    for path in sorted(chosen, key=lambda p: (len(p.parts), str(p))):
        outer = [(p, w) for p, w in shown if p in path.parents]
        if outer and (outer[-1][1] or not chosen[path]):
            continue  # inside a writable folder, or read-only inside a read-only one: shown already
        shown.append((path, chosen[path]))
    return shown


def links_on_the_way(paths):
    """{link: its text} for every symbolic link met on the way to ``paths`` (absolute, not resolved: a
    venv's .venv may be a link to another folder), outside the system's folders: the launcher's root
    holds them too, so each path means there what it means here."""
    links = {}
    for path in paths:
        pending, current, hops = list(Path(os.path.abspath(path)).parts[1:]), Path("/"), 0
        while pending and hops < 40:
            part = pending.pop(0)
            candidate = current / part
            if part == "..":
                current = current.parent
            elif candidate.is_symlink():
                hops += 1
                text = os.readlink(candidate)
                if candidate.parts[1] not in SYSTEM:
                    links[candidate] = text
                target = Path(os.path.normpath(text if os.path.isabs(text) else current / text))
                pending, current = [*target.parts[1:], *pending], Path("/")
            else:
                current = candidate
    return links


def _build_root(new_root, shown, keep_privileges, links=None):
    """The launcher's root, on a tmpfs at ``new_root``: the system's folders, the shown ones, a fresh
    /proc and private temporary folders."""
    # Handles on everything shown, opened before anything is mounted over where it lives (a bind may
    # not come from another namespace's fd, so after unshare).
    handles = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path, _ in shown}
    _mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=1m")
    for name in SYSTEM:
        source = Path("/") / name
        target = new_root / name
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        elif source.is_dir():
            target.mkdir()
            _mount(source, target, None, MS_BIND | MS_REC)
            if name != "dev":  # /dev stays writable (/dev/null); its own modes say who may write what
                # nosuid but for the project's own tests' sudo (no_new_privs stops setuid for the app anyway)
                flags = MS_REMOUNT | MS_BIND | MS_RDONLY | (0 if keep_privileges else MS_NOSUID)
                _mount(None, target, None, flags)
    (new_root / "proc").mkdir()
    # A procfs of its own, showing no process of another user (hidepid=2: "invisible" since Linux 5.8).
    _mount("proc", new_root / "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    # The temporary folders before what is shown: a folder shown inside /tmp (the workspace copy) is
    # bound onto the private /tmp, not hidden under it.
    for folder in TEMP_FOLDERS:
        target = new_root / folder.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        size = TEMP_BYTES if folder == "/tmp" else OTHER_TEMP_BYTES
        _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={size}")
    for path, can_write in shown:
        target = new_root / path.relative_to("/")
        target.mkdir(parents=True, exist_ok=True)
        _mount(f"/proc/self/fd/{handles[path]}", target, None, MS_BIND | MS_REC)
        if not can_write:  # read-only, whatever the files' own modes
            _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
    for handle in handles.values():
        os.close(handle)
    for link, text in sorted((links or {}).items()):  # the links on the way to what is shown
        place = new_root / link.relative_to("/")
        try:
            place.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(text, place)
        except OSError:
            pass  # inside a folder shown whole, where the link is there already


def _enter_own_root(reveal, writable, keep_privileges):
    # A System V IPC namespace of its own too: a shared-memory segment it made dies with it, unseen by others.
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the grader's mounts
    new_root = Path("/tmp")  # mounted over in this namespace only: the staging place of the new root
    _build_root(new_root, plan(reveal, writable), keep_privileges, links_on_the_way([*reveal, *writable]))
    os.chroot(new_root)
    os.chdir("/")


def _drop_to(user, no_new_privileges=True):
    home = Path("/tmp/home")  # in the private /tmp
    home.mkdir(mode=0o700, exist_ok=True)
    os.chown(home, user.pw_uid, user.pw_gid)
    for limit, value in ((resource.RLIMIT_NPROC, LIMITS.processes), (resource.RLIMIT_AS, LIMITS.memory),
                         (resource.RLIMIT_FSIZE, LIMITS.file_size), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(limit, (value, value))
    os.setgroups([])
    os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
    os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
    if no_new_privileges:
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    # Changing the user clears the parent-death signal: set again, the service still dies with pytest.
    _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "pdeathsig")
    return {"HOME": str(home), "USER": user.login, "LOGNAME": user.login, "TMPDIR": "/tmp"}


def private_run_folder(folder, size=DATA_BYTES):
    """Put ``folder`` (a lab run's: logs and data) on a tmpfs of ``size`` bytes, seen by this process
    and its children only (a mount namespace of its own, entered by the calling thread): what the app
    writes there cannot fill the disk. True when it was done (root on Linux), else False."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return False
    try:
        _check(_libc.unshare(CLONE_NEWNS), "unshare")
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=755,size={size}")
    except OSError:
        return False
    return True


def leave_run_folder(folder):
    """Unmount ``private_run_folder``'s tmpfs (its files go with it)."""
    _libc.umount2(str(folder).encode(), MNT_DETACH)


def main(args):
    split = args.index("--")
    options, argv = args[:split], args[split + 1:]

    def values(name):
        return [options[i + 1] for i, option in enumerate(options) if option == name]

    user = lookup(values("--user")[0])
    cwd = os.getcwd()
    keep = "--keep-privileges" in options
    for cgroup in values("--cgroup"):  # before anything of the app's runs: all it starts is counted there
        (Path(cgroup) / "cgroup.procs").write_text(str(os.getpid()))
    _enter_own_root(values("--reveal"), values("--writable"), keep)
    env = dict(os.environ, **_drop_to(user, no_new_privileges=not keep))
    env.pop(USER_VARIABLE, None)
    env.pop(CGROUP_VARIABLE, None)
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")  # a folder not shown (the walker's "/", say)
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main(sys.argv[1:])
