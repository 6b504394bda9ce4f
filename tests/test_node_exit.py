"""The node stage's process ends right after it is stopped: its last results must still go out as they were made
(the twin of tests/test_camera_exit.py)."""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import time

import pytest
import zmq

from adversary import Intruder, control_parts, frame_parts
from pipeline import protocol as P
from pipeline.config import NodeConfig

FRAMES = 4


def _node_with_small_buffers(connect: str, stop, reports) -> None:
    """run_node (spawned, as `ssdnet run` runs it) whose results socket gets a small kernel buffer: ZeroMQ holds a
    slow subscriber's results in the node's own memory until it reads them."""
    from pipeline.node import run_node
    from test_camera_exit import small_send_buffers
    from test_pipeline_node import FastDetector

    small_send_buffers()
    cfg = NodeConfig(bind="tcp://127.0.0.1:*", connect=(connect,), connect_cameras={connect: ("cam0",)},
                     queue_depth=FRAMES, heartbeat_s=0.2)
    run_node(cfg, [], stop, on_ready=lambda endpoint: reports.put(("ready", endpoint)), detector_factory=FastDetector,
             wait_for_subscriber_s=30)
    reports.put(("done", None))


def _subscriber(ctx: zmq.Context, endpoint: str, small: bool) -> zmq.Socket:
    """Subscribed to results and ends of stream, and to heartbeats until one has come (then it is connected)."""
    sub = ctx.socket(zmq.SUB)
    if small:
        sub.setsockopt(zmq.RCVBUF, 4096)
        sub.setsockopt(zmq.RCVHWM, 1)
    for topic in (b"anomaly/", b"eos/", b"heartbeat/"):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(endpoint)
    assert sub.poll(30_000), "no heartbeat from the node"
    sub.recv_multipart()
    sub.setsockopt(zmq.UNSUBSCRIBE, b"heartbeat/")
    return sub


def _maps(sub: zmq.Socket) -> tuple[dict[int, str], bool]:
    """Each result's map (a hash) by frame number, and whether the end of stream came, reading until it does."""
    maps, ended = {}, False
    while not ended and sub.poll(10_000):
        msg = P.decode(sub.recv_multipart(copy=False))
        if msg.kind == "anomaly":
            maps[msg.header.seq] = hashlib.sha1(P.anomaly_map(msg).tobytes()).hexdigest()
        ended = msg.kind == "eos"
    return maps, ended


@pytest.mark.slow
def test_a_node_process_that_exits_when_stopped_sends_a_slow_subscribers_last_results_intact():
    """Results go out zero-copy from the node's own context, which run_node terminates before it returns: a
    subscriber reading a moment late still gets the results queued for it, whole, within the linger (with the results
    socket closed at linger 0 it gets the first only, no end of stream)."""
    ctx = zmq.Context()
    camera = Intruder(ctx)
    spawn = mp.get_context("spawn")
    stop, reports = spawn.Event(), spawn.Queue()
    proc = spawn.Process(target=_node_with_small_buffers, args=(camera.endpoint, stop, reports), daemon=True)
    proc.start()
    try:
        kind, endpoint = reports.get(timeout=60)
        assert kind == "ready"
        slow, fast = _subscriber(ctx, endpoint, small=True), _subscriber(ctx, endpoint, small=False)
        camera.wait_for_node(30)
        for seq in range(FRAMES):
            camera.send(frame_parts("cam0", seq, size=(256, 256)))
        camera.send(control_parts("eos", "cam0", FRAMES - 1))
        want, ended = _maps(fast)
        assert ended and sorted(want) == list(range(FRAMES)), f"the node scored {sorted(want)}"
        stop.set()  # the node stops with the slow subscriber's results still queued
        time.sleep(0.3)  # the subscriber reads them a moment late (< the linger), as the node's process exits
        got, ended = _maps(slow)
        assert reports.get(timeout=30) == ("done", None)
        proc.join(30)
        assert proc.exitcode == 0
        assert ended, f"no end of stream; results {sorted(got)}"
        assert got == want, "results differ from those sent: " + ", ".join(
            f"#{s} {'missing' if s not in got else 'changed'}" for s in range(FRAMES) if got.get(s) != want[s])
    finally:
        stop.set()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
        camera.close()
        ctx.destroy(linger=0)
