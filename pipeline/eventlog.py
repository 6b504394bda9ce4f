"""Durable anomaly events: an SQLite log on the node, a replay endpoint, and subscriber catch-up.

Maps may be dropped under load (they go out on an XPUB socket with a high-water mark); events may
not. The node writes every event to `node.event_log` (SQLite, WAL mode, synchronous=NORMAL: an
event survives a crash of the node process; a power cut may lose the last commits) *before*
publishing it, numbered per source with `log_seq` = 1, 2, 3, ... (the numbering continues across
node restarts). A subscriber that missed some asks the node's replay endpoint (`node.replay_bind`,
a ROUTER socket) for them.

Ends of stream are logged too (the `eos` header each camera's end of stream was forwarded with, its frame count and
counters), numbered across the node's cameras with `end_seq` = 1, 2, 3, ... (the newest MAX_LOGGED_ENDS kept): a
subscriber that lost the live one at the node's high-water mark still learns that the camera ended.

Replay protocol (msgpack maps both ways, validated with pydantic, never pickled; a request is at
most MAX_REQUEST_BYTES):

    {"op": "heads"}                                      -> {"ok": true, "heads": {source: last log_seq},
                                                              "ends": last end_seq published}
    {"op": "events", "source": S, "after": N, "limit": L} -> {"ok": true, "events": [{"log_seq": n, "event": {...}}],
                                                              "more": bool}
    {"op": "ends", "after": N, "limit": L}                -> {"ok": true, "ends": [{"end_seq": n, "eos": {...}}],
                                                              "more": bool}
    anything else                                         -> {"ok": false, "error": "one line"}
    a client over its share of the replay thread's time   -> {"ok": false, "error": "busy", "retry_ms": M}

`event` is the event header as on the wire (msgpack of `EventHeader`), so a replayed event
decodes exactly like a live one; `eos` likewise. The node's heartbeat counters carry `logged_events` (sum of the
heads): a subscriber whose own cursors add up to less knows it missed events, even the last ones; and `logged_ends`
(the last end_seq whose live copy went out): one whose end cursor is behind it missed an end of stream.

`CatchUp` is the subscriber side: it treats live events and node heartbeats as notifications,
fetches "events of S after my cursor" and hands them over in log order, each exactly once, so a
jump is noticed and filled from the log; the JSONL sink stores `log_seq` so a restarted subscriber
resumes where it stopped.
"""
from __future__ import annotations

import logging
import math
import secrets
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import msgpack
import zmq
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.config import ConfigError

