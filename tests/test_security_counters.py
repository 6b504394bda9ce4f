"""Honest counters and clients (issue 15): refused connections counted by reason in heartbeats,
summary.json and Prometheus; no false "recovered N missed event(s)" when heartbeats and events race;
`ssdnet subscribe --replay` waits for a node that is not up yet; replay errors name the field."""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.request

import msgpack
import pytest
import zmq

from adversary import control_parts, frame_parts, node_beat, node_line, until_eos
from pipeline import protocol as P
from pipeline.config import LineConfig, NodeConfig, SyntheticSourceConfig
from pipeline.eventlog import CatchUp, EventLog, ReplayClient, answer
from pipeline.launcher import run_line
from pipeline.node import EdgeNode
from pipeline.pending import ENDS_WAITING
from pipeline.security import Security, make_keypair
from pipeline.sinks import MetricsSink, Subscriber
from pipeline.sources import Camera
from pipeline.subscribe import subscribe
from pipeline.transport import secure
from test_pipeline_node import FastDetector, wait_until

pytestmark = pytest.mark.security


def _grass_camera(ctx: zmq.Context, stop: threading.Event, threads: list, **source) -> list:
    """Start a synthetic grass camera `cam0` (48 px) on a thread added to `threads`; its endpoints once ready."""
    cam = Camera(SyntheticSourceConfig(kind="synthetic", name="cam0", size=48, textures=("grass",), **source), ctx=ctx)
    ready: list = []
    threads.append(threading.Thread(target=cam.run, args=(stop, ready.append), daemon=True))
    threads[-1].start()
    wait_until(lambda: ready)
    return ready


def test_collector_sees_no_false_gap_when_heartbeats_race_events(tmp_path, caplog):
    """Every frame is an event and the node heartbeats every 5 ms: a heartbeat whose `logged_events`
    counts an event not yet published, or a fetch that returns events still on their way, used to be
    reported as "recovered N missed event(s)" in a run that lost nothing."""
    ctx, stop, threads = zmq.Context(), threading.Event(), []
    ready = _grass_camera(ctx, stop, threads, frames=150, fps=300)
    node = EdgeNode(NodeConfig(threshold=-1.0, heartbeat_s=0.005, queue_depth=256, event_log=tmp_path / "ev.db"),
                    ready, FastDetector, ctx)
    node_ready: list = []
    threads.append(threading.Thread(target=node.run, args=(stop, node_ready.append, 10.0), daemon=True))
    threads[1].start()
    wait_until(lambda: node_ready and node.replay_endpoint)
    catch = CatchUp(ReplayClient(node.replay_endpoint, ctx))
    sub = None
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.eventlog"):
            catch.sync()
            sub = Subscriber(node_ready, (b"anomaly/", b"event/", b"eos/", b"heartbeat/"), ctx=ctx)
            delivered, deadline = [], time.monotonic() + 30
            while not delivered or len(delivered) < 150:
                assert time.monotonic() < deadline, f"{len(delivered)} events delivered"
                msg = sub.recv(20)
                delivered += [n for n, _ in catch.on_message(msg)]
            delivered += [n for n, _ in catch.sync()]
        assert delivered == list(range(1, 151))  # every event once, in order
        assert catch.recovered == 0, [r.message for r in caplog.records]
        assert not [r for r in caplog.records if "recovered" in r.message]
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        catch.close()
        if sub is not None:
            sub.close()
        ctx.destroy(linger=0)


