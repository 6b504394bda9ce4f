"""Measurement behind docs/protocol.md section 6: a subscriber that floods a node's result socket with subscriptions.

    python docs/security_runs/subscription_flood.py [SECONDS [RUN ...]]

Runs of a node with one synthetic camera (64x64, 20 fps, the fit-free default detector) and one honest subscriber
(`anomaly/`), each SECONDS long (default 30) once the line runs. RUN is `control` (no flood), `default` (a flood,
the node's config as it comes) or a number (a flood at that `node.max_subscriptions`); by default `control default
1000000` (the most it may be: no reset in these runs; `default` also runs on a checkout from before the limit). The
flood comes from a second process that speaks ZMTP 3.0 over a plain TCP socket as a SUB peer and sends distinct
60-byte topics as fast as the node takes them, reconnecting whenever the node drops it; it keeps no state, so
it can go on for ever. Reported: topics sent, the node's `subscription_resets`, the node process's RSS growth (peak
and at the end), and the anomaly messages the honest subscriber got. Prints one JSON line per run.
"""
from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time

import psutil
import zmq

from edge.config import SSDNetConfig
from pipeline.config import NodeConfig, SyntheticSourceConfig
from pipeline.node import EdgeNode, SSDNetDetectors
from pipeline.sinks import Subscriber
from pipeline.sources import Camera

GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32
READY = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 3) + b"SUB"


def flood(endpoint: str, seconds: float) -> None:
    """Subscribe to new topics until `seconds` pass, reconnecting when dropped; prints the number sent."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    sent, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0) as s:
                s.sendall(GREETING + b"\x04" + bytes([len(READY)]) + READY)
                while time.monotonic() < end:
                    topics = [b"\x01anomaly/cam%012d/" % (sent + i) + b"x" * 36 for i in range(100)]
                    s.sendall(b"".join(b"\x00" + bytes([len(t)]) + t for t in topics))
                    sent += len(topics)
        except OSError:
            time.sleep(0.01)
    print(sent, flush=True)


def run(seconds: float, what: str) -> dict:
    ctx, stop, proc = zmq.Context(), threading.Event(), psutil.Process()
    cam = Camera(SyntheticSourceConfig(kind="synthetic", name="cam0", size=64, fps=20, textures=("grass",)), ctx=ctx)
    ready: list = []
    threads = [threading.Thread(target=cam.run, args=(stop, ready.append), daemon=True)]
    threads[0].start()
    while not ready:
        time.sleep(0.01)
    limit = {"max_subscriptions": int(what)} if what.isdigit() else {}
    node = EdgeNode(NodeConfig(heartbeat_s=0.5, threads=1, **limit), ready, SSDNetDetectors(SSDNetConfig()), ctx,
                    input_names=["cam0"])
    node_ready: list = []
    threads.append(threading.Thread(target=node.run, args=(stop, node_ready.append, 30.0), daemon=True))
    threads[1].start()
    while not node_ready:
        time.sleep(0.01)
    sub = Subscriber(node_ready[0], (b"anomaly/",), ctx=ctx)
    got = 0
    while got < 20:  # the camera's model is built and the line runs at its pace first
        got += sub.recv(100) is not None
    rss0 = peak = proc.memory_info().rss
    attacker = None
    if what != "control":
        attacker = subprocess.Popen([sys.executable, __file__, "--flood", node_ready[0], str(seconds)],
                                    stdout=subprocess.PIPE, text=True)
    try:
        received, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            received += sub.recv(100) is not None
            peak = max(peak, proc.memory_info().rss)
        sent = int(attacker.communicate(timeout=30)[0]) if attacker is not None else 0
        publisher = getattr(node, "publisher", None)  # None before the limit
        return {"seconds": seconds, "run": what, "topics_sent": sent,
                "subscription_resets": publisher.resets if publisher else None,
                "rss_peak_growth_mb": round((peak - rss0) / 2**20),
                "rss_growth_end_mb": round((proc.memory_info().rss - rss0) / 2**20),
                "anomaly_messages_received": received}
    finally:
        if attacker is not None:
            attacker.kill()
        stop.set()
        for t in threads:
            t.join(10)
        sub.close()
        ctx.destroy(linger=0)


def main() -> None:
    if sys.argv[1:2] == ["--flood"]:
        flood(sys.argv[2], float(sys.argv[3]))
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    for what in sys.argv[2:] or ["control", "default", "1000000"]:
        print(json.dumps(run(seconds, what)), flush=True)


if __name__ == "__main__":
    main()
