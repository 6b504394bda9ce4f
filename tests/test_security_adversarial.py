"""Hostile peers on the node's camera input (issue 15): each attack must leave the real cameras scored
to their end, and the node's counters must name the reason. Real sockets, threads, the fast fake
detector; the hostile peer is a node.connect endpoint (as a second camera would be)."""
from __future__ import annotations

import threading
import time

import cv2
import msgpack
import numpy as np
import psutil
import pytest
import zmq

from adversary import (
    control_parts,
    frame_parts,
    header,
    node_beat,
    node_line,
    port_below_ephemeral,
    scored,
    streamed,
    until_eos,
)
from pipeline import node as node_module
from pipeline import protocol as P
from pipeline.admission import HEARTBEAT_BURST, HEARTBEAT_RATE, RESTART_BURST, RESYNC_FRAMES
from pipeline.config import NodeConfig, SyntheticSourceConfig
from pipeline.flow import CREDIT_COUNTER, decode_grant
from pipeline.node import INPUT_TOPICS, EdgeNode
from pipeline.sinks import Subscriber
from pipeline.sources import Camera
from pipeline.transport import Publisher, make_socket
from test_pipeline_node import FastDetector, wait_until

pytestmark = pytest.mark.security


def test_forged_end_of_stream_from_another_peer_does_not_end_the_camera(tmp_path):
    with node_line(tmp_path, frames=40, fps=40) as ln:
        bad = ln.intruders[0]
        for _ in range(3):
            bad.send(control_parts("eos", "cam0", seq=0, frames=1))  # "cam0 has ended after 1 frame"
        msgs = until_eos(ln.sub)
        streamed(ln, msgs, 40)  # the real cam0 streamed to its end
        eos = [m for m in msgs if m.kind == "eos"]
        assert len(eos) == 1 and eos[0].header.counters["scored"] == ln.node.counters.source("cam0")["scored"]
        wait_until(lambda: ln.node.counters.rejected["spoofed_name"] == 3)
        assert ln.node.counters.source("cam0")["rejected"] == 0  # not charged to the camera it impersonated


def test_an_end_of_stream_carries_the_counters_of_the_stream_it_ends(tmp_path):
    """A camera that streams again (a restart: seq from 0) gets, with its second end of stream, the second stream's
    counters, not those since the node started."""
    with node_line(tmp_path, frames=10, fps=40, connect_cameras={0: ["line2"]}) as ln:
        cam = ln.intruders[0]
        msgs = []
        for frames, scored_by_then in ((3, 3), (2, 5)):
            for seq in range(frames):
                cam.send(frame_parts("line2", seq=seq))
            wait_until(lambda n=scored_by_then: ln.node.counters.source("line2")["scored"] == n)
            cam.send(control_parts("eos", "line2", seq=frames - 1, frames=frames))
            msgs += until_eos(ln.sub, ("line2",))
        ends = [m.header for m in msgs if m.kind == "eos" and m.source == "line2"]
        assert [(e.frames, e.counters["received"], e.counters["scored"]) for e in ends] == [(3, 3, 3), (2, 2, 2)]
        assert ln.node.counters.source("line2")["scored"] == 5


