"""Faults a line must survive unattended: subscriber and node restarts, flaky cameras, diverging fits,
oversized messages. Real sockets, fast fake detectors (never the SSDnet fit)."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch
import zmq

from edge.calibration import ScoreCalibrator
from edge.config import CalibrationConfig, ConfigError, SSDNetConfig
from edge.detector import Detector
from edge.frames import BLANK_SPAN, value_span
from pipeline import checkpoints, eventlog, transport
from pipeline import protocol as P
from pipeline.checkpoints import Checkpoints
from pipeline.config import NodeConfig, SyntheticSourceConfig
from pipeline.eventlog import CatchUp, Cursors, EventLog, EventWriter, ReplayClient, ReplayError, answer, serve_replay
from pipeline.mqtt_sink import MqttBridge
from pipeline.node import EdgeNode
from pipeline.sink_config import MqttConfig
from pipeline.sinks import JsonLines, Subscriber
from pipeline.sources import Camera, Capture, SourceError
from pipeline.subscribe import subscribe
from services import free_port, port_released
from test_pipeline_node import FastDetector, collect, line, results, wait_until
from tools.soak import growth

pytestmark = pytest.mark.faults


def _jsonl(path):
    return [json.loads(s) for s in path.read_text().splitlines()]


@pytest.mark.parametrize("max_mb", [None, 1 / 1024], ids=["one_file", "turned_over"])
def test_subscriber_killed_and_restarted_catches_up_on_every_event(tmp_path, max_mb):
    """With a tiny `jsonl_max_mb` the file turns over every few events: the restart resumes from the kept files."""
    db, out = tmp_path / "events.db", tmp_path / "events.jsonl"
    turn = {"jsonl_max_mb": max_mb, "jsonl_backups": 1000}
    with line(tmp_path, frames=60, fps=100, queue_depth=64, event_log=db) as ln:
        replay = ln.node.replay_endpoint
        assert replay is not None
        first = subscribe(ln.endpoints, jsonl=str(out), count=3, timeout_s=10, replay=replay, from_start=True,
                          ctx=ln.ctx, **turn)
        assert first == 3  # ... and then it is "killed" while the stream goes on
        wait_until(lambda: ln.node.counters.source("cam0")["scored"] == 60)  # the node never waited for it
        total = ln.node.counters.source("cam0")["events"]
        assert total > first
        # restarted: resumes after the highest log_seq in its JSONL file(s), gets exactly the missed events
        second = subscribe(ln.endpoints, jsonl=str(out), count=total - first, timeout_s=10, replay=replay, ctx=ln.ctx,
                           **turn)
        assert second == total - first
    files = JsonLines.files(out)
    assert len(files) == 1 if max_mb is None else len(files) > total / 4
    records = [r for f in reversed(files) for r in _jsonl(f)]
    assert [r["log_seq"] for r in records] == list(range(1, total + 1))  # in order, no gap, no duplicate
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    log = EventLog(db, readonly=True)
    assert log.heads == {"cam0": total}  # the node's log holds the same numbering
    assert {r["log_id"] for r in records} == {log.log_id}  # and says which log: a restart checks it against the node's
    log.close()


@contextmanager
def logged_line(tmp_path, frames: int):
    """A line whose `frames` frames are all scored and their events logged (more than 2): (the line, its events)."""
    with line(tmp_path, frames=frames, fps=100, queue_depth=64, event_log=tmp_path / "events.db") as ln:
        early = Subscriber(ln.endpoints, (b"heartbeat/",), ctx=ln.ctx)  # the node starts once one subscribes
        wait_until(lambda: ln.node.counters.source("cam0")["scored"] == frames, timeout=30)
        early.close()
        total = ln.node.counters.source("cam0")["events"]
        assert total > 2
        yield ln, total


def test_count_bounds_the_events_caught_up_from_the_log_and_the_next_run_resumes_after_them(tmp_path):
    """`ssdnet subscribe --replay --from-start --count 2` on a line whose events are all logged already: 2 events,
    not the whole catch-up batch (a user's script got 16); the next run gets the rest, none twice."""
    out = tmp_path / "events.jsonl"
    with logged_line(tmp_path, 60) as (ln, total):
        first = subscribe(ln.endpoints, jsonl=str(out), count=2, timeout_s=10, replay=ln.node.replay_endpoint,
                          from_start=True, ctx=ln.ctx)
        rest = subscribe(ln.endpoints, jsonl=str(out), count=total - 2, timeout_s=10, replay=ln.node.replay_endpoint,
                         ctx=ln.ctx)
    assert (first, rest) == (2, total - 2)
    assert [r["log_seq"] for r in _jsonl(out)] == list(range(1, total + 1))


def test_from_start_reads_the_logged_events_at_info_and_a_resumed_run_warns_of_those_it_missed(tmp_path, caplog):
    """`ssdnet subscribe --replay --from-start` warned "recovered N missed event(s)" of the events it asked for (an
    outside audit): said at INFO now. A run resumed from its --jsonl still warns of those logged while it was down."""
    out = tmp_path / "events.jsonl"

    def said() -> list[tuple[str, str]]:
        return [(r.levelname, r.message) for r in caplog.records if "event(s)" in r.message]

    with logged_line(tmp_path, 20) as (ln, total):
        with caplog.at_level(logging.INFO, logger="pipeline"):
            subscribe(ln.endpoints, jsonl=str(out), count=2, timeout_s=10, replay=ln.node.replay_endpoint,
                      from_start=True, ctx=ln.ctx)
            asked = said()
            caplog.clear()
            subscribe(ln.endpoints, jsonl=str(out), count=total - 2, timeout_s=10, replay=ln.node.replay_endpoint,
                      from_start=True, ctx=ln.ctx)  # resumes after its 2 events: --from-start has no say
            resumed = said()
    assert asked == [("INFO", f"read {total} event(s) from the node's event log, logged before this subscriber "
                              "started (--from-start)")]
    assert resumed == [("WARNING", f"cam0: recovered {total - 2} missed event(s) (log_seq 3..{total}) from the node's "
                                   "event log")]


@pytest.mark.parametrize("transport_kind", ["tcp", "ipc"])
def test_subscription_floods_drop_a_subscriber_repeatedly_and_it_still_gets_every_event_once(tmp_path, transport_kind):
    """Each reset of the result socket (node.max_subscriptions) drops the live stream for a moment; the event
    log's replay fills what the subscriber missed, in order, without duplicates."""
    db, out = tmp_path / "events.db", tmp_path / "events.jsonl"
    with line(tmp_path, transport=transport_kind, frames=80, fps=20, queue_depth=64, event_log=db, threshold=-1.0,
              max_subscriptions=20) as ln:
        got: list[int] = []
        sub = threading.Thread(target=lambda: got.append(subscribe(
            ln.endpoints, jsonl=str(out), count=80, timeout_s=60, replay=ln.node.replay_endpoint, from_start=True,
            ctx=ln.ctx)))
        sub.start()
        flood = transport.make_socket(ln.ctx, zmq.XSUB, sndhwm=0)
        try:
            flood.connect(ln.endpoints[0])
            n = 0
            while sub.is_alive():  # a fresh burst of distinct topics every 0.5 s, all through the stream
                for _ in range(30):
                    flood.send(b"\x01event/x%06d" % n)
                    n += 1
                sub.join(0.5)
        finally:
            flood.close(0)
        resets = ln.node.publisher.resets
    assert got == [80] and resets >= 3
    assert [r["log_seq"] for r in _jsonl(out)] == list(range(1, 81))  # every event once, in order


def test_live_subscriber_detects_a_gap_and_fetches_the_missing_events(tmp_path):
    db = tmp_path / "events.db"
    log = EventLog(db)

    def header(seq):
        return P.EventHeader(kind="event", source="cam0", seq=seq, t_capture=1.0, score=9.0, threshold=3.0,
                             model_version=1)

    for seq in range(5):
        log.append(header(seq))
    ctx, halt = zmq.Context(), threading.Event()
    rep = transport.make_socket(ctx, zmq.ROUTER)
    endpoint = transport.bind(rep, "tcp://127.0.0.1:*")
    t = threading.Thread(target=serve_replay, args=(rep, db, halt), daemon=True)
    t.start()
    try:
        catch = CatchUp(ReplayClient(endpoint, ctx), resume={"cam0": 2})  # it had events 1 and 2
        got = catch.on_message(P.Message(header(4)))  # the live event #5 arrives: 3 and 4 were missed
        assert [n for n, _ in got] == [3, 4, 5] and catch.recovered == 2
        log.append(header(5))  # event #6 published but its live copy lost: the node heartbeat tells
        beat = P.HeartbeatHeader(kind="heartbeat", source="node", seq=-1, t_capture=1.0, role="node", state="idle",
                                 counters={"logged_events": log.total})
        assert [n for n, _ in catch.on_message(P.Message(beat))] == [6]
        assert catch.on_message(P.Message(beat)) == []
        catch.close()
    finally:
        halt.set()
        t.join()
        log.close()
        ctx.term()


def test_replay_clients_that_never_read_their_answers_cost_the_node_little(tmp_path, monkeypatch):
    """The replay socket keeps at most REPLY_HWM answers per client (a REQ asks one at a time): before it kept 100,
    so 10 DEALER clients of one process asking 100 pages of 1000 events each and reading none grew the node 1.1 GB."""
    psutil = pytest.importorskip("psutil")
    db = tmp_path / "events.db"
    log = EventLog(db)
    regions = tuple(P.Region(bbox=(i, i, 10, 10), area=100, peak=5.0) for i in range(32))
    log.db.execute("BEGIN")
    for seq in range(1000):
        log.append(P.EventHeader(kind="event", source="cam0", seq=seq, t_capture=1.0, score=9.0, threshold=3.0,
                                 regions=regions, model_version=1))
    log.db.execute("COMMIT")
    answered = []  # the replay thread's answers (`eventlog.answer` calls)
    monkeypatch.setattr(eventlog, "answer", lambda *args: answered.append(1) or answer(*args))
    ctx, halt = zmq.Context(), threading.Event()
    rep = eventlog.replay_socket(ctx)
    endpoint = transport.bind(rep, "tcp://127.0.0.1:*")
    t = threading.Thread(target=serve_replay, args=(rep, db, halt), daemon=True)
    t.start()
    rss = psutil.Process().memory_info().rss
    client = subprocess.Popen([sys.executable, "-c", f"""
import msgpack, sys, zmq
ctx = zmq.Context()
peers = [ctx.socket(zmq.DEALER) for _ in range(5)]
for peer in peers:
    peer.setsockopt(zmq.RCVHWM, 1)
    peer.setsockopt(zmq.RCVBUF, 4096)
    peer.connect({endpoint!r})
for _ in range(40):
    for peer in peers:
        peer.send_multipart([b"", msgpack.packb({{"op": "events", "source": "cam0", "after": 0}})])
print("sent", flush=True)
sys.stdin.read()  # connected, reading nothing, until the test is done
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert client.stdout.readline() == b"sent\n"
        wait_until(lambda: len(answered) >= 200, timeout=60)  # the replay thread answered them all (~1.2 MB each)
        grown = (psutil.Process().memory_info().rss - rss) / 2**20
        assert grown < 60, f"the node grew {grown:.0f} MB"  # 240 MB before
        assert ReplayClient(endpoint, ctx).heads() == {"cam0": 1000}  # and still answers
    finally:
        client.kill()
        client.wait()
        halt.set()
        t.join()
        log.close()
        ctx.term()


def _served_log(db, events: int, budget):
    """An event log of `events` events of cam0 and its replay thread under `budget`: (ctx, endpoint, stop)."""
    log = EventLog(db)
    log.db.execute("BEGIN")
    for seq in range(events):
        log.append(P.EventHeader(kind="event", source="cam0", seq=seq, t_capture=1.0, score=9.0, threshold=3.0,
                                 model_version=1))
    log.db.execute("COMMIT")
    log.close()
    ctx, halt = zmq.Context(), threading.Event()
    rep = eventlog.replay_socket(ctx)
    endpoint = transport.bind(rep, "tcp://127.0.0.1:*")
    t = threading.Thread(target=serve_replay, args=(rep, db, halt, None, budget), daemon=True)
    t.start()

    def stop():
        halt.set()
        t.join()
        ctx.term()

    return ctx, endpoint, stop


def test_a_replay_client_asking_without_pause_is_answered_busy_past_its_share(tmp_path):
    """A client that asks for pages as fast as they come got every one (2.2 ms of the node's replay thread each):
    one client could take the thread's whole core and cut the node's scoring rate to 0.51 (measure_replay_load.log).
    Past its burst it is answered `busy` with the time to wait, and the node counts each."""
    budget = eventlog.ReplayBudget(share=0.01, burst_s=0.005)
    ctx, endpoint, stop = _served_log(tmp_path / "events.db", 1000, budget)
    client = ctx.socket(zmq.DEALER)
    try:
        client.connect(endpoint)
        replies = []
        for _ in range(50):
            client.send_multipart([b"", msgpack.packb({"op": "events", "source": "cam0", "after": 0})])
            assert client.poll(5000)
            replies.append(msgpack.unpackb(client.recv_multipart()[-1]))
        busy = [r for r in replies if r.get("error") == "busy"]
        assert replies[0]["ok"] and len(replies[0]["events"]) == 1000
        assert len(busy) > 40 and all(r["ok"] is False and 0 < r["retry_ms"] <= 10_000 for r in busy)
        assert budget.throttled == len(busy)
        assert ReplayClient(endpoint, ctx).heads() == {"cam0": 1000}  # another client has its own share
    finally:
        client.close(0)
        stop()


def test_a_catch_up_throttled_by_the_node_waits_and_gets_every_event_once(tmp_path):
    """ReplayClient (ssdnet subscribe --replay, the sinks stage, the view) waits out each `busy` answer and asks again:
    a catch-up of many pages over its share still hands on every event once, in order."""
    budget = eventlog.ReplayBudget(share=0.05, burst_s=0.001)
    ctx, endpoint, stop = _served_log(tmp_path / "events.db", 20_000, budget)
    try:
        client = ReplayClient(endpoint, ctx)
        got = CatchUp(client, from_start=True).sync()
        assert [n for n, _ in got] == list(range(1, 20_001))
        assert [h.seq for _, h in got] == list(range(20_000))
        assert client.busy > 0 and budget.throttled == client.busy
        client.close()
    finally:
        stop()


class _Log:  # the replay client of one node's log (ReplayClient's calls), its events' seqs given
    log_id = 7

    def __init__(self, seqs):
        self.seqs = list(seqs)

    def heads(self):
        return {"cam0": len(self.seqs)}

    def events(self, source, after):
        return [(n, P.EventHeader(kind="event", source=source, seq=seq, t_capture=1.0, score=9.0, threshold=3.0,
                                  model_version=1)) for n, seq in enumerate(self.seqs, 1) if n > after]

    def close(self):
        pass


def test_events_pruned_before_a_subscriber_fetched_them_are_said_lost_not_recovered(caplog):
    """A log that keeps 4 events of 10 (node.event_log_max_events): a subscriber from its start said "recovered 4
    missed event(s) (log_seq 1..10)" and nothing of the 6 it never got (an operator's audit)."""
    class Pruned(_Log):
        def events(self, source, after):
            return [(n, h) for n, h in super().events(source, after) if n > 6]

    catch = CatchUp(Pruned(range(10)), from_start=True)
    with caplog.at_level("WARNING"):
        got = catch.sync()
    assert [n for n, _ in got] == [7, 8, 9, 10] and catch.pruned == 6
    assert "6 event(s) (log_seq 1..6) were pruned from the node's event log" in caplog.text
    assert "recovered 4 missed event(s) (log_seq 7..10)" in caplog.text


def test_a_log_keeps_its_most_events_across_restarts_shorter_than_its_pruning_period(tmp_path):
    """Pruned only every 256 events logged, a log whose node restarted more often never was (a limit of 3 kept 25)."""
    path = tmp_path / "events.db"
    for run in range(3):
        log = EventLog(path, max_events=3)
        for seq in range(10):
            log.append(P.EventHeader(kind="event", source="cam0", seq=seq, t_capture=float(run), score=9.0,
                                     threshold=3.0, model_version=1))
        log.close()
    log = EventLog(path, readonly=True)
    assert log.heads == {"cam0": 30} and [n for n, _ in log.after("cam0", 0)] == [28, 29, 30]
    log.close()


@pytest.mark.parametrize("logged", [[100], [100, 101, 102]], ids=["one", "a_burst"])
def test_a_log_restored_one_event_behind_a_subscriber_is_read_again(logged):
    """Restored one event behind the cursor (8 handed on, a backup of 7), the log numbers the next event 8: not
    after the cursor, and its head not behind it. The live event was skipped without a word, and with a burst logged
    before it was handed on, the events after it were handed on and it was not (an outside audit)."""
    node_log = _Log(range(8))
    catch = CatchUp(node_log, from_start=True)
    assert [n for n, _ in catch.sync()] == list(range(1, 9))
    node_log.seqs = [*range(7), *logged]
    got = catch.on_message(P.Message(node_log.events("cam0", 7)[0][1]))  # the live copy of log_seq 8
    assert [h.seq for _, h in got] == [*range(7), *logged]  # before: [] / [101, 102]
    for n in range(9, 8 + len(logged)):  # their live copies, fetched early: not read again
        assert catch.on_message(P.Message(node_log.events("cam0", n - 1)[0][1])) == []
    node_log.seqs.append(200)
    live = node_log.events("cam0", len(node_log.seqs) - 1)[0][1]
    assert [h.seq for _, h in catch.on_message(P.Message(live))] == [200]


def test_a_subscriber_reads_again_a_log_restored_from_a_backup_in_place():
    """A backup restored in place keeps the log's id and numbers new events from its older head: a subscriber whose
    cursor was past it skipped them without a word (12 in an integrator's audit)."""
    node_log = _Log(range(8))
    catch = CatchUp(node_log, from_start=True)
    assert [n for n, _ in catch.sync()] == [1, 2, 3, 4, 5, 6, 7, 8]
    node_log.seqs = [0, 1, 2, 100]  # restored from a backup of 3 events, then event seq 100 logged as log_seq 4
    live = node_log.events("cam0", 3)[0][1]
    got = catch.on_message(P.Message(live))
    assert [(n, h.seq) for n, h in got] == [(1, 0), (2, 1), (3, 2), (4, 100)]  # before: [] (cursor 8, head 4)
    node_log.seqs.append(101)
    assert [(n, h.seq) for n, h in catch.sync()] == [(5, 101)]


def test_a_catch_up_whose_request_fails_midway_hands_on_the_events_it_fetched():
    """sync() fetches the cameras one after another: a request that failed after the first camera's events came (its
    cursor moved past them) threw them away with the error, and they were never handed on."""
    class Log:  # the replay client of one node's log; cam1's requests fail while `down`
        log_id, down = 7, True

        def heads(self):
            return {"cam0": 3, "cam1": 2}

        def events(self, source, after):
            if source == "cam1" and self.down:
                raise ReplayError("no answer from the node")
            return [(n, P.EventHeader(kind="event", source=source, seq=n, t_capture=1.0, score=9.0, threshold=3.0,
                                      model_version=1)) for n in range(after + 1, self.heads()[source] + 1)]

        def close(self):
            pass

    node_log = Log()
    catch = CatchUp(node_log, from_start=True)
    assert [(h.source, n) for n, h in catch.sync()] == [("cam0", 1), ("cam0", 2), ("cam0", 3)]
    assert catch.errors == 1
    node_log.down = False
    assert [(h.source, n) for n, h in catch.sync()] == [("cam1", 1), ("cam1", 2)]
    node_log.down, catch.cursors["cam1"] = True, 0  # cam1 behind again, cam0 not
    with pytest.raises(ReplayError):  # nothing came: the caller learns it failed
        catch.sync()


def test_a_subscriber_reads_a_new_event_log_from_its_start(tmp_path):
    """A node restarted on a new event log (another folder, a lost volume) numbers from 1 again: a running
    subscriber's cursors (10 here) skipped the new log's first events without a word (15 of 50 in an audit)."""
    def header(seq):
        return P.EventHeader(kind="event", source="cam0", seq=seq, t_capture=1.0, score=9.0, threshold=3.0,
                             model_version=1)

    ctx, servers = zmq.Context(), []

    def serve(db):
        rep = transport.make_socket(ctx, zmq.ROUTER)
        endpoint = transport.bind(rep, "tcp://127.0.0.1:*")
        halt = threading.Event()
        t = threading.Thread(target=serve_replay, args=(rep, db, halt), daemon=True)
        t.start()
        servers.append((halt, t))
        return endpoint

    old, new = EventLog(tmp_path / "old.db"), EventLog(tmp_path / "new.db")
    for seq in range(10):
        old.append(header(seq))
    for seq in range(100, 104):
        new.append(header(seq))
    assert old.log_id and new.log_id and old.log_id != new.log_id
    try:
        client = ReplayClient(serve(tmp_path / "old.db"), ctx)
        catch = CatchUp(client, from_start=True)
        assert [n for n, _ in catch.sync()] == list(range(1, 11))
        client.endpoint = serve(tmp_path / "new.db")  # the node comes back on the new log
        client.close()
        beat = P.HeartbeatHeader(kind="heartbeat", source="node", seq=-1, t_capture=1.0, role="node", state="idle",
                                 counters={"logged_events": 4, "event_log_id": new.log_id})
        got = catch.on_message(P.Message(beat))  # a quiet line: its heartbeat names the new log
        new.append(header(104))
        got += catch.on_message(P.Message(header(104)))  # its 5th event, live
        assert [(n, h.seq) for n, h in got] == [(1, 100), (2, 101), (3, 102), (4, 103), (5, 104)]
        catch.close()
        client = ReplayClient(client.endpoint, ctx)  # a subscriber that learns the new log from a reply
        catch = CatchUp(client, resume={"cam0": 10})
        got = catch.on_message(P.Message(header(200)))  # (the old log's cursors; the first reply names the log)
        # it never saw the old log's id, but the log's head (5) is behind its cursor (10): it reads it again
        assert [n for n, _ in got] == [1, 2, 3, 4, 5] and catch.cursors == {"cam0": 5}
        catch.close()
    finally:
        for halt, t in servers:
            halt.set()
            t.join()
        old.close()
        new.close()
        ctx.term()


@pytest.mark.parametrize("blob", [
    b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"op": "events", "source": "../x", "after": 0}),
    msgpack.packb({"op": "events", "source": "cam0", "after": -1}), msgpack.packb({"op": "drop table"}),
    b"\x80\x04\x95" + b"cos\nsystem\n",  # a pickle: never unpickled, just rejected
    msgpack.packb({"op": "heads", "x": "y" * 5000}),
])
def test_replay_requests_are_validated(tmp_path, blob):
    log = EventLog(tmp_path / "e.db")
    reply = answer(log, blob)
    assert reply["ok"] is False and reply["error"]
    log.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_node_killed_and_restarted_sources_reconnect_and_log_continues(tmp_path):
    """The camera keeps streaming while its node is down; a new node on the same endpoint and event log takes over."""
    ctx, cam_stop = zmq.Context(), threading.Event()
    cam_cfg = SyntheticSourceConfig(kind="synthetic", name="cam0", size=48, fps=100, frames=10_000, textures=("grass",),
                                    heartbeat_s=0.05, wait_for_consumer_s=5)
    cam = Camera(cam_cfg, ctx=ctx)
    ready: list[str] = []
    cam_thread = threading.Thread(target=cam.run, args=(cam_stop, ready.append), daemon=True)
    cam_thread.start()
    wait_until(lambda: ready)
    node_cfg = NodeConfig(bind=f"tcp://127.0.0.1:{_free_port()}", threshold=3.0, heartbeat_s=0.05,
                          event_log=tmp_path / "ev.db")
    sub = Subscriber(node_cfg.bind, (b"anomaly/",), ctx=ctx)

    def start_node():
        stop = threading.Event()
        node = EdgeNode(node_cfg, ready, FastDetector, ctx)
        t = threading.Thread(target=node.run, args=(stop,), daemon=True)
        t.start()
        return node, stop, t

    def results_from(node, n=5):
        seqs = []
        deadline = time.monotonic() + 10
        while len(seqs) < n:
            assert time.monotonic() < deadline, "no results"
            if (m := sub.recv(50)) is not None:
                seqs.append(m.header.seq)
        return seqs

    try:
        node, stop, t = start_node()
        before = results_from(node)
        stop.set()  # the node is "killed"
        t.join(5)
        assert not t.is_alive()
        log = EventLog(node_cfg.event_log, readonly=True)
        heads_before = log.heads
        log.close()
        sent_while_down = cam.counters["sent"]
        wait_until(lambda: cam.counters["sent"] > sent_while_down)  # the camera never blocked on its missing consumer
        node2, stop2, t2 = start_node()
        after = results_from(node2)  # subscriber and camera reconnected by ZeroMQ, no restart of either
        assert min(after) > max(before)
        wait_until(lambda: node2.event_log is not None and node2.event_log.total > sum(heads_before.values()))
        assert node2.event_log.heads["cam0"] > heads_before.get("cam0", 0)  # numbering continued, not restarted
        stop2.set()
        t2.join(5)
    finally:
        cam_stop.set()
        cam_thread.join(5)
        sub.close()
        ctx.destroy(linger=0)


class DivergingDetector(FastDetector):
    """Its 2nd call raises, its 4th returns a NaN map with a huge score, its 6th a NaN score."""

    made = 0

    def __init__(self, source=""):
        super().__init__(source)
        DivergingDetector.made += 1

    def process(self, image):
        d = super().process(image)
        n = sum_calls[0] = sum_calls[0] + 1
        if n == 2:
            raise FloatingPointError("fit diverged")
        if n == 4:
            d.anomaly_map[:] = np.nan
            d.score = 1e9
        if n == 6:
            d.score = float("nan")
        return d


sum_calls = [0]


def test_diverging_fit_is_counted_restored_and_never_published_as_an_event(tmp_path):
    sum_calls[0], DivergingDetector.made = 0, 0
    with line(tmp_path, frames=12, fps=100, queue_depth=64, factory=DivergingDetector,
              event_log=tmp_path / "ev.db") as ln:
        sub = Subscriber(ln.endpoints, (b"anomaly/", b"event/", b"eos/"), ctx=ln.ctx)
        msgs = collect(sub)
        c = ln.node.counters.source("cam0")
        assert (c["failed"], c["scored"]) == (3, 9) and len(results(msgs)) == 9
        assert DivergingDetector.made == 4  # a fresh model after each divergence
        for m in msgs:
            if m.kind in ("anomaly", "event"):
                assert np.isfinite(m.header.score) and m.header.score < 1e9
        events = [m for m in msgs if m.kind == "event"]
        assert ln.node.event_log.heads.get("cam0", 0) == c["events"] == len(events)
        sub.close()


def test_a_full_disk_is_tried_again_once_a_second_not_at_every_event(monkeypatch):
    """EventWriter on a log that cannot be written: the events (and an end of stream among them) are kept in order, one
    failed write per second (not one per event), and written, each announced with its kind, once the disk has room."""
    clock = [100.0]
    monkeypatch.setattr(eventlog, "time", type("Clock", (), {"monotonic": staticmethod(lambda: clock[0])}))

    class Disk:  # an EventLog's append, append_end and their numbers, on a disk that is full until told
        full, total, ends_head, written = True, 0, 0, []

        def append(self, header):
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            self.written.append(header.seq)
            self.total += 1

        def append_end(self, header):
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            self.written.append("end")
            self.ends_head += 1
            return self.ends_head

    def event(seq):
        return P.Message(P.EventHeader(kind="event", source="cam0", seq=seq, t_capture=1.0, score=5.0, threshold=3.0,
                                       model_version=1))

    disk, announced = Disk(), []
    writer = EventWriter(disk, lambda kind, n: announced.append((kind, n)))
    assert [writer.write(event(seq)) for seq in range(5)] == [None] * 5
    end = P.Message(P.EosHeader(kind="eos", source="cam0", seq=4, t_capture=1.0, frames=5))
    assert writer.write(end) is None
    assert writer.failures == 1 and len(writer.kept) == 6  # the first write failed; the 5 after it were only kept
    clock[0] += 1.0
    writer.retry()  # due: tried again, still full
    assert writer.failures == 2 and len(writer.kept) == 6
    disk.full = False
    assert writer.write(event(5)) is None and disk.written == []  # not due yet: kept behind the others, in order
    clock[0] += 1.0
    assert writer.write(event(6)) == 7  # due: the kept ones first, then this one
    assert disk.written == [0, 1, 2, 3, 4, "end", 5, 6] and not writer.kept
    assert announced == [*(("event", n) for n in range(1, 6)), ("eos", 1), ("event", 6)]
    assert writer.write(end) == 2  # an end of stream written at once: its end_seq


def test_a_frame_counted_as_scored_has_its_event_counted(tmp_path, monkeypatch):
    """A slow event log (a busy disk) must not let `scored` run ahead of `events`: readers of the counters take
    "scored == N" as "the N-th frame is done"."""
    append = EventLog.append

    def slow_append(self, header):
        time.sleep(0.3)
        return append(self, header)

    monkeypatch.setattr(EventLog, "append", slow_append)
    with line(tmp_path, frames=3, fps=100, flow="credit", threshold=-1.0, event_log=tmp_path / "ev.db") as ln:
        for n in (1, 2, 3):
            wait_until(lambda n=n: ln.node.counters.source("cam0")["scored"] >= n, timeout=20)
            c = ln.node.counters.source("cam0")
            assert c["events"] >= c["scored"] >= n  # every frame is an event at threshold -1


def test_events_the_log_could_not_write_are_written_once_it_can_and_reach_a_log_reader(tmp_path, monkeypatch):
    """A full disk under the event log: every event still goes out live, and a subscriber that reads the log (the
    sinks, `ssdnet subscribe --replay`, the MQTT bridge) took none of them (36 published, 18 in events.jsonl). The
    node keeps them and writes them once the disk has room, in order; the reader then gets each once."""
    append, full = EventLog.append, threading.Event()

    def append_unless_full(self, header):
        if full.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        return append(self, header)

    monkeypatch.setattr(EventLog, "append", append_unless_full)
    full.set()
    db, out = tmp_path / "events.db", tmp_path / "events.jsonl"
    with line(tmp_path, frames=12, fps=100, flow="credit", threshold=-1.0, event_log=db) as ln:
        wait_until(lambda: ln.node.counters.source("cam0")["scored"] == 12, timeout=30)
        reader = EventLog(db, readonly=True)
        assert ln.node._node_counters()["event_log_pending"] == 12 and reader.total == 0
        reader.close()
        full.clear()  # room again: written at the next retry
        got = subscribe(ln.endpoints, jsonl=str(out), count=12, timeout_s=10, replay=ln.node.replay_endpoint,
                        from_start=True, ctx=ln.ctx)
        counters = ln.node._node_counters()
    # a full disk is tried again every second, not at every event
    assert got == 12 and counters["event_log_pending"] == 0 and counters["event_log_failed"] >= 1
    records = _jsonl(out)
    assert [r["log_seq"] for r in records] == list(range(1, 13)) and [r["seq"] for r in records] == list(range(12))


def test_a_checkpoint_the_full_disk_cuts_short_costs_no_event_and_leaves_no_partial_file(tmp_path, monkeypatch):
    """torch.save on a full disk raises RuntimeError (its zip writer), not OSError: it stopped the node (a traceback,
    `ssdnet run: error: node died`) with that frame's event never logged, and left the partial `.tmp` holding the
    disk the event log needs. The node now goes on, every event logged, the partial file deleted, counted."""
    def save_on_full_disk(obj, path):  # as torch.save on a full tmpfs: part of the file written, then RuntimeError
        Path(path).write_bytes(b"x" * 4096)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(checkpoints.torch, "save", save_on_full_disk)
    db, ckpt = tmp_path / "events.db", tmp_path / "ckpt"
    with line(tmp_path, frames=12, fps=100, flow="credit", threshold=-1.0, event_log=db, checkpoint_dir=ckpt,
              checkpoint_every=1, checkpoint_interval_s=0) as ln:
        wait_until(lambda: ln.node.counters.source("cam0")["scored"] == 12, timeout=30)
        assert ln.node._node_counters()["checkpoint_failed"] >= 12 and not list(ckpt.iterdir())
    reader = EventLog(db, readonly=True)
    assert reader.total == 12  # every frame is an event at threshold -1
    reader.close()


def test_a_camera_gone_silent_is_logged_and_counted_until_it_speaks_again(tmp_path, monkeypatch, caplog):
    """A camera that dies or hangs sends no heartbeat either: nothing said so (its own heartbeats' frame age is what a
    stall reads). The node logs its connection silent past SILENT_WARN_S (and 3x its longest gap), counts it in
    `silent_inputs`, and logs it back; a restarted camera's numbering is logged too."""
    import pipeline.silence
    from adversary import control_parts, frame_parts, node_line
    monkeypatch.setattr(pipeline.silence, "SILENT_WARN_S", 0.5)
    caplog.set_level(logging.INFO, "pipeline.node")
    with node_line(tmp_path, frames=200, fps=20, connect_cameras={0: ["line2"]}) as ln:
        cam, t0 = ln.intruders[0], time.time()
        for seq in range(3):
            cam.send(frame_parts("line2", seq=seq, t=t0 + seq * 0.01))
        wait_until(lambda: ln.node.counters.source("line2")["scored"] == 3)  # then it hangs
        wait_until(lambda: ln.node.silent_inputs == 1)
        assert "nothing from this camera for" in caplog.text and "neither frame nor heartbeat" in caplog.text
        cam.send(control_parts("heartbeat", "line2", seq=2, role="source", state="streaming", counters={}))
        cam.send(frame_parts("line2", seq=0, t=time.time()))  # it restarted
        wait_until(lambda: ln.node.silent_inputs == 0 and ln.node.counters.source("line2")["scored"] == 4)
    assert "heard again after" in caplog.text and "its numbering started again at frame 0" in caplog.text


def test_a_blank_frame_is_counted_and_said(tmp_path, caplog):
    """A lens cap, the light off or a dead sensor: a constant frame scored "normal" and nobody heard of it."""
    from adversary import frame_parts, node_line

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), np.full((64, 64, 3), (200, 10, 10), np.uint8)]
    with node_line(tmp_path, frames=5, fps=20, connect_cameras={0: ["line2"]}) as ln:
        for seq, image in enumerate(frames):
            ln.intruders[0].send(frame_parts("line2", seq=seq, image=image))
        wait_until(lambda: ln.node.counters.source("line2")["scored"] == 2)
        assert ln.node.counters.source("line2")["blank"] == 1
    assert "line2#1: a blank frame (its values span 0 grey levels)" in caplog.text


