"""The graded code's rights: a user of its own, private temporary folders, and limits.

While grading as root (tools/grade.py sets HANDSON_CONFINE_USER), every service that runs the
learner's code (and Redis, which that code can command) starts through this launcher:

    python -I labs/harness/services/confine.py --user NAME --reveal DIR ... -- ARGV...

(-I and a path, not -m: as root it must import nothing from the folder it starts in, the learner's.)

Still root, the launcher enters a mount namespace of its own (unshare CLONE_NEWNS) and there:
- covers /tmp, /var/tmp, /dev/shm and /run/lock with small private tmpfs (TEMP_BYTES): the code
  cannot fill the disk, see other runs' files, or leave any behind;
- makes each DIR it must read reachable and read-only: the workspace copy, the lab (the app imports
  labs.harness.services.runserver), the venv and the Python it comes from. A folder on the way that
  the user may not enter (/root, a home folder) is covered by a tmpfs that holds only the way on;
then it sets LIMITS, drops to the user (no supplementary groups, no_new_privs: no sudo, no setuid
program gives root back) and execs ARGV. So the code can write nowhere but its private /tmp, nor
read the grader's environment (/proc/PID/environ of another user), nor signal the grader's processes.
The user's processes count together against RLIMIT_NPROC, so a fork bomb stops at LIMITS.processes
(the kernel exempts root from that limit, kernel/fork.c: the grader can still fork and kill).
"""
import ctypes
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

USER_VARIABLE = "HANDSON_CONFINE_USER"  # set by tools/grade.py for the pytest that starts the services
DEFAULT_USER = "celery-handson"  # a system user of its own: its processes are the app's and no one else's
TEMP_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
TEMP_BYTES = 256 << 20  # each of a service's private temporary folders


@dataclass(frozen=True)
class Limits:
    processes: int = 512  # of the user, all services of all steps together (threads count too)
    memory: int = 4 << 30  # address space per process
    file_size: int = 128 << 20  # per file written


LIMITS = Limits()

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38


def confining_user():
    """The user the app runs as while grading, or None (not grading as root)."""
    name = os.environ.get(USER_VARIABLE)
    return pwd.getpwnam(name) if name else None


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


def prepare(env=os.environ):
    """Before grading: (the user name the app will run as, None) when it can be confined here,
    else (None, why not). As root, the user is created if missing (HANDSON_GRADE_USER names another
    existing one; HANDSON_GRADE_USER=none turns the guard off), and the launcher is tried once."""
    name = env.get("HANDSON_GRADE_USER", DEFAULT_USER)
    if not sys.platform.startswith("linux"):
        return None, "it needs Linux (mount namespaces)"
    if name == "none":
        return None, "HANDSON_GRADE_USER=none turned it off"
    if os.geteuid() != 0:
        if env.get("HANDSON_GRADE_SUDO") == "1":
            return None, "HANDSON_GRADE_SUDO=1 asked for root, but `sudo -n` was refused"
        return None, ("the grader is not root (grade as root, or with HANDSON_GRADE_SUDO=1 where sudo "
                      "needs no password, to have it)")
    problem = ensure_user(name, create="HANDSON_GRADE_USER" not in env)
    if problem:
        return None, problem
    probe = subprocess.run(wrap([sys.executable, "-c", "import celery, django"], Path.cwd(), user=name),
                           env=dict(env), capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return None, f"the app could not start as {name}: {(probe.stderr.strip().splitlines() or ['?'])[-1]}"
    return name, None


def slot_users(base, count):
    """One user per step graded at the same time: ``base``, ``base``-2, ... (made if missing; fewer
    when one cannot be). The process limit counts a user's processes together: were two steps to share
    one, a fork bomb in one would stop the other's services from starting."""
    users = [base]
    for slot in range(2, count + 1):
        if ensure_user(f"{base}-{slot}") is not None:
            break
        users.append(f"{base}-{slot}")
    return users


def wrap(argv, cwd, user=None, writable=(), keep_privileges=False, readable=()):
    """``argv`` started through the launcher as ``user`` (by default the one grading confines the app
    to, and when there is none, ``argv`` unchanged). ``readable`` folders are shown too, ``writable``
    ones stay writable (for the app: only its data folder, app_env.data_folders), and ``keep_privileges``
    leaves sudo usable (for the project's own tests, never for the app)."""
    confined = confining_user()
    user = user or (confined.pw_name if confined else None)
    if not user:
        return list(argv)
    from ..paths import ROOT  # here: the launcher itself runs as a script, outside the package

    # What the command needs to read: its own program's folder (a redis-server on PATH), its folder,
    # the lab (labs.harness.services.runserver), the venv and the Python it comes from.
    program = shutil.which(argv[0]) or argv[0]
    reveal = {cwd, ROOT, sys.prefix, sys.base_prefix, Path(sys.executable).resolve().parent,
              Path(program).resolve().parent, *readable}
    options = ["--user", user, *(["--keep-privileges"] if keep_privileges else [])]
    options += [arg for folder in sorted(str(Path(f).resolve()) for f in reveal) for arg in ("--reveal", folder)]
    options += [arg for folder in writable for arg in ("--writable", str(Path(folder).resolve()))]
    return [sys.executable, "-I", str(Path(__file__).resolve()), *options, "--", *argv]


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source, target, kind, flags, data=None):
    _check(_libc.mount(source and str(source).encode(), str(target).encode(), kind and kind.encode(), flags,
                       data and data.encode()), f"mount {target}")