from . import protocol as P
from .transport import ThrottledLog, connect, make_socket, took

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 4096
UNLOGGED_MAX = 10_000  # events kept while the event log cannot be written (a full disk), to write later
UNLOGGED_RETRY_S = 1.0  # how often those are tried again
MAX_REPLY_EVENTS = 1000
MAX_REPLY_ENDS = 100  # ends of stream per reply (a header of up to 128 counters each)
MAX_LOGGED_ENDS = 10_000  # ends of stream the log keeps (the newest; a subscriber needs the ones it missed lately)
ENDS_SEEN = 4096  # ends of stream a subscriber remembers having handed on (`CatchUp`: each once, live or logged)
HANDED_SEEN = 256  # a camera's last events handed on, remembered: the live copies a fetch can precede (the node's
# send queue holds 64 a subscriber)
ANCHOR_RETRY_S = 5.0  # a subscriber whose first heads request got no answer asks again at most this often
# answers waiting to go out per client at most (a REQ asks one at a time): one is up to ~1.2 MB (1000 events of 32
# regions), and a client that asks without reading kept 100 of them in the node's memory (10 such clients, 1.1 GB)
REPLY_HWM = 2
# a replay client's budget (`ReplayBudget`): the replay thread's CPU seconds it may spend at once, earned back at
# `node.replay_cpu_share` seconds a second; a page of 1000 events costs ~2.2 ms, so a burst is ~450 pages
REPLAY_BURST_S = 1.0
RETRY_MS_MAX = 10_000  # a client waits at most this long on one `busy` answer before asking again
# each source's last log_seq, found by seeking the (source, log_seq) key once per source: `GROUP BY source` read
# every event (190 ms a request at 1M events, ~3 s at the 16M that 16 cameras may keep), for each replay `heads`
# request and each turn of the MQTT bridge (5 a second)
HEADS_QUERY = """
WITH RECURSIVE names(source) AS (
    SELECT MIN(source) FROM events
    UNION ALL
    SELECT (SELECT MIN(source) FROM events WHERE source > names.source) FROM names WHERE names.source IS NOT NULL
)
SELECT source, (SELECT MAX(log_seq) FROM events WHERE events.source = names.source) FROM names
WHERE source IS NOT NULL
"""
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    source  TEXT    NOT NULL,
    log_seq INTEGER NOT NULL,
    t_logged REAL   NOT NULL,
    header  BLOB    NOT NULL,
    PRIMARY KEY (source, log_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ends (
    end_seq  INTEGER PRIMARY KEY,
    source   TEXT    NOT NULL,
    t_logged REAL    NOT NULL,
    header   BLOB    NOT NULL
);
"""  # meta first: a log with events and no meta table is one from before logs had an id (`EventLog.legacy`); `ends`
# is added to a log made before ends of stream were logged when its node opens it


class EventLog:
    """Append-only per-source numbered events in SQLite (WAL). One writer thread; readers open their
    own `EventLog(path, readonly=True)` (sqlite3 connections belong to one thread)."""

    def __init__(self, path: str | Path, max_events: int | None = None, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            self.db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        else:
            self.db = self._open_for_writing()
        self.max_events = None if readonly else max_events
        self._appended = 0
        self._log_id = 0
        self.heads = self.read_heads()
        self.total = sum(self.heads.values())  # sum of the per-source heads: one more per logged event
        self.ends_head = self.read_ends_head()  # the last end of stream's end_seq (0: none yet)
        self._prune()  # a node restarted before its 256th event pruned nothing, and its log grew without bound

    def _open_for_writing(self) -> sqlite3.Connection:
        """The writer's connection; a file that is not an SQLite log, or one it cannot write, is a ConfigError naming
        it: the node refuses to start rather than lose the events it could not log."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(SCHEMA)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('log_id', ?)", (str(secrets.randbits(52) | 1),))
            except sqlite3.Error:
                db.close()
                raise
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"node.event_log {self.path}: cannot open it to write events ({e}): on a full disk "
                              "free some space; a file that is not an event log, or one on a read-only disk: move it "
                              "aside or set node.event_log to a file the node can write (a new one starts a new log)"
                              ) from None
        return db

    def _has_table(self, name: str = "events") -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?"
        return self.db.execute(query, (name,)).fetchone() is not None

    @property
    def log_id(self) -> int:
        """This log's identity, made with it: a node restarted on a new log (another folder, a lost volume) numbers
        its events from 1 again, and a subscriber that sees another id knows its cursors are not this log's. A random
        52-bit number (a JSON-safe integer, so node heartbeats carry it as `event_log_id`); 0 for a log made before."""
        if not self._log_id and self._has_table("meta"):  # a reader may open the log before its writer made it
            row = self.db.execute("SELECT value FROM meta WHERE key = 'log_id'").fetchone()
            self._log_id = int(row[0]) if row else 0
        return self._log_id

    @property
    def legacy(self) -> bool:
        """A log made before logs had an id (events and no `meta` table): its `log_id` is 0 for good."""
        return self._has_table() and not self._has_table("meta")

    def append(self, header: P.EventHeader) -> int:
        """Commit `header` under the next log_seq of its source and return that number."""
        n = self.heads.get(header.source, 0) + 1
        blob = msgpack.packb(P.wire_fields(header), use_bin_type=True)
        self.db.execute("INSERT INTO events (source, log_seq, t_logged, header) VALUES (?, ?, ?, ?)",
                        (header.source, n, time.time(), blob))
        self.heads[header.source] = n
        self.total += 1
        self._appended += 1
        if self._appended % 256 == 0:
            self._prune()
        return n

    def _prune(self) -> None:
        """`prune`, when the log keeps `max_events`; an error is logged: an event is committed before a prune, and a
        failed prune (a full disk) must not make the caller log it again."""
        if self.max_events is None:
            return
        try:
            self.prune()
        except sqlite3.Error as e:
            log.warning("could not prune the event log %s: %s", self.path, e)

    def append_end(self, header: P.EosHeader) -> int:
        """Commit an end of stream (the header it is forwarded with) under the next end_seq and return that number;
        only the newest MAX_LOGGED_ENDS are kept."""
        n = self.ends_head + 1
        blob = msgpack.packb(P.wire_fields(header), use_bin_type=True)  # as on the wire
        self.db.execute("INSERT INTO ends (end_seq, source, t_logged, header) VALUES (?, ?, ?, ?)",
                        (n, header.source, time.time(), blob))
        self.ends_head = n
        try:  # committed: a failed prune (a full disk) must not make the caller log it again
            self.db.execute("DELETE FROM ends WHERE end_seq <= ?", (n - MAX_LOGGED_ENDS,))
        except sqlite3.Error as e:
            log.warning("could not prune the ends of stream of the event log %s: %s", self.path, e)
        return n

    def read_ends_head(self) -> int:
        """The last end of stream's end_seq; 0 when none is logged (or the log is from before they were)."""
        if not self._has_table("ends"):
            return 0
        return self.db.execute("SELECT MAX(end_seq) FROM ends").fetchone()[0] or 0

    def ends_after(self, after: int, limit: int = MAX_REPLY_ENDS) -> list[tuple[int, bytes]]:
        """(end_seq, msgpack eos header) of the ends of stream with end_seq > after, oldest first."""
        if not self._has_table("ends"):
            return []
        query = "SELECT end_seq, header FROM ends WHERE end_seq > ? ORDER BY end_seq LIMIT ?"
        return self.db.execute(query, (after, limit)).fetchall()

    def prune(self) -> int:
        """Keep at most `max_events` events per source (the newest); returns how many were deleted."""
        deleted = 0
        for source, head in self.heads.items():
            cur = self.db.execute("DELETE FROM events WHERE source = ? AND log_seq <= ?",
                                  (source, head - self.max_events))
            deleted += cur.rowcount
        return deleted

    def read_heads(self) -> dict[str, int]:
        if not self._has_table():
            return {}
        return dict(self.db.execute(HEADS_QUERY).fetchall())

    def after(self, source: str, after: int, limit: int = MAX_REPLY_EVENTS) -> list[tuple[int, bytes]]:
        """(log_seq, msgpack header) of `source`'s events with log_seq > after, oldest first."""
        if not self._has_table():
            return []
        query = "SELECT log_seq, header FROM events WHERE source = ? AND log_seq > ? ORDER BY log_seq LIMIT ?"
        return self.db.execute(query, (source, after, limit)).fetchall()

    def close(self) -> None:
        self._prune()
        self.db.close()


