"""Argument types of the `ssdnet` commands' numeric flags: a count, a duration or a threshold out of range (or not a
finite number) is one argparse error line at the start, not a traceback, a silently changed measurement or a line
that never stops later."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from .config import ConfigError


def _ranged(kind: type, ok: Callable[[float], bool], says: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"must be {says}, got {text}")
        return value
    return parse


def at_least(low: float, kind: type = int) -> Callable[[str], float]:
    """An argparse `type`: `kind(text)`, refused below `low` (and nan, inf)."""
    return _ranged(kind, lambda v: v >= low, f"at least {low}")


def above(low: float, kind: type = float, high: float | None = None) -> Callable[[str], float]:
    """An argparse `type`: `kind(text)`, refused at or below `low`, above `high` where given (and nan, inf)."""
    most = "" if high is None else f" and at most {high:g}"
    return _ranged(kind, lambda v: v > low and (high is None or v <= high), f"above {low}{most}")


def between(low: float, high: float, kind: type = float) -> Callable[[str], float]:
    """An argparse `type`: `kind(text)` from `low` to `high`, both included."""
    return _ranged(kind, lambda v: low <= v <= high, f"from {low} to {high}")


finite = _ranged(float, lambda v: True, "a finite number")


def no_file_above(folder: Path) -> None:
    """ConfigError where `folder`, or a folder above it, is a file: said before the work that writes into it."""
    if (file := next((p for p in (folder, *folder.parents) if p.is_file()), None)) is not None:
        raise ConfigError(f"{file} is a file, where a folder goes")


def check_output_file(path: Path, flag: str, example: str) -> None:
    """Refuse now, not after the work, a place where `flag`'s file cannot be written: a folder (ConfigError, naming
    `example` in it), a file where a folder goes (ConfigError), a read-only place (OSError). Its folder is made if
    missing; no empty file is left behind."""
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder: give the file to write, e.g. {path / example}")
    no_file_above(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    with path.open("a"):
        pass
    if not existed:
        path.unlink()
