"""What replay clients that ask as fast as they can make the node do: its scoring rate and the replay thread's CPU.

    PYTHONPATH=<checkout> python docs/security_runs/measure_replay_load.py [SECONDS [EVENTS]] [--flood]

A child process runs a synthetic camera (64 x 64, 50 fps, latest frame only) and a node of the checkout on PYTHONPATH
with the real SSDnet detector (the node's default) and an event log prefilled with EVENTS events (default 100,000) of
a camera `old` (32 regions each: a 1000-event page is ~620 KB). This process then runs, SECONDS each (default 10),
after a warm-up: no replay client; 1 and 4 DEALER clients each asking `events` pages of `old` (after a random
log_seq) again as soon as its answer comes; with --flood, then 1 DEALER that sends requests without reading any
answer, and no client again (the node answers the backlog that sender left). For each it
prints the node's frames scored per second (and its ratio to no client), the replay thread's CPU seconds per second
(psutil per thread), the node process's CPU per second, the pages the clients got, and the node's `replay_throttled`
(busy answers; absent before the budget). Then a legitimate catch-up: `ReplayClient.events("old", 0)` (every event in
1000-event pages, as `ssdnet subscribe --replay` does) timed alone, and with the 4 hammering clients on.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

CHILD = r'''
import json, sys, threading, time, zmq, psutil, msgpack
from pipeline import protocol as P
from pipeline.config import NodeConfig, SyntheticSourceConfig
from pipeline.eventlog import EventLog
from pipeline.node import EdgeNode
from pipeline.sources import Camera
db_path, events = sys.argv[1], int(sys.argv[2])
log = EventLog(db_path)
regions = tuple(P.Region(bbox=(i, i, 10, 10), area=100, peak=5.0) for i in range(32))
blob = msgpack.packb(P.wire_fields(P.EventHeader(kind="event", source="old", seq=1, t_capture=1.0, score=9.0,
                     threshold=3.0, regions=regions, model_version=1)), use_bin_type=True)
log.db.execute("BEGIN")
log.db.executemany("INSERT INTO events VALUES ('old', ?, 0.0, ?)", ((n, blob) for n in range(1, events + 1)))
log.db.execute("COMMIT")
log.close()
ctx, stop, ready = zmq.Context(), threading.Event(), []
cam = Camera(SyntheticSourceConfig(kind="synthetic", name="cam0", size=64, fps=50, textures=("grass",), flow="none"),
             None, ctx)
threading.Thread(target=cam.run, args=(stop, ready.append), daemon=True).start()
while not ready: time.sleep(0.05)
node = EdgeNode(NodeConfig(event_log=db_path, queue_depth=1, heartbeat_s=0.5), ready, None, ctx)
endpoints = []
threading.Thread(target=node.run, args=(stop, endpoints.append), daemon=True).start()
while not endpoints: time.sleep(0.05)
print(json.dumps([endpoints[0], node.replay_endpoint]), flush=True)
proc = psutil.Process()
replay = next(t.native_id for t in threading.enumerate() if t.name == "replay")
for line in sys.stdin:  # a sample per line the parent sends
    times = {t.id: t.user_time + t.system_time for t in proc.threads()}
    cpu = proc.cpu_times()
    print(json.dumps({"t": time.monotonic(), "scored": node.counters.source("cam0").get("scored", 0),
                      "replay_cpu": times.get(replay, 0.0), "cpu": cpu.user + cpu.system,
                      "throttled": node._node_counters().get("replay_throttled")}), flush=True)
stop.set(); time.sleep(1)
'''


class Node:
    def __init__(self, db: str, events: int):
        self.child = subprocess.Popen([sys.executable, "-c", CHILD, db, str(events)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
        self.endpoint, self.replay = json.loads(self.child.stdout.readline())

    def sample(self) -> dict:
        self.child.stdin.write("\n")
        self.child.stdin.flush()
        return json.loads(self.child.stdout.readline())

    def close(self) -> None:
        self.child.stdin.close()
        self.child.wait(10)


def request(events: int) -> list[bytes]:
    after = random.randrange(0, max(1, events - 1000))
    return [b"", msgpack.packb({"op": "events", "source": "old", "after": after, "limit": 1000})]


def hammer(ctx: zmq.Context, endpoint: str, readers: int, flooders: int, seconds: float, events: int,
           also=None) -> int:
    """Run the clients for `seconds` (or while the thread `also` runs); the pages (not `busy`) the readers got."""
    socks = []
    for i in range(readers + flooders):
        s = ctx.socket(zmq.DEALER)
        s.linger = 0
        if i >= readers:
            s.rcvhwm, s.rcvbuf = 1, 4096
        s.connect(endpoint)
        socks.append(s)
    poller = zmq.Poller()
    for s in socks[:readers]:
        poller.register(s, zmq.POLLIN)
        s.send_multipart(request(events))
    got, end = 0, time.monotonic() + seconds
    while time.monotonic() < end and (also is None or also.is_alive()):
        for s in socks[readers:]:
            try:
                while True:
                    s.send_multipart(request(events), zmq.NOBLOCK)
            except zmq.Again:
                pass
        for s, _ in poller.poll(10):
            got += b"busy" not in s.recv_multipart()[-1][:40]  # a page, not a `busy` answer
            s.send_multipart(request(events))
    for s in socks:
        s.close()
    return got


def catch_up(ctx: zmq.Context, endpoint: str, events: int) -> float:
    from pipeline.eventlog import ReplayClient

    client = ReplayClient(endpoint, ctx, timeout_ms=30_000)
    t0 = time.perf_counter()
    got = client.events("old", 0)
    client.close()
    assert [n for n, _ in got] == list(range(1, events + 1))
    return time.perf_counter() - t0


def main(seconds: float, events: int, flood: bool) -> None:
    import threading

    ctx = zmq.Context()
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(os.path.join(tmp, "events.db"), events)
        try:
            time.sleep(max(5.0, seconds))  # the node's first frames fit the camera's model
            base: list[float] = []

            def phase(name: str, readers: int, flooders: int) -> None:
                a = node.sample()
                pages = hammer(ctx, node.replay, readers, flooders, seconds, events)
                b = node.sample()
                wall = b["t"] - a["t"]
                fps = (b["scored"] - a["scored"]) / wall
                base.append(base[0] if base else fps)
                print(f"{name:24s} scored {fps:5.1f} frames/s ({fps / base[0]:.2f} of no client), replay thread "
                      f"{(b['replay_cpu'] - a['replay_cpu']) / wall:.2f} CPU s/s, node process "
                      f"{(b['cpu'] - a['cpu']) / wall:.2f} CPU s/s, pages to readers {pages / wall:.0f}/s, "
                      f"replay_throttled {b['throttled']}", flush=True)

            for args in (("no client", 0, 0), ("1 reader", 1, 0), ("4 readers", 4, 0)):
                phase(*args)
            alone = catch_up(ctx, node.replay, events)
            result: list[float] = []
            t = threading.Thread(target=lambda: result.append(catch_up(ctx, node.replay, events)))
            t.start()
            hammer(ctx, node.replay, 4, 0, 600, events, also=t)
            t.join()
            print(f"catch-up of {events} events by ReplayClient: {alone:.1f} s alone, {result[0]:.1f} s with 4 "
                  f"readers hammering ({node.sample()['throttled']} throttled in all)", flush=True)
            if flood:  # last: with ZMTP heartbeats, libzmq 4.3.5 aborted the node after it (tests/test_peer_floods.py)
                phase("1 sender, reads nothing", 0, 1)
                phase("no client, after", 0, 0)
        finally:
            node.close()
            ctx.term()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0, int(sys.argv[2]) if len(sys.argv) > 2 else 100_000,
         "--flood" in sys.argv)