class EventWriter:
    """The node's events and ends of stream into its log, a full disk or not. A failed append must not stop scoring:
    the message goes out live and is kept (at most UNLOGGED_MAX, the oldest given up beyond) to be written later, after
    those kept before it, so a subscriber that reads the log still gets it once it is written. `announce(kind, n)` is
    called for each kept message once written (its live copy went out long before), with its kind and `n`: the log's
    total of events for an event, the end's `end_seq` for an end of stream."""

    def __init__(self, db: EventLog, announce: Callable[[str, int], None]):
        self.db, self.announce = db, announce
        self.failures = 0  # appends that failed (heartbeat `event_log_failed`)
        self.kept: deque[P.Message] = deque()  # events and ends of stream to write later, in order
        self.kept_ends = 0  # of them ends of stream (`pending`: the events)
        self.lost = 0  # events given up beyond UNLOGGED_MAX (`event_log_lost`)
        self._retry_at = 0.0  # monotonic time of the next try of the kept events
        self._log = ThrottledLog(log)

    def _append(self, msg: P.Message) -> int:
        """Commit an event (returns the log's total of events) or an end of stream (its end_seq)."""
        if msg.kind == "eos":
            return self.db.append_end(msg.header)
        self.db.append(msg.header)
        return self.db.total

    def write(self, event: P.Message) -> int | None:
        """Commit an event or an end of stream (`_append`'s number), or None when it was kept to write later."""
        self.retry()
        if not self.kept:
            try:
                return self._append(event)
            except Exception as e:
                self._failed(event, e, kept=1)
                self._retry_at = time.monotonic() + UNLOGGED_RETRY_S
        if len(self.kept) >= UNLOGGED_MAX:
            self.kept_ends -= self.kept.popleft().kind == "eos"
            self.lost += 1
        self.kept.append(event)
        self.kept_ends += event.kind == "eos"
        return None

    @property
    def pending(self) -> int:
        """Events kept to write later (heartbeat `event_log_pending`), not counting ends of stream."""
        return len(self.kept) - self.kept_ends

    def retry(self, now: bool = False) -> None:
        """Write the kept events, oldest first, if UNLOGGED_RETRY_S passed since the last failure (or `now`); stops
        at the first failure."""
        if not self.kept or (not now and time.monotonic() < self._retry_at):
            return
        while self.kept:
            event = self.kept[0]
            try:
                n = self._append(event)
            except Exception as e:
                self._failed(event, e, kept=0)
                self._retry_at = time.monotonic() + UNLOGGED_RETRY_S
                return
            self.kept.popleft()
            self.kept_ends -= event.kind == "eos"
            self.announce(event.kind, n)
        lost = f" ({self.lost} beyond the {UNLOGGED_MAX} kept, since the node started, are not)" if self.lost else ""
        log.warning("the event log is written again: the events kept meanwhile are in it%s", lost)  # not throttled

    def _failed(self, event: P.Message, e: Exception, kept: int) -> None:
        """Count and say a failed write; `kept`: events it adds to those kept to write later."""
        self.failures += 1
        what = "its end of stream" if event.kind == "eos" else f"#{event.header.seq}"
        self._log.warning(f"{event.source} {what}: could not write the event log: "
                          f"{type(e).__name__}: {e} ({len(self.kept) + kept} kept to write later)")


# ---------------------------------------------------------------- replay protocol


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class HeadsRequest(_Req):
    op: Literal["heads"]


class EventsRequest(_Req):
    op: Literal["events"]
    source: str = Field(pattern=P.SOURCE_PATTERN)
    after: int = Field(ge=0, le=2**63 - 1)
    limit: int = Field(MAX_REPLY_EVENTS, ge=1, le=MAX_REPLY_EVENTS)


class EndsRequest(_Req):
    op: Literal["ends"]
    after: int = Field(ge=0, le=2**63 - 1)
    limit: int = Field(MAX_REPLY_ENDS, ge=1, le=MAX_REPLY_ENDS)


_REQUESTS: dict[str, type[_Req]] = {"heads": HeadsRequest, "events": EventsRequest, "ends": EndsRequest}


def parse_request(blob: bytes) -> HeadsRequest | EventsRequest | EndsRequest:
    """The validated request; ValueError with one line naming the field and the rule it breaks."""
    if len(blob) > MAX_REQUEST_BYTES:
        raise ValueError(f"request of {len(blob)} bytes exceeds {MAX_REQUEST_BYTES}")
    try:
        obj = msgpack.unpackb(blob, raw=False, strict_map_key=True)
    except Exception as e:
        raise ValueError(f"request is not valid msgpack ({type(e).__name__})") from None
    op = obj.get("op") if isinstance(obj, dict) else None
    if not isinstance(op, str) or op not in _REQUESTS:  # not `in` first: an op of [] or {} is unhashable
        got = f"op {op!r:.40}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise ValueError(f"request must be a map with op 'heads', 'events' or 'ends', got {got}")
    try:
        return _REQUESTS[op].model_validate(obj)  # the model of its op: errors name that op's fields
    except ValidationError as e:
        fields = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'request'}: {err['msg']}"
                           for err in e.errors()[:3])
        raise ValueError(f"bad {op} request: {fields}") from None