def test_a_fine_periodic_pattern_is_no_blank_frame():
    """The blank test read every 8th pixel: a checkerboard, or a plate perforated at an 8 px pitch, showed it one value,
    and such a camera was blank for ever, learning nothing (an outside audit)."""
    yy, xx = np.indices((96, 96))
    checker = ((yy + xx) % 2 * 255).astype(np.uint8)
    plate = np.where((yy % 8 >= 3) & (yy % 8 < 6) & (xx % 8 >= 3) & (xx % 8 < 6), 20, 180).astype(np.uint8)
    for pattern in (checker, plate):
        assert value_span(np.repeat(pattern[:, :, None], 3, 2)) > BLANK_SPAN
    assert value_span(np.full((96, 96, 3), 7, np.uint8)) <= BLANK_SPAN


def test_a_camera_that_starts_blank_learns_nothing_from_its_blank_frames():
    """A line started with the light off: its camera's first 12 frames are blank. Its calibration took their raw
    scores (~0) as its normal, so every normal frame after them was an event at a calibrated score of ~60000. A blank
    frame is still scored, but the camera learns nothing from it (calibration, memory, border profile)."""
    from edge.config import SSDNetConfig
    from edge.detector import Detector
    from test_border import brick_crops

    det = Detector(SSDNetConfig(), "cpu")
    for _ in range(12):
        assert det.process(np.full((240, 320, 3), 3, np.uint8)).calibrated < 3.0
    assert len(det.calibrator.scores) == 0 and det.memory.count == 0 and len(det.border.frames) == 0
    calibrated = [det.process(frame).calibrated for frame in brick_crops(4)]
    assert max(calibrated) < 3.0, calibrated


