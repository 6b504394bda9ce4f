"""Subscribers at the end of the line: a SUB socket and sinks for events, overlays and metrics.

Overlays need the frame a result was computed on: the node attaches it to the anomaly result
(`node.attach_image`, by default only for anomalous frames), so a sink never has to pair results
with frames it may have missed.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import numpy as np
import zmq
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from rich.console import Console
from rich.markup import escape

from edge.config import ConfigError
from edge.images import write_rgb
from edge.overlay import annotated_overlay

from . import protocol as P
from .eventlog import Cursors
from .flow import CREDIT_COUNTER
from .http_bounds import AwaitsRequest, BoundedConnections
from .stats import CameraClocks
from .transport import ThrottledLog, connect, make_socket

log = logging.getLogger(__name__)


REOPEN_S = 10.0  # a subscriber of node heartbeats that hears nothing this long connects afresh (`Subscriber`)


class Subscriber:
    """A SUB socket connected to node endpoints; yields decoded messages, counts and logs malformed ones.

    With `reopen_s` (for topics that include the node's heartbeats, sent every `node.heartbeat_s`): when nothing came
    for `reopen_s` and 3x the longest gap heard between two messages, the socket is closed and connected afresh
    (`reopens`). A node full of subscribers (`node.max_subscribers`) refuses a new one at its handshake, and ZeroMQ
    never connects a refused socket again: without this, a line's sinks refused once would hear nothing until
    restarted. A node that is down costs a new socket each time, nothing else."""

    def __init__(self, endpoints: str | Sequence[str], topics: Sequence[bytes] = (b"",), ctx: zmq.Context | None = None,
                 rcvhwm: int = 10_000, server_key: bytes | None = None, reopen_s: float | None = None):
        self._ctx, self._topics, self._rcvhwm, self._server_key = ctx or zmq.Context.instance(), topics, rcvhwm, \
            server_key
        self._endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        self.reopen_s, self.reopens = reopen_s, 0
        self.sock = self._open()
        self._opened, self._last, self._gap = time.monotonic(), None, 0.0  # a message's last time; the longest gap
        self.bad_messages = 0
        self._log = ThrottledLog(log)

    def _open(self) -> zmq.Socket:
        sock = make_socket(self._ctx, zmq.SUB, rcvhwm=self._rcvhwm)
        sock.setsockopt(zmq.LINGER, 0)
        for endpoint in self._endpoints:
            connect(sock, endpoint, self._server_key)  # a CURVE client when security is on for the context
        for topic in self._topics:
            sock.setsockopt(zmq.SUBSCRIBE, topic)
        return sock

    def recv(self, timeout_ms: int = 100) -> P.Message | None:
        """The next valid message, or None if none came within `timeout_ms` (or it was malformed)."""
        if not self.sock.poll(timeout_ms):
            quiet = time.monotonic() - (self._last or self._opened)
            if self.reopen_s is not None and quiet > max(self.reopen_s, 3 * self._gap):
                self._reopen(quiet)
            return None
        now = time.monotonic()
        if self._last is not None:
            self._gap = max(self._gap, min(now - self._last, 60.0))  # a node beats every 60 s at most
        self._last = now
        try:
            return P.decode(self.sock.recv_multipart(copy=False))
        except P.ProtocolError as e:
            self.bad_messages += 1
            self._log.warning(f"dropped a malformed message: {e}")
            return None

    def _reopen(self, quiet: float) -> None:
        self.sock.close()
        self.sock = self._open()
        self._opened, self._last = time.monotonic(), None
        self.reopens += 1
        self._log.warning(f"nothing from {', '.join(self._endpoints)} for {quiet:.0f} s: connecting again (the node "
                          "down, or full: node.max_subscribers)")

    def close(self) -> None:
        self.sock.close()


class Sink(Protocol):
    """Where delivered messages go. `log_seq` is the node's event-log number of an event that came
    through `eventlog.CatchUp` (None for live messages); a sink that keeps records may store it."""

    def handle(self, msg: P.Message, delivered: float, log_seq: int | None = None) -> None: ...
    def close(self) -> None: ...


RETRY_S = 1.0  # how often a JSONL sink tries a failed write again
_FAILURE_LOGS: dict[str, ThrottledLog] = {}


def deliver(sinks: Sequence[Sink], msg: P.Message, delivered: float, log_seq: int | None = None) -> int:
    """Hand one message to every sink (the launcher's collector and `ssdnet subscribe` alike); returns how many
    failed. A sink that raises (a full disk, a bug) is logged, at most once a second per kind of sink, and the
    others still get the message: one broken output does not stop the line (events stay in the node's event log)."""
    failed = 0
    for sink in sinks:
        try:
            sink.handle(msg, delivered, log_seq)
        except Exception as e:  # noqa: BLE001 - any sink's failure: counted and logged, never the line's end
            failed += 1
            name = type(sink).__name__
            _FAILURE_LOGS.setdefault(name, ThrottledLog(log)).warning(
                f"{name} failed on {msg.kind} {msg.source}#{msg.header.seq}: {type(e).__name__}: {e}")
            log.debug("%s's failure", name, exc_info=True)  # where, with -v
    return failed


class JsonLines:
    """Appends one JSON object a line to PATH, flushed each time. Past `max_mb`, PATH becomes PATH.1 (PATH.1 becomes
    PATH.2, ...; `backups` are kept, the oldest dropped) and a new PATH begins: logging's RotatingFileHandler does the
    turning, as logrotate names the files. `max_mb` None: one file without a bound. `append` False starts afresh: PATH
    and its backups are emptied, so no earlier run's lines are read as this one's. `on_turn` is called just before
    each turn (the oldest backup may go with it). A line is in PATH whole or not at all: a failed write is cut off
    (and raised), a line torn by a crash is cut off when PATH is opened again."""

    def __init__(self, path: str | Path, append: bool = True, max_mb: float | None = None, backups: int = 3,
                 on_turn: Callable[[], None] | None = None):
        if backups < 1 or (max_mb is not None and max_mb <= 0):
            raise ValueError(f"a JSONL file needs max_mb > 0 (None: no bound) and backups >= 1: {max_mb}, {backups}")
        self.path = Path(path)
        if not append:
            for old in self.files(self.path):
                old.unlink()
        elif self.path.exists():
            _cut_torn_line(self.path)
        max_bytes = 0 if max_mb is None else max(1, int(max_mb * 2**20))
        self._file = _RaisingRotatingFileHandler(self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._file.setFormatter(logging.Formatter("%(message)s"))
        self._file.on_turn = on_turn

    @staticmethod
    def files(path: str | Path) -> list[Path]:
        """PATH and its backups PATH.1, PATH.2, ... that exist, newest first."""
        path = Path(path)
        backups = [p for p in path.parent.glob(glob.escape(path.name) + ".*") if p.suffix[1:].isdigit()]
        return [p for p in [path] if p.exists()] + sorted(backups, key=lambda p: int(p.suffix[1:]))

    @staticmethod
    def records(path: str | Path) -> Iterator[dict]:
        """Every JSON object in PATH and its backups, oldest first; a torn or damaged line (a crash mid-write, bytes
        that are not UTF-8) is skipped, and so is a last line without its newline, JSON or not: it is cut off when
        PATH is opened again, so it was never counted as written."""
        for file in reversed(JsonLines.files(path)):
            with open(file, "rb") as lines:  # line by line: a file may hold hundreds of MB
                for line in lines:
                    if not line.endswith(b"\n"):
                        continue
                    try:
                        rec = json.loads(line)  # bytes: not UTF-8 raises UnicodeDecodeError, a ValueError
                    except ValueError:
                        continue
                    if isinstance(rec, dict):
                        yield rec

    def write(self, record: dict) -> None:
        self._file.emit(logging.makeLogRecord({"msg": json.dumps(record)}))

    def close(self) -> None:
        self._file.close()


def _cut_torn_line(path: Path, chunk: int = 1 << 16) -> None:
    """Cut a last line without its newline (a crash mid-write) off PATH: the next line would be glued to it and
    unreadable too. Its record was never counted as written, so a restart fetches its event again."""
    with open(path, "rb+") as f:
        end = pos = f.seek(0, os.SEEK_END)
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            newline = f.read(pos - start).rfind(b"\n")
            if newline >= 0:
                pos = start + newline + 1
                break
            pos = start
        if pos < end:
            f.truncate(pos)


class _RaisingRotatingFileHandler(RotatingFileHandler):
    on_turn: Callable[[], None] | None = None

    def doRollover(self) -> None:
        if self.on_turn is not None:
            self.on_turn()
        super().doRollover()

    def emit(self, record: logging.LogRecord) -> None:
        """Write one line; a failed write (a full disk) is cut off and raised to the sink's caller, not printed."""
        if self.shouldRollover(record):
            self.doRollover()
        if self.stream is None:  # closed by a failed write
            self.stream = self._open()
        start = self.stream.tell()
        try:
            self.stream.write(self.format(record) + self.terminator)
            self.stream.flush()
        except OSError:
            self._cut(start)
            raise

    def _cut(self, start: int) -> None:
        """Close the file and cut it back to `start`, where the failed line began. Part of the line may be on disk,
        and the stream still buffers the rest: flushed with a later line, it would write the line twice once the
        caller retries it."""
        stream, self.stream = self.stream, None
        with contextlib.suppress(OSError):
            stream.close()  # closed even when its flush fails: the buffer goes with it
        os.truncate(self.baseFilename, start)


class JsonlSink:
    """Appends one JSON object per event (source, seq, score, threshold, regions, t_capture, stamps, model_version,
    and `log_seq`, the node's per-source event-log number, when the event came through `eventlog.CatchUp`, with
    `log_id`, the log it counts in, when the caller set `log_id`) to PATH, turned over past `max_mb` (`JsonLines`).
    Before each turn the highest `log_seq` per source written so far and their log go to PATH.cursors, so a camera
    whose every record is turned out of the kept files still resumes where it was. `resume`: `cursors(PATH)` when the
    caller has read them already (read again here when None and appending).

    No record is written after one that failed (a full disk): it is kept and tried again, oldest first, with a
    later message at most once every RETRY_S, and at `close`. So each camera's records in PATH are an unbroken run
    of the events handed over, and the highest `log_seq`, where a restart resumes, is never past an event not
    written. At most `max_pending` records are kept: past that, a camera's further events stay in the node's event
    log until the sinks restart."""

    def __init__(self, path: str | Path, append: bool = True, max_mb: float | None = None, backups: int = 3,
                 resume: dict[str, int] | None = None, max_pending: int = 10_000):
        self.sidecar = self.cursors_file(path)
        if not append:
            self.sidecar.unlink(missing_ok=True)
        if resume is None:
            resume = self.cursors(path) if append else Cursors()
        self.written = resume.copy() if isinstance(resume, Cursors) else Cursors(resume)
        self.log_id = 0  # the event log of the `log_seq` handed in (the caller's to set, e.g. `launcher.Collector`)
        self.max_pending = max_pending
        self.pending: deque[tuple[str, int | None, dict]] = deque()  # (source, log_seq, record) not written yet
        self.held: dict[str, int] = {}  # source -> the first of its events left to the node's log (pending was full)
        self._retry_at = 0.0  # monotonic time before which a failed write is not tried again
        self.lines = JsonLines(path, append, max_mb, backups, on_turn=self._save_cursors)

    def handle(self, msg: P.Message, delivered: float, log_seq: int | None = None) -> None:
        if self.pending and time.monotonic() >= self._retry_at:  # the kept records first: the disk may have room
            with contextlib.suppress(OSError):
                self._flush()
        if msg.kind == "event":
            self._keep(msg, log_seq)
            if time.monotonic() >= self._retry_at:
                self._flush()  # an OSError: this event is not written yet (kept); the caller counts it

    def _keep(self, msg: P.Message, log_seq: int | None) -> None:
        """Queue the event's record behind those not written yet; RuntimeError if too many wait."""
        if msg.source in self.held or len(self.pending) >= self.max_pending:
            if log_seq is None:
                raise RuntimeError(f"not kept: {self.max_pending} earlier records wait for {self.lines.path}")
            first = self.held.setdefault(msg.source, log_seq)  # its later events would leave a hole before them
            raise RuntimeError(f"more than {self.max_pending} writes to {self.lines.path} failed: {msg.source}'s "
                               f"events from log_seq {first} on stay in the node's event log until the sinks restart")
        record = P.event_record(msg.header)
        if log_seq is not None:
            record["log_seq"] = log_seq
            if self.log_id:
                record["log_id"] = self.log_id
        self.pending.append((msg.source, log_seq, record))

    def _flush(self) -> None:
        """Write the kept records, oldest first; the first that fails stays first and its OSError is raised."""
        while self.pending:
            source, log_seq, record = self.pending[0]
            try:
                self.lines.write(record)
            except OSError:
                self._retry_at = time.monotonic() + RETRY_S
                raise
            self.pending.popleft()
            if log_seq is not None:  # only once written: PATH and the cursors never pass an unwritten event
                self.written.take(source, log_seq, record.get("log_id", 0))

    def _save_cursors(self) -> None:
        tmp = self.sidecar.with_name(self.sidecar.name + ".tmp")
        tmp.write_text(json.dumps({"log_id": self.written.log_id, "cursors": self.written}), encoding="utf-8")
        os.replace(tmp, self.sidecar)  # whole or not at all

    @staticmethod
    def cursors_file(path: str | Path) -> Path:
        return Path(f"{path}.cursors")

    @staticmethod
    def cursors(path: str | Path) -> Cursors:
        """Highest `log_seq` per source, and their event log, in PATH.cursors (those at the last turn: the records
        still in the backups are in them) and then in PATH's backups and PATH, oldest first: where a restarted
        subscriber resumes."""
        out = Cursors()
        for source, n, log_id in chain(JsonlSink._saved(JsonlSink.cursors_file(path)), JsonlSink._logged(path)):
            out.take(source, n, log_id)
        return out

    @staticmethod
    def _logged(path: str | Path) -> Iterator[tuple[str, int, int]]:
        """(source, log_seq, log_id) of the records that have a `log_seq` (log_id 0: none recorded), oldest first."""
        for rec in JsonLines.records(path):
            source, n, log_id = rec.get("source"), rec.get("log_seq"), rec.get("log_id")
            if isinstance(source, str) and type(n) is int:
                yield source, n, log_id if type(log_id) is int else 0

    @staticmethod
    def _saved(sidecar: Path) -> Iterator[tuple[str, int, int]]:
        """(source, log_seq, log_id) of PATH.cursors: {"log_id": N, "cursors": {source: log_seq}}, or, written before
        log ids, {source: log_seq} (log_id 0)."""
        saved = {}
        if sidecar.exists():
            try:
                saved = json.loads(sidecar.read_text(encoding="utf-8"))
            except ValueError:  # not written by this sink: its cameras' events come again, none is lost
                log.warning("%s is not a JSON object of cursors; ignored", sidecar)
        saved = saved if isinstance(saved, dict) else {}
        log_id = 0
        if isinstance(saved.get("cursors"), dict):
            log_id, saved = saved.get("log_id"), saved["cursors"]
        for source, n in saved.items():
            if isinstance(source, str) and type(n) is int:
                yield source, n, log_id if type(log_id) is int else 0

    def close(self) -> None:
        try:
            self._flush()
        except OSError as e:  # not raised: the line's other sinks still close
            log.warning("%d event(s) not written to %s (%s): those with a log_seq are fetched again when the sinks "
                        "restart", len(self.pending), self.lines.path, e)
        self.lines.close()


def overlay(msg: P.Message, alpha: float = 0.5, vrange: tuple[float, float] | None = None) -> np.ndarray:
    """RGB picture of an anomaly result: the map on the frame (one colour scale for every frame, so a good
    frame stays blue), regions boxed in white, and the verdict, score, threshold and colour scale below."""
    h = msg.header
    return annotated_overlay(msg.arrays.get("image"), P.anomaly_map(msg), h.score, h.threshold,
                             [r.bbox for r in h.regions], vrange, alpha)


class OverlaySink:
    """Writes DIR/<source>_<seq>.png for every anomalous result (`mode` 'events') or every result ('all')
    that carries its frame. DIR holds at most `max_mb` of PNGs (None: no bound): past it the oldest go, those of
    an earlier run in DIR too, so a line that runs for months never fills the disk its event log needs."""

    def __init__(self, directory: str | Path, alpha: float = 0.5, mode: str = "events",
                 vrange: tuple[float, float] | None = None, max_mb: float | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.alpha, self.mode, self.vrange = alpha, mode, vrange
        self.max_bytes = None if max_mb is None else int(max_mb * 2**20)
        self.written = self.deleted = 0
        stats = {p: p.stat() for p in self.dir.glob("*.png")}
        self._files = {p: st.st_size for p, st in sorted(stats.items(), key=lambda item: item[1].st_mtime)}
        self._bytes = sum(self._files.values())  # of the PNGs in DIR, oldest first
        self._log = ThrottledLog(log)

    def handle(self, msg: P.Message, delivered: float, log_seq: int | None = None) -> None:
        h = msg.header
        if h.kind == "anomaly" and "image" in msg.arrays and (self.mode == "all" or h.label == "anomalous"):
            path = self.dir / f"{h.source}_{h.seq:06d}.png"
            try:
                write_rgb(path, overlay(msg, self.alpha, self.vrange))
                size = path.stat().st_size
            except OSError as e:  # a full disk costs overlays, not the line
                self._log.warning(f"overlay of {h.source}#{h.seq} not written: {e}")
                return
            self.written += 1
            self._bytes += size - self._files.pop(path, 0)  # a path written again is the newest
            self._files[path] = size
            self._trim()

    def _trim(self) -> None:
        while self.max_bytes is not None and self._bytes > self.max_bytes and len(self._files) > 1:
            oldest = next(iter(self._files))
            self._bytes -= self._files.pop(oldest)
            oldest.unlink(missing_ok=True)
            self.deleted += 1
            if self.deleted == 1:
                log.info("%s holds %g MB of overlays (sinks.overlays_max_mb): the oldest are deleted from now on",
                         self.dir, round(self.max_bytes / 2**20, 3))

    def close(self) -> None:
        pass


class ScoresSink:
    """Appends one JSON object per scored frame: source, seq, score, threshold, label, calibrating, regions (count),
    t_capture, end_to_end_ms, product, turned over past `max_mb` (`JsonLines`). The distribution of a line's scores on
    normal production is what a threshold is calibrated on (`ssdnet calibrate OUT/scores.jsonl`)."""

    def __init__(self, path: str | Path, append: bool = False, max_mb: float | None = None, backups: int = 3):
        self.lines = JsonLines(path, append, max_mb, backups)
        self.clocks = CameraClocks()

    def handle(self, msg: P.Message, delivered: float, log_seq: int | None = None) -> None:
        h = msg.header
        if h.kind == "anomaly":
            self.lines.write({"source": h.source, "seq": h.seq, "score": round(h.score, 5), "threshold": h.threshold,
                              "label": h.label, "calibrating": h.calibrating, "regions": len(h.regions),
                              "t_capture": h.t_capture,
                              "end_to_end_ms": round(self.clocks.latencies(h, delivered)["end_to_end"], 1),
                              "product": h.product})

    def close(self) -> None:
        self.lines.close()


class _MetricsServer(BoundedConnections, WSGIServer):
    """The metrics endpoint: a thread per connection, bounded (before, prometheus_client's server kept a thread for
    every connection that sent nothing, for ever)."""

    name = "metrics"
    max_connections = 16
    throttled = ThrottledLog(log, 5.0)


class _MetricsServer6(_MetricsServer):
    address_family = socket.AF_INET6


class _MetricsHandler(AwaitsRequest, WSGIRequestHandler):
    timeout = 10  # each read and write: a scraper that stops reading the answer

    def log_message(self, format: str, *args: object) -> None:
        log.debug("metrics: %s %s", self.address_string(), format % args)


class MetricsSink:
    """Prometheus text endpoint (http://HOST:PORT/metrics): per-stage latency, fps, results, events,
    and the counters (frames sent, dropped, rejected, ...) and last-frame ages that heartbeats report.
    A stage's heartbeats get series for their first P.MAX_COUNTERS counter names (as many as one heartbeat carries);
    further names, and negative values (not a count; but `credit_upto` -1, a credit camera not yet granted), are not
    exported but counted
    (`ssdnet_metrics_dropped_counters_total`, by reason)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 9108):
        self.registry = r = CollectorRegistry()
        buckets = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100)
        self.latency = Histogram("ssdnet_stage_latency_seconds", "latency per pipeline stage", ["stage"],
                                 buckets=buckets, registry=r)
        self.clocks = CameraClocks()  # a camera's clock ahead of the node's is taken out of its latencies
        self.results = Counter("ssdnet_results", "scored frames", ["source", "label"], registry=r)
        self.events = Counter("ssdnet_events", "anomaly events", ["source"], registry=r)
        self.fps = Gauge("ssdnet_fps", "scored frames per second, smoothed", ["source"], registry=r)
        self.age = Gauge("ssdnet_last_frame_age_seconds", "seconds since a stage last had a frame (heartbeats)",
                         ["role", "source"], registry=r)
        self.counters = Gauge("ssdnet_stage_count", "counters reported by heartbeats", ["role", "source", "counter"],
                              registry=r)
        self.dropped = Counter("ssdnet_metrics_dropped_counters", "heartbeat counters not exported: a name over "
                               "the limit of its (role, source), or a negative value", ["reason"], registry=r)
        for reason in ("name_limit", "negative"):
            self.dropped.labels(reason)
        server = _MetricsServer6 if ":" in host else _MetricsServer
        try:
            self.server = make_server(host, port, make_wsgi_app(r), server, handler_class=_MetricsHandler)
        except OSError as e:  # a host that does not resolve or is not this machine's, a port another program holds
            raise ConfigError(f"the metrics endpoint cannot listen on {host}:{port} ({e.strerror}): check "
                              "sinks.prometheus.host and sinks.prometheus.port (0 = any free port)") from e  # exit 2
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="metrics", daemon=True)
        self._thread.start()
        self.port = self.server.server_port
        self._last: dict[str, float] = {}
        self._fps: dict[str, float] = {}
        self._names: dict[tuple[str, str], set[str]] = {}  # (role, source) -> the counter names it has series for
        self._warned: set[tuple[str, str]] = set()  # (role, source) told to be over the limit of names

    def handle(self, msg: P.Message, delivered: float, log_seq: int | None = None) -> None:
        h = msg.header
        if h.kind == "anomaly":
            for stage, ms in self.clocks.latencies(h, delivered).items():
                self.latency.labels(stage).observe(ms / 1e3)
            self.results.labels(h.source, h.label).inc()
            if (last := self._last.get(h.source)) is not None and delivered > last:
                rate = 1 / (delivered - last)
                self._fps[h.source] = 0.8 * self._fps[h.source] + 0.2 * rate if h.source in self._fps else rate
                self.fps.labels(h.source).set(self._fps[h.source])
            self._last[h.source] = delivered
        elif h.kind == "event":
            self.events.labels(h.source).inc()
        elif h.kind == "heartbeat":
            if h.last_frame_age is not None:
                self.age.labels(h.role, h.source).set(h.last_frame_age)
            self._export(h.role, h.source, h.counters)

    def _export(self, role: str, source: str, counters: dict[str, int]) -> None:
        """Set the series of a heartbeat's counters (the decoder admits ints only: no NaN or infinity)."""
        names = self._names.setdefault((role, source), set())
        for name, value in counters.items():
            if value < 0 and not (name == CREDIT_COUNTER and value == -1):  # (-1: a credit camera not yet granted)
                self.dropped.labels("negative").inc()
                continue
            if name not in names:
                if len(names) >= P.MAX_COUNTERS:
                    self.dropped.labels("name_limit").inc()
                    if (role, source) not in self._warned:
                        self._warned.add((role, source))
                        log.warning("metrics: %s %s has sent over %d counter names; %r and further new ones are not "
                                    "exported (ssdnet_metrics_dropped_counters_total)", role, source, P.MAX_COUNTERS,
                                    name)
                    continue
                names.add(name)
            self.counters.labels(role, source, name).set(value)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _shown(text: str) -> str:
    """A camera's own words (its heartbeat's `state`) as plain text for the console: control
    characters written as escapes (`\\x1b`), so a camera cannot reset or retitle the operator's terminal, and rich
    markup escaped, so `[/]` neither fails the line nor `[link=...]` makes it a link (printed with emoji=False, so
    `:warning:` stays text)."""
    return escape(text if text.isprintable() else repr(text)[1:-1])


EOS_NOTED = ("send_dropped", "unheard", "unreadable", "too_small", "reconnects", "conflated", "lost", "rejected",
             "failed", "downscaled")  # an end of stream's counters the console names when not 0


def counted(n: int, noun: str) -> str:
    """`n` of `noun`, in the singular for one: "1 event", "3 events"."""
    return f"{n} {noun}{'s' * (n != 1)}"


def end_of_stream(h: P.EosHeader) -> str:
    """A camera's end of stream in words: frames sent, scored and events (the node's counters, when it forwarded it),
    then each EOS_NOTED counter that is not 0 (names of its own a camera puts in its counters are not shown)."""
    c = h.counters
    parts = [f"{h.frames} frames sent", *([f"{c['scored']} scored"] if "scored" in c else []),
             *([counted(c["events"], "event")] if "events" in c else []),
             *(f"{c[name]} {name.replace('_', ' ')}" for name in EOS_NOTED if c.get(name))]
    return f"{h.source}: [bold]end of stream[/], " + ", ".join(parts)


class ConsoleSink:
    """Prints events, ends of stream, and cameras' state changes and stalls (from their heartbeats), live (rich)."""

    def __init__(self, console=None, stall_s: float = 5.0):
        self.console = console or Console(soft_wrap=True)  # one line per message, also when piped
        self.stall_s = stall_s
        self._camera: dict[str, tuple[str, bool]] = {}
        self.clocks = CameraClocks()  # learnt from results and events: a camera's clock ahead is taken out

    def handle(self, msg: P.Message, delivered: float, log_seq: int | None = None) -> None:
        h = msg.header
        clock = time.strftime("%H:%M:%S", time.localtime(delivered))
        ahead = self.clocks.observe(h) if h.kind in ("anomaly", "event") else 0.0
        if h.kind == "event":
            latency = (delivered - h.stamps.get("capture", h.t_capture)) * 1e3 + ahead
            boxes = ", ".join(f"{r.bbox}" for r in h.regions[:3]) + (" ..." if len(h.regions) > 3 else "")
            product = f" ({h.product})" if h.product is not None else ""
            prior = " (calibrating: against the prior)" if h.calibrating else ""  # the camera's first frames
            self.console.print(f"{clock} [bold red]ANOMALY[/] {h.source}{product} #{h.seq} "
                               f"score {h.score:.2f} > {h.threshold:.2f}{prior}  "
                               f"{counted(len(h.regions), 'region')} {boxes}  [dim]{latency:.0f} ms after capture[/]",
                               emoji=False)
        elif h.kind == "eos":
            self.console.print(f"{clock} {end_of_stream(h)}", emoji=False)
        elif h.kind == "heartbeat" and h.role == "source":
            # "paced": a camera with flow: credit waiting for the node (busy scoring), not a stalled one
            state = "streaming" if h.state == "paced" else h.state
            stalled = h.state not in ("ended", "paced") and h.last_frame_age is not None \
                and h.last_frame_age > self.stall_s
            if self._camera.get(h.source) != (state, stalled):
                self._camera[h.source] = (state, stalled)
                note = f"[yellow]stalled[/], no frame for {h.last_frame_age:.1f} s" if stalled else ""
                self.console.print(f"{clock} camera {h.source}: {_shown(state)} {note}", emoji=False)

    def close(self) -> None:
        pass
