"""A peer that stopped reading (its process hung) frees its slot once its window has stayed shut for the TCP user
timeout (pipeline.transport.drop_dead_peers); an honest peer whose Python is busy keeps it.

A frozen peer is a child process stopped with SIGSTOP: its kernel still ACKs TCP until its buffers are full, its
ZeroMQ reads nothing. (A peer whose machine vanished stops ACKing at once and goes within the same timeout; that needs
a network to cut, which a test here does not have.)"""
from __future__ import annotations

import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager

import psutil
import pytest
import zmq

import pipeline.node
from pipeline.config import NodeConfig, SyntheticSourceConfig
from pipeline.node import EdgeNode
from pipeline.sources import Camera
from pipeline.transport import TCP_USER_TIMEOUT_MS
from test_camera_peers import hostile
from test_pipeline_node import FastDetector, line, subscriber, wait_until

GONE_S = TCP_USER_TIMEOUT_MS / 1000 + 20.0  # the frozen peer's buffers fill, its window stays shut, the gate's turn
HOLD_S = TCP_USER_TIMEOUT_MS // 1000 + 2  # longer than the timeout
PEER = r'''
import ctypes, sys, zmq
ctx = zmq.Context()
socks, monitors = [], []
for endpoint in sys.argv[2:]:
    s = ctx.socket(zmq.SUB)
    s.subscribe(b"")
    monitors.append(s.get_monitor_socket(zmq.EVENT_DISCONNECTED))
    s.connect(endpoint)
    socks.append(s)
for s in socks:
    s.recv_multipart()
print("admitted", flush=True)
ctypes.PyDLL(None).sleep(int(sys.argv[1]))  # libc's sleep with the GIL held: no Python thread runs
print("dropped" if any(m.poll(0) for m in monitors) else "kept", flush=True)
sys.stdin.read()
'''
CAMERA = r'''
import sys, threading
from pipeline.config import SyntheticSourceConfig
from pipeline.sources import run_camera
cfg = SyntheticSourceConfig(kind="synthetic", name="cam0", size=32, fps=20, textures=("grass",), heartbeat_s=0.1)
threading.Thread(target=run_camera, args=(cfg, threading.Event(), lambda e: print(e, flush=True)), daemon=True).start()
sys.stdin.read()
'''


@contextmanager
def child(code: str, *args: str):
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


def peer(ln, hold_s: int):
    """A child process with a SUB socket on the camera and one on the node that reads from both, then holds the GIL
    for `hold_s` and says whether its sockets were dropped meanwhile."""
    return child(PEER, str(hold_s), ln.camera_endpoints[0], ln.endpoint)


def test_a_frozen_subscriber_and_a_frozen_camera_peer_lose_their_slots(tmp_path):
    """Before any timeout both slots stayed taken (measured: over 60 s), and a camera with `max_peers` 2 refused
    the next peer (a node restarted elsewhere)."""
    with line(tmp_path, frames=10_000, fps=20.0) as ln, peer(ln, hold_s=3600) as frozen:
        sub = subscriber(ln)
        cam, node = ln.cameras[0], ln.node
        assert frozen.stdout.readline().strip() == "admitted"
        wait_until(lambda: cam.peers.peers == 2 and node.subscribers.peers == 2)  # the node and the frozen peer
        frozen.send_signal(signal.SIGSTOP)
        wait_until(lambda: cam.peers.peers == 1 and node.subscribers.peers == 1, timeout=GONE_S)
        late = hostile(ln.ctx, zmq.SUB, ln.camera_endpoints[0])
        assert late.poll(3000)  # admitted in the freed slot
        assert cam.peers.refused == 0
        for s in (sub, late):
            s.close()


def test_an_honest_peer_whose_only_reader_holds_the_gil_keeps_its_slots(tmp_path):
    """libzmq's I/O thread keeps reading into the peer's queue while its Python is stuck, for longer than the
    timeout: its window never shuts."""
    with line(tmp_path, frames=10_000, fps=20.0) as ln, peer(ln, hold_s=HOLD_S) as busy:
        sub = subscriber(ln)
        cam, node = ln.cameras[0], ln.node
        assert busy.stdout.readline().strip() == "admitted"
        wait_until(lambda: cam.peers.peers == 2 and node.subscribers.peers == 2)
        assert busy.stdout.readline().strip() == "kept"  # its sockets saw no disconnection
        assert (cam.peers.peers, node.subscribers.peers, cam.peers.refused) == (2, 2, 0)
        sub.close()


NETNS, SUBNET = f"ssdnet{os.getpid()}", f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"  # one per test run
HOST_IP, PEER_IP = f"{SUBNET}.1", f"{SUBNET}.2"


