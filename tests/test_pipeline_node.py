"""The edge node over real sockets (camera and node in threads, a fast fake detector)."""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import msgpack
import numpy as np
import pytest
import torch
import zmq

from pipeline import protocol as P
from pipeline.config import LineConfig, NodeConfig, SyntheticSourceConfig
from pipeline.counters import Counters
from pipeline.launcher import run_line
from pipeline.node import EdgeNode
from pipeline.pending import PendingFrames
from pipeline.regions import find_regions
from pipeline.sinks import Subscriber
from pipeline.sources import Camera, SyntheticReader
from pipeline.transport import Publisher


@dataclass
class Detection:
    anomaly_map: np.ndarray
    score: float
    fit_steps: int = 1
    fit_ms: float = 0.5
    score_ms: float = 0.5
    model_version: int = 1
    budget_met: bool = True
    diverged: bool = False
    normal_moved: bool = False
    normal_recalled: bool = False
    scorer_fallback: bool = False
    calibrated: float = 0.0
    calibrating: bool = False
    calibration: tuple[float, float] = (0.0, 1.0)
    score_inset: int = 0
    still: bool = False

    def calibrated_map(self) -> np.ndarray:
        median, scale = self.calibration
        return ((self.anomaly_map - median) / scale).astype(np.float32)


class FastDetector:
    """Map: |grey - median| in units of the grey std; score: its maximum. Fulfils the node's detector contract."""

    def __init__(self, source: str = "", delay: float = 0.0):
        self.delay, self.calls = delay, 0

    def process(self, image):
        self.calls += 1
        time.sleep(self.delay)
        grey = image.mean(axis=2, dtype=np.float32)
        amap = np.abs(grey - np.median(grey)) / (grey.std() + 1e-6)
        return Detection(amap, float(amap.max()), model_version=self.calls, calibrated=float(amap.max()))

    def reset(self):
        self.calls = 0

    def state_dict(self):
        return {"calls": torch.tensor([self.calls])}

    def restore(self, state):
        self.calls = int(state["calls"][0])


class GatedReader(SyntheticReader):
    """Synthetic frames that start only once the test opens the gate."""

    def __init__(self, cfg, gate: threading.Event):
        super().__init__(cfg)
        self.gate = gate

    def open(self):
        assert self.gate.wait(10)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def endpoint(tmp_path, transport: str, name: str) -> str:
    return "tcp://127.0.0.1:*" if transport == "tcp" else f"ipc://{tmp_path}/{name}.sock"


def collect(sub: Subscriber, sources=("cam0",), timeout: float = 10.0, during=None) -> list[P.Message]:
    """Messages until the end of stream of every source has come (calling `during()` between receives)."""
    got, pending = [], set(sources)
    deadline = time.monotonic() + timeout
    while pending:
        assert time.monotonic() < deadline, f"no end of stream from {pending}"
        if during is not None:
            during()
        msg = sub.recv(20)
        if msg is not None:
            got.append(msg)
            if msg.kind == "eos":
                pending.discard(msg.source)
    return got


def results(msgs, source="cam0"):
    return [m for m in msgs if m.kind == "anomaly" and m.source == source]


@contextmanager
def line(tmp_path, transport="tcp", cameras=(("cam0", 64),), frames=20, fps=200.0, factory=FastDetector, gate=None,
         inputs=(), pattern="pub", nodes=1, threshold=3.0, flow="auto", source_kw=None, **node_kw):
    """Cameras and node(s) in threads (`source_kw`: more keys of every camera's config); stops them and checks they
    exit promptly."""
    ctx, stop, threads = zmq.Context(), threading.Event(), []

    def start(target, *args):
        ready: list[str] = []
        t = threading.Thread(target=target, args=(stop, ready.append, *args), daemon=True)
        t.start()
        threads.append(t)
        wait_until(lambda: ready)
        return ready[0]

    try:
        cams, cam_endpoints = [], []
        for name, size in cameras:
            cfg = SyntheticSourceConfig(kind="synthetic", name=name, size=size, frames=frames, fps=fps,
                                        textures=("grass",),
                                        bind=endpoint(tmp_path, transport, name), heartbeat_s=0.05, pattern=pattern,
                                        flow=flow, **(source_kw or {}))
            cam = Camera(cfg, GatedReader(cfg, gate) if gate else None, ctx)
            cams.append(cam)
            cam_endpoints.append(start(cam.run))
        node_list, node_endpoints = [], []
        for i in range(nodes):
            cfg = NodeConfig(name=f"node{i}", bind=endpoint(tmp_path, transport, f"node{i}"), threshold=threshold,
                             heartbeat_s=0.05,
                             input="pull" if pattern == "push" else "sub", **node_kw)
            node = EdgeNode(cfg, [*cam_endpoints, *inputs], factory, ctx)
            node_list.append(node)
            node_endpoints.append(start(node.run, 10.0))
        yield SimpleNamespace(ctx=ctx, stop=stop, cameras=cams, camera_endpoints=cam_endpoints, nodes=node_list,
                              node=node_list[0],
                              endpoints=node_endpoints,
                              endpoint=node_endpoints[0])
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        alive = [t for t in threads if t.is_alive()]
        ctx.destroy(linger=0)
        assert not alive, "stages did not shut down within 5 s each"


