"""Camera RSS growth and frames the node scored while N hostile peers connect to a camera's frame socket.

    PYTHONPATH=<checkout> python measure_camera_peers.py MODE N [SECONDS [MAX_PEERS]]

MODE says what the camera is and what the hostile peers do:
- `pub`: a live camera (synthetic, 512 x 512, 20 fps, `pattern: pub`); each peer is a SUB socket (RCVHWM 1, 4 KB
  receive buffer) that subscribes to everything and never reads;
- `push`: the same camera with `pattern: push`; each peer is a PULL socket that never reads;
- `credit`: a recorded camera (`flow: credit`, 256 x 256, as fast as credit allows) and a node that takes 50 ms a
  frame; each peer is an XSUB socket that subscribes to everything, grants the camera credit up to 2^62 (section 3a
  of docs/protocol.md) and never reads.
A child process runs the camera (`run_camera`, its own context, as a line's camera stage does), another the node
(the tests' fast detector) of the checkout on PYTHONPATH; this process reads the node's heartbeats and the camera's
(forwarded by the node), then opens the N peers, one every 0.2 s. Prints JSON: the camera's RSS growth (peak, end)
over its RSS before the peers; over the run, frames the camera sent and the node scored, lost and conflated; the
established TCP connections to the camera's port at the end; the camera's last `refused_peers` (absent before the
bound). MAX_PEERS sets the camera's `max_peers` (none: the checkout's default)."""
import json
import os
import subprocess
import sys
import time

import msgpack
import psutil
import zmq

CAMERA = r'''
import sys, threading
from pipeline.config import SyntheticSourceConfig
from pipeline.sources import run_camera
mode, stop = sys.argv[1], threading.Event()
bound = {"max_peers": int(sys.argv[2])} if len(sys.argv) > 2 else {}
cfg = SyntheticSourceConfig(kind="synthetic", name="cam0", textures=("grass",), heartbeat_s=0.5, **bound,
                            **({"size": 256, "flow": "credit"} if mode == "credit" else
                               {"size": 512, "fps": 20, "flow": "none", "pattern": mode}))
threading.Thread(target=run_camera, args=(cfg, stop, lambda e: print(e, flush=True)), daemon=True).start()
sys.stdin.read()  # until the parent closes it
stop.set()
'''
NODE = r'''
import sys, threading, time, zmq
sys.path.insert(0, "tests")
from pipeline.config import NodeConfig
from pipeline.node import EdgeNode
from test_pipeline_node import FastDetector
mode, camera, stop, ready = sys.argv[1], sys.argv[2], threading.Event(), []
node = EdgeNode(NodeConfig(heartbeat_s=0.5, input="pull" if mode == "push" else "sub"), [camera],
                lambda s: FastDetector(delay=0.05 if mode == "credit" else 0.0), zmq.Context())
threading.Thread(target=node.run, args=(stop, ready.append), daemon=True).start()
while not ready: time.sleep(0.05)
print(ready[0], flush=True)
sys.stdin.read()
stop.set(); time.sleep(1)
'''
PEER = {"pub": zmq.SUB, "push": zmq.PULL, "credit": zmq.XSUB}


def child(code: str, *args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=os.environ["PYTHONPATH"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def hostile(ctx: zmq.Context, mode: str, endpoint: str) -> zmq.Socket:
    s = ctx.socket(PEER[mode])
    s.rcvhwm, s.rcvbuf = 1, 4096
    if mode == "pub":
        s.subscribe(b"")
    s.connect(endpoint)
    if mode == "credit":
        s.send(b"\x01")  # every topic
        s.send(b"\x02ssdnet-credit" + msgpack.packb({"source": "cam0", "upto": 2**62, "node": "x"}))
    return s


def main(mode: str, n: int, seconds: float, max_peers: str | None = None) -> dict:
    camera, cam_endpoint = child(CAMERA, mode, *([max_peers] if max_peers else []))
    node, node_endpoint = child(NODE, mode, cam_endpoint)
    cam_proc = psutil.Process(camera.pid)
    ctx = zmq.Context()
    beats = ctx.socket(zmq.SUB)
    beats.subscribe(b"heartbeat/")
    beats.connect(node_endpoint)
    last: dict[str, dict] = {"cam0": {}, "node": {}}

    def read_beats() -> None:
        while beats.poll(0):
            parts = beats.recv_multipart()
            header = msgpack.unpackb(parts[1])
            last[header["source"]] = header.get("counters", {})

    def counts() -> dict[str, int]:
        node_counts, cam = last["node"], last["cam0"]
        return {"sent": cam.get("sent", 0), **{k: node_counts.get(k, 0) for k in ("scored", "lost", "conflated")}}

    time.sleep(5)  # the line warms up
    read_beats()
    base, before = cam_proc.memory_info().rss, counts()
    peak, peers = base, []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if len(peers) < n:
            peers.append(hostile(ctx, mode, cam_endpoint))
        read_beats()
        peak = max(peak, cam_proc.memory_info().rss)
        time.sleep(0.2)
    time.sleep(1.5)  # the last heartbeats
    read_beats()
    end, after = cam_proc.memory_info().rss, counts()
    port = int(cam_endpoint.rsplit(":", 1)[1])
    conns = [c for c in cam_proc.net_connections("tcp") if c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED]
    for proc in (node, camera):
        proc.stdin.close()
        proc.wait(10)
    ctx.destroy(linger=0)
    return {"mode": mode, "peers": n, "seconds": seconds, "max_peers": max_peers,
            "camera_rss_before_mb": round(base / 2**20),
            "rss_growth_peak_mb": round((peak - base) / 2**20), "rss_growth_end_mb": round((end - base) / 2**20),
            **{k: after[k] - before[k] for k in after}, "established_connections_at_camera_port": len(conns),
            "refused_peers": last["cam0"].get("refused_peers")}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 30.0,
                          sys.argv[4] if len(sys.argv) > 4 else None)))