def _can_enter(folder, user):
    """Whether ``user`` may search ``folder`` (the x bit that applies to it; ACLs aside)."""
    info = os.stat(folder)
    if info.st_uid == user.pw_uid:
        return bool(info.st_mode & 0o100)
    if info.st_gid == user.pw_gid:
        return bool(info.st_mode & 0o010)
    return bool(info.st_mode & 0o001)


def plan(reveal, user, temp_folders=TEMP_FOLDERS):
    """{folder to cover with a tmpfs: the children of it to keep}, top folders first. A temporary
    folder is always covered; another only when ``user`` may not enter it on the way to a revealed one."""
    reveal = [Path(os.path.realpath(folder)) for folder in reveal]
    covers = {Path(folder): set() for folder in temp_folders if os.path.isdir(folder)}
    for folder in reveal:
        for parent in reversed(folder.parents):  # "/" first
            if parent != Path("/") and not _can_enter(parent, user):
                covers.setdefault(parent, set())
    for cover, keep in covers.items():
        for folder in reveal:
            if cover in folder.parents:
                keep.add(cover / folder.relative_to(cover).parts[0])
    return dict(sorted(covers.items(), key=lambda item: len(item[0].parts)))


def _set_up_mounts(reveal, writable, user):
    covers = plan([*reveal, *writable], user)
    _check(_libc.unshare(CLONE_NEWNS), "unshare")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the grader's mounts
    # Handles on every folder kept, opened (in the new namespace: a bind may not come from another one)
    # before anything is covered: each is bound back from its handle.
    handles = {kept: os.open(kept, os.O_PATH | os.O_DIRECTORY) for keep in covers.values() for kept in keep}
    for cover, keep in covers.items():
        temporary = str(cover) in TEMP_FOLDERS
        mode = "1777" if temporary else "755"
        _mount("tmpfs", cover, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode},size={TEMP_BYTES if temporary else 1 << 20}")
        for kept in sorted(keep):
            kept.mkdir(exist_ok=True)
            _mount(f"/proc/self/fd/{handles[kept]}", kept, None, MS_BIND | MS_REC)
    for handle in handles.values():
        os.close(handle)
    writable = [Path(folder) for folder in writable]  # resolved by wrap()
    read_only = {Path(folder) for folder in reveal
                 if not any(w == Path(folder) or w in Path(folder).parents for w in writable)}
    for folder in sorted(read_only):  # read-only, whatever the files' own modes
        _mount(folder, folder, None, MS_BIND | MS_REC)
        _mount(None, folder, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)


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
    return {"HOME": str(home), "USER": user.pw_name, "LOGNAME": user.pw_name, "TMPDIR": "/tmp"}


def main(args):
    split = args.index("--")
    options, argv = args[:split], args[split + 1:]

    def values(name):
        return [options[i + 1] for i, option in enumerate(options) if option == name]

    user = pwd.getpwnam(values("--user")[0])
    cwd = os.getcwd()
    _set_up_mounts(values("--reveal"), values("--writable"), user)
    env = dict(os.environ, **_drop_to(user, no_new_privileges="--keep-privileges" not in options))
    env.pop(USER_VARIABLE, None)
    os.chdir(cwd)
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main(sys.argv[1:])