def subscriber(ln, topics=(b"",), **kw) -> Subscriber:
    return Subscriber(ln.endpoints, topics, ctx=ln.ctx, **kw)


def heard_node(sub: Subscriber) -> bool:
    msg = sub.recv(10)
    return msg is not None and msg.kind == "heartbeat" and msg.header.role == "node"


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_line_end_to_end_with_two_subscribers(tmp_path, transport):
    gate = threading.Event()
    with line(tmp_path, transport, gate=gate, queue_depth=64, attach_image="always") as ln:
        subs = [subscriber(ln), subscriber(ln)]
        for sub in subs:
            wait_until(lambda sub=sub: heard_node(sub))
        gate.set()
        for sub in subs:
            msgs = collect(sub)
            res = results(msgs)
            assert [m.header.seq for m in res] == list(range(20))
            for m in res:
                assert set(m.arrays) == {"map", "image", "mask"} and m.arrays["map"].shape == (64, 64)
                s = m.header.stamps
                assert s["capture"] <= s["received"] <= s["fitted"] <= s["scored"] <= s["published"]
                assert m.header.label == ("anomalous" if m.header.score > 3.0 else "normal")
            events = [m for m in msgs if m.kind == "event"]
            assert [e.header.seq for e in events] == [m.header.seq for m in res if m.header.label == "anomalous"]
            eos = next(m for m in msgs if m.kind == "eos")
            assert eos.header.frames == 20 and eos.header.counters["scored"] == 20
            assert any(m.kind == "heartbeat" and m.header.role == "source" for m in msgs)
            # the camera's run id, from its frames, heartbeats and end of stream into what the node publishes of it
            assert {m.header.run for m in msgs if m.source == "cam0"} == {ln.cameras[0].run_id}
            assert {m.header.run for m in msgs if m.kind == "heartbeat" and m.header.role == "node"} == {None}
            sub.close()
        assert ln.node.counters.source("cam0")["scored"] == 20


def test_verbose_logs_say_what_became_of_each_frame(tmp_path, caplog):
    """`ssdnet -v`: a DEBUG line per frame a camera sent and per frame the node scored (its verdict, score, cost)."""
    caplog.set_level(logging.DEBUG, logger="pipeline")
    with line(tmp_path, frames=3, queue_depth=8) as ln:
        collect(subscriber(ln, (b"eos/",)))
    for seq in range(3):
        assert f"cam0#{seq}: 64x64 px sent ({seq + 1} sent, 0 dropped)" in caplog.text
    scored = re.findall(r"cam0#(\d): (?:normal|anomalous), score [\d.]+ \(raw [\d.]+.*\), 64x64 px, fit 1 steps",
                        caplog.text)
    assert sorted(int(seq) for seq in scored) == [0, 1, 2]


def test_latest_frame_semantics_drop_stale_frames(tmp_path):
    with line(tmp_path, frames=20, fps=100, factory=lambda s: FastDetector(delay=0.1)) as ln:
        sub = subscriber(ln, (b"anomaly/", b"eos/"))
        res = results(collect(sub))
        c = ln.node.counters.source("cam0")
        assert c["received"] == 20 and 0 < c["scored"] < 20 and c["conflated"] > 0
        assert c["scored"] + c["conflated"] == 20
        assert res[-1].header.seq == 19  # the newest frame is always the one scored
        sub.close()


