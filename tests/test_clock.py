"""Clocks: what a line measures in seconds (its --timeout, wall_s, fps, a camera's or the node's last frame age) holds
when the system clock steps (an NTP correction; a board that boots in 1970, then syncs) or a camera's clock is off.

A step is simulated by handing the module under test a `time` whose time() is the real one plus an offset that the test
moves; its monotonic() is the real one, as a step of the system clock leaves it."""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
import zmq

from adversary import frame_parts
from pipeline import launcher, node, sources, stats
from pipeline import protocol as P
from pipeline.config import NodeConfig
from pipeline.node import EdgeNode
from pipeline.stats import StreamStats
from test_pipeline_launcher import line_config
from test_pipeline_node import FastDetector, wait_until
from test_pipeline_sources import FlakyReader, camera, synthetic

DAY, HOUR = 86400.0, 3600.0


class SteppedClock(SimpleNamespace):
    """The `time` module, its time() `step` seconds off the real one (the test sets `step`)."""

    def __init__(self, step: float = 0.0, monotonic=time.monotonic):
        super().__init__(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_") and k != "time"})
        self.step, self.monotonic = step, monotonic

    def time(self) -> float:
        return time.time() + self.step


def test_a_clock_stepped_forward_a_day_neither_times_a_line_out_nor_makes_it_a_day_long(tmp_path, monkeypatch):
    """The launcher measured its --timeout and wall_s on the system clock: a step of a day just after the start ended a
    line with a 120 s timeout at once (`timed_out`, no frame scored, wall_s 86400); one back an hour would have let it
    run an hour past its timeout."""
    clock = SteppedClock()
    calls = []

    def time_() -> float:
        calls.append(1)
        return time.time() + (DAY if len(calls) > 1 else 0.0)  # the start, then a day on

    clock.time = time_
    monkeypatch.setattr(launcher, "time", clock)
    summary = launcher.run_line(line_config(frames=4, overlays=False), tmp_path, timeout_s=120.0,
                                detector_factory=FastDetector)
    assert not summary["timed_out"] and summary["frames"] == summary["sent"] == 8
    assert 0 < summary["wall_s"] < 120


def result(seq: int, capture: float, received: float, source: str = "cam0") -> P.Message:
    """An anomaly result of `source`, captured and received at these times (seconds, on their own clocks)."""
    amap = np.zeros((8, 8), np.float32)
    q, desc = P.quantize_map(amap, "float16")
    stamps = {"capture": capture, "received": received, "fitted": received + 0.01, "scored": received + 0.02,
              "published": received + 0.03}
    header = P.AnomalyHeader(kind="anomaly", source=source, seq=seq, t_capture=capture, stamps=stamps,
                             payloads=(desc,), score=0.0, threshold=3.0, label="normal", model_version=1,
                             fit_steps=0, fit_ms=0.0, score_ms=10.0)
    return P.Message(header, {"map": q})


def fed(monkeypatch, frames: list[tuple[float, float, float]]) -> dict:
    """The summary of a StreamStats made 0.1 s before the first result it is fed, (capture, received, delivered) results
    0.1 s apart on the monotonic clock."""
    mono = [999.9]
    monkeypatch.setattr(stats, "time", SimpleNamespace(monotonic=lambda: mono[0]), raising=False)
    s = StreamStats()
    mono[0] += 0.1
    for seq, (capture, received, delivered) in enumerate(frames):
        s.add(result(seq, capture, received), delivered)
        mono[0] += 0.1
    return s.summary()


def test_fps_holds_when_the_clock_steps_back_an_hour_mid_run(monkeypatch):
    """fps was the frames over the last delivery less the first capture, both on the system clock: 10 frames a tenth of
    a second apart, the clock stepped back an hour after the fifth, made 0.003 fps instead of ~10."""
    t0 = 1.8e9
    frames = [(t0 + 0.1 * i - (HOUR if i >= 5 else 0), t0 + 0.1 * i + 0.01 - (HOUR if i >= 5 else 0),
               t0 + 0.1 * i + 0.05 - (HOUR if i >= 5 else 0)) for i in range(10)]
    assert 9 < fed(monkeypatch, frames)["fps"] < 11


def test_fps_holds_when_the_clock_steps_forward_a_day_while_the_first_frame_is_on_its_way(monkeypatch):
    """The first frame captured and received before the step, delivered after it: its latency read a day, and the span
    from its capture a day long (0.0001 fps)."""
    t0 = 1.8e9
    frames = [(t0 + 0.1 * i + (DAY if i else 0), t0 + 0.1 * i + 0.01 + (DAY if i else 0), t0 + 0.1 * i + 0.05 + DAY)
              for i in range(10)]
    assert 9 < fed(monkeypatch, frames)["fps"] < 11


def test_fps_holds_for_a_camera_whose_clock_is_a_minute_ahead(monkeypatch):
    """A camera a minute ahead of the node (within node.max_clock_skew_s, admitted): its captures came after their
    deliveries, so the span was negative and fps null; a minute behind, 10 frames over a second read 0.16 fps."""
    t0 = 1.8e9
    for off in (60.0, -60.0):
        frames = [(t0 + 0.1 * i + off, t0 + 0.1 * i + 0.01, t0 + 0.1 * i + 0.05) for i in range(10)]
        assert 9 < fed(monkeypatch, frames)["fps"] < 11, off


def test_latencies_of_a_camera_whose_clock_is_a_minute_ahead_are_its_link_s_not_its_clock_s(monkeypatch):
    """Transport and end to end read the camera's clock against the node's: a camera a minute ahead (admitted, within
    node.max_clock_skew_s) made them -60 s in summary.json, the live view, the metrics and scores.jsonl. Its offset
    is taken out from its fastest frame (transport 10-19 ms here: ~0-9 ms after), a synced camera's are as they were,
    and summary.json names the camera and its offset (`clock_ahead_s`)."""
    t0 = 1.8e9
    ahead = [(t0 + 0.1 * i + 60.0, t0 + 0.1 * i + 0.01 + 0.001 * i, t0 + 0.1 * i + 0.05 + 0.001 * i) for i in range(10)]
    summary = fed(monkeypatch, ahead)
    transport, e2e = summary["latency_ms"]["transport"], summary["latency_ms"]["end_to_end"]
    assert 0 <= transport["p50"] <= 9.5 and transport["p99"] <= 9.5, transport
    assert 39.9 <= e2e["p50"] <= 49.5, e2e
    assert summary["clock_ahead_s"] == {"cam0": pytest.approx(59.99, abs=2e-3)}
    synced = fed(monkeypatch, [(c - 60.0, r, d) for c, r, d in ahead])
    assert 10 <= synced["latency_ms"]["transport"]["p50"] <= 19.5 and synced["clock_ahead_s"] == {}
    clocks = stats.CameraClocks()  # what the view, the metrics, scores.jsonl and the console read: the same
    latencies = [clocks.latencies(result(i, c, r).header, d) for i, (c, r, d) in enumerate(ahead)]
    assert all(0 <= x["transport"] < 10 and 39.9 <= x["end_to_end"] < 50 for x in latencies), latencies


def test_a_silent_camera_s_frame_age_keeps_growing_when_its_clock_steps(monkeypatch):
    """A camera's heartbeat said `last_frame_age` = now - its last frame's capture on the system clock: stepped back an
    hour it read 0 for the hour (the live page, MQTT, Prometheus and the console's "stalled" blind to a dead camera);
    stepped forward a day, a camera that had just sent a frame read a day old."""
    clock = SteppedClock()
    monkeypatch.setattr(sources, "time", clock)
    reader = FlakyReader(frames=1, hang=True)

    def age(sub, after: float = -math.inf) -> float:
        """The frame age of the first heartbeat the camera stamped after `after` (its stepped clock) that is past 0.3 s
        (waited for: a camera's heartbeats come every 0.05 s)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            m = sub.recv(50)
            if m is not None and m.kind == "heartbeat" and m.header.t_capture > after and \
                    (m.header.last_frame_age or 0.0) > (0.3 if after == -math.inf else -1.0):
                return m.header.last_frame_age
        raise AssertionError("no such heartbeat within 5 s")

    with camera(synthetic(), reader) as (sub, cam, stop):
        wait_until(lambda: cam.counters["sent"] == 1, timeout=5)
        clock.step = -HOUR
        assert age(sub) > 0.3  # the stepped-back clock's age stayed 0.0: no such heartbeat
        clock.step = DAY
        assert age(sub, after=time.time() + DAY / 2) < 60  # a heartbeat stamped after the step
        reader.release.set()


def test_the_node_s_frame_age_keeps_growing_when_its_clock_steps(monkeypatch):
    """The node's heartbeat `last_frame_age` likewise: 0 for an hour after a step back, a day after a step forward."""
    mono = [1000.0]
    clock = SteppedClock(monotonic=lambda: mono[0])
    monkeypatch.setattr(node, "time", clock)
    edge = EdgeNode(NodeConfig(), ["tcp://127.0.0.1:1"], FastDetector, input_names=["cam0"])
    edge._on_input([zmq.Frame(p) for p in frame_parts("cam0", seq=0)], edge.peers[0])
    clock.step, mono[0] = -HOUR, mono[0] + 0.3  # an hour back on the system clock, 0.3 s on
    assert edge._heartbeat().header.last_frame_age == pytest.approx(0.3)
    clock.step = DAY
    assert edge._heartbeat().header.last_frame_age < 60
