"""events.jsonl on a full disk: an event whose write failed is written later, once, in the run or after a restart."""
from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from pipeline import protocol as P
from pipeline import sinks, transport
from pipeline.eventlog import CatchUp, EventLog, ReplayClient, serve_replay
from pipeline.sinks import JsonLines, JsonlSink, deliver

pytestmark = pytest.mark.faults
EVENTS = {"camA": 10, "camB": 6}


def header(source: str, seq: int) -> P.EventHeader:
    return P.EventHeader(kind="event", source=source, seq=seq, t_capture=1.0 + seq, score=9.0, threshold=3.0,
                         model_version=1)


HEARTBEAT = P.Message(P.HeartbeatHeader(kind="heartbeat", source="node", seq=-1, t_capture=1.0, role="node",
                                        state="idle", counters={}))


@pytest.fixture
def replay(tmp_path) -> Iterator[tuple[str, zmq.Context]]:
    """A node's event log with EVENTS, served on a replay endpoint: (endpoint, context)."""
    db = EventLog(tmp_path / "events.db")
    for source, n in EVENTS.items():
        for seq in range(n):
            db.append(header(source, seq))
    db.close()
    ctx, halt = zmq.Context(), threading.Event()
    rep = transport.make_socket(ctx, zmq.ROUTER)
    endpoint = transport.bind(rep, "tcp://127.0.0.1:*")
    t = threading.Thread(target=serve_replay, args=(rep, tmp_path / "events.db", halt), daemon=True)
    t.start()
    yield endpoint, ctx
    halt.set()
    t.join()
    ctx.destroy(linger=0)  # also the sockets of a test that failed before closing its client


class FullDisk:
    """The file a sink writes to, on a disk that is full while `full` is set: a write raises OSError 28, nothing of
    it stored."""

    full = False

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        if FullDisk.full:
            raise OSError(28, "No space left on device")
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


class ShortDisk(io.FileIO):
    """A file on a disk with `room` bytes left (None: no bound): a write past it stores what fits, the next raises
    OSError 28, and the buffered stream above keeps the rest of the line. `dead`: the process was killed."""

    room: int | None = None
    opened: list[ShortDisk] = []

    def __init__(self, path: str):
        super().__init__(path, "ab")
        self.dead = False
        ShortDisk.opened.append(self)

    def write(self, data) -> int:
        if self.dead or ShortDisk.room == 0:
            raise OSError(28, "No space left on device")
        n = super().write(bytes(data)[:ShortDisk.room])
        if ShortDisk.room is not None:
            ShortDisk.room -= n
        return n


@pytest.fixture(autouse=True)
def retry_at_once(monkeypatch):
    monkeypatch.setattr(sinks, "RETRY_S", 0.0)  # each message tries the kept records (a second apart in a line)


@pytest.fixture
def full_disk(monkeypatch) -> type[FullDisk]:
    opener = sinks._RaisingRotatingFileHandler._open
    monkeypatch.setattr(sinks._RaisingRotatingFileHandler, "_open", lambda self: FullDisk(opener(self)))
    monkeypatch.setattr(FullDisk, "full", False)
    return FullDisk


@pytest.fixture
def short_disk(monkeypatch) -> type[ShortDisk]:
    def opener(self):
        return io.TextIOWrapper(io.BufferedWriter(ShortDisk(self.baseFilename)), encoding="utf-8")

    monkeypatch.setattr(sinks._RaisingRotatingFileHandler, "_open", opener)
    monkeypatch.setattr(ShortDisk, "room", None)
    monkeypatch.setattr(ShortDisk, "opened", [])
    return ShortDisk


def log_seqs(path) -> dict[str, list[int]]:
    """Each source's log_seqs in PATH (and its backups), in file order; a line that does not parse fails the test."""
    out: dict[str, list[int]] = {}
    for file in reversed(JsonLines.files(path)):
        for line in file.read_text().splitlines():
            rec = json.loads(line)
            out.setdefault(rec["source"], []).append(rec["log_seq"])
    return out


EVERY = {source: list(range(1, n + 1)) for source, n in EVENTS.items()}


def test_events_whose_write_failed_are_written_once_the_disk_has_room_again(tmp_path, replay, full_disk):
    out = tmp_path / "events.jsonl"
    sink, catch = JsonlSink(out, append=False), CatchUp(ReplayClient(*replay), from_start=True)
    events = catch.sync()
    failures = 0
    for i, (n, h) in enumerate(events):
        full_disk.full = 3 <= i < 10  # camA's 4..10 fail
        if i == 10:  # room again: the next message, a heartbeat, has the failed ones written
            assert deliver([sink], HEARTBEAT, time.time()) == 0
            assert log_seqs(out) == {"camA": EVERY["camA"]}
        failures += deliver([sink], P.Message(h), time.time(), n)
        if i == 5:
            assert deliver([sink], HEARTBEAT, time.time()) == 0  # still full: counted on events only
    assert failures == 7 and not sink.pending
    assert log_seqs(out) == EVERY  # in order, no gap, no duplicate
    assert JsonlSink.cursors(out) == EVENTS
    sink.close()
    catch.close()