def test_slow_and_dead_subscribers_do_not_slow_the_node(tmp_path):
    frames = 60  # 60 results of ~320 kB: far more than a stalled subscriber's queue and socket buffers hold
    with line(tmp_path, cameras=(("cam0", 256),), frames=frames, fps=300, queue_depth=frames, attach_image="always",
              sndhwm=16) as ln:
        dead = subscriber(ln, (b"anomaly/",), rcvhwm=1)  # connected, never reads
        slow = subscriber(ln, (b"anomaly/",), rcvhwm=1)
        # the fast subscriber has its own ZeroMQ context, as a subscriber in another process has: sharing the node's
        # one I/O thread, it lost a result to the node's sndhwm of 16 when other work starved that thread
        fast_ctx = zmq.Context()
        fast = Subscriber(ln.endpoints, (b"",), ctx=fast_ctx)
        wait_until(lambda: heard_node(fast))
        slow_got, stop_slow = [], threading.Event()

        def read_slowly():  # 4 messages a second: under load the node takes seconds for its 60
            while not stop_slow.wait(0.25):
                if (m := slow.recv(0)) is not None:
                    slow_got.append(m)

        reader = threading.Thread(target=read_slowly)
        reader.start()
        try:
            assert len(results(collect(fast, timeout=20))) == frames
        finally:
            stop_slow.set()
            reader.join()
        while (m := slow.recv(200)) is not None:
            slow_got.append(m)
        assert ln.node.counters.source("cam0")["scored"] == frames
        assert len(results(slow_got)) < frames, "the slow subscriber should have lost messages, not held up the node"
        for s in (dead, slow, fast):
            s.close()
        fast_ctx.term()


def test_subscribers_past_max_subscribers_are_refused_and_a_freed_slot_is_used_again(tmp_path):
    """Each subscriber costs the node up to sndhwm results: past node.max_subscribers a new one is refused at its
    handshake (ZAP), gets nothing and is counted; those admitted keep receiving; one leaving frees its slot."""
    with line(tmp_path, frames=100_000, fps=20, max_subscribers=2) as ln:
        first, second = subscriber(ln, (b"heartbeat/",)), subscriber(ln, (b"heartbeat/",))
        wait_until(lambda: heard_node(first) and heard_node(second))
        extra = [subscriber(ln, (b"",)) for _ in range(3)]
        wait_until(lambda: ln.node.refusals()["subscribers"] >= 3)
        assert all(s.recv(300) is None for s in extra)  # refused: sent nothing, ever (ZeroMQ does not retry)
        assert ln.node.subscribers.peers == 2

        def refused_in_beat(sub: Subscriber) -> int | None:
            msg = sub.recv(100)
            ours = msg is not None and msg.kind == "heartbeat" and msg.header.role == "node"
            return msg.header.counters["refused_subscribers"] if ours else None

        wait_until(lambda: (refused_in_beat(first) or 0) >= 3)  # admitted ones keep receiving; counted in beats
        second.close()
        wait_until(lambda: ln.node.subscribers.peers == 1)
        refused = ln.node.refusals()["subscribers"]
        late = subscriber(ln, (b"heartbeat/",))
        wait_until(lambda: heard_node(late))  # the freed slot
        assert ln.node.refusals()["subscribers"] == refused and ln.node.subscribers.peers == 2
        for s in (first, late, *extra):
            s.close()


def test_a_subscriber_refused_by_a_full_node_connects_again_once_it_hears_nothing(tmp_path):
    """A reviewer's finding: ZeroMQ never connects a socket the node refused (node.max_subscribers) again, so a line's
    sinks refused once, while others held every slot, heard nothing until restarted. A subscriber of the node's
    heartbeats that hears nothing for `reopen_s` connects afresh, and gets in once a slot is free."""
    with line(tmp_path, frames=100_000, fps=20, max_subscribers=1) as ln:
        holder = subscriber(ln, (b"heartbeat/",))
        wait_until(lambda: heard_node(holder))
        late = subscriber(ln, (b"heartbeat/",), reopen_s=0.5)
        wait_until(lambda: ln.node.refusals()["subscribers"] >= 1)
        assert not any(heard_node(late) for _ in range(30))  # refused: nothing, however long it waits
        holder.close()
        wait_until(lambda: heard_node(late))
        assert late.reopens >= 1
        late.close()