def test_a_lost_event_is_still_recovered_and_counted(tmp_path):
    """The other side of the race fix: a live copy that really is lost is still fetched and counted."""
    log = EventLog(tmp_path / "e.db")
    def header(seq):
        return P.EventHeader(kind="event", source="cam0", seq=seq, t_capture=1.0, score=9.0, threshold=3.0,
                             model_version=1)
    for seq in range(6):
        log.append(header(seq))

    class Direct:  # a replay client answering from the log in-process
        log_id = 0  # which log answered: not known (as from a node before log ids)

        def request(self, req):
            reply = answer(log, msgpack.packb(req))
            assert reply["ok"], reply
            return reply

        heads = ReplayClient.heads
        events = ReplayClient.events
        _paged = ReplayClient._paged

        def close(self):
            pass

    catch = CatchUp(Direct(), resume={"cam0": 1})
    got = catch.on_message(P.Message(header(3)))  # live #4 arrives: #2 and #3 were lost, #5, #6 are on their way
    assert [n for n, _ in got] == [2, 3, 4, 5, 6] and catch.recovered == 2
    assert catch.on_message(P.Message(header(4))) == [] and catch.recovered == 2  # #5 live: delivered already
    log.append(header(6))
    log.append(header(7))  # #7 published and lost, #8 logged and still on its way when the heartbeat comes
    beat = P.HeartbeatHeader(kind="heartbeat", source="node", seq=-1, t_capture=1.0, role="node", state="idle",
                             counters={"logged_events": 7})
    assert [n for n, _ in catch.on_message(P.Message(beat))] == [7, 8] and catch.recovered == 3
    log.close()


@pytest.fixture
def keys(tmp_path):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    for name in ("cam0", "cam1", "node", "subscriber", "intruder"):
        make_keypair(keys, name)
    for name in ("node", "subscriber"):
        (allowed / f"{name}.key").write_bytes((keys / f"{name}.key").read_bytes())
    return keys, allowed


def _attempts(ctx: zmq.Context, endpoint: str, n: int, **curve) -> list[zmq.Socket]:
    out = []
    for _ in range(n):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        for k, v in curve.items():
            setattr(s, k, v)
        s.connect(endpoint)
        out.append(s)
    return out


