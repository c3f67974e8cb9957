"""The one line of a Python traceback a learner needs: which file of handson/, which line, what error."""
import re

_FRAME = re.compile(r'File "[^"]*?(handson/[^"]+)", line (\d+)')
_ERROR = re.compile(r"^((?:[A-Za-z_][\w.]*)?(?:Error|Exception|Interrupt)\b.*)$", re.M)


def headline(log):
    """E.g. "handson/tasks.py, line 8: SyntaxError: expected ':'", or "" when the log holds no traceback."""
    errors = _ERROR.findall(log)
    if "Traceback" not in log or not errors:
        return ""
    frames = _FRAME.findall(log)
    where = f"{frames[-1][0]}, line {frames[-1][1]}: " if frames else ""
    return where + errors[-1].strip()