def storm_messages() -> list[list[bytes]]:
    rng = np.random.default_rng(0)
    image = np.zeros((64, 64, 3), np.uint8)
    huge = {"v": 1, "kind": "frame", "source": "x", "seq": 0, "t_capture": 1.0,
            "payloads": [{"name": "image", "shape": [8000, 8000, 3], "dtype": "uint8", "encoding": "raw"}]}
    tiny = P.Message(P.FrameHeader(v=1, kind="frame", source="x", seq=0, t_capture=1.0,
                                   payloads=(P.describe("image", image[:8, :8]),)), {"image": image[:8, :8].copy()})
    return [
        [b"frame/x"],
        [b"frame/x", b"\xc1garbage"],
        [b"frame/x", msgpack.packb({"v": 2, "kind": "frame"})],
        [b"frame/x", msgpack.packb(huge), b"\x00" * 10],
        [b"frame/x", *[rng.bytes(50) for _ in range(4)]],
        [b"frame/y", msgpack.packb({**huge, "source": "x"}), image.tobytes()],
        [bytes(p) for p in P.encode(tiny)],  # well formed, below min_side: rejected by the node
    ]


def test_malformed_message_storm_while_frames_are_served(tmp_path):
    ctx = zmq.Context()
    attacker = Publisher(ctx, "tcp://127.0.0.1:*", sndhwm=1000, max_topics=1000, name="attacker")
    bad = storm_messages()
    sent = [0]

    def storm(stop):
        attacker.wait_for_subscriber(10, stop)
        while not stop.is_set():
            attacker.sock.send_multipart(bad[sent[0] % len(bad)])
            sent[0] += 1
            if sent[0] % 50 == 0:
                time.sleep(0.001)

    stop_storm = threading.Event()
    storming = threading.Thread(target=storm, args=(stop_storm,))
    storming.start()
    try:
        with line(tmp_path, frames=30, fps=100, queue_depth=64,
                  inputs=[attacker.endpoint]) as ln:
            sub = subscriber(ln, (b"anomaly/", b"eos/"))
            assert len(results(collect(sub))) == 30
            wait_until(lambda: ln.node.counters.bad_messages > 100)
            # refused, each of them (t_capture 1.0 is also a clock_skew): none binds the name "x" to the connection
            assert ln.node.counters.rejected["clock_skew"] > 0 and "x" not in ln.node.admission.cameras
            assert ln.node.counters.source("cam0")["failed"] == 0
            sub.close()
    finally:
        stop_storm.set()
        storming.join()
        attacker.close(0)
        ctx.term()
    assert sent[0] > 100


def test_subscriber_restart_mid_stream(tmp_path):
    with line(tmp_path, frames=40, fps=50, queue_depth=64) as ln:
        first = subscriber(ln, (b"anomaly/",))
        seen = []
        while len(seen) < 5:
            if (m := first.recv(50)) is not None:
                seen.append(m.header.seq)
        first.close()
        second = subscriber(ln, (b"anomaly/", b"eos/"))
        later = [m.header.seq for m in results(collect(second))]
        assert later and later[0] > seen[-1] and later[-1] == 39
        second.close()


class FlakyDetector(FastDetector):
    """Raises on its 3rd call and returns a NaN map on its 5th."""

    def process(self, image):
        d = super().process(image)
        if self.calls == 3:
            raise RuntimeError("boom")
        if self.calls == 5:
            d.anomaly_map[0, 0] = np.nan
        return d


def test_bad_frames_and_detector_failures_are_counted_not_fatal(tmp_path):
    detectors: dict[str, FlakyDetector] = {}

    def factory(source):
        detectors.setdefault(source, FlakyDetector())
        return detectors[source]

    with line(tmp_path, cameras=(("cam0", 64), ("cam1", 16)), frames=10, fps=100, queue_depth=64,
              factory=factory) as ln:
        sub = subscriber(ln, (b"anomaly/", b"eos/"))
        msgs = collect(sub, ("cam0", "cam1"))
        c0, c1 = ln.node.counters.source("cam0"), ln.node.counters.source("cam1")
        assert (c0["failed"], c0["scored"]) == (2, 8) and len(results(msgs)) == 8
        # 16 px frames are refused at their camera already (below the scorer's minimum), counted there
        eos = {m.source: m.header for m in msgs if m.kind == "eos"}
        assert eos["cam1"].counters["too_small"] == 10 and c1["scored"] == 0 and "cam1" not in detectors
        sub.close()


