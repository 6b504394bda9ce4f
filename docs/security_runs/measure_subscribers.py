"""Node RSS growth and connections held by N subscribers that connect and never read, while a 512 px camera streams.

    PYTHONPATH=<checkout> python measure_subscribers.py N [SECONDS]

A child process runs a camera (synthetic, 512 x 512, 20 fps) and a node (the tests' fast detector, attach_image:
always, so a result is ~1 MB) of the checkout on PYTHONPATH; this process opens one honest subscriber that reads the
node's heartbeats, then N SUB sockets (one every 0.2 s, RCVHWM 1, 4 KB receive buffer) that never read. Prints JSON:
the node's RSS growth (peak, end) over its RSS before the hostile subscribers, the established TCP connections to
the node's result port at the end, and the node's last `refused_subscribers` (absent before the bound)."""
import json
import os
import subprocess
import sys
import time

import psutil
import zmq

CHILD = r'''
import sys, threading, time, zmq
sys.path.insert(0, "tests")
from pipeline.config import NodeConfig, SyntheticSourceConfig
from pipeline.node import EdgeNode
from pipeline.sources import Camera
from test_pipeline_node import FastDetector
ctx, stop = zmq.Context(), threading.Event()
cam_ready, node_ready = [], []
cam = Camera(SyntheticSourceConfig(kind="synthetic", name="cam0", size=512, fps=20, textures=("grass",),
                                   heartbeat_s=0.5, flow="none"), None, ctx)
threading.Thread(target=cam.run, args=(stop, cam_ready.append), daemon=True).start()
while not cam_ready: time.sleep(0.05)
node = EdgeNode(NodeConfig(attach_image="always", heartbeat_s=0.5, queue_depth=1), cam_ready, FastDetector, ctx)
threading.Thread(target=node.run, args=(stop, node_ready.append), daemon=True).start()
while not node_ready: time.sleep(0.05)
print(node_ready[0], flush=True)
sys.stdin.read()  # until the parent closes it
stop.set(); time.sleep(1)
'''


def main(n: int, seconds: float) -> dict:
    repo = os.environ["PYTHONPATH"]
    child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    endpoint = child.stdout.readline().strip()
    port = int(endpoint.rsplit(":", 1)[1])
    proc = psutil.Process(child.pid)
    ctx = zmq.Context()
    honest = ctx.socket(zmq.SUB)
    honest.subscribe(b"heartbeat/node")
    honest.connect(endpoint)
    refused = None

    def read_honest() -> None:
        nonlocal refused
        while honest.poll(0):
            parts = honest.recv_multipart()
            import msgpack
            counters = msgpack.unpackb(parts[1]).get("counters", {})
            refused = counters.get("refused_subscribers", refused)

    time.sleep(5)  # the node warms up
    read_honest()
    base = proc.memory_info().rss
    hostile = []
    t0 = time.monotonic()
    peak = base
    while time.monotonic() - t0 < seconds:
        if len(hostile) < n:
            s = ctx.socket(zmq.SUB)
            s.rcvhwm, s.rcvbuf = 1, 4096
            s.subscribe(b"")
            s.connect(endpoint)
            hostile.append(s)
        read_honest()
        peak = max(peak, proc.memory_info().rss)
        time.sleep(0.2)
    end = proc.memory_info().rss
    conns = [c for c in proc.net_connections("tcp") if c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED]
    read_honest()
    child.stdin.close()
    child.wait(10)
    ctx.destroy(linger=0)
    return {"subscribers": n, "seconds": seconds, "node_rss_before_mb": round(base / 2**20),
            "rss_growth_peak_mb": round((peak - base) / 2**20), "rss_growth_end_mb": round((end - base) / 2**20),
            "established_connections_at_result_port": len(conns), "refused_subscribers": refused}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 30.0)))
