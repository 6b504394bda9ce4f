"""`ssdnet run`'s output folder: one writer per role at a time, and a whole line's run kept apart from the last.

Two runs writing one folder at once would interleave their results and clash in the node's event log (a second
node's events failed to log there), so each stage holds a lock on OUT for what it writes: the node (`node`: its event
log), the collector (`sinks`: events.jsonl, scores.jsonl, overlays, summary.json), a whole line both. A whole line's
run starts its event log and its files afresh, so their numbering agrees; the results of the run before it are moved
to OUT/previous/, the one before that to OUT/previous-2/, and so on: the last `KEEP_RUNS` runs are kept, an older one
is removed (and logged). A sinks stage run on its own appends to its files, and keeps the summaries of its runs before
as summary.json.1, summary.json.2, ... (`keep_earlier`).
"""
from __future__ import annotations

import fcntl
import glob
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from logging.handlers import RotatingFileHandler
from pathlib import Path

from .stages import LineError

log = logging.getLogger(__name__)

# and their backups; soak.json: `ssdnet soak`'s verdict on the run, moved with it
RESULTS = ("events.jsonl", "scores.jsonl", "summary.json", "overlays", "node-events.db", "soak.json")
PREVIOUS = "previous"
PARTIAL = ".previous-partial"  # an earlier run's results while they move (`set_aside`)
KEEP_RUNS = 5  # earlier runs kept: previous/, previous-2/ ... previous-5/ (each run's files are capped)


class FolderBusy(LineError):
    """OUT is held by another run: the user's mistake, refused before anything starts."""


@contextmanager
def claimed(out: Path, roles: tuple[str, ...]) -> Iterator[None]:
    """Hold OUT for `roles` while the block runs (an flock per role, released when the process ends however it
    ends); FolderBusy when another process holds one."""
    out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as held:
        for role in roles:
            lock = held.enter_context(open(out / f".{role}.lock", "a+"))
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                raise FolderBusy(f"{out} is being written by another ssdnet run (its {role}, pid "
                                f"{lock.read().strip() or '?'}): wait for it to end, or give another --out") from None
            lock.seek(0)
            lock.truncate()
            lock.write(f"{os.getpid()}\n")
            lock.flush()
        yield


def set_aside(out: Path, keep: int = KEEP_RUNS) -> Path | None:
    """Move the results of a run before into OUT/previous/, those there one run further back (previous-2/, ...) up to
    the first free place; with all `keep` places taken the oldest is removed first (LineError if it cannot be, before
    anything moves). Returns OUT/previous/, or None when OUT held no results.

    The results gather in OUT/.previous-partial/ first and it becomes previous/ in one rename, so a run cut short while
    moving them (a crash, a kill) leaves them there, and the next run finishes the move: a run's results are never split
    between two folders (each rename is atomic; a shift cut short leaves a free place the next one fills). Where OUT's
    results share a name with the partial run's, OUT was written since (a stage run on its own): the partial run is
    set aside whole first, then OUT's."""
    partial = out / PARTIAL
    found = [Path(p) for name in RESULTS for p in glob.glob(glob.escape(str(out / name)) + "*")]
    if partial.is_dir() and any((partial / path.name).exists() for path in found):
        _into_place(out, keep)
    if not found and not partial.is_dir():
        return None
    _free_place(out, keep)
    partial.mkdir(exist_ok=True)
    for path in found:
        path.rename(partial / path.name)
    return _into_place(out, keep)


def keep_earlier(path: Path, keep: int = KEEP_RUNS) -> None:
    """Keep the file `path` of an earlier run as PATH.1 before this run writes its own: PATH.1 becomes PATH.2, and so
    on, the last `keep` kept (the oldest replaced), as the JSONL files turn over. A sinks stage started again in its
    OUT appends to its events and scores, and writes a summary of its own run."""
    if path.exists():
        turner = RotatingFileHandler(path, backupCount=keep, delay=True)  # opens nothing: only its renames
        turner.doRollover()
        turner.close()


def _free_place(out: Path, keep: int) -> list[Path]:
    """OUT's `keep` places for earlier runs, at least one of them free: the oldest run is removed when none is."""
    back = [out / PREVIOUS, *(out / f"{PREVIOUS}-{n}" for n in range(2, keep + 1))]
    if all(path.exists() or path.is_symlink() for path in back):
        _remove(back[-1])
        log.warning("%s: removed %s, the oldest of the %d earlier runs kept", out, back[-1], keep)
    return back


def _into_place(out: Path, keep: int) -> Path:
    """OUT/.previous-partial/ becomes OUT/previous/, the runs there each one further back up to the first free place."""
    back = _free_place(out, keep)
    free = next(n for n, path in enumerate(back) if not path.exists() and not path.is_symlink())
    for n in range(free, 0, -1):  # previous-2/ -> previous-3/, previous/ -> previous-2/ (up to the free place)
        back[n - 1].rename(back[n])
    (out / PARTIAL).rename(back[0])
    log.warning("%s held the results of an earlier run: moved to %s", out, back[0])
    return back[0]


def _remove(path: Path) -> None:
    """Remove an earlier run's folder (or whatever stands in its place); LineError if it cannot be."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError as e:
        raise LineError(f"cannot remove {path} (the oldest earlier run kept) to make room for the last one: {e}; "
                        "remove it, or give another --out") from None