def test_a_blank_frame_neither_fits_a_net_nor_moves_a_camera():
    """A reviewer's two holes in the rule above: a blank first frame still got the cold fit of a fitted config, and a
    lens cap on a running camera (two blank frames, each novel to its memory) was taken for a changeover that started
    the camera afresh."""
    from edge.config import SSDNetConfig
    from edge.detector import Detector
    from test_border import brick_crops

    fitted = Detector(SSDNetConfig.model_validate({"score": {"pixel_weight": 1.0}, "fit": {"steps": 2}}), "cpu")
    d = fitted.process(np.full((64, 64, 3), 3, np.uint8))
    assert d.fit_steps == 0 and fitted.model_version == 0
    det = Detector(SSDNetConfig(), "cpu")
    for frame in brick_crops(24):
        det.process(frame)
    assert det.memory.count > 0
    remembered = det.memory.count
    moved = [det.process(np.full((240, 320, 3), 3, np.uint8)).normal_moved for _ in range(4)]
    assert not any(moved) and det.memory.count == remembered


def test_the_light_off_for_a_few_frames_costs_a_camera_nothing_it_knew():
    """An outside audit: three dark frames with sensor noise (5 grey levels: not blank) started a running camera
    afresh. They do (two frames novel to its memory are a changeover), and the surface it left is kept: the first lit
    frame resumes it, with its memory and calibration, and is no event."""
    from edge.config import SSDNetConfig
    from edge.detector import Detector
    from test_border import brick_crops

    rng = np.random.default_rng(0)
    crops = [c[:128, :128] for c in brick_crops(19)]
    det = Detector(SSDNetConfig(), "cpu")
    for frame in crops[:18]:  # its memory is in use from the 16th
        det.process(frame)
    remembered, scores = det.memory.count, list(det.calibrator.scores)
    dark = [det.process(rng.integers(0, 6, (128, 128, 3), dtype=np.uint8)) for _ in range(3)]
    assert any(d.normal_moved for d in dark) and det.kept_surfaces == 1
    lit = det.process(crops[18])
    assert lit.normal_recalled and lit.calibrated < 3.0 and det.memory.count >= remembered
    assert list(det.calibrator.scores)[:len(scores)] == scores


