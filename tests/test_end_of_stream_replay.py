"""A camera's end of stream reaches a slow subscriber: the node logs each end of stream it forwards with its events
(`node.event_log`), so a subscriber that lost the live one at the node's high-water mark gets it from the replay
endpoint. Before, a sinks stage that fell behind during a flood missed two cameras' ends of stream (1 run in 3): it
never learnt they had ended, ran until stopped, and its summary.json lacked their `sent` counts."""
from __future__ import annotations

import functools
import logging
import sqlite3
from pathlib import Path

import msgpack
import pytest

from edge.config import parse_config
from pipeline import eventlog, launcher
from pipeline import protocol as P
from pipeline.config import LineConfig
from pipeline.eventlog import CatchUp, EventLog, ReplayClient, ReplayError, answer
from pipeline.sinks import Subscriber
from services import free_port
from test_pipeline_node import collect, subscriber, wait_until
from test_pipeline_node import line as node_line
from test_sinks_stage_resume import threaded_line

FRAMES = 30


def flood_config(tmp_path: Path) -> LineConfig:
    """Two cameras of 96 px frames, every frame an event with its frame attached (~45 KB a result), a node that keeps
    one message per subscriber (`sndhwm: 1`) on ipc (the kernel holds ~200 KB of a unix socket, not the megabytes a
    loopback tcp connection may grow to): what a stage that stops reading loses does not depend on the machine."""
    cam = {"kind": "synthetic", "size": 96, "frames": FRAMES, "heartbeat_s": 0.1, "flow": "credit",
           "textures": ["brick"]}
    return parse_config(LineConfig, {
        "sources": [{**cam, "name": "cam0", "bind": f"tcp://127.0.0.1:{free_port()}"},
                    {**cam, "name": "cam1", "bind": f"tcp://127.0.0.1:{free_port()}", "seed": 1}],
        "node": {"bind": f"ipc://{tmp_path}/node.sock", "replay_bind": f"ipc://{tmp_path}/replay.sock",
                 "threshold": 0.0, "heartbeat_s": 0.1, "sndhwm": 1, "event_log": str(tmp_path / "node.db")},
        "sinks": {"overlays": "off", "console": False},
    })


class Stall:
    """A sink that stops the stage on its first result until `until()` holds: the node floods it meanwhile."""

    def __init__(self, until):
        self.until, self.stalled = until, False

    def handle(self, msg, delivered, log_seq=None) -> None:
        if msg.kind == "anomaly" and not self.stalled:
            self.stalled = True
            wait_until(self.until, timeout=60)

    def close(self) -> None:
        pass


def test_a_sinks_stage_that_stopped_reading_while_the_node_flooded_it_still_gets_every_end_of_stream(
        tmp_path, monkeypatch, restore_signals):
    """The stage stops reading at its first result until the node has forwarded both cameras' ends of stream (its
    own socket keeps one message, `rcvhwm` 1: a slow subscriber): the live ends of stream are lost at the node's
    high-water mark. It still ends on them, with each camera's `sent`, long before the node's `cameras_ended` would
    have stopped it (ENDED_WAIT_S: it would have named them in `ended_before_start`)."""
    cfg = tmp_path / "line"
    cfg.mkdir()
    cfg = flood_config(cfg)
    monkeypatch.setattr(launcher, "Subscriber", functools.partial(Subscriber, rcvhwm=1))
    monkeypatch.setattr(launcher, "ENDED_WAIT_S", 60.0)
    with threaded_line(cfg, 20.0) as node:
        stall = Stall(lambda: node._streams_ended >= {"cam0", "cam1"})
        sinks = launcher._sinks
        monkeypatch.setattr(launcher, "_sinks", lambda *a, **k: [*sinks(*a, **k), stall])
        summary = launcher.run_sinks_stage(cfg, tmp_path / "sinks", timeout_s=30)
    assert stall.stalled
    assert summary["frames"] < 2 * FRAMES  # results were lost: the stage was flooded
    assert not summary["timed_out"] and not summary["interrupted"] and summary["ended_before_start"] == []
    assert {name: summary["sources"][name]["sent"] for name in ("cam0", "cam1")} == {"cam0": FRAMES, "cam1": FRAMES}
    assert summary["events"] == 2 * FRAMES  # every event, from the node's log


