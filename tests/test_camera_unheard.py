"""A camera's frames published while no node subscribed: counted `unheard`, said in its log, shown in the summary."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import zmq

from pipeline import protocol as P
from pipeline.config import SyntheticSourceConfig
from pipeline.sources import Camera, Capture
from pipeline.stats import SOURCE_COUNTERS, StreamStats
from pipeline.transport import Publisher, make_socket
from test_pipeline_node import wait_until


class GatedReader:
    """Gives one frame per `let(n)` token; ends the stream once `done` is set and no token is left."""

    def __init__(self):
        self.tokens, self.done = threading.Semaphore(0), threading.Event()

    def let(self, n: int = 1) -> None:
        self.tokens.release(n)

    def open(self) -> None:
        pass

    def read(self) -> Capture | None:
        while not self.tokens.acquire(timeout=0.02):
            if self.done.is_set():
                return None
        return Capture(np.zeros((32, 32, 3), np.uint8), None, time.time())

    def close(self) -> None:
        pass


def subscriber(ctx: zmq.Context, endpoint: str) -> zmq.Socket:
    sock = make_socket(ctx, zmq.SUB)
    sock.connect(endpoint)
    sock.subscribe(b"")
    return sock


def next_of(sock: zmq.Socket, kind: str, timeout: float = 5.0) -> P.Message:
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"no {kind}"
        if sock.poll(50) and (m := P.decode(sock.recv_multipart())).kind == kind:
            return m


def sent_after(cam: Camera, reader: GatedReader, n: int = 1) -> None:
    """Let `n` more frames through and wait until the camera has sent them."""
    target = cam.counters["sent"] + n
    reader.let(n)
    wait_until(lambda: cam.counters["sent"] == target, timeout=5)


@contextmanager
def streaming_at_once(caplog) -> Iterator[tuple[Camera, GatedReader, str, zmq.Context, threading.Thread]]:
    """A camera that streams at once (`wait_for_consumer_s: 0`) the frames its reader lets through: the camera, the
    reader, its endpoint, its context and its thread; stopped, and its thread ended, after."""
    caplog.set_level(logging.INFO, logger="pipeline.sources")
    ctx, stop, ready, reader = zmq.Context(), threading.Event(), [], GatedReader()
    cam = Camera(SyntheticSourceConfig(kind="synthetic", name="cam0", size=32, heartbeat_s=0.05,
                                       wait_for_consumer_s=0), reader, ctx)
    thread = threading.Thread(target=cam.run, args=(stop, ready.append), daemon=True)
    thread.start()
    try:
        wait_until(lambda: bool(ready), timeout=5)
        yield cam, reader, ready[0], ctx, thread
    finally:
        stop.set()
        thread.join(timeout=5)
        ctx.destroy(linger=0)
    assert not thread.is_alive()


def test_frames_without_a_subscriber_are_unheard_until_one_connects_and_again_once_it_leaves(caplog):
    with streaming_at_once(caplog) as (cam, reader, endpoint, ctx, _):
        sent_after(cam, reader, 3)  # nobody listens: ZeroMQ drops them
        assert cam.counters["unheard"] == 3
        assert "cam0: no node connected: frames are lost until one connects" in caplog.text

        sub = subscriber(ctx, endpoint)
        next_of(sub, "heartbeat")  # subscribed: the camera takes it in before its next frame
        sent_after(cam, reader, 2)
        assert [next_of(sub, "frame").header.seq for _ in range(2)] == [3, 4]
        assert cam.counters["unheard"] == 3 and next_of(sub, "heartbeat").header.counters["unheard"] == 3
        assert "cam0: a node subscribed: frames reach it again (3 unheard so far)" in caplog.text

        sub.close(linger=0)  # the node goes away: ZeroMQ tells the camera a moment later
        deadline = time.monotonic() + 5
        while cam.counters["unheard"] == 3:
            assert time.monotonic() < deadline, "frames still counted heard after the subscriber left"
            sent_after(cam, reader)
        unheard = cam.counters["unheard"]
        sent_after(cam, reader, 2)
        assert cam.counters["unheard"] == unheard + 2  # every frame after it left

        sub = subscriber(ctx, endpoint)
        next_of(sub, "heartbeat")
        reader.done.set()
        eos = next_of(sub, "eos")
        assert eos.header.counters["unheard"] == unheard + 2 and eos.header.counters["sent"] == eos.header.frames


def test_a_camera_that_ends_before_any_node_subscribed_waits_for_one_to_take_its_end_of_stream(caplog):
    """`wait_for_consumer_s: 0` and a node still starting: the camera sent its frames and its end of stream to nobody
    and exited, and the line waited for that end of stream for ever (an outside audit). It now waits for a node to
    subscribe (`EOS_WAIT_S`), so the line hears it end, its frames counted unheard."""
    with streaming_at_once(caplog) as (cam, reader, endpoint, ctx, thread):
        sent_after(cam, reader, 2)
        reader.done.set()
        wait_until(lambda: "waiting up to 60 s for one to take the end of stream" in caplog.text, timeout=5)
        eos = next_of(subscriber(ctx, endpoint), "eos")
        assert eos.header.frames == 2 and eos.header.counters["unheard"] == 2
        thread.join(timeout=5)  # its end of stream taken, it ends by itself
        assert not thread.is_alive()


def test_a_subscriber_leaving_while_another_stays_leaves_frames_heard():
    ctx = zmq.Context()
    pub = Publisher(ctx, "tcp://127.0.0.1:*", sndhwm=8, max_topics=10, name="cam0")
    try:
        a, b = subscriber(ctx, pub.endpoint), make_socket(ctx, zmq.SUB)
        b.connect(pub.endpoint)
        b.subscribe(b"frame/")
        wait_until(lambda: pub.upstream() == [] and pub.held == {b"", b"frame/"}, timeout=5)
        assert pub.hears(b"frame/cam0") and pub.hears(b"heartbeat/cam0")
        b.close(linger=0)
        wait_until(lambda: pub.upstream() == [] and pub.held == {b""}, timeout=5)
        assert pub.hears(b"frame/cam0")  # `a` still takes every topic
        a.close(linger=0)
        wait_until(lambda: pub.upstream() == [] and not pub.held, timeout=5)
        assert not pub.hears(b"frame/cam0")
    finally:
        pub.close(0)
        ctx.destroy(linger=0)


def eos(source: str, frames: int, **counters: int) -> P.Message:
    return P.Message(P.EosHeader(kind="eos", source=source, seq=frames - 1, t_capture=time.time(), frames=frames,
                                 counters=counters))


def test_the_summary_shows_the_frames_each_camera_sent_unheard():
    node = {"sources": {"cam0": {**dict.fromkeys(SOURCE_COUNTERS, 0), "lost": 6}}, "bad_messages": 0, "scorer": None}
    quiet = StreamStats()
    quiet.add(eos("cam0", 4, sent=4, unheard=0), time.time())
    assert "unheard" not in quiet.summary(node) and "drops" not in quiet.summary()  # keys as before

    stats = StreamStats()
    stats.add(eos("cam0", 10, sent=10, unheard=6), time.time())
    stats.camera_stopped("cam1", {"sent": 5, "send_dropped": 0, "unheard": 2})  # its end of stream never came
    summary = stats.summary(node)
    assert summary["unheard"] == 8 and "unheard" not in summary["drops"]  # a camera's view, not one more cause:
    assert summary["drops"]["lost"] == 6  # the node counts the same frames as a gap once frames reach it again
    assert summary["sources"]["cam0"]["unheard"] == 6 and summary["sources"]["cam1"]["unheard"] == 2
    assert summary["dropped"] == 15  # all of them sent, none scored
    assert summary["sources"]["cam0"]["unaccounted"] == 4  # 10 sent, 6 lost
    assert stats.summary()["unheard"] == 8  # the sinks stage: no node counters, the cameras' still


def test_a_restarted_camera_s_unheard_frames_add_up_over_its_runs():
    def beat(unheard: int) -> P.Message:
        return P.Message(P.HeartbeatHeader(kind="heartbeat", source="cam0", seq=0, t_capture=time.time(),
                                           role="source", state="streaming", counters={"sent": 9, "unheard": unheard}))

    stats = StreamStats()
    for n in (2, 5, 1, 3):  # the camera restarted after its run's 5 (its counters start at 0 again)
        stats.add(beat(n), time.time())
    stats.add(eos("cam0", 10, sent=10, unheard=4), time.time())
    assert stats.summary()["sources"]["cam0"]["unheard"] == 9  # 5 + 4: was the largest, 5


def test_a_restarted_camera_s_frames_sent_add_up_over_its_runs():
    """A camera killed after 3 frames and started again (no end of stream between): its 3 frames and its second
    run's 20 are what it sent, not the last run's 20 alone ("23 of 20 sent", found in an audit)."""
    def beat(sent: int) -> P.Message:
        return P.Message(P.HeartbeatHeader(kind="heartbeat", source="cam0", seq=0, t_capture=time.time(),
                                           role="source", state="streaming", counters={"sent": sent}))

    stats = StreamStats()
    for n in (1, 3, 0, 8):  # the camera's counter starts at 0 again: its process started afresh
        stats.add(beat(n), time.time())
    assert stats.summary()["sources"]["cam0"]["sent"] == 11  # stopped here: 3 + 8 so far
    stats.add(eos("cam0", 20, sent=20), time.time())
    summary = stats.summary()
    assert summary["sent"] == 23 and summary["sources"]["cam0"]["sent"] == 23