class MovingDetector(FastDetector):
    """A FastDetector whose source's normal moves (a product changeover) with its 4th frame, and whose 7th frame
    shows the surface it knew before (the product back), and whose exported scorer gives way to torch on its 5th."""

    def process(self, image):
        d = super().process(image)
        d.normal_moved, d.normal_recalled, d.scorer_fallback = self.calls == 4, self.calls == 7, self.calls == 5
        return d


def test_a_camera_whose_normal_moves_is_counted_and_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with line(tmp_path, frames=8, fps=100, queue_depth=64, factory=MovingDetector) as ln:
        sub = subscriber(ln, (b"anomaly/", b"eos/"))
        msgs = collect(sub)
        eos = next(m.header for m in msgs if m.kind == "eos")
        assert eos.counters["normal_moved"] == 1 and eos.counters["scored"] == 8
        assert eos.counters["normal_recalled"] == 1 and eos.counters["scorer_fallbacks"] == 1
        assert ln.node.counters.source("cam0")["normal_moved"] == 1
        assert sum("scores with torch from now on" in r.getMessage() for r in caplog.records) == 1
        assert sum("taken as its normal from now on" in r.getMessage() for r in caplog.records) == 1
        assert sum("that surface's model resumes" in r.getMessage() for r in caplog.records) == 1
        sub.close()


class UnderMapDetector(FastDetector):
    """Every frame an event (calibrated score 5) whose map peaks at 2, under the threshold, in one 8 px square."""

    def process(self, image):
        d = super().process(image)
        d.anomaly_map = np.zeros(image.shape[:2], np.float32)
        d.anomaly_map[16:24, 32:40], d.calibrated = 2.0, 5.0
        return d


def test_every_event_carries_a_region_even_when_its_map_stays_under_the_threshold(tmp_path):
    with line(tmp_path, frames=4, fps=100, queue_depth=64, factory=UnderMapDetector) as ln:
        sub = subscriber(ln, (b"event/", b"eos/"))
        events = [m.header for m in collect(sub) if m.kind == "event"]
        assert len(events) == 4
        for e in events:
            (region,) = e.regions
            assert region.bbox == (32, 16, 8, 8) and region.peak == pytest.approx(2.0)
        sub.close()


class HotBorderDetector(FastDetector):
    """A camera's first frame, its map hot on the border (before its border profile is ready) and its defect inside,
    the image score read from 8 px in (edge.border)."""

    def process(self, image: np.ndarray) -> Detection:
        d = super().process(image)
        d.anomaly_map = np.zeros(image.shape[:2], np.float32)
        d.anomaly_map[:4, :12], d.anomaly_map[16:24, 32:40], d.calibrated, d.score_inset = 6.0, 4.0, 5.0, 8
        return d


def test_an_event_is_boxed_where_its_score_read_not_on_the_border_it_left_out(tmp_path):
    with line(tmp_path, frames=2, fps=100, queue_depth=64, factory=HotBorderDetector) as ln:
        sub = subscriber(ln, (b"event/", b"eos/"))
        events = [m.header for m in collect(sub) if m.kind == "event"]
        assert len(events) == 2 and all(e.regions[0].bbox == (32, 16, 8, 8) and len(e.regions) == 1 for e in events)
        sub.close()
    amap = HotBorderDetector().process(np.zeros((64, 64, 3), np.uint8)).anomaly_map
    assert {r.bbox for r in find_regions(amap, 3.0, min_peak=3.0, event=True)} == {(0, 0, 12, 4), (32, 16, 8, 8)}
    amap[16:24, 32:40] = 0.0  # only the border is hot: an event still says where
    assert [r.bbox for r in find_regions(amap, 3.0, min_peak=3.0, event=True, inset=8)] == [(0, 0, 12, 4)]
    assert find_regions(amap, 3.0, min_peak=3.0, inset=8) == ()


