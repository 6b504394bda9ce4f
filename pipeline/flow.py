"""Credit-based flow control: a recorded source sends a frame only when the node is ready for it.

A live camera cannot wait: the node keeps its newest frame (`node.queue_depth: 1`) and older ones are
counted as `conflated`. A recorded source (an image folder, a video file, the demo's synthetic
textures) must have every frame scored and *can* wait, so it gets backpressure instead of a queue
that grows without bound: a camera with `flow: credit` reads (and stamps `t_capture` on) its next
frame only once a node has granted it credit for it. What `summary.json` calls latency is then what
an operator would measure: from the moment the frame was taken to its result, not time spent
waiting in a queue the camera filled faster than the node could score.

Protocol (pub/sub only; a PUSH camera has no way back):
- The node reads cameras with an XSUB socket, which can also send upstream: a grant is one message
  part, CREDIT_PREFIX followed by a msgpack map {"source": S, "upto": N, "node": NODE}: source S may
  send frames up to sequence number N. Grants are absolute, so a lost or repeated grant is harmless,
  and a camera that hears several nodes follows the most generous (the fastest node).
- A flow-controlled camera reports its current `credit_upto` in its heartbeat counters (-1 before
  any grant); that is how the node knows it waits for credit, and how a lost grant is noticed and
  sent again. The claim is the camera's word, not the node's: a claim above what this node granted
  (credit from an earlier node or another node, or a lie) is counted (`Credits.inflated_claims`) and
  never taken as this node's grant, so it cannot hold this node's budget. A new camera, or every
  camera after this node restarts, starts with nothing outstanding and waits for its turn; frames it
  sends on credit it already holds are scored all the same. A camera restarted without an end of
  stream (a crash) is a new camera too, not one whose grant got lost: its heartbeat names another run (`run`), or,
  from a camera that names none, its seq (its last frame sent) is below the last frame the node received from it,
  which a running camera's never is (its heartbeats follow its frames on one connection). Its predecessor's grant is
  not sent again, and the predecessor's frames the node finishes afterwards are not taken as its own.
- The node hands out credit to the waiting sources by the node time each has used (`done`'s seconds, none for a
  camera's first frame, which makes its model, and the time from
  its grant to its frame (or to the heartbeat saying it was lost) beyond HOLD_ALLOWANCE_S, up to the grant's expiry,
  below, whether its frame came before the expiry or after it: a camera that sits on its grant holds the node; from
  the grant's sending again if the camera said it lacked it, 2 x `resend_s` after the first at the latest), the least
  first (in turn when they tie),
  keeping at most `budget` (`node.queue_depth`) frames outstanding (granted and not yet scored) across them: a camera
  of large frames gets no more of the node's time than one of small frames, as the node's queue does for live cameras.
  A new camera, one back after `stale_s` without heartbeats and one whose grant expired (below) start level with the
  source granted last, nothing banked while they did not ask (the hold of the grant that expired is charged first: it
  still counts unless the others have used as much since). With the default 1 a camera takes its next frame the
  moment the node is ready for it: no frame waits behind another, at the cost of the node idling while that frame is
  read and sent (milliseconds, against seconds of scoring on a CPU); a larger budget keeps frames waiting to fill that
  gap. A source that stops heartbeating (dead
  camera) stops holding budget after `stale_s`, and so does a grant no frame came for in `stale_s`, or, once the
  camera has sent on this node's grants, in PATIENCE x its typical wait for a frame (at least 2 x `resend_s`; a camera
  that has not sent yet is given the slowest camera's typical wait, so a new camera that never sends holds the budget
  no longer than a slow real one would): a camera that heartbeats but does not send, counted as
  `Credits.expired_grants`. That camera gets no new grant until a frame of it arrives, only the lost one sent again,
  and each further unused grant in a row, across its ends of stream, holds the budget half as long, down to
  `resend_s`. A camera's end of stream ends its grants; the frames it sent before it hold the budget until they are
  done (the receiver hears the end while the worker still scores the last frame). Frames a camera sent that never
  arrived (its heartbeat's seq is past the last frame the node received, nothing pending) count as done, and their
  grant is settled as when a frame comes (its hold charged, or the camera of an expired grant set level).
- While it waits for credit a camera's heartbeats say `paced` (the console and the live page do not
  call it stalled).
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import msgpack

from .protocol import SOURCE_PATTERN
from .transport import MAX_UPSTREAM_BYTES

CREDIT_PREFIX = b"\x02ssdnet-credit"  # upstream parts starting with 0x00/0x01 are (un)subscriptions
CREDIT_COUNTER = "credit_upto"  # heartbeat counter of a flow-controlled camera
HOLD_ALLOWANCE_S = 0.5  # a camera's wait from its grant to its frame beyond this (to the grant's expiry): node time
MAX_GRANT_BYTES = MAX_UPSTREAM_BYTES  # what the XPUB socket lets through
PATIENCE = 4.0  # a grant unused for this many times the camera's typical wait for a frame stops holding the budget
_SOURCE = re.compile(SOURCE_PATTERN)


def encode_grant(source: str, upto: int, node: str) -> bytes:
    return CREDIT_PREFIX + msgpack.packb({"source": source, "upto": int(upto), "node": node}, use_bin_type=True)


def decode_grant(blob: bytes) -> tuple[str, int] | None:
    """(source, upto) of a grant; None for anything else (subscriptions, garbage)."""
    if not blob.startswith(CREDIT_PREFIX) or len(blob) > MAX_GRANT_BYTES:
        return None
    try:
        obj = msgpack.unpackb(blob[len(CREDIT_PREFIX):], raw=False, strict_map_key=True)
    except Exception:
        return None
    if not isinstance(obj, dict):
        return None
    source, upto = obj.get("source"), obj.get("upto")
    if not isinstance(source, str) or not _SOURCE.match(source):
        return None
    if type(upto) is not int or not -1 <= upto < 2**63:
        return None
    return source, upto


class CreditGate:
    """Camera side: the highest frame number this camera may send, raised by the nodes' grants."""

    def __init__(self, source: str):
        self.source = source
        self.upto = -1
        self.waited_s = 0.0  # total time the reader waited for credit
        self._cond = threading.Condition()

    def on_upstream(self, blob: bytes) -> bool:
        """Take in one upstream message; True if it was a grant for this camera."""
        grant = decode_grant(blob)
        if grant is None or grant[0] != self.source:
            return False
        with self._cond:
            if grant[1] > self.upto:
                self.upto = grant[1]
                self._cond.notify_all()
        return True

    def wait(self, seq: int, halt: threading.Event) -> bool:
        """Block until frame `seq` may be sent (True) or `halt` is set (False)."""
        t0 = time.monotonic()
        with self._cond:
            while seq > self.upto:
                if halt.is_set():
                    return False
                self._cond.wait(0.05)
        self.waited_s += time.monotonic() - t0
        return True