def test_a_restarted_sinks_stage_writes_the_events_whose_write_failed_and_no_other_twice(tmp_path, replay, short_disk):
    """The disk fills in the middle of a line, and the sinks stage is killed before it has room again."""
    out = tmp_path / "events.jsonl"
    sink, catch = JsonlSink(out, append=False), CatchUp(ReplayClient(*replay), from_start=True)
    for i, (n, h) in enumerate(catch.sync()):
        if i == 3:
            short_disk.room = 20  # camA#4's line gets 20 bytes on disk
        deliver([sink], P.Message(h), time.time(), n)
    for f in short_disk.opened:  # killed: what its streams still buffer is lost
        f.dead = True
    catch.close()
    short_disk.room = None
    resume = JsonlSink.cursors(out)
    assert resume == {"camA": 3}
    sink = JsonlSink(out, append=True, resume=resume)
    catch = CatchUp(ReplayClient(*replay), resume=resume)
    for n, h in catch.sync():
        assert deliver([sink], P.Message(h), time.time(), n) == 0
    sink.close()
    catch.close()
    assert log_seqs(out) == EVERY


def test_past_max_pending_a_cameras_events_wait_in_the_node_log_for_a_restart(tmp_path, replay, full_disk):
    out = tmp_path / "events.jsonl"
    sink, catch = JsonlSink(out, append=False, max_pending=3), CatchUp(ReplayClient(*replay), from_start=True)
    events = catch.sync()
    for i, (n, h) in enumerate(events):
        full_disk.full = 2 <= i < 7  # camA's 3..7 fail: 3..5 are kept, 6 on is left to the node's log
        deliver([sink], P.Message(h), time.time(), n)
    assert sink.held == {"camA": 6} and len(sink.pending) == 0
    sink.close()
    catch.close()
    assert log_seqs(out) == {"camA": [1, 2, 3, 4, 5], "camB": EVERY["camB"]}  # camB went on
    resume = JsonlSink.cursors(out)
    sink = JsonlSink(out, append=True, resume=resume)
    catch = CatchUp(ReplayClient(*replay), resume=resume)
    for n, h in catch.sync():
        deliver([sink], P.Message(h), time.time(), n)
    sink.close()
    catch.close()
    assert log_seqs(out) == EVERY


@pytest.mark.parametrize("torn", ['{"source": "camA", "se', '{"source": "camA", "seq": 3, "log_seq": 3}'],
                         ids=["mid_record", "before_its_newline"])
def test_a_line_torn_by_a_crash_is_cut_off_so_the_next_is_readable(tmp_path, torn):
    """A last line without its newline is cut off when the file is opened again, so it never counts as written,
    whole JSON or not (a crash between a record's `}` and its newline: the resume took its log_seq, 3, and the cut
    then lost that event)."""
    out = tmp_path / "events.jsonl"
    sink = JsonlSink(out, append=False)
    for n in (1, 2):
        sink.handle(P.Message(header("camA", n)), time.time(), n)
    sink.close()
    with open(out, "a") as f:
        f.write(torn)  # camA#3, torn
    resume = JsonlSink.cursors(out)
    assert resume == {"camA": 2}
    sink = JsonlSink(out, append=True, resume=resume)
    for n in (3, 4):
        sink.handle(P.Message(header("camA", n)), time.time(), n)
    sink.close()
    assert log_seqs(out) == {"camA": [1, 2, 3, 4]}


def test_a_damaged_line_that_is_not_utf8_is_skipped_and_the_sink_resumes_after_it(tmp_path):
    """A line of bytes that are not UTF-8 (a damaged sector, a file edited by hand) raised UnicodeDecodeError out of
    `JsonlSink.cursors`: the sinks stage could not start (a traceback) until the file was mended by hand."""
    out = tmp_path / "events.jsonl"
    sink = JsonlSink(out, append=False)
    sink.handle(P.Message(header("camA", 1)), time.time(), 1)
    sink.close()
    with open(out, "ab") as f:
        f.write(b"\xff\xfe\x00garbage\n")
    sink = JsonlSink(out, append=True)
    sink.handle(P.Message(header("camA", 2)), time.time(), 2)
    sink.close()
    assert JsonlSink.cursors(out) == {"camA": 2} and [r["log_seq"] for r in JsonLines.records(out)] == [1, 2]


def test_a_full_disk_is_tried_again_at_most_once_every_retry_s(tmp_path, replay, full_disk, monkeypatch):
    """Each message tried the kept records: at a frame rate, a reopen, write and truncate of the file each time."""
    monkeypatch.setattr(sinks, "RETRY_S", 3600.0)
    out = tmp_path / "events.jsonl"
    sink, catch = JsonlSink(out, append=False), CatchUp(ReplayClient(*replay), from_start=True)
    (n1, h1), (n2, h2) = catch.sync()[:2]
    full_disk.full = True
    assert deliver([sink], P.Message(h1), time.time(), n1) == 1  # tried, failed
    full_disk.full = False  # room again, but within the retry delay
    assert deliver([sink], P.Message(h2), time.time(), n2) == 0 and len(sink.pending) == 2  # kept, not tried
    assert log_seqs(out) == {}
    sink._retry_at = 0.0  # the delay has passed
    assert deliver([sink], HEARTBEAT, time.time()) == 0 and not sink.pending
    assert log_seqs(out) == {"camA": [1, 2]}
    sink.close()
    catch.close()
