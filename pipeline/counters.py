"""The node's counters: per camera frames received, dropped by cause, scored, events; refusals by reason."""
from __future__ import annotations

import threading
from collections import deque

from .admission import REASONS

ARRIVAL = ("received", "conflated", "lost")  # counted as a camera's frames arrive, before they wait to be scored


class Counters:
    """Per-source frame counters, the count of malformed messages, and node-wide counts of refused
    messages by reason (`rejected`, keys from admission.REASONS), safe across threads."""

    NAMES = ("received", "conflated", "lost", "rejected", "failed", "scored", "events", "budget_unmet", "diverged",
             "downscaled", "normal_moved", "normal_recalled", "product_changes", "blank", "still",
             "scorer_fallbacks")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, dict[str, int]] = {}
        self.bad_messages = 0
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._marks: dict[str, deque[dict[str, int]]] = {}  # per source, ARRIVAL counts as each end of stream came
        self._ended: dict[str, dict[str, int]] = {}  # per source, its counters at its last end of stream

    def add(self, source: str | None, name: str, n: int = 1) -> None:
        with self._lock:
            if source is None:
                self.bad_messages += n
            else:
                self._sources.setdefault(source, dict.fromkeys(self.NAMES, 0))[name] += n

    def reject(self, reason: str, source: str | None = None) -> int:
        """Count a refused message by reason (and as `rejected` of `source`, a camera it is charged to);
        returns the count of that reason so far."""
        with self._lock:
            self.rejected[reason] += 1
            if source is not None:
                self._sources.setdefault(source, dict.fromkeys(self.NAMES, 0))["rejected"] += 1
            return self.rejected[reason]

    def source(self, source: str) -> dict[str, int]:
        with self._lock:
            return dict(self._sources.get(source, dict.fromkeys(self.NAMES, 0)))

    def end_stream(self, source: str) -> None:
        """Mark an end of stream of `source` as it arrives: the ARRIVAL counts so far are its stream's."""
        with self._lock:
            counts = self._sources.get(source, dict.fromkeys(self.NAMES, 0))
            self._marks.setdefault(source, deque()).append({name: counts[name] for name in ARRIVAL})

    def stream(self, source: str) -> dict[str, int]:
        """The counters of the stream that `source`'s oldest marked end of stream ends (since the one before), taken
        once its frames were scored: ARRIVAL counts as it arrived (the next stream's frames that came meanwhile are
        the next stream's), the others now."""
        with self._lock:
            total = dict(self._sources.get(source, dict.fromkeys(self.NAMES, 0)))
            if marks := self._marks.get(source):
                total.update(marks.popleft())
                if not marks:
                    del self._marks[source]
            before = self._ended.get(source, {})
            self._ended[source] = total
            return {name: n - before.get(name, 0) for name, n in total.items()}

    def totals(self) -> dict[str, int]:
        with self._lock:
            totals = {name: sum(c[name] for c in self._sources.values()) for name in self.NAMES}
            rejected = {f"rejected_{r}": n for r, n in self.rejected.items()}
            return {**totals, "bad_messages": self.bad_messages, **rejected}

    def snapshot(self) -> dict:
        with self._lock:
            return {"sources": {s: dict(c) for s, c in self._sources.items()}, "bad_messages": self.bad_messages,
                    "rejected": dict(self.rejected)}