class StallingReader:
    """Unplugged twice, then 3 frames, then stalls (no frame, no error) until released, then 3 more frames."""

    def __init__(self):
        self.opens, self.reads = 0, 0
        self.release = threading.Event()

    def open(self):
        self.opens += 1
        if self.opens <= 2:
            raise SourceError("camera unplugged")

    def read(self):
        if self.reads == 3:
            self.release.wait(10)
        if self.reads >= 6:
            return None
        self.reads += 1
        return Capture(np.random.default_rng(self.reads).integers(0, 255, (48, 48, 3), dtype=np.uint8), None,
                       time.time())

    def close(self):
        pass


def test_camera_unplugged_then_stalled_is_reported_and_recovers(tmp_path):
    ctx, stop = zmq.Context(), threading.Event()
    cfg = SyntheticSourceConfig(kind="synthetic", name="cam0", size=48, heartbeat_s=0.05, backoff_initial_s=0.02,
                                backoff_max_s=0.05, wait_for_consumer_s=5)
    reader = StallingReader()
    cam = Camera(cfg, reader, ctx)
    ready: list[str] = []
    threads = [threading.Thread(target=cam.run, args=(stop, ready.append), daemon=True)]
    threads[0].start()
    wait_until(lambda: ready)
    node = EdgeNode(NodeConfig(threshold=3.0, heartbeat_s=0.05, queue_depth=64), ready, FastDetector, ctx)
    node_ready: list[str] = []
    threads.append(threading.Thread(target=node.run, args=(stop, node_ready.append, 5.0), daemon=True))
    threads[1].start()
    wait_until(lambda: node_ready)
    sub = Subscriber(node_ready, (b"anomaly/", b"heartbeat/cam0", b"eos/"), ctx=ctx)
    try:
        states, ages, scored = set(), [], []
        deadline = time.monotonic() + 10
        while not (len(scored) >= 3 and ages and max(ages) > 0.3):
            assert time.monotonic() < deadline
            m = sub.recv(50)
            if m is not None and m.kind == "heartbeat":
                states.add(m.header.state)
                if m.header.last_frame_age is not None and len(scored) >= 3:
                    ages.append(m.header.last_frame_age)
            elif m is not None and m.kind == "anomaly":
                scored.append(m.header.seq)
        assert "reconnecting" in states or cam.counters["reconnects"] == 2
        assert max(ages) > 0.3  # the stall shows as a growing last-frame age in the camera's heartbeats
        reader.release.set()
        rest = results(collect(sub))
        assert [m.header.seq for m in rest] == [3, 4, 5]  # served again after the stall
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        sub.close()
        ctx.destroy(linger=0)


