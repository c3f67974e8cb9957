"""An import that leaks memory (step 12). You do not need to edit this file.

``load(batch)`` stands for a library with a leak you cannot fix today: a cache that only
grows, a C extension that never frees. Every call keeps LEAK_MIB more memory in the
process that made it, for as long as that process lives. It answers which process ran
it and how much that process holds, so you can watch a pool process grow.
"""
import os

BATCHES = 32  # the batches one press of Step12 imports
LEAK_MIB = 8  # the memory each call keeps for good
_kept = []  # what leaks: nothing ever empties it


def load(batch):
    """Import ``batch`` (a number): {"batch", "pid", "leaked_mib", "rss_mib"} of the process that ran it."""
    _kept.append(b"\x01" * (LEAK_MIB * 1024 * 1024))  # written, not only reserved: it counts in the RSS
    return {"batch": batch, "pid": os.getpid(), "leaked_mib": len(_kept) * LEAK_MIB, "rss_mib": _rss_mib()}


def _rss_mib():
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    except (OSError, ValueError):  # no /proc (macOS): the leak still shows in leaked_mib
        return None
