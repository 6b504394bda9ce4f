"""A camera's frame socket admits at most `sources[].max_peers` connections (pipeline.gate): the rest are refused at
their handshake and counted (`refused_peers`), so a peer that is not the line's node cannot hold the camera's memory,
take frames of a PUSH camera or lift a credit camera's pacing."""
from __future__ import annotations

import threading
import time

import msgpack
import pytest
import zmq

from pipeline import protocol as P
from pipeline.config import SyntheticSourceConfig
from pipeline.flow import CREDIT_PREFIX
from pipeline.sources import Camera
from test_pipeline_node import FastDetector, collect, line, results, subscriber, wait_until

REFUSED = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


def hostile(ctx: zmq.Context, kind: int, endpoint: str) -> zmq.Socket:
    """A peer that connects to a camera and never reads; an XSUB one subscribes and grants itself all the credit."""
    sock = ctx.socket(kind)
    sock.linger = 0
    if kind == zmq.SUB:
        sock.subscribe(b"")
    refused = sock.get_monitor_socket(REFUSED)
    sock.connect(endpoint)
    deadline = time.monotonic() + 5
    # an XSUB drops what it sends before it is connected: again until it hears the camera (admitted, subscribed, its
    # grant through) or is refused
    while kind == zmq.XSUB and not (sock.poll(0) or refused.poll(0)):
        assert time.monotonic() < deadline, "neither admitted nor refused in 5 s"
        sock.send(b"\x01")
        sock.send(CREDIT_PREFIX + msgpack.packb({"source": "cam0", "upto": 2**62, "node": "x"}))
        zmq.select([sock, refused], [], [], 0.05)
    sock.disable_monitor()
    refused.close()
    return sock


def beat_refusals(sub) -> int | None:
    msg = sub.recv(100)
    ours = msg is not None and msg.kind == "heartbeat" and msg.source == "cam0"
    return msg.header.counters["refused_peers"] if ours else None


def test_a_camera_with_a_bound_of_one_refuses_a_second_peer_and_counts_it(tmp_path):
    """The node holds the one slot: peers after it get nothing, are counted in the camera's heartbeats, which the
    node forwards, and in its end of stream."""
    gate = threading.Event()
    with line(tmp_path, frames=20, fps=None, gate=gate, flow="credit", source_kw={"max_peers": 1}) as ln:
        sub = subscriber(ln)
        wait_until(lambda: ln.cameras[0].peers.peers == 1)  # the node, connected once it has a subscriber
        extra = [hostile(ln.ctx, zmq.SUB, ln.camera_endpoints[0]) for _ in range(3)]
        wait_until(lambda: (beat_refusals(sub) or 0) >= 3)
        assert ln.cameras[0].peers.peers == 1
        gate.set()
        msgs = collect(sub)
        assert len(results(msgs)) == 20  # the node, admitted first, got every frame
        assert all(not s.poll(0) for s in extra)  # refused: sent nothing
        eos = next(m for m in msgs if m.kind == "eos")
        assert eos.header.counters["refused_peers"] >= 3
        for s in (sub, *extra):
            s.close()


@pytest.mark.parametrize("pattern, kind", [("push", zmq.PULL), ("pub", zmq.XSUB)], ids=["push-takes", "credit-grant"])
def test_the_node_scores_every_frame_while_hostile_peers_are_refused(tmp_path, pattern, kind):
    """Before the bound, PULL peers that never read took a PUSH camera's frames in turn (each up to sndhwm and its
    TCP buffers: `lost` at the node), and one XSUB peer's grant lifted a credit camera's pacing (it sent at once,
    the node kept the newest: `conflated`)."""
    gate, frames = threading.Event(), 30
    push = pattern == "push"
    with line(tmp_path, frames=frames, fps=50 if push else None, gate=gate, pattern=pattern,
              flow="none" if push else "credit", factory=lambda s: FastDetector(delay=0.01),
              queue_depth=64 if push else 1, source_kw={"max_peers": 1}) as ln:
        sub = subscriber(ln)
        wait_until(lambda: ln.cameras[0].peers.peers == 1)
        extra = [hostile(ln.ctx, kind, ln.camera_endpoints[0]) for _ in range(3)]
        wait_until(lambda: ln.cameras[0].peers.refused >= 3)
        gate.set()
        collect(sub, timeout=20)
        counts = ln.node.counters.source("cam0")
        assert (counts["scored"], counts["lost"], counts["conflated"]) == (frames, 0, 0)
        for s in (sub, *extra):
            s.close()


def test_a_freed_peer_slot_is_used_again():
    """A peer that leaves frees its slot: the next one is admitted and gets frames, and nothing more is refused."""
    ctx, stop = zmq.Context(), threading.Event()
    cfg = SyntheticSourceConfig(kind="synthetic", name="cam0", size=32, fps=50, textures=("grass",), max_peers=1,
                                heartbeat_s=0.05)
    cam, ready = Camera(cfg, None, ctx), []
    thread = threading.Thread(target=cam.run, args=(stop, ready.append), daemon=True)
    thread.start()
    try:
        wait_until(lambda: ready)
        first = hostile(ctx, zmq.SUB, ready[0])
        assert first.poll(5000)  # admitted: frames and heartbeats
        second = hostile(ctx, zmq.SUB, ready[0])
        wait_until(lambda: cam.peers.refused == 1)
        assert not second.poll(300)
        second.close()
        first.close()
        wait_until(lambda: cam.peers.peers == 0)
        late = hostile(ctx, zmq.SUB, ready[0])
        assert late.poll(5000)
        assert P.decode(late.recv_multipart()).source == "cam0"
        assert cam.peers.refused == 1 and cam.peers.peers == 1
        late.close()
    finally:
        stop.set()
        thread.join(5)
        ctx.destroy(linger=0)


def test_a_node_locked_out_by_peers_that_came_first_gets_in_once_they_leave(tmp_path, monkeypatch):
    """Peers that take a camera's slots before the node connects lock it out (ZeroMQ does not retry a refused
    socket); the node connects afresh after hearing nothing (SILENT_RECONNECT_S) and gets the frames once a slot is
    free."""
    monkeypatch.setattr("pipeline.node.SILENT_RECONNECT_S", 1.0)
    gate = threading.Event()
    with line(tmp_path, frames=10, fps=None, gate=gate, flow="credit", source_kw={"max_peers": 1}) as ln:
        squatter = hostile(ln.ctx, zmq.SUB, ln.camera_endpoints[0])
        wait_until(lambda: ln.cameras[0].peers.peers == 1)
        sub = subscriber(ln)  # the node connects to the camera now, and is refused
        wait_until(lambda: ln.cameras[0].peers.refused >= 1)
        squatter.close()
        wait_until(lambda: ln.node.input_reconnects >= 1 and ln.cameras[0].peers.peers == 1, timeout=15)
        gate.set()
        assert len(results(collect(sub, timeout=20))) == 10
        sub.close()