def test_oversized_message_is_cut_off_by_maxmsgsize_and_the_node_keeps_serving(tmp_path, monkeypatch):
    """ZeroMQ drops a peer whose message part exceeds MAXMSGSIZE before it is ever buffered whole; the
    real limit (201 MB) is lowered to 1 MiB here so the test sends 2 MiB instead of 200+ MB."""
    monkeypatch.setattr(transport, "MAX_MESSAGE_PART_BYTES", 1 << 20)
    ctx = zmq.Context()
    attacker = transport.Publisher(ctx, "tcp://127.0.0.1:*", sndhwm=1000, max_topics=1000, name="attacker")
    stop_attack = threading.Event()
    sent = [0]

    def attack():
        attacker.wait_for_subscriber(10, stop_attack)
        while not stop_attack.wait(0.02):
            try:
                attacker.sock.send_multipart([b"frame/x", b"\x00" * (2 << 20)], zmq.NOBLOCK)
                sent[0] += 1
            except zmq.Again:
                pass

    t = threading.Thread(target=attack, daemon=True)
    t.start()
    try:
        with line(tmp_path, frames=30, fps=100, queue_depth=64,
                  inputs=[attacker.endpoint]) as ln:
            sub = Subscriber(ln.endpoints, (b"anomaly/", b"eos/"), ctx=ln.ctx)
            assert len(results(collect(sub))) == 30
            assert sent[0] >= 1
            assert ln.node.counters.bad_messages == 0  # never reached the decoder: cut off by ZeroMQ
            sub.close()
    finally:
        stop_attack.set()
        t.join(5)
        attacker.close(0)
        ctx.term()


