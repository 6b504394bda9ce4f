"""A peer that floods a socket of the line and then leaves must not kill the process behind the socket.

With ZMTP heartbeats on (libzmq 4.3.5, `ZMQ_HEARTBEAT_IVL`), a connection whose input had stopped (the socket's
receive queue full: subscriptions the node had not filed yet, replay requests it had not read) and whose peer then
closed it aborted the whole process at the next PING (`Assertion failed: !_io_error (src/stream_engine_base.cpp:310)`,
libzmq issue 4364): any client the node's result or replay socket admitted, or any peer of a camera, could end the
node or the camera. The attacks run in a child process, since the fault is an abort, not an exception."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.eventlog import ReplayClient, ReplayError
from test_pipeline_node import line

ATTACKS = r'''
import sys, tempfile, time
from pathlib import Path
import zmq
sys.path.insert(0, "tests")
from test_pipeline_node import line, subscriber, wait_until

def flood_and_leave(endpoint, kind, parts):
    ctx = zmq.Context()
    s = ctx.socket(kind)
    s.setsockopt(zmq.SNDHWM, 0)
    s.connect(endpoint)
    for i in range(20_000):
        s.send_multipart(parts(i))
    time.sleep(0.3)
    s.close(linger=0)
    ctx.term()
    time.sleep(2.0)  # past the heartbeat interval: where the old sockets aborted

tmp = Path(tempfile.mkdtemp())
with line(tmp, frames=100_000, fps=20.0, event_log=tmp / "events.db", replay_bind="tcp://127.0.0.1:*") as ln:
    sub = subscriber(ln)
    scored = lambda: ln.node.counters.source("cam0")["scored"]
    wait_until(lambda: scored() >= 2)
    for name, endpoint, kind, parts in [
        ("subscriptions to the node", ln.endpoint, zmq.XSUB, lambda i: [b"\x01t%07d" % i]),
        ("replay requests", ln.node.replay_endpoint, zmq.DEALER, lambda i: [b"", b"\x81\xa2op\xa5heads"]),
        ("subscriptions to the camera", ln.camera_endpoints[0], zmq.XSUB, lambda i: [b"\x01t%07d" % i]),
    ]:
        for _ in range(2):
            flood_and_leave(endpoint, kind, parts)
        before = scored()
        wait_until(lambda: scored() > before)
        print("alive after", name, flush=True)
    sub.close()
'''


def test_a_peer_that_floods_and_leaves_kills_neither_the_node_nor_the_camera():
    proc = subprocess.run([sys.executable, "-c", ATTACKS], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    alive = [line for line in proc.stdout.splitlines() if line.startswith("alive after")]
    assert proc.returncode == 0, f"exit {proc.returncode}, {alive}: {proc.stderr[-600:]}"
    assert alive == ["alive after subscriptions to the node", "alive after replay requests",
                     "alive after subscriptions to the camera"]


def test_a_replay_request_whose_op_is_no_string_is_answered_and_the_replay_thread_lives_on(tmp_path):
    """`{"op": []}` (8 bytes from any replay client) raised TypeError (an unhashable op looked up in a dict) out of
    the replay thread, which ended: the node scored on, and no subscriber could catch up again."""
    with line(tmp_path, frames=5, event_log=tmp_path / "events.db", replay_bind="tcp://127.0.0.1:*") as ln:
        client = ReplayClient(ln.node.replay_endpoint, ln.ctx)
        for op in ([], {}):
            with pytest.raises(ReplayError, match="op 'heads', 'events' or 'ends', got op"):
                client.request({"op": op})
        assert isinstance(client.heads(), dict)
        client.close()