def test_refused_connections_are_counted_by_reason_in_heartbeats_and_prometheus(keys, tmp_path, caplog):
    keys, allowed = keys
    secs = {n: Security(keys / f"{n}.key_secret", allowed, keys, reload_s=0.05) for n in ("cam0", "node", "subscriber")}
    ctxs = {n: zmq.Context() for n in ("cam0", "node", "subscriber", "attack")}
    for n, sec in secs.items():
        secure(ctxs[n], sec)
    stop, threads, socks = threading.Event(), [], []
    metrics = MetricsSink(port=0)
    try:
        ready = _grass_camera(ctxs["cam0"], stop, threads, fps=50, frames=10_000, heartbeat_s=0.05)
        node = EdgeNode(NodeConfig(threshold=3.0, heartbeat_s=0.05), ready, FastDetector, ctxs["node"],
                        server_keys={ready[0]: secs["node"].server_key("cam0")}, input_names=["cam0"])
        node_ready: list = []
        threads.append(threading.Thread(target=node.run, args=(stop, node_ready.append), daemon=True))
        threads[-1].start()
        wait_until(lambda: node_ready)
        endpoint, node_key = node_ready[0], secs["subscriber"].server_key("node")
        sub = Subscriber(endpoint, (b"anomaly/", b"heartbeat/"), ctx=ctxs["subscriber"], server_key=node_key)
        socks.append(sub)
        intruder = zmq.auth.load_certificate(str(keys / "intruder.key_secret"))
        subscriber_pub = zmq.auth.load_certificate(str(keys / "subscriber.key"))[0]
        with caplog.at_level(logging.WARNING, logger="pipeline.security"):
            plain = 0  # a plaintext client that hangs up first is told apart from other failures only sometimes
            while node.refusals()["plaintext"] < 1 or plain < 3:
                assert plain < 50, "no plaintext refusal counted"
                socks += _attempts(ctxs["attack"], endpoint, 1)
                plain += 1
                time.sleep(0.05)
            socks += _attempts(ctxs["attack"], ready[0], 1)  # plaintext, at the camera
            socks += _attempts(ctxs["attack"], endpoint, 2, curve_publickey=intruder[0], curve_secretkey=intruder[1],
                               curve_serverkey=node_key)  # a valid key the allow-list does not hold
            socks += _attempts(ctxs["attack"], endpoint, 2, curve_publickey=intruder[0], curve_secretkey=intruder[1],
                               curve_serverkey=subscriber_pub)  # talking to the node with another server's key

            def counted(c: dict[str, int]) -> bool:  # every attempt refused and counted under its reason
                return (c["refused_plaintext"] >= 1 and c["refused_plaintext"] + c["refused_protocol_error"] >= plain
                        and c["refused_unknown_key"] >= 2 and c["refused_wrong_server_key"] >= 2)

            wait_until(lambda: counted({f"refused_{r}": n for r, n in node.refusals().items()}))
            deadline = time.monotonic() + 5  # the next heartbeats (those queued may predate the refusals)
            while not counted(counters := node_beat(sub)):
                assert time.monotonic() < deadline
            metrics.handle(P.Message(P.HeartbeatHeader(kind="heartbeat", source="node", seq=-1, t_capture=time.time(),
                                                       role="node", state="idle", counters=counters)), time.time())
        for reason in ("plaintext", "unknown_key", "wrong_server_key"):
            assert any(f"({reason}" in r.message or (reason == "unknown_key" and "not in" in r.message)
                       for r in caplog.records), reason
        assert len(counters) <= P.MAX_COUNTERS * 3 // 4  # within the wire's limit on a heartbeat's counters, with room
        deadline = time.monotonic() + 5  # the camera counts the plaintext attempt on its socket in its heartbeats
        while not ((m := sub.recv(50)) is not None and m.kind == "heartbeat" and m.source == "cam0"
                   and sum(m.header.counters.get(f"refused_{r}", 0) for r in ("plaintext", "protocol_error")) >= 1):
            assert time.monotonic() < deadline, "no camera heartbeat counting the refusal"
        scored = node.counters.source("cam0")["scored"]
        wait_until(lambda: node.counters.source("cam0")["scored"] > scored + 5)  # still scoring, over CURVE
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=5).read().decode()
        assert 'ssdnet_stage_count{counter="refused_plaintext",role="node",source="node"}' in text
        report = node.report()
        assert report["refused_connections"]["plaintext"] >= 1 and report["cameras"]["cam0"]["secured"]
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for s in socks:
            s.close()
        metrics.close()
        for sec in secs.values():
            sec.close()
        for ctx in ctxs.values():
            ctx.destroy(linger=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_summary_json_counts_refusals_and_rejections(keys, tmp_path):
    """A whole CURVE line (spawned stages): plaintext attempts on the node during the run end up in
    summary.json's `refused_connections`, with the node's per-reason `rejected` and each camera's state."""
    keys, allowed = keys
    port = _free_port()
    cam = {"kind": "synthetic", "size": 48, "fps": 20, "frames": 30, "textures": ["grass"]}
    cfg = LineConfig.model_validate({
        "sources": [{**cam, "name": "cam0"}, {**cam, "name": "cam1"}],
        "node": {"threshold": 3.0, "queue_depth": 64, "bind": f"tcp://127.0.0.1:{port}", "heartbeat_s": 0.1},
        "sinks": {"overlays": False},
        "security": {"keys_dir": str(keys), "authorized_dir": str(allowed)}})
    stop = threading.Event()
    # a plaintext client at the wire: ZMTP 3.0's greeting with the NULL mechanism, then silence until we hang up.
    # (A pyzmq NULL socket hangs up by itself on the mismatch, and when it does so before the node reads its
    # greeting, the node can only count a protocol_error.)
    greeting = b"\xff" + bytes(8) + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\0") + bytes(32)

    def knock():
        while not stop.wait(0.2):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(greeting)
                    time.sleep(0.3)
            except OSError:  # the node is not bound yet, or has hung up on us
                pass

    t = threading.Thread(target=knock, daemon=True)
    t.start()
    try:
        summary = run_line(cfg, tmp_path, detector_factory=FastDetector)
    finally:
        secure(zmq.Context.instance(), None)  # the collector secured this process's shared context
        stop.set()
        t.join(5)
    assert summary["frames"] == summary["sent"] == 60
    assert summary["refused_connections"]["plaintext"] > 0
    assert set(summary["rejected"]) >= {"spoofed_name", "unknown_camera", "clock_skew", "seq_jump", "bad_payload"}
    assert sum(summary["rejected"].values()) == 0
    assert set(summary["cameras"]) == {"cam0", "cam1"} and summary["cameras"]["cam0"]["secured"]
    assert json.loads((tmp_path / "summary.json").read_text())["refused_connections"] == summary["refused_connections"]


def test_subscribe_waits_and_retries_for_a_node_that_is_not_up_yet(tmp_path, caplog):
    """`ssdnet subscribe --replay` started before the node: retried with backoff, then it catches up."""
    db = tmp_path / "ev.db"
    port, replay_port = _free_port(), _free_port()
    cfg = NodeConfig(bind=f"tcp://127.0.0.1:{port}", replay_bind=f"tcp://127.0.0.1:{replay_port}", event_log=db,
                     threshold=3.0, heartbeat_s=0.05, queue_depth=64)
    ctx, stop, result = zmq.Context(), threading.Event(), {}

    def client():
        result["events"] = subscribe([cfg.bind], count=3, timeout_s=30, replay=cfg.replay_bind, from_start=True,
                                     ctx=ctx)

    with caplog.at_level(logging.WARNING, logger="pipeline.subscribe"):
        c = threading.Thread(target=client)
        c.start()
        # the subscriber has been waiting: one 2 s request timed out and it retries
        wait_until(lambda: any("retrying in" in r.message for r in caplog.records), timeout=30)
        assert c.is_alive()
        threads: list = []
        ready = _grass_camera(ctx, stop, threads, fps=50, frames=200)
        node = EdgeNode(cfg, ready, lambda s: FastDetector(), ctx)
        threads.append(threading.Thread(target=node.run, args=(stop,), daemon=True))
        threads[1].start()
        try:
            c.join(30)
            assert not c.is_alive() and result["events"] >= 3
        finally:
            stop.set()
            for t in threads:
                t.join(5)
            ctx.destroy(linger=0)
    assert any("not answering yet" in r.message and "retrying in" in r.message for r in caplog.records)


@pytest.mark.parametrize("request_, fragment", [
    ({"op": "events", "source": "cam0", "after": -1}, "bad events request: after: Input should be greater than"),
    ({"op": "events", "source": "cam0"}, "bad events request: after: Field required"),
    ({"op": "events", "source": "../x", "after": 0}, "bad events request: source: String should match pattern"),
    ({"op": "events", "source": "a", "after": 0, "limit": 5000}, "limit: Input should be less than or equal to 1000"),
    ({"op": "heads", "x": 1}, "bad heads request: x: Extra inputs are not permitted"),
    ({"op": "drop"}, "op 'heads', 'events' or 'ends', got op 'drop'"),
    ({"op": "ends", "after": -1}, "bad ends request: after: Input should be greater than or equal to 0"),
    ({"op": "ends", "after": 0, "limit": 101}, "bad ends request: limit: Input should be less than or equal to 100"),
    ({"op": "ends", "after": 0, "source": "cam0"}, "bad ends request: source: Extra inputs are not permitted"),
])
def test_a_bad_replay_request_is_answered_with_the_field_it_got_wrong(tmp_path, request_, fragment):
    log = EventLog(tmp_path / "e.db")
    reply = answer(log, msgpack.packb(request_))
    log.close()
    assert reply["ok"] is False and fragment in reply["error"]
    assert "HeadsRequest" not in reply["error"]  # the old message named the wrong request model


def test_node_counters_name_every_reason_and_fit_a_heartbeat(tmp_path):
    with node_line(tmp_path, frames=10, fps=50, intruders=0) as ln:
        until_eos(ln.sub)
        counters = node_beat(ln.sub)
    from pipeline.admission import REASONS

    # three quarters of the protocol's room at most (65 of 128 with `checkpoint_failed`): a node whose counters
    # outgrow it could send no heartbeat at all
    assert {f"rejected_{r}" for r in REASONS} <= set(counters) and len(counters) <= P.MAX_COUNTERS * 3 // 4
    assert {"refused_plaintext", "refused_wrong_server_key", "refused_unknown_key", "cameras", "queued_frames",
            "rss_mb", "memory_estimate_mb"} <= set(counters)
    assert counters["cameras"] == 1 and counters["received"] == 10


@pytest.mark.parametrize("node, fragment", [
    ({"connect_cameras": {"tcp://127.0.0.1:5555": ["cam7"]}}, "which node.connect does not"),
    ({"connect": ["tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556"],
      "connect_cameras": {"tcp://127.0.0.1:5555": ["cam7"], "tcp://127.0.0.1:5556": ["cam7"]}},
     "more than one endpoint"),
    ({"connect": ["tcp://127.0.0.1:5555"], "connect_cameras": {"tcp://127.0.0.1:5555": ["a"]}}, "also sources"),
    ({"connect": ["tcp://127.0.0.1:5555"], "connect_cameras": {"tcp://127.0.0.1:5555": ["node"]}}, "node's own name"),
    ({"max_frame_pixels": 100}, "max_frame_pixels"),
    ({"oversize": "crop"}, "oversize"),
])
def test_camera_bindings_in_the_config_are_validated(node, fragment):
    from edge.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=fragment):
        parse_config(LineConfig, {"sources": [{"kind": "synthetic", "name": "a"}], "node": node}, "line.yaml")


