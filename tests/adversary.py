"""A node with named cameras and hostile peers on its input, for the security tests (threads, real
sockets, the fast fake detector). Not a test module: imported by tests/test_security_*.py."""
from __future__ import annotations

import random
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import msgpack
import numpy as np
import zmq

from pipeline import protocol as P
from pipeline.config import NodeConfig, SyntheticSourceConfig
from pipeline.node import INPUT_TOPICS, EdgeNode
from pipeline.sinks import Subscriber
from pipeline.sources import Camera
from pipeline.transport import Publisher
from test_pipeline_node import FastDetector, collect, wait_until


class Intruder:
    """An XPUB socket the node connects to (as it would to a camera), sending whatever it is told."""

    def __init__(self, ctx: zmq.Context):
        self.pub = Publisher(ctx, "tcp://127.0.0.1:*", sndhwm=100_000, max_topics=1000, name="intruder")
        self.sock, self.endpoint = self.pub.sock, self.pub.endpoint

    def wait_for_node(self, timeout: float = 10.0) -> None:
        """Until the node has subscribed to every topic it reads (ZeroMQ drops what nobody subscribed to yet)."""
        deadline = time.monotonic() + timeout
        while not set(INPUT_TOPICS) <= self.pub.topics:
            assert time.monotonic() < deadline, "the node never subscribed"
            self.pub.upstream()
            time.sleep(0.005)

    def send(self, parts) -> None:
        self.sock.send_multipart([bytes(p) if not isinstance(p, bytes) else p for p in parts])

    def close(self) -> None:
        self.pub.close(0)


def header(kind: str = "frame", source: str = "intruder", seq: int = 0, t: float | None = None, **fields) -> dict:
    """A wire header map as a third party would write it (plain dict, no project models)."""
    t = time.time() if t is None else t
    out = {"v": 1, "kind": kind, "source": source, "seq": seq, "t_capture": t, "stamps": {"capture": t}, "payloads": []}
    if kind == "heartbeat":
        out.update(role="source", state="streaming", last_frame_age=None, counters={})
    elif kind == "eos":
        out.update(frames=seq + 1, counters={})
    out.update(fields)
    return out


def port_below_ephemeral() -> int:
    """A free tcp port of 127.0.0.1 below the kernel's ephemeral range, for a test that closes a socket and binds its
    port again (a subscription reset): no `*` bind or outgoing connection can take it meanwhile. (That was not why a
    CI run found such a port still taken 10 s on: a port from here was too, until the camera had a context of its
    own; stop 81's closing note.)"""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 10_000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port below {low}")


def frame_parts(source: str = "intruder", seq: int = 0, size: tuple[int, int] = (64, 64), t: float | None = None,
                image: np.ndarray | None = None, jpeg: bytes | None = None, **fields) -> list[bytes]:
    """Topic, header and payload of a frame message, built by hand: raw RGB, or `jpeg`, a file of `size`."""
    if image is None and jpeg is None:
        image = np.random.default_rng(abs(seq) % 2**32).integers(0, 255, (*size, 3), dtype=np.uint8)
    shape = [*size, 3] if jpeg is not None else list(image.shape)
    h = header("frame", source, seq, t, payloads=[{"name": "image", "shape": shape, "dtype": "uint8",
                                                   "encoding": "raw" if jpeg is None else "jpeg"}], **fields)
    return [f"frame/{source}".encode(), msgpack.packb(h), image.tobytes() if jpeg is None else jpeg]


def control_parts(kind: str, source: str, seq: int = 0, **fields) -> list[bytes]:
    h = header(kind, source, seq, **fields)
    return [f"{kind}/{h['source']}".encode(), msgpack.packb(h)]


@contextmanager
def node_line(tmp_path, cameras=(("cam0", 64),), frames: int = 30, fps: float = 50.0, intruders: int = 1,
              connect_cameras: dict[int, list[str]] | None = None, factory=FastDetector, ctx=None, **node_kw):
    """Named cameras and `intruders` Intruder peers (node.connect endpoints; `connect_cameras` maps an
    intruder's index to the names it may send) feeding one node; yields the parts and a subscriber."""
    own_ctx = ctx is None
    ctx = ctx or zmq.Context()
    stop, threads, names = threading.Event(), [], [c[0] for c in cameras]
    bad = [Intruder(ctx) for _ in range(intruders)]

    def start(target, *args):
        ready: list = []
        t = threading.Thread(target=target, args=(stop, ready.append, *args), daemon=True)
        t.start()
        threads.append(t)
        wait_until(lambda: ready)
        return ready[0]

    sub = None
    try:
        cams, endpoints = [], []
        for name, size in cameras:
            cfg = SyntheticSourceConfig(kind="synthetic", name=name, size=size, frames=frames, fps=fps,
                                        textures=("grass",), heartbeat_s=0.05)
            cams.append(Camera(cfg, ctx=ctx))
            endpoints.append(start(cams[-1].run))
        listed = {bad[i].endpoint: tuple(n) for i, n in (connect_cameras or {}).items()}
        kw = {"threshold": 3.0, "heartbeat_s": 0.05, "queue_depth": 64, **node_kw}
        cfg = NodeConfig(connect=tuple(b.endpoint for b in bad), connect_cameras=listed, **kw)
        node = EdgeNode(cfg, endpoints, factory, ctx, input_names=names)
        endpoint = start(node.run, 10.0)  # the node connects to its inputs once a subscriber is there
        sub = Subscriber(endpoint, (b"anomaly/", b"eos/", b"heartbeat/"), ctx=ctx)
        for b in bad:
            b.wait_for_node()
        yield SimpleNamespace(ctx=ctx, stop=stop, node=node, endpoint=endpoint, intruders=bad, cameras=cams, sub=sub)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        if sub is not None:
            sub.close()
        for b in bad:
            b.close()
        if own_ctx:
            ctx.destroy(linger=0)
        assert not [t for t in threads if t.is_alive()], "stages did not stop"


def until_eos(sub: Subscriber, sources=("cam0",), timeout: float = 20.0, during=None) -> list[P.Message]:
    """Messages until every source's end of stream (test_pipeline_node.collect, with a longer default timeout)."""
    return collect(sub, sources, timeout, during)


def scored(msgs, source: str = "cam0") -> list[int]:
    return [m.header.seq for m in msgs if m.kind == "anomaly" and m.source == source]


def streamed(ln, msgs, frames: int, source: str = "cam0") -> None:
    """`source` streamed to its end through the node: its own end of stream (all `frames` sent), its last
    frame scored, every frame the node received scored, and every frame accounted for (a frame the
    camera's socket dropped under load shows as `lost`), none refused."""
    seqs = scored(msgs, source)
    ends = [m for m in msgs if m.kind == "eos" and m.source == source]
    c = ln.node.counters.source(source)
    assert len(ends) == 1 and ends[0].header.frames == frames, [m.header for m in ends]
    assert seqs and seqs[-1] == frames - 1 and seqs == sorted(set(seqs))
    assert c["scored"] == c["received"] == len(seqs) and c["received"] + c["lost"] == frames, c
    assert c["rejected"] == c["failed"] == c["conflated"] == 0, c


def node_beat(sub: Subscriber, timeout: float = 5.0) -> dict[str, int]:
    """The counters of the next node heartbeat."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = sub.recv(20)
        if m is not None and m.kind == "heartbeat" and m.header.role == "node":
            return dict(m.header.counters)
    raise AssertionError("no node heartbeat")
