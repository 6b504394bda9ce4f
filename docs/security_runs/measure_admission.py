"""Measurements behind docs/protocol.md section 5 (issue 15), with the real SSDnet detector on the CPU:

    python docs/security_runs/measure_admission.py names      # thousands of invented camera names
    python docs/security_runs/measure_admission.py oversize [MAX_FRAME_PIXELS]   # one 3000x3000 frame
    python docs/security_runs/measure_admission.py jpegs [SIDE]     # a steady stream of costly jpegs

`names`: a node with one real camera (128x128) and one hostile node.connect peer that sends 5000
frames under 5000 invented names, once with dynamic cameras off (all refused) and once on (limit
16); the process's RSS before and after, the cameras bound and the refusals counted.
`oversize`: a real camera (128x128, 0.5 fps, 40 frames) and, mid-stream, one 3000x3000 frame from a declared
peer; each camera frame's time waiting in the node (`queue`: received -> fit start) before and after,
the big frame's fit + score time at the size it was scored, and the process's peak RSS.
`jpegs`: the real camera (128x128, 1 fps, 20 frames) and a declared peer sending 4 progressive SIDE x SIDE jpegs
a second (default 4096; scored downscaled to 128x128, node.max_frame_pixels, so that decoding is what they cost),
each with its last scan repeated to 64 scans (the most a jpeg may have), for 20 s; when cam0's end of stream came,
cam0's frames scored and waiting times, the peer's frames received, conflated and scored, and the seconds spent in
jpeg decoding (cv2.imdecode, timed).
Prints one JSON object; the numbers in docs/protocol.md came from runs on the 2-core development VM.
"""
from __future__ import annotations

import json
import sys
import threading
import time

import cv2
import msgpack
import numpy as np
import psutil
import zmq

from edge.config import SSDNetConfig
from pipeline.config import NodeConfig, SyntheticSourceConfig
from pipeline.node import EdgeNode, SSDNetDetectors
from pipeline.sinks import Subscriber
from pipeline.sources import Camera
from pipeline.transport import Publisher


def _frame(name: str, seq: int, image: np.ndarray, jpeg: bytes | None = None) -> list[bytes]:
    t = time.time()
    header = {"v": 1, "kind": "frame", "source": name, "seq": seq, "t_capture": t, "stamps": {"capture": t},
              "payloads": [{"name": "image", "shape": list(image.shape), "dtype": "uint8",
                            "encoding": "raw" if jpeg is None else "jpeg"}]}
    return [f"frame/{name}".encode(), msgpack.packb(header), image.tobytes() if jpeg is None else jpeg]