def answer(db: EventLog, blob: bytes, published_ends: Callable[[], int] | None = None) -> dict[str, Any]:
    """The reply map to one request. `published_ends`: the last end_seq whose live copy went out (the node's): heads
    says no later one, so a subscriber that starts from it fetches an end logged but not out yet if it loses it live."""
    try:
        req = parse_request(blob)
    except ValueError as e:
        return {"ok": False, "error": str(e)}
    if isinstance(req, HeadsRequest):
        ends = db.read_ends_head() if published_ends is None else min(db.read_ends_head(), published_ends())
        return {"ok": True, "heads": db.read_heads(), "ends": ends, "log": db.log_id}
    if isinstance(req, EndsRequest):
        rows = db.ends_after(req.after, req.limit + 1)
        return {"ok": True, "ends": [{"end_seq": n, "eos": blob} for n, blob in rows[: req.limit]],
                "more": len(rows) > req.limit, "log": db.log_id}
    rows = db.after(req.source, req.after, req.limit + 1)
    return {"ok": True, "events": [{"log_seq": n, "event": blob} for n, blob in rows[: req.limit]],
            "more": len(rows) > req.limit, "log": db.log_id}


class ReplayBudget:
    """Each replay client's (ROUTER identity's) share of the replay thread's CPU: a token bucket of seconds, full at
    `burst_s`, refilled at `share` seconds a second. A request is answered while its client's balance is positive and
    the answer's CPU time is charged after it; one asked below zero gets `busy` with the milliseconds until the balance
    is positive again (`throttled` counts them). Buckets that refilled are forgotten once over `max_clients`.
    `failed` counts the requests the replay thread answered with an error because the log could not be read."""

    def __init__(self, share: float, burst_s: float = REPLAY_BURST_S, max_clients: int = 1024):
        self.share, self.burst_s, self.max_clients = share, burst_s, max_clients
        self.balance: dict[bytes, tuple[float, float]] = {}  # identity -> (seconds left, monotonic time of that)
        self.throttled = 0  # `busy` answers (node heartbeat `replay_throttled`)
        self.failed = 0  # requests the log could not answer: a damaged page, an I/O error (`replay_failed`)

    def _left(self, client: bytes, now: float) -> float:
        left, at = self.balance.get(client, (self.burst_s, now))
        return min(self.burst_s, left + (now - at) * self.share)

    def wait_ms(self, client: bytes) -> int:
        """0 when `client` may be answered now, else the milliseconds until it may (and one more `throttled`)."""
        left = self._left(client, time.monotonic())
        if left > 0:
            return 0
        self.throttled += 1
        return min(RETRY_MS_MAX, math.ceil(-left / self.share * 1000) + 1)

    def charge(self, client: bytes, seconds: float) -> None:
        """Take `seconds` of the replay thread's CPU from `client`'s balance."""
        now = time.monotonic()
        if client not in self.balance and len(self.balance) >= self.max_clients:
            self.balance = {c: (left, at) for c, (left, at) in self.balance.items()
                            if self._left(c, now) < self.burst_s}
        self.balance[client] = (self._left(client, now) - seconds, now)


def replay_socket(ctx: zmq.Context) -> zmq.Socket:
    """The node's replay ROUTER socket, before it is bound: requests of at most 64 KiB a part (one over 4096 bytes is
    answered with an error), at most REPLY_HWM answers waiting per client."""
    sock = make_socket(ctx, zmq.ROUTER, sndhwm=REPLY_HWM)
    sock.setsockopt(zmq.MAXMSGSIZE, 64 * 1024)
    return sock


def serve_replay(sock: zmq.Socket, path: Path, halt: threading.Event,
                 published_ends: Callable[[], int] | None = None, budget: ReplayBudget | None = None) -> None:
    """Replay thread of the node: answer requests on a ROUTER socket from the log at `path` (`answer`), each client
    within its `budget` (None: no bound)."""
    db, bad = None, ThrottledLog(log)
    try:
        while not halt.is_set():
            if not sock.poll(100):
                continue
            parts = sock.recv_multipart(copy=False)
            parts = [*(frame.bytes for frame in parts[:-1]), took(parts[-1]).bytes]
            if len(parts) < 3 or parts[-2] != b"":  # [identity, b"", request] from REQ/DEALER
                bad.warning(f"dropped a malformed replay request of {len(parts)} parts")
                continue
            client, t0 = parts[0], time.thread_time()  # the connection, whatever else the request routes
            wait_ms = 0 if budget is None else budget.wait_ms(client)
            if wait_ms:  # over its share: a cheap answer, not the log's
                reply: dict[str, Any] = {"ok": False, "error": "busy", "retry_ms": wait_ms}
            else:
                try:
                    if db is None:
                        db = EventLog(path, readonly=True)
                    reply = answer(db, parts[-1], published_ends)
                except sqlite3.Error as e:  # a damaged page, an I/O error: this request fails, not the thread
                    if db is not None:
                        db.close()
                    db = None  # opened afresh for the next request
                    if budget is not None:
                        budget.failed += 1
                    reply = {"ok": False, "error": f"the event log could not be read: {e}"}
                    bad.error(f"replay: {reply['error']} ({path}); the request is answered with that error")
                else:
                    if not reply["ok"]:
                        bad.warning(f"bad replay request: {reply['error']}")
            try:
                sock.send_multipart([*parts[:-1], msgpack.packb(reply, use_bin_type=True)], zmq.NOBLOCK)
            except zmq.ZMQError:
                pass  # the client went away
            if budget is not None:
                budget.charge(client, time.thread_time() - t0)
    finally:
        if db is not None:
            db.close()
        sock.close()


