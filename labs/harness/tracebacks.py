"""The one line of a Python traceback a learner needs: which file of handson/, which line, what error."""
import os
import re
from pathlib import Path

_FRAME = re.compile(r'File "([^"]+)", line (\d+)')
_ERROR = re.compile(r"^((?:[A-Za-z_][\w.]*)?(?:Error|Exception|Interrupt)\b.*)$", re.M)


def _learners(path, workspace):
    """``path`` as "handson/views.py" when it is a file of the learner's handson/ package, else None.
    Only a path under the workspace's own handson/ counts: a checkout named celery-handson puts
    "handson/" in every library path of its .venv too."""
    if workspace is not None:
        try:
            relative = Path(os.path.normpath(path)).relative_to(Path(os.path.normpath(workspace)))
        except ValueError:
            return None
        return relative.as_posix() if relative.parts[:1] == ("handson",) else None
    found = re.search(r"(?:^|/)(handson/.+)$", path)
    libraries = ("site-packages/", "dist-packages/", "/.venv/", "/lib/python")
    return found.group(1) if found and not any(part in path for part in libraries) else None


def headline(log, workspace=None):
    """E.g. "handson/tasks.py, line 8: SyntaxError: expected ':'", or "" when the log holds no traceback.
    The place is the innermost frame of the learner's own code (the line they wrote that led to the
    error), not a library's frame below it."""
    errors = _ERROR.findall(log)
    if "Traceback" not in log or not errors:
        return ""
    frames = [(place, line) for path, line in _FRAME.findall(log)
              for place in [_learners(path, workspace)] if place]
    where = f"{frames[-1][0]}, line {frames[-1][1]}: " if frames else ""
    return where + errors[-1].strip()