class Peak(threading.Thread):
    """Samples this process's RSS every `interval` s (also docs/security_runs/measure_graphs.py's)."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.proc, self.peak, self.halt, self.interval = psutil.Process(), 0, threading.Event(), interval

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            self.peak = max(self.peak, self.proc.memory_info().rss)


def _line(node_kw: dict, frames: int, fps: float, peer_names: list[str] | None, body) -> dict:
    ctx, stop = zmq.Context(), threading.Event()
    out = Publisher(ctx, "tcp://127.0.0.1:*", sndhwm=100_000, max_topics=1000, name="peer")
    peer, peer_ep = out.sock, out.endpoint
    cam = Camera(SyntheticSourceConfig(kind="synthetic", name="cam0", size=128, frames=frames, fps=fps,
                                       textures=("grass",)), ctx=ctx)
    ready: list = []
    threads = [threading.Thread(target=cam.run, args=(stop, ready.append), daemon=True)]
    threads[0].start()
    while not ready:
        time.sleep(0.01)
    listed = {peer_ep: tuple(peer_names)} if peer_names else {}
    cfg = NodeConfig(connect=(peer_ep,), connect_cameras=listed, threshold=1e9, heartbeat_s=0.5, threads=1,
                     **node_kw)
    node = EdgeNode(cfg, ready, SSDNetDetectors(SSDNetConfig()), ctx, input_names=["cam0"])
    node_ready: list = []
    threads.append(threading.Thread(target=node.run, args=(stop, node_ready.append, 30.0), daemon=True))
    threads[1].start()
    while not node_ready:
        time.sleep(0.01)
    sub = Subscriber(node_ready[0], (b"anomaly/", b"eos/"), ctx=ctx)
    out.wait_for_subscriber(30, stop)
    try:
        return body(node, peer, sub)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        sub.close()
        peer.close(0)
        ctx.destroy(linger=0)


def _until_eos(sub: Subscriber, timeout: float, during=None) -> list:
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline and not any(m.kind == "eos" and m.source == "cam0" for m in got):
        if (m := sub.recv(100)) is not None:
            got.append(m)
        if during is not None:
            during(got)
    return got


def names() -> dict:
    out = {}
    for dynamic in (False, True):
        def body(node, peer, sub):
            rss0 = psutil.Process().memory_info().rss
            tiny = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
            for i in range(5000):
                peer.send_multipart(_frame(f"fake{i:05d}", 0, tiny))
            got = _until_eos(sub, 1800)
            time.sleep(2)
            rss1 = psutil.Process().memory_info().rss
            return {"rss_before_mb": round(rss0 / 2**20), "rss_after_mb": round(rss1 / 2**20),
                    "cameras_bound": len(node.admission.cameras), "models": len(node.detectors),
                    "cam0_scored": sum(m.kind == "anomaly" and m.source == "cam0" for m in got),
                    "rejected": {k: v for k, v in node.counters.rejected.items() if v}}
        out["dynamic" if dynamic else "not_dynamic"] = _line(
            {"dynamic_cameras": dynamic, "max_dynamic_cameras": 16, "queue_depth": 64}, 6, 0.5, None, body)
    return out


def oversize(max_frame_pixels: int | None = None) -> dict:
    big = np.random.default_rng(1).integers(0, 255, (3000, 3000, 3), dtype=np.uint8)

    def body(node, peer, sub):
        peak, sent = Peak(), []
        peak.start()

        def attack(got):
            if not sent and sum(m.kind == "anomaly" for m in got) == 2:  # after the cold frame and a warm one
                peer.send_multipart(_frame("big", 0, big))
                sent.append(time.time())

        got = _until_eos(sub, 3600, attack)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not any(m.kind == "anomaly" and m.source == "big" for m in got):
            if (m := sub.recv(100)) is not None:
                got.append(m)
        peak.halt.set()
        cam = [m.header for m in got if m.kind == "anomaly" and m.source == "cam0"]
        wait = [round((h.stamps["fitted"] - h.fit_ms / 1e3 - h.stamps["received"]) * 1e3) for h in cam]
        bigs = [m for m in got if m.kind == "anomaly" and m.source == "big"]
        return {"cam0_queue_ms": wait, "cam0_frame_ms": [round(h.fit_ms + h.score_ms) for h in cam],
                "big_scored_at": list(bigs[0].arrays["map"].shape) if bigs else None,
                "big_fit_plus_score_ms": round(bigs[0].header.fit_ms + bigs[0].header.score_ms) if bigs else None,
                "peak_rss_mb": round(peak.peak / 2**20), "downscaled": node.counters.source("big")["downscaled"]}

    return _line({"queue_depth": 1, "max_frame_pixels": max_frame_pixels}, 40, 0.5, ["big"], body)


def jpegs(side: int = 4096) -> dict:
    from edge.synthetic import texture
    from pipeline import protocol

    image = cv2.resize(texture("grass", 512, np.random.default_rng(0)), (side, side), interpolation=cv2.INTER_CUBIC)
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    last, end = jpeg.rfind(b"\xff\xda"), jpeg.rfind(b"\xff\xd9")
    jpeg = jpeg[:last] + jpeg[last:end] * (protocol.MAX_JPEG_SCANS - jpeg.count(b"\xff\xda") + 1) + jpeg[end:]
    decoding = []
    imdecode = cv2.imdecode

    def timed(*args):
        t0 = time.perf_counter()
        out = imdecode(*args)
        decoding.append(time.perf_counter() - t0)
        return out

    protocol.cv2.imdecode = timed

    def body(node, peer, sub):
        halt = threading.Event()

        def flood():  # for as long as cam0 streams (20 s)
            for seq in range(80):
                if halt.wait(0.25):
                    return
                peer.send_multipart(_frame("heavy", seq, image, jpeg))

        start = time.monotonic()
        threading.Thread(target=flood, daemon=True).start()
        got = _until_eos(sub, 1800)
        ended = time.monotonic() - start
        halt.set()
        cam = [m.header for m in got if m.kind == "anomaly" and m.source == "cam0"]
        wait = sorted(round((h.stamps["fitted"] - h.fit_ms / 1e3 - h.stamps["received"]) * 1e3) for h in cam)
        heavy = node.counters.source("heavy")
        return {"jpeg_kb": len(jpeg) // 1024, "scans": jpeg.count(b"\xff\xda"), "cam0_eos_after_s": round(ended, 1),
                "cam0_scored": len(cam),
                "cam0_queue_ms_p50_max": [wait[len(wait) // 2], wait[-1]] if wait else None,
                "heavy": {k: heavy[k] for k in ("received", "conflated", "scored", "rejected")},
                "jpegs_decoded": len(decoding), "decode_s": round(sum(decoding), 1)}

    return _line({"queue_depth": 1, "max_frame_pixels": 128 * 128}, 20, 1.0, ["heavy"], body)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "names"
    args = [int(a) for a in sys.argv[2:]]  # oversize: node.max_frame_pixels (default: ssdnet.max_pixels); jpegs: side
    print(json.dumps({"names": names, "oversize": oversize, "jpegs": jpegs}[what](*args), indent=1))
