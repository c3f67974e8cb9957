"""handson/Procfile: the Celery workers (and the beat scheduler) a learner declares, in the form a
deployment uses.

One process per line, ``name: command``, as Heroku, honcho and foreman read it:

    default: celery -A handson worker --concurrency=4 -n default@%h -l info
    slow: celery -A handson worker -Q slow --concurrency=1 --prefetch-multiplier=1 -n slow@%h -l info
    beat: celery -A handson beat -l info

A command may start with ``exec`` (step 12): run in shell form (``/bin/sh -c``), the shell then
replaces itself with celery instead of waiting for it, so a deploy's SIGTERM reaches Celery. The
spec keeps it (``execs``); the lab and `make run` start celery directly, where it changes nothing.

``read_procfile`` turns each worker line into a ``WorkerSpec`` (services/worker.py) and each beat
line into a ``BeatSpec`` (services/beat.py), so step 8's and step 11's labs, `make run` and compose
start exactly the processes written there. A line it cannot start the same way everywhere is
refused with a message that says which line and why (``ProcfileError``); the file is never half read.
"""
import re
import shlex
from pathlib import Path

from ..i18n import say
from .beat import BeatSpec
from .intake import LeadsOutside, read_submitted
from .worker import WorkerSpec

PROCFILE = Path("handson") / "Procfile"
EXAMPLE = "default: celery -A handson worker --concurrency=4 -n default@%h -l info"
POOLS = ("prefork", "solo", "threads", "eventlet", "gevent")
# Options passed on to the worker as written: (long form, short form or None, takes a value).
PASSED_ON = {"--prefetch-multiplier": True, "--disable-prefetch": False, "-O": True, "--autoscale": True,
             "--max-tasks-per-child": True, "--max-memory-per-child": True, "--time-limit": True,
             "--soft-time-limit": True}
IGNORED = {"-l": True, "--loglevel": True}  # the lab and `make run` log at INFO, to read the log
# A beat line's options: the lab keeps the schedule file in the run's folder (services/beat.py), so -s is not
# taken as written; --max-interval is passed on.
BEAT_PASSED_ON = {"--max-interval": True}
BEAT_IGNORED = {"-l": True, "--loglevel": True, "-s": True, "--schedule": True}


class ProcfileError(Exception):
    """handson/Procfile cannot be started as written; the message (in the learner's language) says why."""


def _options(tokens, takes_value=None):
    """(option, value) pairs of a command line, with --opt=value, -o value and --flag forms (a worker's
    options unless ``takes_value`` says which options take a value)."""
    pairs, index = [], 0
    while index < len(tokens):
        token = tokens[index]
        if token.startswith("--") and "=" in token:
            pairs.append(tuple(token.split("=", 1)))
        elif (takes_value.get(token) if takes_value is not None else (
                token in ("-A", "--app", "-c", "--concurrency", "-n", "--hostname", "-Q", "--queues", "-P", "--pool")
                or PASSED_ON.get(token) or IGNORED.get(token))):
            value = tokens[index + 1] if index + 1 < len(tokens) else None
            pairs.append((token, value))
            index += 1
        else:
            pairs.append((token, None))
        index += 1
    return pairs


def _refuse(number, line, en, ja):
    raise ProcfileError(say(
        f"handson/Procfile, line {number}: {line!r}\n{en}\nEach line declares one worker, for example:\n  {EXAMPLE}",
        f"handson/Procfile の {number} 行目: {line!r}\n{ja}\n1 行に 1 つのワーカーを書きます。例:\n  {EXAMPLE}",
    ))


