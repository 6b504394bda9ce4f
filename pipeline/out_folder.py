"""`ssdnet run`'s output folder: one writer per role at a time, and a whole line's run kept apart from the last.

Two runs writing one folder at once would interleave their results and clash in the node's event log (a second
node's events failed to log there), so each stage holds a lock on OUT for what it writes: the node (`node`: its event
log), the collector (`sinks`: events.jsonl, scores.jsonl, overlays, summary.json), a whole line both. A whole line's
run starts its event log and its files afresh, so their numbering agrees; the results of the run before it are moved
to OUT/previous/ (one run back), never deleted unasked.
"""
from __future__ import annotations

import fcntl
import glob
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .stages import LineError

log = logging.getLogger(__name__)
RESULTS = ("events.jsonl", "scores.jsonl", "summary.json", "overlays", "node-events.db")  # and their backups
PREVIOUS = "previous"


@contextmanager
def claimed(out: Path, roles: tuple[str, ...]) -> Iterator[None]:
    """Hold OUT for `roles` while the block runs (an flock per role, released when the process ends however it
    ends); LineError when another process holds one."""
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as held:
        for role in roles:
            lock = held.enter_context(open(out / f".{role}.lock", "a+"))
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                raise LineError(f"{out} is being written by another ssdnet run (its {role}, pid "
                                f"{lock.read().strip() or '?'}): wait for it to end, or give another --out") from None
            lock.seek(0)
            lock.truncate()
            lock.write(f"{os.getpid()}\n")
            lock.flush()
        yield


def set_aside(out: Path) -> Path | None:
    """Move the results of a run before into OUT/previous/ (replacing the one there); returns it, or None when OUT
    held none."""
    found = [Path(p) for name in RESULTS for p in glob.glob(glob.escape(str(out / name)) + "*")]
    if not found:
        return None
    previous = out / PREVIOUS
    older = previous.exists()
    shutil.rmtree(previous, ignore_errors=True)
    previous.mkdir()
    for path in found:
        path.rename(previous / path.name)
    log.warning("%s held the results of an earlier run: moved to %s%s", out, previous,
                " (the run before it, which was there, is removed)" if older else "")
    return previous