def test_a_connect_endpoint_without_camera_names_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.config"):
        LineConfig.model_validate({"sources": [{"kind": "synthetic", "name": "a"}],
                                   "node": {"connect": ["tcp://127.0.0.1:5555"]}})
    assert any("refuses every frame from there" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.config"):
        LineConfig.model_validate({"sources": [{"kind": "synthetic", "name": "a"}],
                                   "node": {"connect": ["tcp://127.0.0.1:5555"], "dynamic_cameras": True}})
    assert not caplog.records


def test_a_frame_refused_for_its_clock_or_a_missing_stamp_keeps_its_place():
    """Clock skew and a missing stamps.capture were refused before the frame's number was looked at: 4 frames sent,
    `rejected` and `lost` both counted the refused ones (drops added up to 5). Its skewed time is not kept either: the
    camera's next frames, in order, are scored."""
    node = EdgeNode(NodeConfig(), ["tcp://127.0.0.1:1"], FastDetector, input_names=["cam0"])
    now = time.time()
    for parts in (frame_parts("cam0", seq=0), frame_parts("cam0", seq=1, t=now + 400, stamps={"capture": now + 400}),
                  frame_parts("cam0", seq=2, stamps={}), frame_parts("cam0", seq=3), frame_parts("cam0", seq=5)):
        node._on_input([zmq.Frame(p) for p in parts], node.peers[0])
    counts = node.counters.source("cam0")
    assert (counts["received"], counts["rejected"], counts["lost"]) == (3, 2, 1)  # 4 never came
    assert node.counters.rejected["clock_skew"] == node.counters.rejected["missing_field"] == 1
    assert node.admission.cameras["cam0"].last_capture < now + 60


def test_a_node_heartbeat_follows_each_end_of_stream_with_that_cameras_last_frame(tmp_path):
    with node_line(tmp_path, frames=12, fps=40, heartbeat_s=60.0) as ln:  # no periodic beat after the first
        until_eos(ln.sub)
        beat = node_beat(ln.sub)
        assert beat["scored"] == ln.node.counters.source("cam0")["scored"] > 0


def test_a_camera_s_refused_frame_is_counted_once_not_also_lost():
    """A frame refused for what it holds (too small, too large, a bad payload) was counted refused, then `lost` again
    by the next frame's sequence gap: drops by cause added up to more than the frames dropped."""
    node = EdgeNode(NodeConfig(min_side=32, max_frame_pixels=128 * 128, oversize="reject"), ["tcp://127.0.0.1:1"],
                    FastDetector, input_names=["cam0"])
    peer = node.peers[0]
    short = frame_parts("cam0", seq=3)
    short[2] = short[2][:100]  # a payload cut short: bad_payload
    for parts in (frame_parts("cam0", seq=0), frame_parts("cam0", seq=1, size=(8, 64)),
                  frame_parts("cam0", seq=2, size=(256, 256)), short, frame_parts("cam0", seq=4),
                  frame_parts("cam0", seq=7)):  # 5 and 6 never came
        node._on_input([zmq.Frame(p) for p in parts], peer)
    counts = node.counters.source("cam0")
    # the bad payload is the camera's refused frame too (it counted in bad_messages alone before): 3 refused
    assert (counts["received"], counts["rejected"], counts["lost"]) == (3, 3, 2)
    assert node.counters.rejected["too_small"] == node.counters.rejected["oversize"] == 1
    assert node.counters.rejected["bad_payload"] == node.counters.bad_messages == 1


def test_a_camera_ends_a_stream_once_its_repeated_ends_are_refused_not_queued():
    """An outside client's audit: a camera could send end of stream after end of stream, each queued and published to
    every subscriber. One end per stream now (a frame, or a heartbeat saying it streams again, starts the next), and
    at most ENDS_WAITING of a camera's ends wait to go out; a stream ended and the next begun at once still get
    both ends, in order, and so does a camera started again whose first heartbeat already says `ended` (an empty
    folder)."""
    node = EdgeNode(NodeConfig(), ["tcp://127.0.0.1:1"], FastDetector, input_names=["cam0"])

    def send(*messages):
        for parts in messages:
            node._on_input([zmq.Frame(p) for p in parts], node.peers[0])

    def eos(seq):
        return control_parts("eos", "cam0", seq=seq, frames=seq + 1)

    send(frame_parts("cam0", seq=0), eos(0), *[eos(0) for _ in range(100)])
    assert node.counters.rejected["eos_repeated"] == 100 and node.pending.room_for_end("cam0")
    send(control_parts("heartbeat", "cam0", seq=0, state="ended"), eos(0))  # a heartbeat of the ended stream
    assert node.counters.rejected["eos_repeated"] == 101
    send(control_parts("heartbeat", "cam0", seq=-1, state="waiting"), eos(-1))  # back, and ends with no frame
    send(control_parts("heartbeat", "cam0", seq=-1, state="ended"), eos(-1))  # the same heartbeat and end: refused
    assert node.counters.rejected["eos_repeated"] == 102
    send(frame_parts("cam0", seq=0), eos(0), control_parts("heartbeat", "cam0", seq=-1, state="ended"), eos(-1))
    assert node.counters.rejected["eos_repeated"] == 102  # started again: its first heartbeat said `ended` already
    for _ in range(ENDS_WAITING - 4):  # more short streams while the worker is busy
        send(frame_parts("cam0", seq=0), eos(0))
    send(frame_parts("cam0", seq=0), eos(0))  # ENDS_WAITING ends wait already
    assert node.counters.rejected["eos_repeated"] == 103
    order = [(m.kind, m.header.seq) for m in iter(lambda: node.pending.take(0.01), None)]
    assert order[:3] == [("eos", 0), ("eos", -1), ("eos", 0)] and order.count(("eos", 0)) == ENDS_WAITING - 2


def test_a_frame_numbered_below_zero_is_counted_once_not_also_lost():
    """A frame with seq < 0 was refused (`seq_range`) with no place kept, so the next frame's gap counted it `lost`
    too. It takes a place of the next gap now, as a frame refused for its clock keeps its own: each refused frame
    is counted once, and a gap beyond the places they took is still `lost`."""
    node = EdgeNode(NodeConfig(), ["tcp://127.0.0.1:1"], FastDetector, input_names=["cam0"])
    skewed = time.time() + 400
    for parts in (frame_parts("cam0", seq=0), frame_parts("cam0", seq=-1), frame_parts("cam0", seq=2),
                  frame_parts("cam0", seq=-1, t=skewed, stamps={"capture": skewed}), frame_parts("cam0", seq=-1),
                  frame_parts("cam0", seq=5), frame_parts("cam0", seq=-1), frame_parts("cam0", seq=6),
                  frame_parts("cam0", seq=9)):  # 7 and 8 never came
        node._on_input([zmq.Frame(p) for p in parts], node.peers[0])
    counts = node.counters.source("cam0")
    assert (counts["received"], counts["rejected"], counts["lost"]) == (5, 4, 2)
    assert (node.counters.rejected["seq_range"], node.counters.rejected["clock_skew"]) == (3, 1)
