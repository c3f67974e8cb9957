"""Waiting on a condition with a deadline, never a bare sleep."""
import time


def wait_for(condition, timeout, interval=0.05):
    """Poll ``condition()`` until it returns something truthy or ``timeout`` s pass; return its last value."""
    deadline = time.monotonic() + timeout
    value = condition()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = condition()
    return value