@dataclass
class _Source:
    done: int = -1  # last frame number the node finished (scored, rejected or failed) or knows lost
    received: int = -1  # highest frame number received
    upto: int = -1  # highest frame number granted
    seen: float = 0.0  # monotonic time of its last heartbeat
    granted_at: float = 0.0  # monotonic time a grant was last sent (a new one or one sent again)
    used: float = 0.0  # monotonic time of its last new grant or of a frame that raised `received`
    expired: bool = False  # its grant went unused too long (`_outstanding`): no budget held until a frame comes
    ending: bool = False  # it ended its stream with frames the node has not finished: they hold the budget till done
    turn: int = 0  # number of the grant that last served it: of sources with equal node time, the longest-waiting first
    node_s: float = 0.0  # seconds of the node's time spent on its frames, from where it started (`Credits._level`)
    typical: float | None = None  # its typical wait from a grant (or its previous frame) to a frame, s (a running mean)


class Credits:
    """Node side: which flow-controlled source may send its next frame. Thread-safe: the receiver
    thread reports heartbeats and frames and sends `outgoing()`, the worker reports frames done.

    Counters: `grants` (grant messages sent, new and again), `inflated_claims` (heartbeats claiming
    more credit than this node granted), `expired_grants` (grants no frame came for in `stale_s`)."""

    def __init__(self, node: str, budget: int = 1, stale_s: float = 15.0, resend_s: float = 1.0):
        self.node, self.budget, self.stale_s, self.resend_s = node, max(1, budget), stale_s, resend_s
        self._lock = threading.Lock()
        self._sources: dict[str, _Source] = {}  # the flow-controlled sources
        self._strikes: dict[str, int] = {}  # grants in a row a source left unused (kept when it ends its stream)
        self._out: list[tuple[str, bytes]] = []
        self._level = 0.0  # the node time of the source granted last when granted: where a new or returning one starts
        self.grants = 0
        self.inflated_claims = 0
        self.expired_grants = 0

    def heartbeat(self, source: str, seq: int, counters: dict[str, int], restarted: bool = False) -> None:
        """A camera heartbeat: `seq` is its last frame sent, `counters[CREDIT_COUNTER]` its credit (if it waits);
        `restarted`: it names another run than the camera's last (the header's `run`), a camera started again whatever
        its `seq` says.
        A `seq` past the last frame received, nothing pending, says frames were lost: they count as done, and the grant
        they were sent on is settled as on a frame's arrival (`_back`): saying its frame was lost spares a camera
        neither its hold nor the level."""
        credit = counters.get(CREDIT_COUNTER)
        if credit is None:
            return
        now = time.monotonic()
        with self._lock:
            st = self._sources.get(source)
            # new, restarted (a new run, or its numbering went back), back after its end of stream, or this node
            # restarted: nothing outstanding, level
            if st is None or restarted or seq < st.received or st.ending:
                st = _Source(done=seq, received=seq, upto=seq, node_s=self._level)
                self._sources[source] = st
            elif now - st.seen > self.stale_s:  # back after a silence: a grant it held is charged first, then it
                self._expire(source, st, now, self._slowest())  # starts level: no node time banked while away
                st.node_s = max(st.node_s, self._level)
            st.seen = now
            if seq > st.received and st.done >= st.received:  # frames sent that will never arrive
                self._back(source, st, now)
                st.received = st.done = seq
            if credit < st.upto and now - st.granted_at > self.resend_s:  # a grant got lost: send it again
                self._send(source, st, now)
            elif credit > st.upto:  # credit from an earlier or another node, or a lie: not this node's grant
                self.inflated_claims += 1
            self._grant(now)

    def received(self, source: str, seq: int) -> None:
        """Frame `seq` of `source` arrived: its grant is settled (`_back`)."""
        with self._lock:
            if (st := self._sources.get(source)) is not None and seq > st.received:
                now = time.monotonic()
                self._back(source, st, now)
                if st.used and seq <= st.upto:  # a frame on this node's grant: how long the camera took
                    wait = now - st.used
                    st.typical = wait if st.typical is None else 0.75 * st.typical + 0.25 * wait
                st.received, st.used = seq, now
                self._strikes.pop(source, None)

    def done(self, source: str, seq: int, seconds: float = 0.0) -> None:
        """The worker is done with frame `seq` of `source` (scored, rejected or failed) after `seconds` of the node's
        time; a frame past what this node received and granted of it is a restarted camera's predecessor's, and
        changes nothing."""
        with self._lock:
            if (st := self._sources.get(source)) is not None and seq <= max(st.received, st.upto):
                st.done = max(st.done, seq)
                st.node_s += seconds
                if st.ending and st.done >= st.received:
                    del self._sources[source]
                self._grant(time.monotonic())

    def ended(self, source: str) -> None:
        """`source` ended its stream: no more grants. Its frames the node received and has not finished still hold the
        budget until they are done: the receiver hears an end of stream while the worker still scores the camera's
        last frame, and freeing its place then granted every other camera at once (the demo's three cameras sent
        their last frames together, the last of them 2 s after capture)."""
        with self._lock:
            if (st := self._sources.get(source)) is not None and st.done < st.received:
                st.ending = True
            else:
                self._sources.pop(source, None)
            self._grant(time.monotonic())

    def awaited(self, age: float) -> set[str]:
        """The sources granted a frame in the last `age` seconds that has not arrived: it is on its way (a camera
        granted longer ago is gone, or slow, and not waited for)."""
        now = time.monotonic()
        with self._lock:
            return {s for s, st in self._sources.items()
                    if st.received < st.upto and not st.expired and now - st.granted_at <= age}

    def outgoing(self) -> list[tuple[str, bytes]]:
        """The grants to send, each with the camera it names (sent on that camera's connection only)."""
        with self._lock:
            out, self._out = self._out, []
            return out

    def _send(self, source: str, st: _Source, now: float) -> None:
        self._out.append((source, encode_grant(source, st.upto, self.node)))
        st.granted_at = now
        self.grants += 1

    def _back(self, source: str, st: _Source, now: float) -> None:
        """A frame of `st` came at `now`, or its camera said it was lost (the node waited for it until then). With this
        node's grant out, the time the camera sat on it is charged (`_charge_hold`) up to now, or up to the grant's
        expiry (`_patience`) if it expired unnoticed: past the expiry the grant holds nothing; the node only has not
        looked yet (it does at a heartbeat, a frame done, an end of stream), and that is not the camera's time. A grant
        the node saw expire was charged then: its camera starts level, or where that charge left it if the others have
        not used as much since."""
        if st.expired:
            st.node_s = max(st.node_s, self._level)
        elif st.used and st.received < st.upto:
            self._charge_hold(st, min(now, st.used + self._patience(source, st, self._slowest())))

    def _charge_hold(self, st: _Source, until: float) -> None:
        """The time `st` sat on its grant up to `until`, beyond HOLD_ALLOWANCE_S (a read and a send), is node time it
        used: it held the budget meanwhile. From the grant's last sending (a grant lost on its way is not the camera's
        time), but from no later than 2 x `resend_s` after its first: a camera that lacks its grant says so in its
        next heartbeats, and the grant goes again at the first one past `resend_s`, within `resend_s` + `heartbeat_s`
        (1 s each by default). Whether it lacks it is the camera's word: one that says so of every grant, the grant
        sent again once a `resend_s` and the clock restarted each time, was charged at most that much of each hold;
        now it gains at most 2 x `resend_s` a grant (a camera whose heartbeats are further apart, or were lost too,
        may be charged for the rest of its wait)."""
        st.node_s += max(0.0, until - min(max(st.used, st.granted_at), st.used + 2 * self.resend_s) - HOLD_ALLOWANCE_S)

    def _patience(self, source: str, st: _Source, slowest: float | None) -> float:
        """How long a grant of `st` no frame comes for holds the budget: `stale_s`, or PATIENCE x the camera's typical
        wait for a frame (at least 2 x `resend_s`) once it has sent on this node's grants (before: `slowest`, the
        slowest such camera's typical wait), and after each such grant in a row (an end of stream does not clear
        them) half as long, down to `resend_s`."""
        patience = self.stale_s
        typical = st.typical if st.typical is not None else slowest
        if typical is not None:
            patience = min(patience, max(2 * self.resend_s, PATIENCE * typical))
        return max(self.resend_s, patience / 2 ** self._strikes.get(source, 0))

    def _slowest(self) -> float | None:
        """The slowest typical wait for a frame of the sources that have sent on this node's grants."""
        return max((st.typical for st in self._sources.values() if st.typical is not None), default=None)

    def _expire(self, source: str, st: _Source, now: float, slowest: float | None) -> None:
        """A grant no frame came for in its `_patience` stops holding the budget, its hold up to then charged
        (`_charge_hold`) as if its frame had come just before: sending just after the expiry gains nothing."""
        patience = self._patience(source, st, slowest)
        if st.received < st.upto and now - st.used > patience and not st.expired:
            st.expired = True
            self._charge_hold(st, st.used + patience)
            self.expired_grants += 1
            self._strikes[source] = self._strikes.get(source, 0) + 1

    def _grant(self, now: float) -> None:
        live = {s: st for s, st in self._sources.items() if now - st.seen <= self.stale_s}
        slowest = self._slowest()
        outstanding = 0  # frames granted and not yet done
        for s, st in live.items():
            self._expire(s, st, now, slowest)
            outstanding += max(0, (min(st.upto, st.received) if st.expired or st.ending else st.upto) - st.done)
        while outstanding < self.budget:
            waiting = [(st.node_s, st.turn, s) for s, st in live.items() if st.upto <= st.done and not st.ending]
            if not waiting:
                return
            source = min(waiting)[2]  # the least node time used; in turn when equal: the source served longest ago
            st = live[source]
            self._level = st.node_s
            st.upto, st.used, st.expired = st.done + 1, now, False
            self._send(source, st, now)
            st.turn = self.grants
            outstanding += 1