# ---------------------------------------------------------------- the log, the replay exchange, the catch-up


def end(source: str, seq: int, t: float = 1.0) -> P.EosHeader:
    return P.EosHeader(kind="eos", source=source, seq=seq, t_capture=t, frames=seq + 1,
                       counters={"sent": seq + 1, "scored": seq})


def event(source: str, seq: int) -> P.EventHeader:
    return P.EventHeader(kind="event", source=source, seq=seq, t_capture=1.0, score=9.0, threshold=3.0, model_version=1)


def beat(**counters) -> P.Message:
    return P.Message(P.HeartbeatHeader(kind="heartbeat", source="node", seq=-1, t_capture=1.0, role="node",
                                       state="idle", counters=counters))


def ask(db: EventLog, request: dict, published_ends=None) -> dict:
    reply = answer(db, msgpack.packb(request), published_ends)
    return msgpack.unpackb(msgpack.packb(reply, use_bin_type=True), raw=False)


class Local(ReplayClient):
    """A ReplayClient answered by `eventlog.answer` on a log of this thread, no socket; `old`: as a node from before
    ends of stream were logged answers (no `ends` in its heads, the `ends` op refused). `down`: no answer."""

    def __init__(self, db: EventLog, old: bool = False, published_ends=None):
        super().__init__("tcp://127.0.0.1:1")
        self.db, self.old, self.down, self.ops, self.published_ends = db, old, False, [], published_ends

    def request(self, req: dict) -> dict:
        self.ops.append(req["op"])
        if self.down:
            raise ReplayError("no answer from the node")
        reply = ask(self.db, req, self.published_ends)
        if self.old:
            reply.pop("ends", None)
            if req["op"] == "ends":
                reply = {"ok": False, "error": "request must be a map with op 'heads' or 'events', got op 'ends'"}
        if not reply["ok"]:
            raise ReplayError(f"replay error: {reply['error']}")
        self.log_id = reply["log"]
        return reply


def test_the_event_log_keeps_ends_of_stream_numbered_across_cameras_and_replays_them(tmp_path, monkeypatch):
    db = EventLog(tmp_path / "e.db")
    db.append(event("cam0", 0))
    ends = [end("cam0", 4), end("cam1", 9), end("cam0", 2, 2.0)]
    assert [db.append_end(h) for h in ends] == [1, 2, 3]
    assert ask(db, {"op": "heads"}) == {"ok": True, "heads": {"cam0": 1}, "ends": 3, "log": db.log_id}
    reply = ask(db, {"op": "ends", "after": 1, "limit": 1})
    assert (reply["more"], reply["log"], [item["end_seq"] for item in reply["ends"]]) == (True, db.log_id, [2])
    assert P.decode_header(reply["ends"][0]["eos"]) == end("cam1", 9)  # the header as forwarded, counters and all
    assert ask(db, {"op": "events", "source": "cam0", "after": 0})["events"][0]["log_seq"] == 1  # events as before
    db.close()
    monkeypatch.setattr(eventlog, "MAX_LOGGED_ENDS", 2)
    db = EventLog(tmp_path / "e.db")  # the numbering goes on after a restart; the newest MAX_LOGGED_ENDS are kept
    assert db.append_end(end("cam1", 3)) == 4 and [n for n, _ in db.ends_after(0)] == [3, 4] and db.total == 1
    db.close()


def test_a_heads_request_seeks_each_cameras_last_event_and_does_not_read_the_whole_log(tmp_path):
    """`heads` (a replay request anyone admitted may send in a loop; the MQTT bridge's every turn, 5 a second) read
    every logged event: 181 ms at 1M events of one camera. It now seeks each camera's last key: the SQLite steps it
    takes do not grow with the log (counted with a progress handler called at every step, not timed)."""
    def steps(n: int) -> int:
        db = EventLog(tmp_path / f"{n}.db")
        db.db.execute("BEGIN")
        db.db.executemany("INSERT INTO events VALUES (?, ?, 0.0, x'00')",
                          ((cam, i) for cam in ("cam0", "cam1", "cam2") for i in range(1, n + 1)))
        db.db.execute("COMMIT")
        taken = []
        db.db.set_progress_handler(lambda: taken.append(1), 1)
        assert ask(db, {"op": "heads"})["heads"] == {"cam0": n, "cam1": n, "cam2": n}
        db.close()
        return len(taken)

    small, large = steps(10), steps(10_000)
    assert large < 2 * small, (small, large)