@pytest.mark.faults
def test_a_damaged_mqtt_cursor_resumes_from_the_one_saved_before_it_not_from_the_log_s_end(tmp_path, caplog):
    """The MQTT bridge's cursor (what the broker acknowledged) is saved durably and the one before it kept: a cursor
    file found damaged (zero bytes, as a power cut can leave one) resumes from the previous cursor, sending again the
    events acknowledged in between (at least once). Before, it resumed from the log's end: the events logged since
    the last acknowledgement (here the 5th) never reached the broker. With both damaged it still starts, as before."""
    db = EventLog(tmp_path / "events.db")
    for seq in range(5):
        db.append(P.EventHeader(kind="event", source="cam0", seq=seq, t_capture=1.0, score=5.0, threshold=3.0,
                                model_version=1))
    log_id = db.log_id
    db.close()

    def bridge() -> MqttBridge:  # no broker at its port: nothing is acknowledged while it runs
        return MqttBridge(MqttConfig(host="127.0.0.1", port=free_port(), client_id="c"), "node0",
                          tmp_path / "events.db").start()

    for acked in (2, 4):  # two runs, each ending with what the broker had acknowledged
        b = bridge()
        b.acked = Cursors({"cam0": acked}, log_id)
        b.close(timeout_s=0.1)
    cursor = b.cursor_path
    assert json.loads(cursor.read_text())["acked"] == {"cam0": 4}
    cursor.write_bytes(b"")
    with caplog.at_level(logging.INFO, logger="pipeline.mqtt_sink"):
        b = bridge()
    assert b.acked == {"cam0": 2} and b.acked.log_id == log_id  # before: {"cam0": 5}, the log's end
    assert "unreadable cursor file" in caplog.text and "previous cursor" in caplog.text
    b.close(timeout_s=0.1)
    for path in tmp_path.glob("events.db.mqtt-c.json*"):
        path.write_bytes(b"{")
    b = bridge()
    assert b.acked == {"cam0": 5}  # neither readable: only events logged from now on, as on a first start
    b.close(timeout_s=0.1)


def _damaged_log(path: Path) -> Path:
    """An event log whose cam0 (3000 events) has a page of its events overwritten (a bad sector), cam1's 5 intact."""
    db = EventLog(path)
    for source, events in (("cam0", 3000), ("cam1", 5)):
        for seq in range(events):
            db.append(P.EventHeader(kind="event", source=source, seq=seq, t_capture=1.0, score=9.0, threshold=3.0,
                                    model_version=1))
    db.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 4096 // 2 * 4096)
        f.write(b"\xff" * 4096)
    return path


@pytest.mark.faults
def test_a_damaged_event_log_fails_the_requests_that_read_it_not_the_replay_thread(tmp_path):
    """One unreadable page (`database disk image is malformed`) ended the node's replay thread: every later request
    of every client went unanswered, so subscribers that catch up from the log (a line's sinks, `ssdnet subscribe
    --replay`) handed on no event until the node restarted. Now that request is answered with the error, counted,
    and the others are served."""
    budget = eventlog.ReplayBudget(share=1.0)
    ctx, halt = zmq.Context(), threading.Event()
    rep = eventlog.replay_socket(ctx)
    endpoint = transport.bind(rep, "tcp://127.0.0.1:*")
    t = threading.Thread(target=serve_replay, args=(rep, _damaged_log(tmp_path / "events.db"), halt, None, budget),
                         daemon=True)
    t.start()
    try:
        client = ReplayClient(endpoint, ctx, timeout_ms=5000)
        with pytest.raises(ReplayError, match="the event log could not be read: database disk image is malformed"):
            for after in range(0, 3000, 100):  # cam0's pages, up to the damaged one
                client.events("cam0", after)
        assert budget.failed == 1 and t.is_alive()
        assert client.heads() == {"cam0": 3000, "cam1": 5}  # before: no answer, to any request
        assert [h.seq for _, h in client.events("cam1", 0)] == list(range(5))
        client.close()
    finally:
        halt.set()
        t.join()
        ctx.term()


@pytest.mark.faults
def test_a_damaged_event_log_holds_back_one_camera_s_mqtt_events_not_the_bridge(tmp_path, caplog):
    """The MQTT bridge's thread ended at the first unreadable page, and no event reached the broker until the node
    restarted. Now the camera whose events lie past the damage waits (counted, said), the others' go out."""
    b = MqttBridge(MqttConfig(host="127.0.0.1", port=free_port(), from_start=True, max_inflight=65535), "node0",
                   _damaged_log(tmp_path / "events.db"))
    b._thread.start()  # the bridge's loop without its client's connection: paho queues what it is given
    b._connected.set()
    try:
        wait_until(lambda: b.stats["log_failed"] >= 2, timeout=30)  # tried again each turn
        assert b._thread.is_alive() and b.sent["cam1"] == 5  # cam1's events went out; before: none, thread ended
        assert 0 < b.sent.get("cam0", 0) < 3000  # cam0's up to the damaged page
        assert "could not read cam0's events in the event log" in caplog.text
    finally:
        b.close(timeout_s=0.1)