def test_the_run_s_summary_says_how_often_each_camera_s_normal_moved(tmp_path):
    cam = {"kind": "synthetic", "size": 48, "fps": 50, "frames": 6, "textures": ["grass"]}
    cfg = LineConfig.model_validate({"sources": [{**cam, "name": "cam0"}, {**cam, "name": "cam1"}],
                                     "node": {"queue_depth": 64}, "sinks": {"overlays": False}})
    summary = run_line(cfg, tmp_path, detector_factory=MovingDetector)
    assert {s: (v["normal_moved"], v["normal_recalled"], v["product_changes"])
            for s, v in summary["sources"].items()} == {"cam0": (1, 0, 0), "cam1": (1, 0, 0)}
    assert json.loads((tmp_path / "summary.json").read_text())["sources"]["cam0"]["normal_moved"] == 1


def test_two_nodes_share_a_push_camera(tmp_path):
    with line(tmp_path, frames=30, fps=100, pattern="push", nodes=2, queue_depth=64) as ln:
        sub = subscriber(ln, (b"anomaly/",))
        wait_until(lambda: sum(n.counters.source("cam0")["scored"] for n in ln.nodes) == 30)
        assert all(n.counters.source("cam0")["scored"] > 0 for n in ln.nodes)
        sub.close()


def test_node_stops_promptly_mid_stream(tmp_path):
    with line(tmp_path, frames=None, fps=100) as ln:
        sub = subscriber(ln, (b"anomaly/",))
        wait_until(lambda: sub.recv(10) is not None)
        sub.close()
    # the fixture asserts every stage thread exited within 5 s of stop


def test_a_node_that_cannot_connect_stops_its_replay_thread_before_its_context_closes(tmp_path, monkeypatch):
    """run_node terminates its own context on the way out: an input it cannot connect to (after the replay thread
    started) left that thread polling a socket the context then closed ("Socket operation on non-socket")."""
    from pipeline.node import run_node

    failed = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failed.append(args.exc_value))
    cfg = NodeConfig(event_log=tmp_path / "events.db", replay_bind="tcp://127.0.0.1:*")
    with pytest.raises(zmq.ZMQError):
        run_node(cfg, ["tcp://127.0.0.1"], threading.Event(), detector_factory=FastDetector)  # no port
    wait_until(lambda: failed or not [t for t in threading.enumerate() if t.name == "replay"])  # it ends either way
    assert not failed


def test_a_node_whose_replay_thread_ended_while_it_waited_for_a_subscriber_scores_on(tmp_path, monkeypatch):
    """The node started its threads with `if not t.is_alive(): t.start()`: a replay thread that had ended before the
    first subscriber came (a replay request of op [] ended it) was started again, RuntimeError, and the node stopped."""
    import pipeline.node

    monkeypatch.setattr(pipeline.node, "serve_replay", lambda sock, *args: sock.close())
    with line(tmp_path, frames=None, fps=100, event_log=tmp_path / "events.db", replay_bind="tcp://127.0.0.1:*") as ln:
        sub = subscriber(ln, (b"anomaly/",))
        wait_until(lambda: sub.recv(10) is not None)
        sub.close()


def test_a_node_that_cannot_read_its_memory_use_publishes_on(tmp_path, monkeypatch):
    """At its file descriptor limit (connections a peer opened and never handshook: ~900 from 6 processes within 4 s,
    at a soft limit of 1024) the node could not open /proc for its heartbeat's `rss_mb`: OSError ended the publisher
    thread, which closed the result socket, and the node scored on, publishing nothing."""
    def emfile():
        raise OSError(24, "Too many open files")

    with line(tmp_path, frames=None, fps=100) as ln:
        sub = subscriber(ln, (b"heartbeat/node",))
        wait_until(lambda: heard_node(sub))
        monkeypatch.setattr(ln.node._ps, "memory_info", emfile)
        for _ in range(3):
            wait_until(lambda: heard_node(sub))
        sub.close()


def test_a_bridge_that_fails_to_start_says_why_not_that_its_thread_never_started(tmp_path):
    """run_node closes its MQTT bridge on the way out: one whose start failed (an event log that is not a database)
    said "cannot join thread before it is started", not why."""
    import sqlite3

    from pipeline.node import run_node
    from pipeline.sink_config import MqttConfig

    (tmp_path / "events.db").write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        run_node(NodeConfig(event_log=tmp_path / "events.db"), [], threading.Event(), detector_factory=FastDetector,
                 mqtt=MqttConfig(host="127.0.0.1", port=1))

def _frame(source, seq):
    image = np.zeros((32, 32, 3), np.uint8)
    return P.Message(P.FrameHeader(v=1, kind="frame", source=source, seq=seq, t_capture=1.0,
                                   payloads=(P.describe("image", image),)), {"image": image})


