"""What a peer answering at a camera's endpoint makes the node hold with one message that never ends.

    PYTHONPATH=<checkout> python docs/security_runs/measure_endless_input.py [MIB [PART_BYTES [MAX_SIDE]]]

This process runs a node (the tests' fast detector) with one synthetic camera (cam0, 64 px, 20 fps) and a second input
endpoint where a fake camera listens: it speaks ZMTP 3.0 (NULL, as a PUB) to the node that connects to it, then sends
MIB MiB (64 by default) of one message's parts of PART_BYTES each (512; 0 for empty parts), 1 MB every 20 ms, without
a last part. The node's `node.max_side` is MAX_SIDE (256), which sets how much a camera connection may send before
the node takes a message from it (pipeline.node.input_unread_bytes). Prints what was sent, the node process's RSS
growth and peak, the node's `rejected_malformed` (a connection cut off for such a message counts there), and that
cam0 is still scored afterwards. Before the gate bounded the node's inputs (commit 90d160b's parent), every byte sent
was held: 64 MiB of 512 B parts, +117 MiB.
"""
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, os.path.join(os.environ.get("PYTHONPATH", "."), "tests"))
from test_pipeline_node import line, subscriber, wait_until  # noqa: E402

TOTAL = int(sys.argv[1]) * 2**20 if len(sys.argv) > 1 else 64 * 2**20
PART = int(sys.argv[2]) if len(sys.argv) > 2 else 512
MAX_SIDE = int(sys.argv[3]) if len(sys.argv) > 3 else 256
GREETING = b"\xff" + b"\0" * 8 + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\0") + b"\0" * 32  # ZMTP 3.0, NULL, as server 0
READY = b"\x05READY\x0bSocket-Type" + (3).to_bytes(4, "big") + b"PUB"


def fake_camera(listener: socket.socket, sent: list[int]) -> None:
    conn, _ = listener.accept()
    conn.sendall(GREETING)
    conn.recv(64)
    conn.sendall(b"\x04" + bytes([len(READY)]) + READY)  # a short command frame
    time.sleep(0.2)
    part = b"\x01\x00" if PART == 0 else b"\x03" + PART.to_bytes(8, "big") + b"\x01" * PART  # MORE set: never the last
    chunk = part * (1_000_000 // len(part))
    try:
        while sent[0] < TOTAL:
            conn.sendall(chunk)
            sent[0] += len(chunk)
            time.sleep(0.02)
    except OSError:  # the node shut the connection down
        pass
    conn.close()


def main() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    sent = [0]
    me = psutil.Process()
    with line(Path(tempfile.mkdtemp()), frames=100_000, fps=20.0, max_side=MAX_SIDE,
              inputs=[f"tcp://127.0.0.1:{listener.getsockname()[1]}"]) as ln:
        sub = subscriber(ln)
        scored = lambda: ln.node.counters.source("cam0")["scored"]  # noqa: E731
        wait_until(lambda: scored() >= 2)
        rss, peak = me.memory_info().rss, 0
        fake = threading.Thread(target=fake_camera, args=(listener, sent))
        t0 = time.monotonic()
        fake.start()
        while fake.is_alive():
            peak = max(peak, me.memory_info().rss)
            fake.join(0.2)
        seconds = time.monotonic() - t0
        grown = (me.memory_info().rss - rss) / 2**20
        before = scored()
        wait_until(lambda: scored() > before + 5)
        malformed = ln.node.counters.rejected["malformed"]
        print(f"{PART} B parts, max_side {MAX_SIDE}: sent {sent[0] / 2**20:.1f} MiB in {seconds:.1f} s, rss "
              f"+{grown:.0f} MiB (peak +{(peak - rss) / 2**20:.0f} MiB), rejected_malformed {malformed}, "
              "cam0 scored on", flush=True)
        sub.close()


if __name__ == "__main__":
    main()