# ---------------------------------------------------------------- client side


class ReplayError(RuntimeError):
    """The replay endpoint did not answer in time or answered an error."""


class ReplayClient:
    """REQ client of a node's replay endpoint; a lost request re-creates the socket (no stuck REQ)."""

    def __init__(self, endpoint: str, ctx: zmq.Context | None = None, timeout_ms: int = 2000,
                 server_key: bytes | None = None):
        self.endpoint, self.ctx = endpoint, ctx or zmq.Context.instance()
        self.timeout_ms, self.server_key = timeout_ms, server_key
        self.sock: zmq.Socket | None = None
        self.log_id = 0  # the `log` of the last reply: which event log answered (0: a node before log ids)
        self.ends_head: int | None = None  # the last heads reply's `ends` (None: a node that logs no ends of stream)
        self.busy = 0  # `busy` answers waited out (requests over this client's share of the node's replay thread)

    def _socket(self) -> zmq.Socket:
        if self.sock is None:
            self.sock = make_socket(self.ctx, zmq.REQ)
            self.sock.setsockopt(zmq.LINGER, 0)
            self.sock.setsockopt(zmq.MAXMSGSIZE, 256 * 1024 * 1024)
            connect(self.sock, self.endpoint, self.server_key)
        return self.sock

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """The node's reply to `req`; asked again after the wait a `busy` answer says (the node's budget per client),
        as often as it says so."""
        while True:
            sock = self._socket()
            sock.send(msgpack.packb(req, use_bin_type=True))
            if not sock.poll(self.timeout_ms):
                self.close()
                raise ReplayError(f"no answer from {self.endpoint} within {self.timeout_ms} ms")
            try:
                reply = msgpack.unpackb(sock.recv(), raw=False, strict_map_key=True)
            except Exception as e:
                raise ReplayError(f"malformed reply ({type(e).__name__})") from None
            wait_ms = reply.get("retry_ms") if isinstance(reply, dict) and reply.get("error") == "busy" else None
            if type(wait_ms) is not int:
                break
            self.busy += 1
            time.sleep(min(max(wait_ms, 1), RETRY_MS_MAX) / 1000)
        if not isinstance(reply, dict) or reply.get("ok") is not True:
            raise ReplayError(f"replay error: {reply.get('error') if isinstance(reply, dict) else reply!r:.80}")
        self.log_id = reply["log"] if type(reply.get("log")) is int else 0
        return reply

    def heads(self) -> dict[str, int]:
        """Each camera's last log_seq; also notes the last end_seq (`ends_head`, None from a node before ends of
        stream were logged)."""
        reply = self.request({"op": "heads"})
        heads, ends = reply.get("heads"), reply.get("ends")
        if not isinstance(heads, dict) or not all(isinstance(k, str) and type(v) is int for k, v in heads.items()):
            raise ReplayError("malformed heads reply")
        if ends is not None and (type(ends) is not int or ends < 0):
            raise ReplayError(f"malformed heads reply: ends {ends!r:.40}")
        self.ends_head = ends
        return heads

    def ends(self, after: int) -> list[tuple[int, P.EosHeader]]:
        """Every logged end of stream with end_seq > after (several requests if needed), validated, oldest first."""
        return self._paged({"op": "ends", "after": after, "limit": MAX_REPLY_ENDS}, "end_seq", "eos",
                           "end of stream", lambda h: h.kind == "eos", "not one")

    def events(self, source: str, after: int) -> list[tuple[int, P.EventHeader]]:
        """All events of `source` with log_seq > after (several requests if needed), validated."""
        return self._paged({"op": "events", "source": source, "after": after, "limit": MAX_REPLY_EVENTS}, "log_seq",
                           "event", "event", lambda h: h.kind == "event" and h.source == source,
                           f"of another source than {source}")

    def _paged(self, request: dict[str, Any], number: str, payload: str, what: str, fits: Callable[[P.Header], bool],
               unlike: str) -> list[tuple[int, Any]]:
        """Every item a paged request (`op` events or ends) answers, asked again past the last while the reply says
        `more`: each its `number` above the one before and its `payload` a header that `fits`; `what` and `unlike` name
        an item and a misfit in the ReplayError."""
        out: list[tuple[int, Any]] = []
        after, op = request["after"], request["op"]
        while True:
            reply = self.request({**request, "after": after})
            items = reply.get(op) or []
            if not isinstance(items, list):
                raise ReplayError(f"malformed {op} reply")
            if reply.get("more") and not items:  # asking again would get the same answer for ever
                raise ReplayError(f"{op} reply says more and holds none")
            for item in items:
                try:
                    n, header = item[number], P.decode_header(item[payload])
                except (KeyError, TypeError, P.ProtocolError) as e:
                    raise ReplayError(f"malformed replayed {what}: {e}") from None
                if type(n) is not int or n <= after or not fits(header):
                    raise ReplayError(f"replayed {what} out of order or {unlike}: {number} {n!r:.40}")
                out.append((n, header))
                after = n
            if not reply.get("more"):
                return out

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None