def test_a_log_made_before_ends_were_logged_answers_none_and_takes_them_once_its_node_opens_it(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(eventlog.SCHEMA.split("CREATE TABLE IF NOT EXISTS ends")[0])
    old.close()
    reader = EventLog(path, readonly=True)
    assert ask(reader, {"op": "heads"})["ends"] == 0 and ask(reader, {"op": "ends", "after": 0})["ends"] == []
    writer = EventLog(path)
    assert writer.append_end(end("cam0", 1)) == 1 and reader.read_ends_head() == 1
    reader.close()
    writer.close()


@pytest.mark.parametrize("reply, fragment", [
    ({"ends": "x"}, "malformed ends reply"),
    ({"ends": [{"end_seq": 1}]}, "malformed replayed end of stream"),
    ({"ends": [{"end_seq": 1, "eos": b"\x80\x04\x95cos\nsystem\n"}]}, "malformed replayed end of stream"),  # a pickle
    ({"ends": [{"end_seq": 1, "eos": msgpack.packb(event("cam0", 1).model_dump())}]}, "not one"),
    ({"ends": [{"end_seq": 0, "eos": msgpack.packb(end("cam0", 1).model_dump())}]}, "out of order"),
    ({"ends": [{"end_seq": True, "eos": msgpack.packb(end("cam0", 1).model_dump())}]}, "out of order"),
    ({"ends": [], "more": True}, "says more and holds none"),  # asked again for ever
    ({"heads": {}, "ends": -1}, "malformed heads reply"),
    ({"heads": {}, "ends": "3"}, "malformed heads reply"),
])
def test_a_replay_client_refuses_a_hostile_ends_reply(reply, fragment):
    client = ReplayClient("tcp://127.0.0.1:1")
    client.request = lambda req: {"ok": True, "log": 1, **reply}
    with pytest.raises(ReplayError, match=fragment):
        client.heads() if "heads" in reply else client.ends(0)


def test_a_node_logs_each_end_of_stream_it_forwards_and_announces_it_in_the_heartbeat_after_it(tmp_path):
    with node_line(tmp_path, frames=5, event_log=tmp_path / "e.db") as ln:
        sub = subscriber(ln, (b"eos/", b"heartbeat/node0"))
        live = [m for m in collect(sub) if m.kind == "eos"]
        after = sub.recv(2000)  # the node's heartbeat that follows a camera's end of stream
        sub.close()
    assert after.kind == "heartbeat" and after.header.counters["logged_ends"] == 1
    assert [m.header.frames for m in live] == [5]
    db = EventLog(tmp_path / "e.db", readonly=True)
    assert [(n, P.decode_header(blob)) for n, blob in db.ends_after(0)] == [(1, live[0].header)]  # as forwarded
    db.close()


def test_catch_up_hands_each_end_of_stream_on_once_live_or_from_the_log_once_announced(tmp_path, caplog):
    db = EventLog(tmp_path / "e.db")
    db.append_end(end("cam9", 5))  # a stream that ended before this subscriber came: not its business
    client = Local(db)
    catch = CatchUp(client, from_start=True)
    assert catch.sync() == [] and catch.end_cursor == 1
    live = end("cam0", 9)
    db.append_end(live)
    assert catch.on_message(P.Message(live)) == [(None, live)]  # live: handed on at once
    assert catch.on_message(beat(logged_ends=2, event_log_id=db.log_id)) == []  # fetched, the same one: not again
    assert catch.end_cursor == 2 and catch.recovered_ends == 0
    lost, early = end("cam1", 29), end("cam0", 3, 2.0)
    db.append_end(lost)  # lost live at the node's high-water mark
    db.append_end(early)  # logged, its live copy not out yet (nor, maybe, its camera's last results)
    with caplog.at_level(logging.WARNING, logger="pipeline.eventlog"):
        assert catch.on_message(beat(logged_ends=3, event_log_id=db.log_id)) == [(None, lost)]
    assert "cam1: recovered its end of stream (30 frames; end_seq 3)" in caplog.text
    assert catch.on_message(P.Message(early)) == [(None, early)]  # its live copy, then the heartbeat announcing it
    assert catch.on_message(beat(logged_ends=4, event_log_id=db.log_id)) == [] and catch.end_cursor == 4
    assert catch.on_message(beat(logged_ends=4, event_log_id=db.log_id)) == []
    assert client.ops.count("ends") == 3 and catch.recovered_ends == 1
    client.down = True  # the replay endpoint does not answer: a live end of stream is handed on all the same
    assert catch.on_message(P.Message(end("cam2", 1))) == [(None, end("cam2", 1))]
    db.close()


def test_a_subscriber_that_starts_while_an_end_is_logged_but_not_out_yet_fetches_it_when_it_is_lost(tmp_path):
    """The node logs an end of stream before its publisher sends it. A subscriber whose first message came in between
    took the logged end for one it had no business with (its cursor past it); lost live at the high-water mark, the
    end was then never fetched. The heads reply says the last end published instead."""
    db, published = EventLog(tmp_path / "e.db"), [0]
    lost = end("camA", 11)
    db.append_end(lost)  # logged, its live copy not out yet
    catch = CatchUp(Local(db, published_ends=lambda: published[0]), from_start=True)
    first = P.Message(P.HeartbeatHeader(kind="heartbeat", source="camA", seq=10, t_capture=1.0, role="source",
                                        state="streaming"))
    assert catch.on_message(first) == [] and catch.end_cursor == 0
    published[0] = 1  # sent, and lost at this subscriber's high-water mark
    assert catch.on_message(beat(logged_ends=1, event_log_id=db.log_id)) == [(None, lost)]
    assert catch.recovered_ends == 1
    db.close()


def test_catch_up_takes_its_start_at_the_first_message_and_follows_a_node_on_a_new_log(tmp_path):
    """Its end cursor starts at the node's last end_seq when the first message comes, before it is handed on (the
    stage that stops on its first result still fetches the ends logged meanwhile); from the first node heartbeat
    when the replay did not answer then. A node on a new log numbers from 1 again: its ends are all new."""
    old, new = EventLog(tmp_path / "old.db"), EventLog(tmp_path / "new.db")
    old.append_end(end("cam0", 1))
    client = Local(old)
    catch = CatchUp(client, from_start=True)
    assert catch.on_message(None) == [] and client.ops == [] and catch.end_cursor is None  # nothing came: no request
    first = P.Message(P.HeartbeatHeader(kind="heartbeat", source="cam0", seq=0, t_capture=1.0, role="source",
                                        state="streaming"))
    assert catch.on_message(first) == [] and client.ops == ["heads"] and catch.end_cursor == 1
    new.append_end(end("cam0", 7))  # the node restarted on a new log (numbered from 1 again), the end lost live
    client.db = new
    assert catch.on_message(beat(logged_ends=1, event_log_id=new.log_id)) == [(None, end("cam0", 7))]
    client = Local(old)
    client.down = True
    catch = CatchUp(client, from_start=True)
    assert catch.on_message(first) == [] and catch.end_cursor is None and catch.errors == 1
    assert catch.on_message(first) == [] and client.ops == ["heads"]  # asked again ANCHOR_RETRY_S later, not now
    assert catch.on_message(beat(logged_ends=1, event_log_id=old.log_id)) == [] and catch.end_cursor == 1
    old.close()
    new.close()


def test_catch_up_of_a_node_that_logs_no_ends_of_stream_hands_on_the_live_ones_and_asks_for_none(tmp_path):
    db = EventLog(tmp_path / "e.db")
    db.append(event("cam0", 0))
    client = Local(db, old=True)
    catch = CatchUp(client)
    live = end("cam0", 0)
    assert catch.on_message(P.Message(live)) == [(None, live)]
    assert catch.on_message(beat(logged_events=1, event_log_id=db.log_id)) == []
    assert catch.end_cursor is None and "ends" not in client.ops
    db.close()
