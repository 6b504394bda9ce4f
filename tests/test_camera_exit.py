"""A camera stage's process ends right after its end of stream: its last frames must still go out as they were read."""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import time

import pytest
import zmq

from pipeline import protocol as P
from pipeline.config import SyntheticSourceConfig
from pipeline.sources import SyntheticReader

FRAMES = 3


def small_send_buffers() -> None:
    """Every socket this process makes from here on gets a small kernel send buffer: ZeroMQ holds what a slow reader
    has not taken in the process's own memory (in a spawned stage: its whole life)."""
    import pipeline.transport as T

    make = T.make_socket

    def small(*args, **kwargs):
        sock = make(*args, **kwargs)
        sock.setsockopt(zmq.SNDBUF, 4096)
        return sock

    T.make_socket = small


def _camera_with_small_buffers(cfg, stop, reports) -> None:
    """run_camera (spawned, as `ssdnet run` runs it) whose sockets get small kernel buffers: ZeroMQ holds most of a
    frame in the camera's own memory until the node reads it, as when the node's I/O thread is starved."""
    from pipeline.sources import run_camera

    small_send_buffers()
    reports.put(("done", run_camera(cfg, stop, on_ready=lambda endpoint: reports.put(("ready", endpoint)))))


@pytest.mark.slow
def test_a_camera_process_that_exits_after_its_end_of_stream_sends_its_last_frames_intact():
    """Frames go out zero-copy: before the stage terminated its context, pyzmq's atexit dropped the arrays ZeroMQ
    was still sending from, and a node reading a moment late got the camera's last frames as freed memory: whole
    frames of zeros (`blank`), or none at all."""
    cfg = SyntheticSourceConfig(name="grass", kind="synthetic", textures=["grass"], size=256, defect_prob=0.25,
                                seed=2, frames=FRAMES, wait_for_consumer_s=30)
    reader = SyntheticReader(cfg)
    want = [hashlib.sha1(reader.read().image.tobytes()).hexdigest() for _ in range(FRAMES)]
    ctx = mp.get_context("spawn")
    stop, reports = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_camera_with_small_buffers, args=(cfg, stop, reports), daemon=True)
    proc.start()
    sub = zmq.Context.instance().socket(zmq.SUB)
    try:
        kind, endpoint = reports.get(timeout=60)
        assert kind == "ready"
        sub.setsockopt(zmq.RCVBUF, 4096)
        sub.setsockopt(zmq.RCVHWM, 1)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(endpoint)
        time.sleep(0.4)  # the camera streams its frames, ends and exits meanwhile: a node a moment late (< the linger)
        got, ended = {}, False
        while not ended and sub.poll(5000):
            msg = P.decode(sub.recv_multipart(copy=False))
            if msg.kind == "frame":
                got[msg.header.seq] = hashlib.sha1(msg.arrays["image"].tobytes()).hexdigest()
            ended = msg.kind == "eos"
        proc.join(10)
        assert ended, f"no end of stream; frames {sorted(got)}"
        assert got == dict(enumerate(want)), "frames differ from those read: " + ", ".join(
            f"#{s} {'missing' if s not in got else 'changed'}" for s in range(FRAMES) if got.get(s) != want[s])
        assert proc.exitcode == 0
    finally:
        sub.close(0)
        stop.set()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
