"""Ends of stream in the node's event log: numbered across its cameras (`end_seq`), kept as forwarded, answered by the
replay endpoint (`{"op": "ends", ...}`, and `ends` in the heads reply), validated both ways."""
from __future__ import annotations

import sqlite3

import msgpack
import pytest

from pipeline import eventlog
from pipeline import protocol as P
from pipeline.eventlog import EventLog, ReplayClient, ReplayError, answer
from test_pipeline_node import collect, line, subscriber


def end(source: str, seq: int, t: float = 1.0) -> P.EosHeader:
    return P.EosHeader(kind="eos", source=source, seq=seq, t_capture=t, frames=seq + 1,
                       counters={"sent": seq + 1, "scored": seq})


def event(source: str, seq: int) -> P.EventHeader:
    return P.EventHeader(kind="event", source=source, seq=seq, t_capture=1.0, score=9.0, threshold=3.0, model_version=1)


def ask(db: EventLog, request: dict) -> dict:
    return msgpack.unpackb(msgpack.packb(answer(db, msgpack.packb(request)), use_bin_type=True), raw=False)


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
    with line(tmp_path, frames=5, event_log=tmp_path / "e.db") as ln:
        sub = subscriber(ln, (b"eos/", b"heartbeat/node0"))
        live = [m for m in collect(sub) if m.kind == "eos"]
        after = sub.recv(2000)  # the node's heartbeat that follows a camera's end of stream
        sub.close()
    assert after.kind == "heartbeat" and after.header.counters["logged_ends"] == 1
    assert [m.header.frames for m in live] == [5]
    db = EventLog(tmp_path / "e.db", readonly=True)
    assert [(n, P.decode_header(blob)) for n, blob in db.ends_after(0)] == [(1, live[0].header)]  # as forwarded
    db.close()