@pytest.mark.faults
@pytest.mark.parametrize("text", ['{"acked": {"cam0": 1e999}, "log_id": 7}', '{"acked": {"cam0": 4}, "log_id": '
                                  'Infinity}', '{"acked": {"cam0": -1}, "log_id": 7}', '{"acked": {"cam0": "4"}}'])
def test_an_mqtt_cursor_that_is_no_count_of_events_is_read_as_damaged(tmp_path, text):
    """Infinity in a damaged cursor file raised OverflowError out of the bridge's start, so the node did not start."""
    b = MqttBridge(MqttConfig(host="127.0.0.1", port=free_port(), client_id="c"), "node0", tmp_path / "events.db")
    b.cursor_path.write_text(text)
    b._previous_path.write_text('{"acked": {"cam0": 2}, "log_id": 7}')
    b._load_cursors()
    assert b.acked == {"cam0": 2} and b.acked.log_id == 7  # the previous cursor


@pytest.mark.faults
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_checkpoint_whose_calibration_holds_a_nan_is_ignored_not_scored_with(tmp_path, caplog, bad):
    """A NaN in a checkpoint's calibration (a damaged file) loaded, and every calibrated score was NaN: each frame of
    the camera failed and the node loaded the same checkpoint again for the next, so the camera scored nothing, across
    restarts too (an outside audit). The checkpoint is now ignored as damaged and the camera starts afresh."""
    cal = ScoreCalibrator(CalibrationConfig())
    for raw in (0.5, 0.6, 0.7):
        cal.observe(raw)
    state = cal.state_dict()

    class Model:  # the calibrator's part of a detector's restore
        def __init__(self):
            self.cal = ScoreCalibrator(CalibrationConfig())

        def restore(self, saved):
            self.cal.load_state_dict(saved["calibration"])

    torch.save({"calibration": {**state, "scores": [*state["scores"], bad]}}, tmp_path / "cam0.pt")
    model = Model()
    Checkpoints(tmp_path, every=1, scratch_mb=0).load("cam0", None, model)
    assert list(model.cal.scores) == [] and "ignored checkpoint" in caplog.text and "NaN or infinite" in caplog.text
    torch.save({"calibration": state}, tmp_path / "cam0.pt")
    Checkpoints(tmp_path, every=1, scratch_mb=0).load("cam0", None, model)
    assert list(model.cal.scores) == [0.5, 0.6, 0.7]


def test_a_restarted_node_resumes_each_source_from_its_checkpoint(tmp_path):
    cfg = NodeConfig(threshold=3.0, checkpoint_dir=tmp_path / "ckpt", checkpoint_every=2, checkpoint_interval_s=0)
    image = np.full((32, 32, 3), 90, np.uint8)
    first = EdgeNode(cfg, (), FastDetector)
    det = first._detector("cam0", image.shape)
    for _ in range(5):
        d = det.process(image)
        first.checkpoints.scored_one("cam0", None, det, d.model_version)
    assert (tmp_path / "ckpt" / "cam0.pt").is_file()
    restarted = EdgeNode(cfg, (), FastDetector)._detector("cam0", image.shape)
    assert restarted.calls == 4  # the last multiple of checkpoint_every, not a fresh model
    (tmp_path / "ckpt" / "cam1.pt").write_bytes(b"not a checkpoint")
    assert EdgeNode(cfg, (), FastDetector)._detector("cam1", image.shape).calls == 0  # ignored, logged
    # at most one periodic checkpoint per checkpoint_interval_s (flash wear): the first, at version 2, only
    spaced = cfg.model_copy(update={"checkpoint_dir": tmp_path / "spaced", "checkpoint_interval_s": 300.0})
    node = EdgeNode(spaced, (), FastDetector)
    det = node._detector("cam0", image.shape)
    for _ in range(5):
        node.checkpoints.scored_one("cam0", None, det, det.process(image).model_version)
    assert EdgeNode(spaced, (), FastDetector)._detector("cam0", image.shape).calls == 2


@pytest.mark.parametrize("damage", ["not_sqlite", "read_only"])
def test_an_event_log_the_node_cannot_use_fails_its_start_in_words(tmp_path, damage, monkeypatch):
    """A node.event_log that is not SQLite (another file at that path) or cannot be written ended the node stage with a
    traceback (sqlite3.DatabaseError, which `ssdnet run` does not catch): now a ConfigError that names the file and what
    to do, before the node binds anything."""
    db = tmp_path / "node-events.db"
    if damage == "not_sqlite":
        db.write_text("not an event log, a text file\n" * 10)
    else:
        EventLog(db).close()
        real_connect = sqlite3.connect  # as on a read-only mount (the tests may run as root: chmod binds nobody)
        monkeypatch.setattr(eventlog.sqlite3, "connect",
                            lambda path, **kw: real_connect(f"file:{path}?mode=ro", uri=True, **kw))
    node = EdgeNode(NodeConfig(event_log=db), (), FastDetector)
    with pytest.raises(ConfigError, match=f"node.event_log {db}: .* move it aside or set node.event_log"):
        node.run(threading.Event())


def test_each_camera_whose_checkpoint_does_not_fit_is_said_in_one_line_to_start_afresh(tmp_path, caplog):
    """A node restarted with another model size (or on damaged files) ignores every camera's checkpoint. Said through
    one throttled log, only the first camera's was named (the others started cold without a word), in a warning of
    ~40 lines of torch's size mismatches; a camera without a checkpoint started cold without a word too."""
    folder = tmp_path / "ckpt"
    saved = Checkpoints(folder, every=1, scratch_mb=100)
    for camera in ("cam0", "cam1"):
        saved.save(camera, None, Detector(SSDNetConfig(model={"base_channels": 4}), device="cpu"))
    (folder / "cam2.pt").write_bytes(b"")  # a crash of the machine mid-write, the file not yet on disk
    restarted = Checkpoints(folder, every=1, scratch_mb=100)
    with caplog.at_level(logging.INFO, logger="pipeline.checkpoints"):
        for camera in ("cam0", "cam1", "cam2", "cam3"):  # cam3: none saved
            restarted.load(camera, None, Detector(SSDNetConfig(model={"base_channels": 8}), device="cpu"))
    said = [r.getMessage() for r in caplog.records if r.name == "pipeline.checkpoints"]
    assert [m.split(":")[0] for m in said] == ["cam0", "cam1", "cam2", "cam3"]
    assert all("\n" not in m and "starts afresh" in m and str(folder) in m for m in said)
    assert "size mismatch" in said[0] and "no checkpoint" in said[3]


