"""Argument types of the `ssdnet` tools' numeric flags: a count or a duration out of range is one argparse error
line at the start, not a traceback (or a silently changed measurement) later."""
from __future__ import annotations

import argparse
from collections.abc import Callable


def at_least(low: float, kind: type = int) -> Callable[[str], float]:
    """An argparse `type`: `kind(text)`, refused below `low`."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None
        if not value >= low:  # also refuses nan
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        return value
    return parse