@contextmanager
def netns():
    """A network namespace joined to this one by a veth pair (HOST_IP here, PEER_IP there); needs CAP_NET_ADMIN."""
    host, there = f"vh{os.getpid() % 100000}", f"vp{os.getpid() % 100000}"
    inside = ["ip", "netns", "exec", NETNS]
    steps = [["ip", "netns", "add", NETNS], ["ip", "link", "add", host, "type", "veth", "peer", "name", there],
             ["ip", "link", "set", there, "netns", NETNS], ["ip", "addr", "add", f"{HOST_IP}/24", "dev", host],
             ["ip", "link", "set", host, "up"], [*inside, "ip", "addr", "add", f"{PEER_IP}/24", "dev", there],
             [*inside, "ip", "link", "set", there, "up"]]
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2) to make a network namespace with")
    try:
        for step in steps:
            if (made := subprocess.run(step, capture_output=True, text=True)).returncode:
                pytest.skip(f"cannot make a network namespace here ({' '.join(step[:3])}: {made.stderr.strip()}); "
                            "needs root or CAP_NET_ADMIN")
        yield there
    finally:
        subprocess.run(["ip", "link", "del", host], capture_output=True)
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


def test_a_peer_whose_machine_vanished_loses_its_slots():
    """The peer's link is cut: no FIN, no ACK. Before any timeout its slots stayed taken for more than 40 s
    (docs/protocol.md section 6); the kernel's user timeout frees both."""
    with netns() as there:
        ctx, stop, ready = zmq.Context(), threading.Event(), []
        bind = f"tcp://{HOST_IP}:*"
        cam = Camera(SyntheticSourceConfig(kind="synthetic", name="cam0", size=64, fps=20, textures=("grass",),
                                           heartbeat_s=0.5, flow="none", max_peers=2, bind=bind), None, ctx)
        node = EdgeNode(NodeConfig(heartbeat_s=0.5, bind=bind), [], FastDetector, ctx)
        threads = [threading.Thread(target=run, args=(stop, ready.append), daemon=True) for run in (cam.run, node.run)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(ready) == 2)
            code = PEER.replace("ctypes.PyDLL(None).sleep(int(sys.argv[1]))", "sys.stdin.read()")
            inside = ["ip", "netns", "exec", NETNS, sys.executable, "-c", code, "0", *ready]
            with subprocess.Popen(inside, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": os.getcwd()}) as far:
                assert select.select([far.stdout], [], [], 30)[0], "the peer in the namespace was not admitted in 30 s"
                assert far.stdout.readline().strip() == "admitted"
                wait_until(lambda: cam.peers.peers == 1 and node.subscribers.peers == 1)
                subprocess.run(["ip", "netns", "exec", NETNS, "ip", "link", "set", there, "down"], check=True)
                wait_until(lambda: cam.peers.peers == 0 and node.subscribers.peers == 0, timeout=GONE_S)
                far.kill()
        finally:
            stop.set()
            for t in threads:
                t.join(5)
            ctx.destroy(linger=0)


class GilFit(FastDetector):
    """A fit that holds the GIL for longer than the heartbeat timeout on its fifth frame."""

    def process(self, image):
        if self.calls == 4:
            ctypes.PyDLL(None).sleep(HOLD_S)
        return super().process(image)


def node_ports(camera_endpoint: str) -> set[int]:
    """This process's local ports of its TCP connections to the camera: the node's connection."""
    port = int(camera_endpoint.rsplit(":", 1)[1])
    return {c.laddr.port for c in psutil.Process().net_connections("tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED}


def test_a_node_busy_in_a_long_fit_keeps_its_camera_connection(tmp_path):
    with line(tmp_path, frames=10_000, fps=20.0, factory=GilFit) as ln:
        sub = subscriber(ln)
        wait_until(lambda: ln.node.counters.source("cam0")["scored"] >= 1)
        before = node_ports(ln.camera_endpoints[0])
        wait_until(lambda: ln.node.counters.source("cam0")["scored"] >= 6, timeout=HOLD_S + 5)  # past the fit
        assert node_ports(ln.camera_endpoints[0]) == before and len(before) == 1
        assert ln.cameras[0].peers.refused == 0 and ln.node.input_reconnects == 0
        sub.close()


def test_the_node_takes_a_frozen_cameras_connection_afresh_and_scores_it_once_it_runs_again(monkeypatch):
    """An idle connection to a hung camera keeps answering TCP (its kernel ACKs), so the node's silence check takes
    it afresh after QUIET_RECONNECT_S (61 s; 3 s here); the camera, running again, is scored again."""
    monkeypatch.setattr(pipeline.node, "QUIET_RECONNECT_S", 3.0)
    ctx, stop, ready = zmq.Context(), threading.Event(), []
    with child(CAMERA) as camera:
        endpoint = camera.stdout.readline().strip()
        node = EdgeNode(NodeConfig(heartbeat_s=0.5), [endpoint], FastDetector, ctx)
        thread = threading.Thread(target=node.run, args=(stop, ready.append), daemon=True)
        thread.start()
        try:
            wait_until(lambda: node.counters.source("cam0")["scored"] >= 1)
            camera.send_signal(signal.SIGSTOP)
            wait_until(lambda: node.input_reconnects >= 1, timeout=10)
            scored = node.counters.source("cam0")["scored"]
            camera.send_signal(signal.SIGCONT)
            wait_until(lambda: node.counters.source("cam0")["scored"] > scored, timeout=20)
        finally:
            camera.send_signal(signal.SIGCONT)
            stop.set()
            thread.join(5)
            ctx.destroy(linger=0)