def _eos(source, seq=0):
    return P.Message(P.EosHeader(v=1, kind="eos", source=source, seq=seq, t_capture=1.0, frames=seq + 1))


def test_pending_frames_keep_newest_serve_sources_in_turn_and_end_after_last_frame():
    pending = PendingFrames(depth=2)
    assert [pending.put(_frame("a", i)) for i in range(3)] == [False, False, True]
    pending.put(_frame("b", 0))
    pending.end(_eos("a"))
    order = [(m.kind, m.source, m.header.seq) for m in iter(lambda: pending.take(0.01), None)]
    assert order == [("frame", "a", 1), ("frame", "b", 0), ("frame", "a", 2), ("eos", "a", 0)]


def test_every_end_of_stream_comes_once_in_order_and_frames_after_it_do_not_hold_it_back():
    """A live camera ends a stream and at once streams again, faster than the node scores: each end of stream comes
    out once, in the order they came, right after the frames before it (or their newest, depth 1), ahead of the next
    stream's frames."""
    pending = PendingFrames(depth=1)
    pending.put(_frame("a", 29))
    pending.end(_eos("a", 29))
    for seq in range(3):  # the next stream: its first frame pushes out the last one before the end of stream
        pending.put(_frame("a", seq))
    pending.end(_eos("a", 2))
    pending.put(_frame("a", 0))  # a third stream, numbered from 0 again
    pending.put(_frame("b", 7))
    order = [(m.kind, m.source, m.header.seq) for m in iter(lambda: pending.take(0.01), None)]
    assert order == [("eos", "a", 29), ("eos", "a", 2), ("frame", "a", 0), ("frame", "b", 7)]

    pending = PendingFrames(depth=2)
    pending.put(_frame("a", 0))
    pending.end(_eos("a", 0))
    pending.put(_frame("a", 0))
    got, seq = [], 0
    while len(got) < 4:  # a new frame as each is scored: the end of stream comes after the one frame before it
        got.append(pending.take(0.01))
        if got[-1].kind == "frame":
            seq += 1
            pending.put(_frame("a", seq))
    assert [(m.kind, m.header.seq) for m in got] == [("frame", 0), ("eos", 0), ("frame", 0), ("frame", 1)]


def test_an_end_of_stream_counts_the_frames_that_came_before_it_not_those_of_the_next_stream():
    """Frames of the next stream that arrive while the end of stream waits for its last frame to be scored are
    counted in the next stream's end, not in this one's."""
    counters = Counters()
    for _ in range(3):
        counters.add("a", "received")
    counters.end_stream("a")
    counters.add("a", "received")  # the next stream's first frame, before the last one is scored
    counters.add("a", "lost", 2)
    for _ in range(3):
        counters.add("a", "scored")
    first = counters.stream("a")
    assert (first["received"], first["lost"], first["scored"]) == (3, 0, 3)
    counters.add("a", "scored")
    counters.end_stream("a")
    second = counters.stream("a")
    assert (second["received"], second["lost"], second["scored"]) == (1, 2, 1)


def test_a_camera_restarted_without_its_end_of_stream_has_its_new_run_counted_alone(tmp_path):
    """A camera killed after 5 frames (no end of stream) and started again, its old frames still waiting to be scored:
    the new run's end of stream said "3 frames sent, 8 scored" (the node's counters ran from the end before)."""
    from adversary import control_parts, frame_parts, node_line

    with node_line(tmp_path, frames=1, connect_cameras={0: ["line2"]},
                   factory=lambda s: FastDetector(delay=0.02)) as ln:  # slow: the first run's frames wait
        cam, t0 = ln.intruders[0], time.time()
        for run, frames in (("run1", 5), ("run2", 3)):
            for seq in range(frames):
                cam.send(frame_parts("line2", seq=seq, t=t0 + 0.01 * seq, run=run))
        cam.send(control_parts("eos", "line2", seq=2, t=time.time(), run="run2"))
        ends = [m for m in collect(ln.sub, ("cam0", "line2")) if m.kind == "eos" and m.source == "line2"]
        assert ln.node.counters.source("line2")["scored"] == 8
    assert [(m.header.frames, m.header.counters["received"], m.header.counters["scored"]) for m in ends] == [(3, 3, 3)]


