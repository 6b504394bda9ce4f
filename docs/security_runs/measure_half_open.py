"""How long a peer that froze keeps its slot on a camera's frame socket and on the node's result socket.

    PYTHONPATH=<checkout> python docs/security_runs/measure_half_open.py [GIVE_UP_S [HOLD_GIL_S [SIZE]]]
    PYTHONPATH=<checkout> python docs/security_runs/measure_half_open.py GIVE_UP_S 0 SIZE --vanish NETNS HOST_IP DEV

This process runs a camera (synthetic, SIZE x SIZE, 64 by default, 20 fps, `max_peers` 2) and a node (the tests'
fast detector) of the checkout on PYTHONPATH, in threads. A child process connects a SUB socket to each (the
camera's slot beside the node, one of the node's 16), reads a message from both, and is then frozen with SIGSTOP:
its kernel still ACKs TCP, its ZeroMQ answers nothing, as a peer whose process hung or (until TCP gives up) whose
machine lost power. Prints
JSON: for each socket, the seconds until the gate counted the frozen peer gone (null: not within GIVE_UP_S, 60 by
default), the bytes the frozen connection held in the kernel's queues (send and receive, both ends) at that point,
and whether a new SUB socket connecting then (a node restarted elsewhere, a new subscriber) was admitted (heard a
message within 3 s). With HOLD_GIL_S, the child is not frozen but holds the GIL that long in one C call (libc's
sleep through ctypes.PyDLL) on the only thread that reads: an honest peer whose Python is busy; `gone_after_s` null
then means it kept both slots.

With --vanish (root; a network namespace NETNS joined to this one by a veth pair whose end here has HOST_IP and whose
end in NETNS is DEV: `ip netns add ns; ip link add vh0 type veth peer name vp0; ip link set vp0 netns ns; ip addr add
10.77.0.1/24 dev vh0; ip link set vh0 up; ip netns exec ns ip addr add 10.77.0.2/24 dev vp0; ip netns exec ns ip link
set vp0 up`), the camera and the node bind HOST_IP, the child runs in NETNS, and instead of freezing it the link is
cut (`ip link set DEV down` in NETNS): a peer whose machine vanished, neither FIN nor ACK."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import zmq

sys.path.insert(0, os.path.join(os.environ.get("PYTHONPATH", "."), "tests"))
from pipeline.config import NodeConfig, SyntheticSourceConfig  # noqa: E402
from pipeline.node import EdgeNode  # noqa: E402
from pipeline.sources import Camera  # noqa: E402
from test_pipeline_node import FastDetector  # noqa: E402

PEER = r'''
import ctypes, sys, zmq
ctx = zmq.Context()
socks = []
for endpoint in sys.argv[1:3]:
    s = ctx.socket(zmq.SUB)
    s.subscribe(b"")
    s.connect(endpoint)
    socks.append(s)
for s in socks:
    s.recv_multipart()
print("admitted", flush=True)
hold = float(sys.argv[3])
if hold:
    ctypes.PyDLL(None).sleep(int(hold))  # libc sleep with the GIL held
    print("awake", flush=True)
sys.stdin.read()
'''


def queued(port: int) -> int:
    """Bytes in the send and receive queues of the established loopback TCP connections at `port` (both ends)."""
    out = subprocess.run(["ss", "-tnH", "state", "established"], capture_output=True, text=True).stdout
    return sum(int(f[0]) + int(f[1]) for f in (line.split() for line in out.splitlines())
               if f[2].endswith(f":{port}") or f[3].endswith(f":{port}"))


def admitted(ctx: zmq.Context, endpoint: str) -> bool:
    s = ctx.socket(zmq.SUB)
    s.linger = 0
    s.subscribe(b"")
    s.connect(endpoint)
    try:
        return bool(s.poll(3000))
    finally:
        s.close()


def main(give_up_s: float, hold_gil_s: float, size: int, vanish: list[str] | None = None) -> dict:
    ctx, stop, ready = zmq.Context(), threading.Event(), []
    bind = f"tcp://{vanish[1]}:*" if vanish else "tcp://127.0.0.1:*"
    cam = Camera(SyntheticSourceConfig(kind="synthetic", name="cam0", size=size, fps=20, textures=("grass",),
                                       heartbeat_s=0.5, flow="none", max_peers=2, bind=bind), None, ctx)
    threading.Thread(target=cam.run, args=(stop, ready.append), daemon=True).start()
    while not ready:
        time.sleep(0.05)
    node = EdgeNode(NodeConfig(heartbeat_s=0.5, bind=bind), [ready[0]], FastDetector, ctx)
    threading.Thread(target=node.run, args=(stop, ready.append), daemon=True).start()
    while len(ready) < 2 or cam.peers.peers < 1:
        time.sleep(0.05)
    slots = {"camera": (cam.peers, ready[0], 1), "node": (node.subscribers, ready[1], 0)}
    inside = ["ip", "netns", "exec", vanish[0]] if vanish else []
    peer = subprocess.Popen([*inside, sys.executable, "-c", PEER, ready[0], ready[1], str(hold_gil_s)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert peer.stdout.readline().strip() == "admitted"
    time.sleep(1.0)  # the gate counts it
    assert cam.peers.peers == 2 and node.subscribers.peers == 1, (cam.peers.peers, node.subscribers.peers)
    if vanish:
        subprocess.run([*inside, "ip", "link", "set", vanish[2], "down"], check=True)
    elif not hold_gil_s:
        peer.send_signal(signal.SIGSTOP)
    t0, result = time.monotonic(), {}
    gone: dict[str, float | None] = dict.fromkeys(slots)
    held: dict[str, int] = {}
    while time.monotonic() - t0 < (give_up_s if not hold_gil_s else hold_gil_s + 1):
        for name, (limit, _, others) in slots.items():
            if gone[name] is None and limit.peers <= others:
                gone[name] = round(time.monotonic() - t0, 1)
        if all(v is not None for v in gone.values()):
            break
        time.sleep(0.05)
    for name, (_, endpoint, _) in slots.items():
        held[name] = queued(int(endpoint.rsplit(":", 1)[1]))
    for name, (limit, endpoint, _) in slots.items():
        new_peer_admitted = admitted(ctx, endpoint)
        result[name] = {"gone_after_s": gone[name], "kernel_queued_bytes": held[name],
                        "new_peer_admitted": new_peer_admitted, "refused": limit.refused}
    if hold_gil_s:
        result["peer_woke"] = peer.stdout.readline().strip() == "awake"
    peer.kill()
    peer.wait()
    if vanish:
        subprocess.run([*inside, "ip", "link", "set", vanish[2], "up"], check=True)
    stop.set()
    time.sleep(1.0)
    ctx.destroy(linger=0)
    return {"give_up_s": give_up_s, "hold_gil_s": hold_gil_s or None, "size": size, "vanished": bool(vanish), **result}


if __name__ == "__main__":
    args, vanish = sys.argv[1:], None
    if "--vanish" in args:
        at = args.index("--vanish")
        args, vanish = args[:at] + args[at + 4:], args[at + 1:at + 4]
    print(json.dumps(main(float(args[0]) if args else 60.0, float(args[1]) if len(args) > 1 else 0.0,
                          int(args[2]) if len(args) > 2 else 64, vanish)))
