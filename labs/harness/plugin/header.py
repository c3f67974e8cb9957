"""The lines pytest prints above the results: what is graded, on which Redis, where the logs go."""
from ..i18n import say
from .options import LAB


def pytest_report_header(config):
    lab = config.stash[LAB]
    if lab.reference is None:
        workspace = say(f"{lab.workspace / 'handson'} (your code)", f"{lab.workspace / 'handson'} (あなたのコード)")
    elif lab.reference == 1:
        workspace = say("the untouched starter (labs/solutions)", "手を加えていないスターター (labs/solutions)")
    else:
        workspace = say(f"reference of step {lab.reference} (labs/solutions)",
                        f"ステップ {lab.reference} の模範解答 (labs/solutions)")
    return [
        say(f"celery-handson: workspace {workspace}; sleep {lab.sleep:g} s; language en",
            f"celery-handson: ワークスペース {workspace}、sleep {lab.sleep:g} 秒、言語 ja"),
        f"celery-handson: redis {_redis(config, lab)} {lab.redis_note}".rstrip(),
        say(f"celery-handson: logs in {lab.run_dir} (kept when a test fails, or with --keep-logs)",
            f"celery-handson: ログは {lab.run_dir} (テスト失敗時または --keep-logs で保存)"),
    ]


def _redis(config, lab):
    if getattr(config.option, "numprocesses", None) and lab.redis.kind == "local":
        # The controller starts nothing: each pytest-xdist worker has a Redis of its own.
        return say("the embedded redis-server (nothing to install), one per parallel worker, on free ports",
                   "同梱の redis-server (インストール不要)、並列ワーカーごとに 1 つ、空きポートで")
    return lab.redis.describe()