def test_a_credit_camera_whose_frame_is_on_its_way_is_waited_for_not_passed_by_a_live_one(monkeypatch):
    """An outside client's audit: a credit camera is granted its next frame when its last is done, so it has nothing
    waiting when the worker picks the next frame; a live camera of large frames always has one, took every other
    turn and ~95 % of the node. Waiting briefly for a frame on its way that is due gives each half."""
    from pipeline import pending as pending_module

    monkeypatch.setattr(pending_module, "AWAIT_S", 5.0)  # the frame comes when asked for: no race with a busy machine

    def credit_share(awaited: bool) -> float:
        on_way, asked = set(), threading.Event()

        def ask(age: float) -> set[str]:
            asked.set()
            return set(on_way)

        pending = PendingFrames(depth=1, awaited=ask if awaited else None)
        cost, seq = {"live": 10.0, "credit": 1.0}, {"live": 0, "credit": 0}
        used = dict.fromkeys(cost, 0.0)
        for name in cost:
            pending.put(_frame(name, 0))

        def arrive(n: int) -> None:  # read and sent: it arrives once the node looks for it, or after 5 ms
            asked.wait(5.0 if awaited else 0.005)
            pending.put(_frame("credit", n))
            on_way.discard("credit")

        for _ in range(60):
            msg = pending.take(1.0)
            used[msg.source] += cost[msg.source]
            pending.served(msg.source, cost[msg.source])
            seq[msg.source] += 1
            if msg.source == "live":
                pending.put(_frame("live", seq["live"]))  # a live camera's next frame is always there
            else:  # granted now
                on_way.add("credit")
                asked.clear()
                threading.Thread(target=arrive, args=(seq["credit"],)).start()
        return used["credit"] / sum(used.values())

    assert credit_share(awaited=False) < 0.15  # one frame each in turn: 1 s against 10 s
    assert 0.4 < credit_share(awaited=True) < 0.6


def test_the_wait_for_a_credit_frame_lets_an_end_of_stream_that_comes_meanwhile_go_first():
    """An end of stream that comes while the worker waits for a credit camera's frame goes out before any frame
    that came after it (the review of the wait: a new stream's first frame went out before it)."""
    waiting = threading.Event()  # the worker asked which credit frames are on their way: it is about to wait

    def awaited(age: float) -> set[str]:
        waiting.set()
        return {"cred"}

    pending = PendingFrames(depth=1, awaited=awaited)
    pending.put(_frame("live", 0))
    pending.served("live", 5.0)  # the credit camera is due: it has used less
    pending.put(_frame("live", 1))

    def camera_m():  # ends its stream and starts the next at once, while the worker waits (AWAIT_S, 50 ms)
        waiting.wait(5)
        time.sleep(0.005)
        pending.end(_eos("m", 9))
        pending.put(_frame("m", 0))

    threading.Thread(target=camera_m).start()
    first = pending.take(1.0)
    assert (first.kind, first.source) == ("eos", "m")


def test_cameras_get_equal_shares_of_the_nodes_time_whatever_their_frame_size():
    """A camera whose frames cost 10x (large frames, or a peer flooding them) and one of small frames, each with a
    frame always waiting: served in turn, the large one took 10/11 of the node's time and the small one lost most
    of its frames; by the time each has used, each gets half. A camera that comes later starts level: it does not
    take the node for the time the others have used."""
    pending, cost = PendingFrames(depth=1), {"big": 10.0, "small": 1.0}
    used, seq = dict.fromkeys(cost, 0.0), dict.fromkeys(cost, 0)
    for name in cost:
        pending.put(_frame(name, 0))

    def serve(frames: int) -> list[str]:
        order = []
        for _ in range(frames):
            msg = pending.take(0.01)
            used[msg.source] += cost[msg.source]
            pending.served(msg.source, cost[msg.source])
            seq[msg.source] += 1
            pending.put(_frame(msg.source, seq[msg.source]))  # its next frame is already waiting
            order.append(msg.source)
        return order

    serve(200)
    assert 0.45 < used["big"] / sum(used.values()) < 0.55
    cost["late"], used["late"], seq["late"] = 1.0, 0.0, 0
    pending.put(_frame("late", 0))
    assert serve(10).count("late") <= 6  # level with the small camera, not ahead of it by 180 s
