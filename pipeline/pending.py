"""The node's frames waiting to be scored: at most `queue_depth` per camera, the newest kept, cameras served in equal
shares of the node's time."""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from . import protocol as P

AWAIT_S = 0.05  # how long the worker waits for a frame on its way from a source whose turn it is (`awaited`)
ENDS_WAITING = 8  # a camera's ends of stream that may wait to go out


def _nbytes(msg: P.Message) -> int:
    return sum(a.nbytes for a in msg.arrays.values())


@dataclass(frozen=True)
class RunEnded:
    """A camera's run that ended with no end of stream (a crash, a kill), found at its next run's first message:
    queued as an end of stream is (`PendingFrames.end`), so that the counters of that run's stream close after its
    frames waiting, and the next end of stream counts its own run only."""

    source: str
    kind: str = "run_ended"


@dataclass
class _End:
    """An end of stream (or a run's end found later) waiting, and how many of its source's waiting frames came before
    it."""

    msg: P.Message | RunEnded
    before: int


class PendingFrames:
    """Frames waiting to be scored: at most `depth` per source, the oldest dropped when a newer one
    comes (depth 1: only the newest frame is ever scored). Of the sources with a frame waiting, the one that has
    used the least of the node's time (`served`) goes next, in turn when they tie: each gets an equal share of the
    time, so a camera of large frames takes no more of it than one of small frames (a source that waited starts
    level with the others, nothing banked while idle). A source's ends of stream are handed out in the order they
    came, each once the frames that came before it have been taken (or pushed out), before any frame that came after
    it: a camera that streams on at once does not hold its end back. The bytes waiting are counted per source
    (`bytes`, `total_bytes`) for the node's memory budget.

    `awaited(age)` names the sources whose next frame is on its way, asked for in the last `age` seconds (a credit
    camera granted its next frame the moment its last was done has nothing waiting when the next is picked): when one
    of them has used less of the node's time than the source that would go next, the worker waits up to AWAIT_S for
    its frame, once per pick, so that a live camera of large frames does not take every other turn from it; a camera
    that does not send within AWAIT_S of its grant (gone, or slow) is not waited for again until its next grant."""

    def __init__(self, depth: int = 1, awaited: Callable[[float], set[str]] | None = None) -> None:
        self.depth, self.awaited = depth, awaited
        self._cond = threading.Condition()
        self._frames: OrderedDict[str, deque[P.Message]] = OrderedDict()
        self._ends: OrderedDict[str, deque[_End]] = OrderedDict()  # per source, in the order they came
        self.bytes: dict[str, int] = {}
        self.total_bytes = 0
        self._used: dict[str, float] = {}  # seconds of the node's time each source has used (as `served` says)
        self._level = 0.0  # the time used by the source taken last when it was taken: where a returning source starts

    def put(self, msg: P.Message) -> bool:
        """Add a frame; True if that pushed out an older waiting frame of its source."""
        with self._cond:
            if msg.source not in self._frames:  # no time banked while it had nothing waiting
                self._used[msg.source] = max(self._used.get(msg.source, 0.0), self._level)
            waiting = self._frames.setdefault(msg.source, deque())
            dropped = len(waiting) >= self.depth
            if dropped:
                self._pop(msg.source)
            waiting.append(msg)
            self._account(msg.source, _nbytes(msg))
            self._cond.notify()
            return dropped

    def _pop(self, source: str) -> P.Message:
        """Take out the oldest waiting frame of `source`: one frame fewer before each of its ends of stream."""
        msg = self._frames[source].popleft()
        self._account(source, -_nbytes(msg))
        for end in self._ends.get(source, ()):
            end.before = max(0, end.before - 1)
        return msg

    def _account(self, source: str, n: int) -> None:
        self.bytes[source] = self.bytes.get(source, 0) + n
        if not self.bytes[source]:
            del self.bytes[source]
        self.total_bytes += n

    def evict_backlog(self) -> str | None:
        """Drop the oldest waiting frame of the source with the most waiting bytes among those with more
        than one frame waiting (a source's newest frame always stays); its name, or None if there is none."""
        with self._cond:
            backlog = [s for s, q in self._frames.items() if len(q) > 1]
            if not backlog:
                return None
            source = max(backlog, key=self.bytes.__getitem__)
            self._pop(source)
            return source

    def end(self, msg: P.Message | RunEnded) -> None:
        """Add an end of stream: handed out after the frames of its source waiting now, before those that come later."""
        with self._cond:
            self._ends.setdefault(msg.source, deque()).append(_End(msg, len(self._frames.get(msg.source, ()))))
            self._cond.notify()

    def room_for_end(self, source: str) -> bool:
        """Whether another end of stream of `source` may wait: ENDS_WAITING at most do (a camera's short streams while
        the worker is busy, in a cold fit say); one that ends streams faster has the rest refused, not queued without
        bound."""
        with self._cond:
            return len(self._ends.get(source, ())) < ENDS_WAITING

    def take(self, timeout: float) -> P.Message | RunEnded | None:
        """The next end of stream or frame, or None after `timeout` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self._frames or self._ready_end() is not None, timeout)
            waited = False
            while True:
                if (source := self._ready_end()) is not None:  # (also one that came while waiting below)
                    return self._take_end(source)
                if not self._frames:
                    return None
                source = self._next()
                due = set() if waited or self.awaited is None else {
                    s for s in self.awaited(AWAIT_S) - self._frames.keys()
                    if self._used.get(s, self._level) < self._used.get(source, 0.0)}
                if not due:
                    break
                self._cond.wait_for(lambda due=due: any(s in self._frames for s in due)
                                    or self._ready_end() is not None, AWAIT_S)
                waited = True
            self._level = self._used.get(source, 0.0)
            msg = self._pop(source)
            waiting = self._frames[source]
            if waiting:
                self._frames.move_to_end(source)
            else:
                del self._frames[source]
            return msg

    def _take_end(self, source: str) -> P.Message | RunEnded:
        ends = self._ends[source]
        end = ends.popleft()
        if not ends:
            del self._ends[source]
        if source not in self._frames:
            self._used.pop(source, None)
        return end.msg

    def _next(self) -> str:
        """The waiting source that has used the least of the node's time; the first of equals (in turn)."""
        return min(self._frames, key=lambda s: self._used.get(s, 0.0))

    def served(self, source: str, seconds: float) -> None:
        """Count `seconds` of the node's time spent on a frame of `source`."""
        with self._cond:
            self._used[source] = self._used.get(source, 0.0) + seconds

    def waiting(self) -> dict[str, int]:
        """Frames waiting per source."""
        with self._cond:
            return {s: len(q) for s, q in self._frames.items()}

    def _ready_end(self) -> str | None:
        """A source whose oldest end of stream has no waiting frame before it."""
        return next((s for s, ends in self._ends.items() if not ends[0].before), None)