def _same(a: P.EventHeader, b: P.EventHeader) -> bool:
    """Whether two copies of events are one event (a live copy and a logged one)."""
    return a.seq == b.seq and a.t_capture == b.t_capture


class Cursors(dict[str, int]):
    """The highest `log_seq` written per source, and `log_id`, the node's event log they count in (0: not known,
    as from a file written before log ids)."""

    def __init__(self, seqs: Mapping[str, int] | None = None, log_id: int = 0):
        super().__init__(seqs or {})
        self.log_id = log_id

    def copy(self) -> Cursors:
        return Cursors(self, self.log_id)

    def follow(self, log_id: int) -> bool:
        """Count in the event log `log_id` from now on (0: the cursors' own). Another log than the cursors' (both
        known) starts them afresh, True: that log numbers from 1 again."""
        afresh = bool(log_id and self.log_id and log_id != self.log_id)
        if afresh:
            self.clear()
        self.log_id = log_id or self.log_id
        return afresh

    def take(self, source: str, log_seq: int, log_id: int = 0) -> None:
        """Count one written event of the event log `log_id` in (`follow`)."""
        self.follow(log_id)
        self[source] = max(self.get(source, 0), log_seq)


class CatchUp:
    """Subscriber-side exactly-once, in-order events from one node, gaps filled from its replay endpoint.

    Feed it every received message (`on_message`); it returns the events to hand on, as
    (log_seq, EventHeader). `cursors` (source -> last handed-on log_seq) start from `resume`, else
    from the node's heads at start (only new events), or from 0 with `from_start`. A `resume` that is
    `Cursors` also says the event log it counts in (a restarted subscriber's saved one): a node on another
    log has every camera's events read from its start.

    What counts as missed (`recovered`, and the "recovered N missed event(s)" warning): the node logs an
    event before it publishes it, so a fetch often returns events whose live copies are still on their
    way. Those are handed on early, not counted: on a live event only the fetched events *before* it
    were missed; on a node heartbeat only as many as its `logged_events` (which counts published events
    only) exceeds the cursors; on an explicit `sync()` (start, end of a run) every fetched event.

    Ends of stream come through it too, each once: a live `eos` is handed on at once (with the events, as
    (None, EosHeader); the caller delivers neither kind itself, `HANDED_ON`), and one lost live is fetched from the
    node's log when a node heartbeat's `logged_ends` (the last end_seq whose live copy went out) is past `end_cursor`,
    the last end_seq this subscriber has accounted for. `end_cursor` starts at the node's last end of stream when first
    heard of (a heads request at the first message from the node, before it is handed on, `_anchor`; should it get no
    answer, the first heads reply or node heartbeat): the ends of stream from then on, not those of streams that
    ended before this subscriber came. A node that logs none (before they were logged) answers no `ends` and
    heartbeats no `logged_ends`: its live ends of stream are handed on as they come, as before.
    """

    HANDED_ON = ("event", "eos")  # the kinds `on_message` hands on itself: the caller delivers the other kinds

    def __init__(self, client: ReplayClient, resume: Mapping[str, int] | None = None, from_start: bool = False):
        self.client = client
        self.cursors: dict[str, int] = dict(resume or {})
        self.recovered = 0  # events that were fetched after a detected gap
        self.recovered_ends = 0  # ends of stream that were lost live and fetched from the log
        self.pruned = 0  # events deleted from the log (node.event_log_max_events) before they could be fetched
        self.end_cursor: int | None = None  # the last end_seq accounted for (None: not known yet, or no ends logged)
        self._ends_log = 0  # the event log `end_cursor` counts in
        self._ends_seen: deque[tuple] = deque(maxlen=ENDS_SEEN)  # ends of stream handed on, the latest ENDS_SEEN
        self._heads_heard = False  # whether a heads reply came (`_anchor`)
        self._anchor_at = 0.0  # monotonic time from which `_anchor` may ask again
        self.errors = 0
        self._log = ThrottledLog(log)
        self._started = from_start or bool(resume)
        # source -> (seq, t_capture) of its last events handed on: a live copy among them was fetched early
        self._handed: dict[str, deque[tuple[int, float]]] = {}
        # the event log the cursors count in, once known
        self._log_id = resume.log_id if isinstance(resume, Cursors) else 0

    @property
    def log_id(self) -> int:
        """The event log the cursors, and the `log_seq` handed on, count in (0: not known yet, or a node before log
        ids)."""
        return self._log_id

    def _start(self) -> None:
        if not self._started:
            for source, head in self.client.heads().items():
                self.cursors.setdefault(source, head)
            self._log_id, self._started = self.client.log_id, True
            self._heard_heads()

    def _heard_heads(self) -> None:
        """After a heads reply: the first says the node's last end_seq, or that it logs no ends of stream."""
        self._heads_heard = True
        self._heard_ends(getattr(self.client, "ends_head", None), self.client.log_id)

    def _heard_ends(self, head: int | None, log_id: int) -> None:
        """The first time the node says its last end_seq (a heads reply, a node heartbeat): ends of stream from
        there on are this subscriber's."""
        if self.end_cursor is None and head is not None:
            self.end_cursor, self._ends_log = head, log_id

    def _anchor(self) -> None:
        """At the first message from the node, before it is handed on: the node's last end_seq (a heads request), so
        that an end of stream lost from then on is fetched. Not later, at the first node heartbeat (it may come
        after a flood has begun) nor at the first sync (after the ends it should fetch were logged). A request that
        gets no answer is tried again at a later message, at most every ANCHOR_RETRY_S. (Not started: `_start` asks
        for the heads at this message anyway.)"""
        if self._heads_heard or not self._started or time.monotonic() < self._anchor_at:
            return
        self._anchor_at = time.monotonic() + ANCHOR_RETRY_S
        try:
            self.client.heads()
            self._heard_heads()
        except ReplayError as e:
            self.errors += 1
            self._log.warning(f"end-of-stream catch-up: the node's replay does not answer yet: {e}")

    def _new_log(self, log_id: int | None = None) -> bool:
        """True once, when the node answers from another event log than before (restarted on a new one): its
        numbering starts again at 1, so every cursor is dropped and each camera's events are read from the start.
        `log_id`: a node heartbeat's `event_log_id`, else the last reply's."""
        log_id = self.client.log_id if log_id is None else log_id
        if not self._log_id or not log_id or log_id == self._log_id:  # 0: not known yet, or a node before log ids
            self._log_id = self._log_id or log_id
            return False
        log.warning("the node's event log is a new one (log %d, the cursors' %d; numbered from 1 again): reading "
                    "every camera's events from its start", log_id, self._log_id)
        self._log_id, self.cursors = log_id, {}
        return True

    def _rewound(self, heads: dict[str, int]) -> bool:
        """Whether a camera's head is behind its cursor: the log went back (a backup restored in place keeps its
        id) and numbers new events from there, past events this subscriber had. Its events are read again from the
        start: those handed on before come again (the same seq and t_capture), none is skipped."""
        behind = {source: head for source, head in heads.items() if head < self.cursors.get(source, 0)}
        for source, head in behind.items():
            log.warning("%s: the node's event log went back (head %d, %d handed on; restored from a backup?): "
                        "reading its events again from the start", source, head, self.cursors[source])
            self.cursors[source] = 0
        return bool(behind)

    def _logged_again(self, source: str, cursor: int, live: P.EventHeader) -> bool:
        """Whether the live event `live`, handed on by no one, is logged at or before `cursor` (within a page of it):
        the log went back (a backup restored in place) to where its head is not behind the cursor, and numbers new
        events where this subscriber had others. That camera's events are read again from the start. (A live event
        not logged at all waits in the node for a full disk to take it: it is fetched once logged.)"""
        for n, h in self.client.events(source, max(0, cursor - MAX_REPLY_EVENTS)):
            if n > cursor:
                break
            if _same(h, live):
                log.warning("%s: the node's event log went back (its event seq %d logged as %d, %d handed on; restored "
                            "from a backup?): reading its events again from the start", source, live.seq, n, cursor)
                self.cursors[source] = 0
                return True
        return False

    def on_message(self, msg: P.Message | None) -> list[tuple[int | None, P.EventHeader | P.EosHeader]]:
        """What to hand on after `msg` (None: nothing came): events as (log_seq, EventHeader), in log order, and ends
        of stream as (None, EosHeader), each once."""
        if msg is not None:
            self._anchor()
        if msg is not None and msg.kind == "eos":  # a node whose replay does not answer loses none
            return [(None, msg.header)] if self._fresh(msg.header) else []
        out: list[tuple[int | None, P.EventHeader | P.EosHeader]] = []
        try:
            self._start()
            if msg is not None and msg.kind == "event":
                return self._fetch(msg.source, live=msg.header)
            if msg is not None and msg.kind == "heartbeat" and msg.header.role == "node":
                if self._new_log(msg.header.counters.get("event_log_id", 0)):
                    out = self.sync()
                else:
                    total = msg.header.counters.get("logged_events")
                    if total is not None and total > sum(self.cursors.values()):
                        out = self.sync(announced=total)
        except ReplayError as e:
            self.errors += 1
            self._log.warning(f"event catch-up failed, will retry on the next event or heartbeat: {e}")
        if msg is not None and msg.kind == "heartbeat" and msg.header.role == "node":
            try:  # after the events: a camera's end of stream comes after its last event
                out += self._ends(msg.header.counters)
            except ReplayError as e:
                self.errors += 1
                self._log.warning(f"end-of-stream catch-up failed, will retry on the next heartbeat: {e}")
        return out

    def _fresh(self, eos: P.EosHeader) -> bool:
        """Whether this end of stream was not handed on yet (live or from the log); it counts as handed on now."""
        key = (eos.source, eos.seq, eos.t_capture, eos.frames)
        if key in self._ends_seen:
            return False
        self._ends_seen.append(key)
        return True

    def _ends(self, counters: Mapping[str, int]) -> list[tuple[None, P.EosHeader]]:
        """On a node heartbeat: the ends of stream its `logged_ends` announces that this subscriber has not had (lost
        live at the node's high-water mark), fetched from the log, oldest first."""
        announced, log_id = counters.get("logged_ends"), counters.get("event_log_id", 0)
        if announced is None:
            return []  # a node that logs no ends of stream (before they were logged), or no log
        if self.end_cursor is None:
            self._heard_ends(announced, log_id)
            return []
        if log_id and self._ends_log and log_id != self._ends_log:  # numbered from 1 again: all after this came
            self.end_cursor = 0
        self._ends_log = log_id or self._ends_log
        if announced < self.end_cursor:  # taken from a heads reply with ends not out yet, or the log went back (a
            self.end_cursor = announced  # backup restored in place): its ends from there on
        if announced == self.end_cursor:
            return []
        got = self.client.ends(self.end_cursor)
        if self.client.log_id and self._ends_log and self.client.log_id != self._ends_log:
            return []  # another log answered than the heartbeat's (a node restarting meanwhile): its next heartbeat
        out: list[tuple[None, P.EosHeader]] = []
        for n, eos in got:
            if n > announced:  # logged, its live copy not out yet: that camera's last results may be on their way
                break
            self.end_cursor = n
            if self._fresh(eos):
                self.recovered_ends += 1
                log.warning("%s: recovered its end of stream (%d frames; end_seq %d) from the node's event log: the "
                            "live one was lost", eos.source, eos.frames, n)
                out.append((None, eos))
        return out

    def sync(self, announced: int | None = None) -> list[tuple[int, P.EventHeader]]:
        """Fetch every source that is behind the node's heads. With `announced` (a heartbeat's
        `logged_events`), at most `announced - sum(cursors)` of them count as missed. A request that fails after
        some sources' events came (their cursors moved past them) returns those, counted and said: the other sources
        are fetched at the next try; one that fails before any raises ReplayError."""
        self._start()
        heads = self.client.heads()
        self._heard_heads()
        if self._new_log() or self._rewound(heads):
            announced = None  # all of the new log's events are new to this subscriber
        missing = None if announced is None else max(0, announced - sum(self.cursors.values()))
        out = []
        for source, head in heads.items():
            if head > self.cursors.get(source, 0):
                try:
                    got = self._fetch(source, budget=missing)
                except ReplayError as e:
                    if not out:
                        raise
                    self.errors += 1
                    self._log.warning(f"event catch-up failed after {len(out)} event(s), the others will be fetched "
                                      f"at the next try: {e}")
                    break
                if missing is not None:
                    missing = max(0, missing - len(got))
                out += got
        return out

    def _fetch(self, source: str, live: P.EventHeader | None = None,
               budget: int | None = None) -> list[tuple[int, P.EventHeader]]:
        cursor = self.cursors.get(source, 0)
        got = self.client.events(source, cursor)
        if self._new_log():
            return self.sync()
        handed = self._handed.setdefault(source, deque(maxlen=HANDED_SEEN))
        at = None if live is None else next((i for i, (_, h) in enumerate(got) if _same(h, live)), None)
        if (live is not None and at is None and (live.seq, live.t_capture) not in handed
                and (self._rewound(self.client.heads()) or self._logged_again(source, cursor, live))):
            return self._fetch(source, live)  # its live event is logged, not after the cursor: the log went back
        if not got:
            return got
        if got[0][0] > cursor + 1:  # its log's oldest events were deleted before this subscriber fetched them
            self.pruned += got[0][0] - cursor - 1
            log.warning("%s: %d event(s) (log_seq %d..%d) were pruned from the node's event log before this "
                        "subscriber fetched them (node.event_log_max_events): lost to it", source,
                        got[0][0] - cursor - 1, cursor + 1, got[0][0] - 1)
        handed.extend((h.seq, h.t_capture) for _, h in got)
        if live is not None:  # the events logged before the live one were missed; those after it are early
            missed = at or 0
        else:
            missed = len(got) if budget is None else min(budget, len(got))
        if missed > 0:
            self.recovered += missed
            log.warning("%s: recovered %d missed event(s) (log_seq %d..%d) from the node's event log",
                        source, missed, got[0][0], got[missed - 1][0])
        self.cursors[source] = got[-1][0]
        return got

    def close(self) -> None:
        self.client.close()


