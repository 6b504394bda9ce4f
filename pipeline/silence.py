"""Camera connections gone silent: a camera that has spoken and then sends nothing, neither frame nor heartbeat (it
died, hung or was cut off), is logged once as it goes silent and once when it is heard again, and counted.

Silent means quiet for SILENT_WARN_S and for 3x the longest gap seen between two of its messages (a camera's own
heartbeat period, learnt; at most a third of the node's reconnect delay, so one long hiccup does not silence the
check). A camera that ended its stream is not silent."""
from __future__ import annotations

import logging
import time
from collections.abc import Hashable

log = logging.getLogger("pipeline.node")
SILENT_WARN_S = 10.0


class Silences:
    """The node receiver's view of its camera connections (keys: its sockets; `names`: how to say them)."""

    def __init__(self, names: dict[Hashable, object], max_cadence_s: float):
        self.names, self.max_cadence_s = names, max_cadence_s
        self.last: dict[Hashable, float] = {}  # connection -> when it last gave a message (only those that spoke)
        self.cadence: dict[Hashable, float] = {}  # connection -> the longest gap between two of its messages
        self.silent: set[Hashable] = set()

    def heard(self, conn: Hashable, kind: str | None, now: float | None = None) -> None:
        """A message of `kind` (None: refused) came on `conn`."""
        now = time.monotonic() if now is None else now
        if conn in self.last:  # learnt from every gap, a silence too (a camera that beats every 25 s is not dead)
            self.cadence[conn] = min(self.max_cadence_s, max(self.cadence.get(conn, 0.0), now - self.last[conn]))
        if conn in self.silent:
            self.silent.discard(conn)
            log.warning("%s: heard again after %.0f s of silence", self.names[conn], now - self.last[conn])
        if kind == "eos":  # it ended: its silence from now on is no news
            self.last.pop(conn, None)
        else:
            self.last[conn] = now

    def check(self, now: float | None = None) -> int:
        """Say the connections that have just gone silent; returns how many are silent now."""
        now = time.monotonic() if now is None else now
        for conn, t in self.last.items():
            if conn not in self.silent and now - t > max(SILENT_WARN_S, 3 * self.cadence.get(conn, 0.0)):
                self.silent.add(conn)
                log.warning("%s: nothing from this camera for %.0f s, neither frame nor heartbeat: stopped, hung or "
                            "cut off", self.names[conn], now - t)
        return len(self.silent)