def test_the_scratch_models_of_a_node_killed_with_sigkill_are_deleted_by_the_next_one(tmp_path, monkeypatch):
    """Without node.checkpoint_dir, models kept at a changeover or an end of stream go to a temporary folder (up to
    node.scratch_checkpoint_mb, 2 GB) that the node deletes when it stops: one killed (SIGKILL, the OOM killer) left
    it in /tmp for good, in RAM where /tmp is a tmpfs, one more at each such restart."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again, in this process too
    child = """if True:
        import os, signal, torch
        from pipeline.checkpoints import Checkpoints
        class Model:
            def state_dict(self): return {"w": torch.zeros(4)}
        node = Checkpoints(None, every=1, scratch_mb=100)
        node.save("cam0", "gravel", Model(), scratch=True)
        os.kill(os.getpid(), signal.SIGKILL)"""
    killed = subprocess.run([sys.executable, "-c", child], env={**os.environ, "TMPDIR": str(tmp_path)})
    assert killed.returncode == -signal.SIGKILL
    assert [p.name for p in tmp_path.glob("ssdnet-models-*/*.pt")] == ["cam0@gravel.pt"]
    live = Checkpoints(None, every=1, scratch_mb=100)
    live.save("cam1", None, FastDetector(), scratch=True)  # the first save makes its own folder, and sweeps
    assert [p.name for p in tmp_path.glob("ssdnet-models-*/*.pt")] == ["cam1.pt"]
    other = Checkpoints(None, every=1, scratch_mb=100)
    other.save("cam2", None, FastDetector(), scratch=True)
    assert sorted(p.name for p in tmp_path.glob("ssdnet-models-*/*.pt")) == ["cam1.pt", "cam2.pt"]  # a live one's kept
    live.close()
    other.close()


@pytest.mark.faults
def test_soak_growth_report_separates_flat_from_leaking():
    flat = growth([(t, 100.0 + (t % 2)) for t in range(40)])
    leak = growth([(t * 90.0, 100.0 + t) for t in range(40)])  # +1 MB per 90 s
    assert abs(flat["growth_fraction"]) < 0.02 and flat["samples"] == 40
    assert leak["growth_fraction"] > 0.2 and 35 < leak["mb_per_hour"] < 45


def test_silence_learns_a_camera_s_heartbeat_period_and_an_ended_stream_is_not_silence(caplog):
    """A camera that ended its stream was reported dead 10 s later; one whose heartbeat period is 25 s (no frames
    flowing) was reported silent at every period."""
    from pipeline.silence import Silences

    s = Silences({"a": "cam-a", "b": "cam-b"}, max_cadence_s=20.0)
    s.heard("a", "frame", now=0.0)
    s.heard("a", "eos", now=1.0)  # a ended
    s.heard("b", "heartbeat", now=0.0)
    assert s.check(now=12.0) == 1 and "cam-b: nothing from this camera for 12 s" in caplog.text  # b: silent
    s.heard("b", "heartbeat", now=25.0)  # it was its period: heard again, learnt (at most 20 s)
    assert s.check(now=49.0) == 0 and s.check(now=84.0) == 0  # 3 x 20 s: its next beat at 50 is not late
    assert s.check(now=86.0) == 1 and "cam-a" not in caplog.text


def test_a_camera_restarted_after_a_kill_is_logged_when_its_heartbeat_says_so(tmp_path, caplog):
    """A camera stage killed and started again heartbeats before it streams: its heartbeat restarted its numbering
    silently (found in an audit: the node's log said nothing of the restart), and its frame 0 then came as a first."""
    from adversary import control_parts, frame_parts, node_line
    caplog.set_level(logging.INFO, "pipeline.node")
    with node_line(tmp_path, frames=200, fps=20, connect_cameras={0: ["line2"]}) as ln:
        cam, t0 = ln.intruders[0], time.time()
        for seq in range(3):
            cam.send(frame_parts("line2", seq=seq, t=t0 + seq * 0.01))
        wait_until(lambda: ln.node.counters.source("line2")["scored"] == 3)
        cam.send(control_parts("heartbeat", "line2", seq=-1, role="source", state="waiting", counters={}))
        cam.send(frame_parts("line2", seq=0, t=time.time()))
        wait_until(lambda: ln.node.counters.source("line2")["scored"] == 4)
        assert ln.node.admission.cameras["line2"].seq_restarts == 1
    assert "its heartbeat is behind its last frame seen: a camera restarted" in caplog.text


def test_a_camera_started_again_while_its_frames_wait_in_the_node_has_each_run_counted_once(tmp_path):
    """A camera that ends its stream and starts again while the node still scores its frames: the node forwards the
    new run's heartbeats at once, the old run's last results and its end of stream after them. The summary took the
    old run's end of stream for the new run's and counted that run twice (40 of 30 sent); per run id, once each."""
    from pipeline.stats import StreamStats

    # tcp, not ipc: an ipc socket unlinks its file as it closes, on ZeroMQ's own thread, so a camera bound again at
    # once on the same path could lose its file to its predecessor's close (the node then never heard it, under load)
    port = free_port()
    ctx, endpoint, stop = zmq.Context(), f"tcp://127.0.0.1:{port}", threading.Event()

    def camera(frames: int) -> tuple[Camera, threading.Thread]:
        cfg = SyntheticSourceConfig(kind="synthetic", name="cam0", size=48, frames=frames, textures=("grass",),
                                    heartbeat_s=0.05, bind=endpoint)
        cam = Camera(cfg, ctx=ctx)
        thread = threading.Thread(target=cam.run, args=(stop,), daemon=True)
        thread.start()
        return cam, thread

    node = EdgeNode(NodeConfig(threshold=3.0, heartbeat_s=0.05, queue_depth=64), [endpoint],
                    lambda source: FastDetector(delay=0.1), ctx)
    ready: list[str] = []
    node_thread = threading.Thread(target=node.run, args=(stop, ready.append, 10.0), daemon=True)
    node_thread.start()
    try:
        wait_until(lambda: ready)
        sub = Subscriber(ready[0], (b"anomaly/", b"eos/", b"heartbeat/cam0"), ctx=ctx)
        first, thread = camera(20)
        thread.join(10)  # its 20 frames sent and its end of stream: the node scores them for ~2 s
        assert node.counters.source("cam0")["scored"] < 15, "no backlog: the node scored faster than expected"
        wait_until(lambda: port_released(port))  # the first camera's listener closes on ZeroMQ's thread, after it ends
        second, thread = camera(10)
        msgs, ends = [], 0
        deadline = time.monotonic() + 20
        while ends < 2:
            assert time.monotonic() < deadline, "no second end of stream"
            if (msg := sub.recv(50)) is not None:
                msgs.append(msg)
                ends += msg.kind == "eos"
        sub.close()
    finally:
        stop.set()
        node_thread.join(10)
        ctx.destroy(linger=0)
    first_end = next(i for i, m in enumerate(msgs) if m.kind == "eos")
    assert msgs[first_end].header.run == first.run_id
    assert any(m.header.run == second.run_id for m in msgs[:first_end])  # the new run's heartbeats came first
    stats = StreamStats()
    for msg in msgs:
        stats.add(msg, time.time())
    summary = stats.summary()
    assert first.counters["sent"] + second.counters["sent"] == summary["sent"] == 30
    assert summary["frames"] == node.counters.source("cam0")["scored"]


def test_a_camera_naming_its_runs_is_restarted_by_a_new_run_and_never_within_one(caplog):
    """With a run id (`run`) the node judges a camera's restart by it, not from its numbering and clock: a new run's
    frame is its first whatever its number or clock (one numbering from 5000 with its clock behind was refused as an
    old frame sent again), a new run's end of stream ends its own stream (one that ended at once after the last run's
    end was refused as repeated), and a step back within a run is no restart (it was taken for one)."""
    from adversary import control_parts, frame_parts
    caplog.set_level(logging.INFO, "pipeline.node")
    node = EdgeNode(NodeConfig(), ["tcp://127.0.0.1:1"], FastDetector, input_names=["cam0"])
    camera, t0 = node.admission.cameras["cam0"], time.time()

    def send(*messages):
        for parts in messages:
            node._on_input([zmq.Frame(p) for p in parts], node.peers[0])

    send(frame_parts("cam0", seq=5000, t=t0, run="a"), frame_parts("cam0", seq=5001, t=t0 + 0.01, run="a"))
    send(frame_parts("cam0", seq=0, t=t0 + 0.02, run="a"),  # run a stepping back: refused, not a restart
         control_parts("heartbeat", "cam0", seq=3, run="a"))  # nor is its heartbeat behind its last frame
    assert (node.counters.rejected["seq_backwards"], camera.seq_restarts, camera.last_seq) == (1, 0, 5001)
    send(frame_parts("cam0", seq=5000, t=t0 - 5, run="b"))  # killed and started again, its clock behind
    assert (camera.seq_restarts, camera.last_seq, node.counters.source("cam0")["received"]) == (1, 5000, 3)
    assert "a new run (b): a camera restarted" in caplog.text
    send(control_parts("eos", "cam0", seq=5000, frames=5001, run="b"),
         control_parts("eos", "cam0", seq=-1, frames=0, run="c"))  # started again, ended at once: an empty stream
    assert sum(node.counters.rejected.values()) == 1 and node.counters.source("cam0")["lost"] == 0
    assert camera.seq_restarts == 1  # b had ended its stream: c is no restart of a stream
    order = [(m.kind, m.header.seq, m.header.run) if m.kind != "run_ended" else (m.kind,)
             for m in iter(lambda: node.pending.take(0.01), None)]
    assert [o for o in order if o[0] != "frame"] == [("run_ended",), ("eos", 5000, "b"), ("eos", -1, "c")]
    assert order.index(("run_ended",)) < order.index(("frame", 5000, "b"))  # a's run ends before b's first frame