def parse_line(number, line):
    """The WorkerSpec (or BeatSpec) of one ``name: command`` line (ProcfileError if it cannot be started as
    written)."""
    name, colon, command = line.partition(":")
    name = name.strip()
    if not colon or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        _refuse(number, line, "A line is `name: command`, the name made of letters, digits, - and _.",
                "1 行は `名前: コマンド` の形で、名前は英数字と - と _ だけです。")
    try:
        tokens = shlex.split(command)
    except ValueError as error:
        _refuse(number, line, f"The command cannot be split into words: {error}.",
                f"コマンドを単語に分けられません: {error}。")
    execs = tokens[:1] == ["exec"]
    tokens = tokens[1:] if execs else tokens
    app_at = tokens.index("-A") if "-A" in tokens else None
    if tokens[:1] != ["celery"] or ("worker" not in tokens and "beat" not in tokens):
        _refuse(number, line, "Only Celery workers (`celery -A handson worker ...`) and the beat scheduler "
                "(`celery -A handson beat`) belong here: the lab and `make run` start Redis and the web server "
                "themselves.",
                "ここに書くのは Celery ワーカー (`celery -A handson worker ...`) と beat スケジューラー "
                "(`celery -A handson beat`) だけです。Redis と Web サーバーはラボと `make run` が起動します。")
    app = tokens[app_at + 1] if app_at is not None and app_at + 1 < len(tokens) else None
    app = app or next((token.split("=", 1)[1] for token in tokens if token.startswith("--app=")), None)
    if app != "handson":
        _refuse(number, line, f"The worker must load the app of this project: `celery -A handson worker` (not {app!r}).",
                f"ワーカーはこのプロジェクトのアプリを読み込む必要があります: `celery -A handson worker` ({app!r} ではなく)。")
    if "worker" not in tokens:
        return _beat_line(number, line, name, tokens[tokens.index("beat") + 1:], execs)
    worker_at = tokens.index("worker")
    concurrency, node, queues, pool, events, beat, options = 1, name, (), "prefork", False, False, []
    for option, value in _options(tokens[worker_at + 1:]):
        if option in ("-c", "--concurrency"):
            if not (value or "").isdigit() or not 1 <= int(value) <= 16:
                _refuse(number, line, f"--concurrency takes a number of processes from 1 to 16, not {value!r}.",
                        f"--concurrency にはプロセス数 1〜16 を指定します ({value!r} ではなく)。")
            concurrency = int(value)
        elif option in ("-n", "--hostname"):
            node = (value or "").split("@", 1)[0]
            if not re.fullmatch(r"[A-Za-z0-9_-]+", node):
                _refuse(number, line, f"-n takes a node name such as fast@%h, not {value!r}.",
                        f"-n には fast@%h のようなノード名を指定します ({value!r} ではなく)。")
        elif option in ("-Q", "--queues"):
            queues = tuple(queue.strip() for queue in (value or "").split(",") if queue.strip())
            if not queues:
                _refuse(number, line, "-Q takes the queues this worker consumes, separated by commas (-Q slow).",
                        "-Q にはこのワーカーが受け取るキューをカンマ区切りで指定します (-Q slow)。")
        elif option in ("-P", "--pool"):
            if value not in POOLS:
                _refuse(number, line, f"--pool is one of {', '.join(POOLS)}, not {value!r}.",
                        f"--pool は {', '.join(POOLS)} のいずれかです ({value!r} ではなく)。")
            pool = value
        elif option in ("-E", "--task-events"):
            events = True
        elif option in ("-B", "--beat"):
            beat = True
        elif option in PASSED_ON:
            if PASSED_ON[option] and value is None:
                _refuse(number, line, f"{option} needs a value.", f"{option} には値が必要です。")
            options.append(f"{option}={value}" if PASSED_ON[option] and option.startswith("--") else option)
            if option == "-O":
                options.append(value)
        elif option in IGNORED:
            continue
        else:
            _refuse(number, line, f"The lab does not know the worker option {option!r}. It reads -c/--concurrency, "
                    f"-n, -Q, -P/--pool, -E, -B, -l and {', '.join(PASSED_ON)}.",
                    f"ラボはワーカーのオプション {option!r} を知りません。読めるのは -c/--concurrency、-n、-Q、-P/--pool、"
                    f"-E、-B、-l と {', '.join(PASSED_ON)} です。")
    return WorkerSpec(node=node, concurrency=concurrency, pool=pool, queues=queues, events=events, beat=beat,
                      options=tuple(options), execs=execs)


def _beat_line(number, line, name, tokens, execs):
    options = []
    for option, value in _options(tokens, takes_value={**BEAT_PASSED_ON, **BEAT_IGNORED}):
        if option in BEAT_IGNORED:
            continue
        if option in BEAT_PASSED_ON:
            if value is None or not value.isdigit():
                _refuse(number, line, f"{option} takes a number of seconds, not {value!r}.",
                        f"{option} には秒数を指定します ({value!r} ではなく)。")
            options.append(f"{option}={value}")
        else:
            _refuse(number, line, f"The lab does not know the beat option {option!r}. It reads -l and "
                    f"{', '.join(BEAT_PASSED_ON)} (the schedule file, -s, is the lab's: in the run's folder).",
                    f"ラボは beat のオプション {option!r} を知りません。読めるのは -l と {', '.join(BEAT_PASSED_ON)} "
                    "です (スケジュールファイル -s はラボが実行フォルダーに置きます)。")
    return BeatSpec(name=name, options=tuple(options), execs=execs)


def read_procfile(path):
    """Every worker (WorkerSpec) and beat (BeatSpec) ``path`` declares, in order (ProcfileError when the file
    is missing, has no worker, or a line is wrong)."""
    path = Path(path)
    try:
        text = read_submitted(path)
    except LeadsOutside:
        raise ProcfileError(say(
            f"{PROCFILE} is a link that leads outside handson/ (or to something that is not a file): the lab reads "
            "only the submission's own files. Write the Procfile itself in handson/.",
            f"{PROCFILE} が handson/ の外 (またはファイルでないもの) を指すリンクです。ラボは提出物自身のファイルだけを"
            "読みます。handson/ に Procfile そのものを書いてください。")) from None
    except FileNotFoundError:
        text = None
    if text is None:
        raise ProcfileError(say(
            f"{PROCFILE} is missing: it lists the Celery workers to start, one per line, e.g.\n  {EXAMPLE}\n"
            "(make reset STEP=8 puts back the one step 8 begins with).",
            f"{PROCFILE} がありません。起動する Celery ワーカーを 1 行に 1 つ書くファイルです。例:\n  {EXAMPLE}\n"
            "(make reset STEP=8 でステップ 8 の最初の状態に戻せます)。",
        ))
    specs, names = [], {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        spec = parse_line(number, line)
        if isinstance(spec, BeatSpec):
            specs.append(spec)
            continue
        if spec.node in names:
            _refuse(number, line, f"Node name {spec.node!r} is used on line {names[spec.node]} already: give every "
                    "worker its own -n (two workers with one name confuse remote control and monitoring).",
                    f"ノード名 {spec.node!r} は {names[spec.node]} 行目で使われています。ワーカーごとに別の -n を"
                    "付けてください (同じ名前のワーカーはリモート制御や監視を混乱させます)。")
        names[spec.node] = number
        specs.append(spec)
    if not any(isinstance(spec, WorkerSpec) for spec in specs):
        raise ProcfileError(say(
            f"{PROCFILE} declares no worker. Write one per line, e.g.\n  {EXAMPLE}",
            f"{PROCFILE} にワーカーがありません。1 行に 1 つ書いてください。例:\n  {EXAMPLE}",
        ))
    return specs