def received(sub: Subscriber, wanted, timeout: float = 10.0) -> P.Message:
    """The first message on `sub` that `wanted` accepts (the others skipped), within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (msg := sub.recv(100)) is None or not wanted(msg):
        assert time.monotonic() < deadline, "no such message in time"
    return msg


def test_a_camera_port_another_program_held_a_moment_is_connected_afresh(monkeypatch):
    """Something that is not a camera (here a ROUTER) answers on a camera's port when the node connects: ZeroMQ's
    handshake fails with a protocol error and it never connects there again. The node connects a connection silent
    for SILENT_RECONNECT_S afresh, so the real camera, started there after, gets its subscriptions and is scored."""
    monkeypatch.setattr(node_module, "SILENT_RECONNECT_S", 0.5)
    ctx = zmq.Context()
    squatter = ctx.socket(zmq.ROUTER)
    port = squatter.bind_to_random_port("tcp://127.0.0.1")
    endpoint = f"tcp://127.0.0.1:{port}"
    node = EdgeNode(NodeConfig(connect=(endpoint,), connect_cameras={endpoint: ("line2",)}, heartbeat_s=0.05), (),
                    FastDetector, ctx)
    stop, ready, camera = threading.Event(), [], None
    thread = threading.Thread(target=node.run, args=(stop, ready.append), daemon=True)
    thread.start()
    try:
        wait_until(lambda: ready)
        sub = Subscriber(ready[0], (b"anomaly/", b"heartbeat/"), ctx=ctx)
        seen = squatter.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        assert seen.poll(10_000)  # the node connected to the squatter: the handshake failed, ZeroMQ dropped it
        seen.close(0)
        squatter.close(0)
        deadline = time.monotonic() + 5
        while camera is None:  # the port is free once ZeroMQ's I/O thread has closed the listener
            try:
                camera = Publisher(ctx, endpoint, sndhwm=1000, max_topics=1000, name="line2")
            except zmq.ZMQError:
                assert time.monotonic() < deadline
                time.sleep(0.05)

        def subscribed():
            camera.upstream()
            return set(INPUT_TOPICS) <= camera.topics
        wait_until(subscribed)
        camera.sock.send_multipart(frame_parts("line2", seq=0))
        result = received(sub, lambda m: m.kind == "anomaly")
        assert result.source == "line2"
        reconnects = node.input_reconnects
        assert reconnects >= 1
        # a camera that has spoken keeps its connection through a quiet spell (QUIET_RECONNECT_S): the node's
        # heartbeat from 3 x SILENT_RECONNECT_S after its frame counts no reconnect more
        later = result.header.stamps["published"] + 3 * node_module.SILENT_RECONNECT_S
        beat = received(sub, lambda m: m.kind == "heartbeat" and m.header.role == "node" and m.header.t_capture > later)
        assert beat.header.counters["input_reconnects"] == reconnects
        sub.close()
    finally:
        stop.set()
        thread.join(timeout=5)
        if camera is not None:
            camera.close(0)
        ctx.destroy(linger=0)


def test_frames_and_heartbeats_under_another_name_are_rejected(tmp_path):
    with node_line(tmp_path, frames=30, fps=40, connect_cameras={0: ["intruder"]}) as ln:
        bad = ln.intruders[0]
        for seq in range(5):
            bad.send(frame_parts("cam0", seq=1000 + seq))  # frames under the real camera's name
        bad.send(control_parts("heartbeat", "cam0"))
        bad.send(control_parts("heartbeat", "node", role="node", counters={"logged_events": 10**6}))  # the node's name
        bad.send(control_parts("heartbeat", "intruder", role="node", counters={"logged_events": 10**6}))  # node's role
        bad.send(frame_parts("intruder", seq=0))  # its own name: accepted
        msgs = until_eos(ln.sub)
        streamed(ln, msgs, 30)
        assert scored(msgs, "intruder") == [0]
        forged = [m for m in msgs if m.kind == "heartbeat" and m.header.counters.get("logged_events") == 10**6]
        assert not forged  # never forwarded to subscribers
        r = ln.node.counters.rejected
        assert r["spoofed_name"] == 7 and r["forged_role"] == 1


def test_names_a_connection_may_not_use_are_refused_unless_dynamic_and_then_up_to_the_limit(tmp_path):
    with node_line(tmp_path, frames=20, fps=40) as ln:  # node.connect without connect_cameras, not dynamic
        ln.intruders[0].send(frame_parts("stranger"))
        until_eos(ln.sub)
        wait_until(lambda: ln.node.counters.rejected["unknown_camera"] == 1)
        assert "stranger" not in ln.node.admission.cameras
    with node_line(tmp_path, frames=20, fps=40, dynamic_cameras=True, max_dynamic_cameras=2) as ln:
        refused = {"clock_skew": [frame_parts(f"skew{i}", t=0.0) for i in range(5)],  # refused under new names
                   "too_small": [frame_parts(f"tiny{i}", size=(8, 64)) for i in range(5)],  # take no place: they
                   "bad_payload": [frame_parts(f"short{i}")[:2] + [b"\x00" * 10] for i in range(5)]}  # bind nothing
        for parts in (p for sent in refused.values() for p in sent):
            ln.intruders[0].send(parts)
        for name in ("dyn0", "dyn1", "dyn2", "cam0"):
            ln.intruders[0].send(frame_parts(name))
        msgs = until_eos(ln.sub)
        wait_until(lambda: ln.node.counters.source("dyn1")["scored"] == 1)
        streamed(ln, msgs, 20)
        r = ln.node.counters.rejected
        assert r["camera_limit"] == 1 and r["spoofed_name"] == 1
        assert {reason: r[reason] for reason in refused} == {reason: 5 for reason in refused}
        assert set(ln.node.admission.cameras) == {"cam0", "dyn0", "dyn1"}


def _jpeg_with_declared_size(size: int, declared: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.zeros((size, size, 3), np.uint8))
    data = bytearray(buf.tobytes())
    i = data.find(b"\xff\xc0")
    data[i + 5:i + 9] = declared.to_bytes(2, "big") * 2  # the SOF0 marker lies about the size
    return bytes(data)


def test_lying_shapes_and_sizes_are_rejected_by_reason(tmp_path):
    def raw(shape, nbytes, name="image", dtype="uint8", extra=()):
        h = header("frame", "intruder", 0, payloads=[{"name": name, "shape": list(shape), "dtype": dtype,
                                                      "encoding": "raw"}, *extra])
        return [b"frame/intruder", msgpack.packb(h), b"\x00" * nbytes]

    mask = {"name": "mask", "shape": [64, 64], "dtype": "uint8", "encoding": "raw"}
    small_mask = {**mask, "shape": [32, 32]}
    jpeg = _jpeg_with_declared_size(64, 4000)
    attacks = {
        "bad_payload": [raw((64, 64, 3), 100),  # says 64x64, carries 100 bytes
                        raw((64, 64, 3), 64 * 64 * 3, extra=(mask,)),  # announces 2 payloads, sends 1
                        [b"frame/intruder", msgpack.packb(header("frame", payloads=[{  # 600 bytes "are" 4000x4000
                            "name": "image", "shape": [4000, 4000, 3], "dtype": "uint8", "encoding": "jpeg"}])), jpeg]],
        "bad_field": [raw((64, 64, 3), 64 * 64 * 3, extra=(small_mask,)),  # mask 32x32 next to a 64x64 image
                      raw((64, 64, 4), 64 * 64 * 4), raw((64, 64, 3), 64 * 64 * 3 * 2, dtype="float16"),
                      raw((0, 64, 3), 0),
                      [b"frame/intruder", msgpack.packb(header("frame", run="r" * 65, payloads=[{  # a run id too long
                          "name": "image", "shape": [64, 64, 3], "dtype": "uint8"}])), b"\x00" * 64 * 64 * 3]],
        "too_large": [raw((5000, 64, 3), 5000 * 64 * 3)],  # over node.max_side before anything is decoded
        "topic_mismatch": [[b"frame/cam0", *raw((64, 64, 3), 64 * 64 * 3)[1:]]],
    }
    with node_line(tmp_path, frames=30, fps=40, connect_cameras={0: ["intruder"]}) as ln:
        for parts_list in attacks.values():
            for parts in parts_list:
                ln.intruders[0].send(parts)
        msgs = until_eos(ln.sub)
        streamed(ln, msgs, 30)
        r = ln.node.counters.rejected
        wait_until(lambda: sum(r[k] for k in attacks) == sum(len(v) for v in attacks.values()))
        assert {k: r[k] for k in attacks} == {k: len(v) for k, v in attacks.items()}
        assert ln.node.counters.source("intruder")["scored"] == 0


def test_a_bound_cameras_frame_too_large_or_lying_about_its_size_is_charged_to_it(tmp_path):
    """A frame over node.max_side, or whose payload lies about its size, from a camera bound to its connection is that
    camera's `rejected` frame (its frames add up: none unaccounted, none lost), not the node's `bad_messages` alone."""
    with node_line(tmp_path, frames=10, fps=40, connect_cameras={0: ["line2"]}) as ln:
        cam = ln.intruders[0]
        cam.send(frame_parts("line2", seq=0))  # binds the name
        wait_until(lambda: ln.node.counters.source("line2")["scored"] == 1)
        cam.send(frame_parts("line2", seq=1, size=(5000, 64)))  # over the default max_side, 4096
        cam.send([*frame_parts("line2", seq=2)[:2], b"\x00" * 100])  # 64x64x3 announced, 100 bytes sent
        cam.send(frame_parts("line2", seq=3))
        wait_until(lambda: ln.node.counters.source("line2")["scored"] == 2)
        r, line2 = ln.node.counters.rejected, ln.node.counters.source("line2")
        assert (r["too_large"], r["bad_payload"]) == (1, 1)
        assert (line2["rejected"], line2["lost"], line2["received"]) == (2, 0, 2)


def test_out_of_range_sequence_numbers_and_timestamps_are_rejected_and_lost_stays_honest(tmp_path):
    now = time.time()
    with node_line(tmp_path, frames=30, fps=40, connect_cameras={0: ["liar"]}, max_seq_step=100) as ln:
        bad = ln.intruders[0]
        bad.send(frame_parts("liar", seq=5000))  # a camera may join at any number
        bad.send(frame_parts("liar", seq=2**63 - 1))  # the jump that made `lost` 9223372036854775909
        bad.send(frame_parts("liar", seq=-1))
        bad.send(frame_parts("liar", seq=5050))  # a plausible gap: 49 frames, the one numbered -1 in their place
        bad.send(frame_parts("liar", seq=3000))  # back, and not a restart from 0
        bad.send(frame_parts("liar", seq=9_000_000))
        for t in (0.0, 1e300, 4.1e10, now - 3600, now + 3600):
            bad.send(frame_parts("liar", seq=5051, t=t))
        bad.send(frame_parts("liar", seq=5051, stamps={"capture": now, "published": 0.0}))
        bad.send(control_parts("heartbeat", "liar", t_capture=1e12, stamps={}))
        msgs = until_eos(ln.sub)
        streamed(ln, msgs, 30)
        wait_until(lambda: ln.node.counters.source("liar")["scored"] == 2)
        r, liar = ln.node.counters.rejected, ln.node.counters.source("liar")
        assert (r["seq_jump"], r["seq_range"], r["seq_backwards"], r["clock_skew"]) == (2, 1, 1, 7)
        # its `rejected` counts its refused frames: the heartbeat's clock_skew counts under the reason only
        assert liar["lost"] == 48 and liar["received"] == 2 and liar["rejected"] == 10
        # a camera that really restarted its numbering elsewhere is resynchronised, with nothing counted lost
        for i in range(RESYNC_FRAMES):
            bad.send(frame_parts("liar", seq=900_000 + i))
        wait_until(lambda: ln.node.admission.cameras["liar"].seq_resyncs == 1)
        assert ln.node.counters.source("liar")["lost"] == 48
        beat = node_beat(ln.sub)
        assert beat["rejected_seq_jump"] >= 2 and beat["rejected_clock_skew"] == 7


def test_an_old_frame_sent_again_is_no_restart_and_is_not_scored_twice(tmp_path):
    """A frame replayed on the camera's own connection stepped back to a seq <= 1000 and was taken for a restart:
    scored again, an event twice under one seq and t_capture; three in a row resynchronised the camera to the old
    numbering, the third scored again. A restart or a resync is captured after the last frame; an old frame sent
    again is refused (seq_backwards), however many come in a row."""
    t0 = time.time()
    with node_line(tmp_path, frames=10, fps=40, connect_cameras={0: ["line2"]}) as ln:
        cam = ln.intruders[0]
        frames = [frame_parts("line2", seq=seq, t=t0 - 1 + seq * 0.01) for seq in range(30)]  # captured before now
        for parts in frames:
            cam.send(parts)
        wait_until(lambda: ln.node.counters.source("line2")["scored"] == 30)
        for parts in frames[11:15]:  # a camera's buffer sent again after a reconnect
            cam.send(parts)
        cam.send(frame_parts("line2", seq=0, t=time.time()))  # the camera restarted: its numbering from 0
        wait_until(lambda: ln.node.counters.source("line2")["scored"] >= 31)
        assert ln.node.counters.rejected["seq_backwards"] == 4 and ln.node.counters.source("line2")["scored"] == 31
        assert ln.node.admission.cameras["line2"].seq_resyncs == 0
        assert ln.node.admission.cameras["line2"].seq_restarts == 1
        # it crashes and restarts with its clock behind its last frame's: refused, until its first heartbeat
        behind = time.time() - 5
        cam.send(frame_parts("line2", seq=0, t=behind))
        wait_until(lambda: ln.node.counters.rejected["seq_backwards"] == 5)
        cam.send(control_parts("heartbeat", "line2", seq=-1, role="source", state="streaming", counters={}))
        cam.send(frame_parts("line2", seq=0, t=behind + 0.01))
        wait_until(lambda: ln.node.counters.source("line2")["scored"] == 32)
        assert ln.node.admission.cameras["line2"].seq_restarts == 2
        until_eos(ln.sub)


def test_missing_fields_are_rejected_as_missing(tmp_path):
    def without(field, kind="frame"):
        parts = frame_parts("intruder") if kind == "frame" else control_parts(kind, "intruder")
        h = msgpack.unpackb(parts[1])
        if "." in field:
            del h[field.split(".")[0]][field.split(".")[1]]
        else:
            del h[field]
        return [parts[0], msgpack.packb(h), *parts[2:]]

    cases = [without("seq"), without("t_capture"), without("stamps"), without("stamps.capture"), without("v"),
             without("kind"), without("source"), without("payloads"), without("role", "heartbeat"),
             without("frames", "eos")]
    with node_line(tmp_path, frames=30, fps=40, connect_cameras={0: ["intruder"]}) as ln:
        for parts in cases:
            ln.intruders[0].send(parts)
        msgs = until_eos(ln.sub)
        streamed(ln, msgs, 30)
        wait_until(lambda: ln.node.counters.rejected["missing_field"] == len(cases))
        assert ln.node.counters.source("intruder")["scored"] == 0


def test_a_camera_flooding_heartbeats_is_not_forwarded_beyond_its_rate(tmp_path):
    flood = 2000
    with node_line(tmp_path, frames=30, fps=40, connect_cameras={0: ["intruder"]}) as ln:
        start = time.monotonic()
        for _ in range(flood):
            ln.intruders[0].send(control_parts("heartbeat", "intruder", role="source", state="streaming"))
        ln.intruders[0].send([b"heartbeat/intruder", b"\xc1"])  # malformed: once it is refused, the flood is read
        msgs = until_eos(ln.sub)
        wait_until(lambda: ln.node.counters.rejected["malformed"] == 1)
        elapsed = time.monotonic() - start
        streamed(ln, msgs, 30)
        allowed = HEARTBEAT_BURST + HEARTBEAT_RATE * elapsed  # what the bucket lets through in that time
        forwarded = sum(m.kind == "heartbeat" and m.source == "intruder" for m in msgs)
        assert 1 <= forwarded <= allowed < flood / 2, (forwarded, elapsed)
        assert ln.node.counters.rejected["heartbeat_rate"] >= flood - allowed  # the rest refused and counted


def test_thousands_of_camera_names_are_refused_and_the_node_does_not_grow(tmp_path):
    names = 5000
    with node_line(tmp_path, frames=60, fps=30, dynamic_cameras=True, max_dynamic_cameras=4) as ln:
        rss = psutil.Process().memory_info().rss
        bad = ln.intruders[0]
        for i in range(names):
            bad.send(frame_parts(f"fake{i:05d}", size=(32, 32)))
            if i % 500 == 0:
                time.sleep(0.01)
        msgs = until_eos(ln.sub, timeout=30)
        streamed(ln, msgs, 60)
        r = ln.node.counters.rejected
        wait_until(lambda: r["camera_limit"] + ln.node.admission.dynamic_count >= names - 100, timeout=20)
        assert ln.node.admission.dynamic_count == 4 and len(ln.node.admission.cameras) == 5
        assert len(ln.node.counters.snapshot()["sources"]) <= 5 and len(ln.node.detectors) <= 5
        grown = (psutil.Process().memory_info().rss - rss) / 2**20
        assert grown < 50, f"the process grew {grown:.0f} MB"
        assert node_beat(ln.sub)["cameras"] == 5


def test_oversize_frames_are_downscaled_or_rejected_and_never_stall_the_others(tmp_path):
    """A 3000x3000 frame over max_frame_pixels is scored downscaled (its result at the frame's size), or
    rejected before decoding; either way cam0's results keep their pace."""
    delay = 0.02  # per 64x64 frame; the fake detector's cost grows with the pixels (median, std)
    big = np.random.default_rng(0).integers(0, 255, (3000, 3000, 3), dtype=np.uint8)
    for policy in ("downscale", "reject"):
        with node_line(tmp_path, frames=40, fps=20, connect_cameras={0: ["big"]}, max_frame_pixels=128 * 128,
                       oversize=policy, attach_image="always", factory=lambda s: FastDetector(delay=delay)) as ln:
            got: list = []
            sent = False
            deadline = time.monotonic() + 30
            while not any(m.kind == "eos" and m.source == "cam0" for m in got):
                assert time.monotonic() < deadline, "no end of stream from cam0"
                if (m := ln.sub.recv(20)) is not None:
                    got.append(m)
                if not sent and len(scored(got)) == 5:  # mid-stream
                    ln.intruders[0].send(frame_parts("big", image=big))
                    sent = True
            deadline = time.monotonic() + 10
            while policy == "downscale" and not any(m.kind == "anomaly" and m.source == "big" for m in got):
                assert time.monotonic() < deadline, "no result for the big frame"  # it may come after cam0's end
                if (m := ln.sub.recv(20)) is not None:
                    got.append(m)
            streamed(ln, got, 40)
            # cam0 waits for one 128x128 frame's scoring at most, never a 3000x3000 one: the work shapes below say so
            # (no wall-clock bound: on a loaded machine any bound is a guess)
            big_results = [m for m in got if m.kind == "anomaly" and m.source == "big"]
            if policy == "downscale":
                wait_until(lambda: ln.node.counters.source("big")["downscaled"] == 1)
                assert list(ln.node.frame_sizes["big"]) == [(128, 128)]
                shapes = [(m.arrays["map"].shape, m.arrays["image"].shape) for m in big_results]
                assert shapes == [((3000, 3000), (3000, 3000, 3))]  # published at the frame's own size
            else:
                wait_until(lambda: ln.node.counters.rejected["oversize"] == 1)
                assert not big_results and "big" not in ln.node.detectors


@pytest.mark.parametrize("graph_per_size", [False, True])
def test_a_downscaled_frame_stays_within_max_frame_pixels_and_is_counted_once(tmp_path, graph_per_size):
    """A 4096x32 frame cannot be brought under max_frame_pixels with its short side at min_side: refused, not
    scored at several times the limit. A frame of another aspect is scored by the same model at its own size; on a
    scorer that builds a graph per size (onnxruntime, tensorrt) a new size that soon is refused, and counted as
    refused only, not also as downscaled."""
    rng = np.random.default_rng(0)
    narrow, square, wide = (rng.integers(0, 255, shape, dtype=np.uint8) for shape in
                            ((32, 4096, 3), (1024, 1024, 3), (512, 1024, 3)))
    with node_line(tmp_path, frames=10, fps=20, connect_cameras={0: ["big"]}, max_frame_pixels=128 * 128,
                   oversize="downscale") as ln:
        ln.node._graph_per_size = graph_per_size  # what the node sets from an exported scorer (FastDetector has none)
        for seq, image in enumerate((narrow, square, wide)):
            ln.intruders[0].send(frame_parts("big", seq=seq, image=image))
        until_eos(ln.sub)
        c = ln.node.counters
        if graph_per_size:
            wait_until(lambda: ln.node.counters.rejected["shape_change"] == 1)
            assert c.source("big")["scored"] == c.source("big")["downscaled"] == 1
            assert list(ln.node.frame_sizes["big"]) == [(128, 128)]
        else:
            wait_until(lambda: ln.node.counters.source("big")["scored"] == 2)
            assert c.source("big")["downscaled"] == 2 and c.rejected["shape_change"] == 0
            assert list(ln.node.frame_sizes["big"]) == [(128, 128), (90, 181)]  # one model, its last sizes
        assert c.rejected["oversize"] == 1


@pytest.mark.parametrize("graph_per_size", [False, True])
def test_a_larger_frame_is_scored_at_the_most_pixels_left_or_at_a_size_the_scorer_holds(tmp_path, graph_per_size):
    """A 1024x1024 frame after 64x64 ones, 128x128 pixels allowed: the torch scorer builds no graph per size, so it
    scores the frame at 128x128 (it was scored at the last size, 64x64); an exported scorer at the 64x64 it holds a
    graph for (no graph to build)."""
    rng = np.random.default_rng(0)
    small, large = (rng.integers(0, 255, (side, side, 3), dtype=np.uint8) for side in (64, 1024))
    with node_line(tmp_path, frames=10, fps=20, connect_cameras={0: ["big"]}, max_frame_pixels=128 * 128,
                   oversize="downscale") as ln:
        ln.node._graph_per_size = graph_per_size
        for seq, image in enumerate((small, large)):
            ln.intruders[0].send(frame_parts("big", seq=seq, image=image))
        until_eos(ln.sub)
        wait_until(lambda: ln.node.counters.source("big")["scored"] == 2)
        assert list(ln.node.frame_sizes["big"]) == ([(64, 64)] if graph_per_size else [(64, 64), (128, 128)])


def test_memory_budget_bounds_waiting_frames_and_refuses_models_that_do_not_fit(tmp_path, monkeypatch):
    from pipeline import admission

    monkeypatch.setattr(admission, "MODEL_MB", 4.0)  # small stand-ins for the real detector's estimates
    monkeypatch.setattr(admission, "WORK_FIXED_MB", 0.0)
    monkeypatch.setattr(admission, "WORK_BYTES_PER_PIXEL", 100.0)
    # 8 MB: the configured cam0's model is reserved, so a dynamic camera "flood" (1024x1024 frames, 3 MB
    # each, sent faster than they are scored) gets no model and its backlog is trimmed to its newest
    # frame, while cam0 (64x64 frames, 0.4 MB of work) keeps being scored, whoever came first
    with node_line(tmp_path, frames=20, fps=40, dynamic_cameras=True, memory_budget_mb=8, max_frame_pixels=1024 * 1024,
                   ssdnet={"memory": {"size_mb": 0}}, factory=lambda s: FastDetector(delay=0.05)) as ln:
        for seq in range(12):
            ln.intruders[0].send(frame_parts("flood", seq=seq, size=(1024, 1024)))
        msgs = until_eos(ln.sub)
        streamed(ln, msgs, 20)
        flood = ln.node.counters.source("flood")
        wait_until(lambda: ln.node.counters.source("flood")["received"] == 12)
        wait_until(lambda: ln.node.pending.waiting().get("flood", 0) == 0)
        flood = ln.node.counters.source("flood")
        assert flood["scored"] == 0 and flood["rejected"] == 12 == ln.node.counters.rejected["memory_budget"]
        assert "flood" not in ln.node.detectors
        assert ln.node.counters.source("cam0")["rejected"] == 0  # the flooding camera pays, not cam0
        assert ln.node.pending.total_bytes < 8 * 2**20


def test_a_flood_of_connections_does_not_stop_scoring(tmp_path):
    ctx = zmq.Context()
    flood: list[zmq.Socket] = []
    try:
        with node_line(tmp_path, frames=40, fps=30, ctx=ctx, event_log=tmp_path / "ev.db") as ln:
            replay = ln.node.replay_endpoint
            for i in range(300):
                s = make_socket(ctx, zmq.SUB if i % 2 else zmq.DEALER, rcvhwm=1)
                s.setsockopt(zmq.LINGER, 0)
                s.connect(ln.endpoint if i % 2 else replay)
                if i % 2:
                    s.setsockopt(zmq.SUBSCRIBE, f"x{i}".encode())  # thousands of subscriptions cost the node nothing
                else:
                    s.send_multipart([b"", b"\xc1" * 100])  # a garbage replay request
                flood.append(s)
            msgs = until_eos(ln.sub, timeout=30)
            streamed(ln, msgs, 40)
    finally:
        for s in flood:
            s.close(0)
        ctx.destroy(linger=0)


def test_a_subscription_flood_resets_the_result_socket_and_the_honest_subscriber_keeps_its_stream(tmp_path):
    """Distinct topics past node.max_subscriptions drop every subscriber (ZeroMQ would hold them all); the
    line's own subscriber reconnects and gets the rest of the stream, and the reset is counted."""
    with node_line(tmp_path, frames=60, fps=20, max_subscriptions=20) as ln:
        flood = make_socket(ln.ctx, zmq.XSUB, sndhwm=0)
        try:
            flood.connect(ln.endpoint)
            for i in range(200):
                flood.send(b"\x01anomaly/cam%05d" % i)
            wait_until(lambda: ln.node.publisher.resets >= 1)
            msgs = until_eos(ln.sub)
        finally:
            flood.close(0)
        beats = [m.header.counters for m in msgs if m.kind == "heartbeat" and m.source == ln.node.cfg.name]
        assert beats and beats[-1]["subscription_resets"] >= 1
        after = [seq for seq in scored(msgs) if seq > 0]
        assert after and max(after) == 59  # scored after the reset, to the camera's last frame


def test_a_subscription_flood_resets_a_cameras_socket_and_the_node_keeps_reading(tmp_path):
    # a context of its own, not the process's shared one (`zmq.Context.instance()`, the camera's default): in three
    # CI runs its socket, closed by the reset, still held the port 10 s on, the shared context's I/O thread blocked
    # by an earlier test's socket that outlived its gate (fixed in pipeline.gate; docs/protocol.md section 6)
    cam_ctx = zmq.Context()
    cam = Camera(SyntheticSourceConfig(kind="synthetic", name="cam0", size=32, frames=40, fps=20, textures=("grass",),
                                       heartbeat_s=0.05, max_subscriptions=5,
                                       bind=f"tcp://127.0.0.1:{port_below_ephemeral()}"), ctx=cam_ctx)
    ctx, stop, ready = zmq.Context(), threading.Event(), []
    runner = threading.Thread(target=cam.run, args=(stop, ready.append), daemon=True)
    runner.start()
    wait_until(lambda: ready)
    node, flood = Subscriber(ready[0], (b"frame/", b"eos/"), ctx=ctx), make_socket(ctx, zmq.XSUB, sndhwm=0)
    try:
        flood.connect(ready[0])
        for i in range(20):
            flood.send(b"\x01frame/cam%05d" % i)
        msgs = until_eos(node)
    finally:
        stop.set()
        runner.join(5)
        node.close()
        flood.close(0)
        ctx.term()
        cam_ctx.destroy(linger=0)
    eos = msgs[-1].header
    assert eos.counters["subscription_resets"] >= 1 and eos.frames == 40
    assert [m.header.seq for m in msgs if m.kind == "frame"][-1] == 39  # frames came after the reset, to the last


def test_an_end_of_stream_with_the_most_counters_a_camera_may_send_is_forwarded_within_the_limit(tmp_path):
    with node_line(tmp_path, frames=20, fps=40, connect_cameras={0: ["intruder"]}) as ln:
        bad = ln.intruders[0]
        bad.send(frame_parts("intruder", seq=0))
        wait_until(lambda: ln.node.counters.source("intruder")["scored"] == 1)
        theirs = {f"c{i}": i for i in range(P.MAX_COUNTERS)}  # the protocol's limit, no room left for the node's
        bad.send(control_parts("eos", "intruder", seq=0, frames=1, counters=theirs))
        msgs = until_eos(ln.sub, sources=("cam0", "intruder"))  # decoded by the subscriber: within the limit
        eos = next(m for m in msgs if m.kind == "eos" and m.source == "intruder").header.counters
        assert len(eos) == P.MAX_COUNTERS and eos["scored"] == 1  # the node's counters kept, the camera's trimmed
        assert sum(name in eos for name in theirs) == P.MAX_COUNTERS - len(ln.node.counters.NAMES)


def test_credit_grants_go_to_their_camera_connection_only(tmp_path):
    """A grant names its camera and its progress: another camera connection must never hear it."""
    with node_line(tmp_path, frames=20, fps=40, intruders=2, connect_cameras={0: ["a"], 1: ["b"]}) as ln:
        for peer, name in zip(ln.intruders, ("a", "b"), strict=True):
            peer.send(control_parts("heartbeat", name, seq=-1, role="source", state="waiting",
                                    counters={CREDIT_COUNTER: -1}))  # a credit camera waiting for its first frame
        heard: dict[str, set] = {"a": set(), "b": set()}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(heard.values()):
            for peer, name in zip(ln.intruders, ("a", "b"), strict=True):
                while peer.sock.poll(10):
                    if (grant := decode_grant(peer.sock.recv())) is not None:
                        heard[name].add(grant[0])
        until_eos(ln.sub)
        assert heard == {"a": {"a"}, "b": {"b"}}


def test_a_jpeg_is_decoded_at_its_cameras_turn_never_when_a_newer_frame_replaced_it(tmp_path, monkeypatch):
    """A camera sending jpegs faster than they are scored: only the frames the node scores are decoded (on a line
    where one camera's costly files decoded on arrival took the node's input from the others); a file whose header
    checks out but whose data does not decode is refused then (bad_payload), and the next frame is scored."""
    decoded = []
    decode_file = P._decode_file
    monkeypatch.setattr(P, "_decode_file", lambda desc, data: decoded.append(desc.name) or decode_file(desc, data))
    image = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    dht = jpeg.index(b"\xff\xc4")  # a Huffman table of a class that does not exist: size and scans check out
    broken = jpeg[:dht + 4] + b"\x7f" + jpeg[dht + 5:]
    with node_line(tmp_path, frames=10, fps=20, connect_cameras={0: ["burst"]}, queue_depth=1,
                   factory=lambda s: FastDetector(delay=0.1)) as ln:
        for seq in range(40):
            ln.intruders[0].send(frame_parts("burst", seq=seq, size=(256, 256), jpeg=jpeg))
        wait_until(lambda: ln.node.counters.source("burst")["received"] == 40)
        wait_until(lambda: sum(ln.node.counters.source("burst")[k] for k in ("scored", "conflated")) == 40)
        burst = ln.node.counters.source("burst")
        assert burst["conflated"] >= 20
        wait_until(lambda: len(decoded) == ln.node.counters.source("burst")["scored"])
        ln.intruders[0].send(frame_parts("burst", seq=40, size=(256, 256), jpeg=broken))
        wait_until(lambda: ln.node.counters.rejected["bad_payload"] == 1)
        ln.intruders[0].send(frame_parts("burst", seq=41, size=(256, 256), jpeg=jpeg))
        wait_until(lambda: ln.node.counters.source("burst")["scored"] == burst["scored"] + 1)
        until_eos(ln.sub)
        assert ln.node.counters.bad_messages == 1


def test_an_end_of_stream_claims_no_more_frames_than_its_camera_stands_at_plus_the_token_bucket():
    """An outside client's audit: a camera's end of stream with no frame seen in its stream was taken with any
    `frames` (10^18: the summary's `sent` said so). It is judged from where the camera stands: its last frame, else
    its heartbeat's seq (its last frame sent: a camera the node heard after a restart), else a numbering from 0, a
    gap within the token bucket (node.max_seq_step). A camera's first position is not bounded (a heartbeat numbered
    10^18 - 1 first is taken, the test's 5000 shows it): CURVE is what keeps a peer from forging it."""
    node = EdgeNode(NodeConfig(max_seq_step=100), ["tcp://127.0.0.1:1"], FastDetector, input_names=["cam0"])

    def send(*messages):
        return [node._on_input([zmq.Frame(p) for p in parts], node.peers[0]) for parts in messages]

    def eos(seq, **fields):
        return control_parts("eos", "cam0", seq=seq, frames=seq + 1, **fields)

    assert send(eos(10**18 - 1), eos(101, run="r1"), eos(2**63 - 2, run="r2")) == [None] * 3
    assert node.counters.rejected["eos_inconsistent"] == 3
    assert send(eos(100)) == ["eos"]  # 101 frames, none heard: 100 never came, within the bucket
    assert send(control_parts("heartbeat", "cam0", seq=5000, state="streaming"), eos(5001)) == ["heartbeat", "eos"]
    assert send(control_parts("heartbeat", "cam0", seq=-1, state="waiting"), eos(5001)) == ["heartbeat", None]
    assert node.counters.rejected["eos_inconsistent"] == 4
    ends = [m.header.frames for m in iter(lambda: node.pending.take(0.01), None) if m.kind == "eos"]
    assert ends == [101, 5002]


def test_old_frames_are_not_scored_again_under_another_run_id():
    """An outside client's audit: a peer that may speak for a camera (no CURVE) had a run's frames scored again by
    sending them anew under another run id (a new run starts the camera's numbering and clock afresh), and a camera
    that names no run by a heartbeat behind its last frame. A run the camera had before is refused (`run_replayed`),
    and a camera starts again at most RESTART_BURST times at once, then RESTART_RATE a second (`restart_rate`)."""
    node = EdgeNode(NodeConfig(), ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"], FastDetector,
                    input_names=["cam0", "old"])
    t0 = time.time() - 10

    def send(source: str, *messages):
        peer = node.peers[0 if source == "cam0" else 1]
        return [node._on_input([zmq.Frame(p) for p in parts], peer) for parts in messages]

    recorded = [frame_parts("cam0", seq=seq, t=t0 + seq, run="a") for seq in range(3)]
    send("cam0", *recorded)
    send("cam0", frame_parts("cam0", seq=0, t=t0 + 5, run="b"))  # the camera started again
    send("cam0", *recorded)  # run a's frames sent again as they were
    assert node.counters.rejected["run_replayed"] == 3
    for i in range(RESTART_BURST + 2):  # ... and under run ids of their own
        send("cam0", *(frame_parts("cam0", seq=seq, t=t0 + seq, run=f"forged{i}") for seq in range(3)))
    assert node.counters.rejected["restart_rate"] == 3 * 4  # runs a and b took a restart each
    assert node.counters.source("cam0")["received"] == 3 + 1 + 3 * (RESTART_BURST - 2)
    # a camera that names no run: a heartbeat behind its last frame starts it again, as often as the rate allows
    send("old", *(frame_parts("old", seq=seq, t=t0 + seq) for seq in range(3)))
    for _ in range(RESTART_BURST + 2):
        send("old", control_parts("heartbeat", "old", seq=-1), *(frame_parts("old", seq=seq, t=t0 + seq)
                                                                 for seq in range(3)))
    assert node.counters.rejected["restart_rate"] == 3 * 4 + 2  # the heartbeats; the frames are old ones sent again
    assert node.admission.cameras["old"].seq_restarts == RESTART_BURST