def first_sync(catch: CatchUp, endpoint: str, deadline: float, stop: threading.Event, asked: str | None = None,
               backoff_s: float = 0.5, max_backoff_s: float = 10.0) -> list[tuple[int, P.EventHeader]]:
    """A subscriber's first `catch.sync()`, before its live stream, waiting for a node that is not up yet: retried
    with exponential backoff until it answers, `deadline` (monotonic) passes or `stop` is set (then [] and catch-up
    starts with the first live message). `asked` (why the subscriber reads the log from its start: `--from-start`, a
    sinks stage's first start): the events logged before it started are what it asked for, said at INFO, not
    "recovered" as missed (a warning)."""
    delay = backoff_s
    while not stop.is_set():
        try:
            got = catch.sync(announced=0 if asked else None)  # announced 0: none of them counts as missed
            if asked:
                log.info("read %d event(s) from the node's event log, logged before this subscriber started (%s)",
                         len(got), asked)
            return got
        except ReplayError as e:
            wait = min(delay, deadline - time.monotonic())
            if wait <= 0:
                log.warning("replay endpoint %s: %s; giving up the first catch-up", endpoint, e)
                return []
            log.warning("replay endpoint %s not answering yet (%s); retrying in %.1f s", endpoint, e, wait)
            stop.wait(wait)
            delay = min(delay * 2, max_backoff_s)
    return []
