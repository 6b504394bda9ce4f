"""CURVE + ZAP allow-list on the line's sockets, key generation, and the insecure-bind guard."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import zmq
import zmq.auth

from edge.config import ConfigError
from pipeline.config import LineConfig, NodeConfig, SyntheticSourceConfig, load_line_config
from pipeline.node import EdgeNode
from pipeline.security import AllowList, KeyFileError, Security, load_public, load_secret, make_keypair
from pipeline.sinks import Subscriber
from pipeline.sources import Camera
from pipeline.transport import bind, secure
from test_pipeline_node import FastDetector, wait_until
from tools.cli import main

pytestmark = pytest.mark.security


def test_keys_command_writes_a_curve_keypair(tmp_path, capsys, monkeypatch):
    modes = []  # the secret file's mode as it was written: before, 0644 until a chmod after it
    create = zmq.auth.create_certificates

    def create_and_look(directory, name):
        paths = create(directory, name)
        modes.append(os.stat(paths[1]).st_mode & 0o777)
        return paths

    monkeypatch.setattr(zmq.auth, "create_certificates", create_and_look)
    assert main(["keys", str(tmp_path / "k"), "--name", "node"]) == 0
    assert modes == [0o600] and os.stat(tmp_path / "k" / "node.key").st_mode & 0o777 == 0o644
    public, secret = zmq.auth.load_certificate(str(tmp_path / "k" / "node.key_secret"))
    assert len(public) == len(secret) == 40 and load_public(tmp_path / "k" / "node.key") == public
    assert os.stat(tmp_path / "k" / "node.key_secret").st_mode & 0o077 == 0
    assert main(["keys", str(tmp_path / "k"), "--name", "node"]) == 2  # never overwritten silently
    assert main(["keys", str(tmp_path / "k"), "--name", "node", "--force"]) == 0


@pytest.fixture
def keys(tmp_path):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    for name in ("cam0", "node", "subscriber", "intruder"):
        make_keypair(keys, name)
    for name in ("node", "subscriber"):  # the clients: node -> camera, subscriber -> node
        (allowed / f"{name}.key").write_bytes((keys / f"{name}.key").read_bytes())
    return keys, allowed


def _received(sub: Subscriber, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (m := sub.recv(50)) is not None and m.kind == "anomaly":
            return True
    return False


@contextmanager
def curve_line(keys, allowed, **node_kw):
    """cam0 -> node over CURVE (stages `cam0` and `node`), with contexts keyed as `subscriber` and `intruder`
    (each with its own keys) and `plain` (no CURVE) for the test's subscribers; yields them, the node and its
    endpoints. Subscribers added to `subs` are closed at the end."""
    ctxs = {name: zmq.Context() for name in ("cam0", "node", "subscriber", "intruder", "plain")}
    secs = {name: Security(keys / f"{name}.key_secret", allowed, keys, reload_s=0.05)
            for name in ("cam0", "node", "subscriber", "intruder")}
    for name, sec in secs.items():
        secure(ctxs[name], sec)
    stop, threads, subs = threading.Event(), [], []
    try:
        cam_cfg = SyntheticSourceConfig(kind="synthetic", name="cam0", size=48, fps=50, frames=10_000,
                                        textures=("grass",), heartbeat_s=0.05, wait_for_consumer_s=5)
        ready: list[str] = []
        threads.append(threading.Thread(target=Camera(cam_cfg, ctx=ctxs["cam0"]).run, args=(stop, ready.append),
                                        daemon=True))
        threads[-1].start()
        wait_until(lambda: ready)
        node = EdgeNode(NodeConfig(threshold=3.0, heartbeat_s=0.05, **node_kw), ready, FastDetector, ctxs["node"],
                        server_keys={ready[0]: secs["cam0"].server_key("cam0")})
        node_ready: list[str] = []
        threads.append(threading.Thread(target=node.run, args=(stop, node_ready.append), daemon=True))
        threads[-1].start()
        wait_until(lambda: node_ready)
        yield SimpleNamespace(node=node, endpoints=node_ready, ctxs=ctxs, secs=secs, subs=subs,
                              node_key=secs["subscriber"].server_key("node"))
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for sub in subs:
            sub.close()
        for sec in secs.values():
            sec.close()
        for ctx in ctxs.values():
            ctx.destroy(linger=0)


def test_curve_line_admits_allow_listed_clients_and_counts_refusals(keys, tmp_path, caplog):
    keys, allowed = keys
    with curve_line(keys, allowed) as ln:
        ctxs, secs, subs, node_ready, node_key = ln.ctxs, ln.secs, ln.subs, ln.endpoints, ln.node_key
        with caplog.at_level(logging.WARNING, logger="pipeline.security"):
            good = Subscriber(node_ready, (b"anomaly/",), ctx=ctxs["subscriber"], server_key=node_key)
            bad = Subscriber(node_ready, (b"anomaly/",), ctx=ctxs["intruder"], server_key=node_key)
            plain = Subscriber(node_ready, (b"anomaly/",), ctx=ctxs["plain"])  # no CURVE at all
            subs += [good, bad, plain]
            assert _received(good, 10)  # camera -> node -> subscriber, all encrypted and admitted
            assert not _received(bad, 1.0) and not _received(plain, 0.2)
            wait_until(lambda: secs["node"].refused >= 1)
            assert all(g.thread.is_alive() for g in secs["node"].gates.values())  # the ZAP handler survives refusals
        assert any("refused a connection" in r.message for r in caplog.records)
        # the allow-list is reloaded: admitting the intruder's key needs no restart (new connections)
        (allowed / "intruder.key").write_bytes((keys / "intruder.key").read_bytes())
        late = Subscriber(node_ready, (b"anomaly/",), ctx=ctxs["intruder"], server_key=node_key)
        subs.append(late)
        assert _received(late, 10)


def test_non_loopback_bind_needs_keys_or_an_explicit_opt_in(tmp_path, caplog):
    cfg = tmp_path / "line.yaml"
    cfg.write_text("sources:\n  - {kind: synthetic, name: cam0, bind: 'tcp://0.0.0.0:5555'}\n")
    with pytest.raises(ConfigError, match="allow_insecure_network"):
        load_line_config(cfg)
    cfg.write_text("sources:\n  - {kind: synthetic, name: cam0}\nnode: {bind: 'tcp://*:5600'}\n")
    with pytest.raises(ConfigError, match="node.bind"):
        load_line_config(cfg)
    with caplog.at_level(logging.WARNING):
        cfg.write_text("allow_insecure_network: true\nsources:\n  - {kind: synthetic, name: cam0, bind: 'tcp://0.0.0.0:5555'}\n")
        load_line_config(cfg)
    assert any("INSECURE" in r.message for r in caplog.records)
    LineConfig(sources=[{"kind": "synthetic", "name": "cam0", "bind": "ipc:///tmp/cam0"}])  # loopback/ipc: fine as is
    LineConfig(sources=[{"kind": "synthetic", "name": "cam0", "bind": "tcp://127.0.0.1:5555"}])


def test_security_section_from_yaml(keys, tmp_path):
    keys, allowed = keys
    cfg = tmp_path / "line.yaml"
    cfg.write_text(f"security: {{keys_dir: {keys}, authorized_dir: {allowed}}}\n"
                   "sources:\n  - {kind: synthetic, name: cam0, bind: 'tcp://0.0.0.0:5555'}\n")
    line = load_line_config(cfg)
    sec = Security.from_config(line.security, "cam0")
    assert sec.public == load_public(keys / "cam0.key") and sec.server_key("node") == load_public(keys / "node.key")
    cfg.write_text(f"security: {{keys_dir: {tmp_path / 'missing'}, authorized_dir: {allowed}}}\nsources: "
                   f"[{{kind: synthetic, name: cam0}}]\n")
    with pytest.raises(ConfigError, match="keys_dir"):
        load_line_config(cfg)


def test_a_stage_whose_secret_key_is_missing_fails_in_one_line(keys, tmp_path, capfd):
    """The usual slip, a key not copied to the machine: the stage printed a 15-line traceback before the error."""
    keys, allowed = keys
    (keys / "cam0.key_secret").unlink()
    cfg = tmp_path / "line.yaml"
    cfg.write_text(f"security: {{keys_dir: {keys}, authorized_dir: {allowed}}}\nsinks: {{overlays: 'off'}}\n"
                   "sources:\n  - {kind: synthetic, name: cam0, size: 48, frames: 2}\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err and "cam0 failed to start: secret key file" in err


def test_a_reset_result_socket_is_still_a_curve_server(keys, tmp_path):
    """After a subscription flood drops every subscriber, the result socket is bound again as the same CURVE
    server: an allow-listed subscriber is back, a plaintext one still gets nothing."""
    keys, allowed = keys
    with curve_line(keys, allowed, max_subscriptions=5) as ln:
        good = Subscriber(ln.endpoints, (b"anomaly/",), ctx=ln.ctxs["subscriber"], server_key=ln.node_key)
        flood = Subscriber(ln.endpoints, [b"anomaly/x%d" % i for i in range(50)], ctx=ln.ctxs["subscriber"],
                           server_key=ln.node_key)  # a key holder
        plain = Subscriber(ln.endpoints, (b"anomaly/",), ctx=ln.ctxs["plain"])
        ln.subs += [good, flood, plain]
        wait_until(lambda: ln.node.publisher.resets >= 1)
        after, deadline = time.time(), time.monotonic() + 10
        while (m := good.recv(50)) is None or m.header.stamps["published"] <= after:  # published after the reset
            assert time.monotonic() < deadline, "the allow-listed subscriber did not come back"
        assert not _received(plain, 1.0) and ln.node.publisher.sock.curve_server


def _admitted(keys, name: str, server_key: bytes, endpoint: str, srv: zmq.Socket, timeout: float = 2.0) -> bool:
    """Whether a CURVE SUB client with the keys of `name` gets what the PUB `srv` sends within `timeout`."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        sub.curve_publickey, sub.curve_secretkey = zmq.auth.load_certificate(str(keys / f"{name}.key_secret"))
        sub.curve_serverkey = server_key
        sub.subscribe(b"")
        sub.connect(endpoint)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            srv.send(b"x")
            if sub.poll(50):
                return True
        return False
    finally:
        sub.close(0)
        ctx.term()


@contextmanager
def _curve_pub(keys, allowed, reload_s: float):
    """A CURVE PUB server keyed as `node`, admitting the keys in `allowed`: (its Security, the socket, its endpoint)."""
    ctx = zmq.Context()
    sec = Security(keys / "node.key_secret", allowed, keys, reload_s=reload_s)
    secure(ctx, sec)
    srv = ctx.socket(zmq.PUB)
    try:
        yield sec, srv, bind(srv, "tcp://127.0.0.1:*")
    finally:
        srv.close(0)
        sec.close()
        ctx.destroy(linger=0)


def test_a_key_copied_in_admits_its_next_connection_deleting_one_refuses_after_reload_s(keys):
    """A refused client does not retry: one that connected within `reload_s` of its key's copying-in was judged on the
    old list and stayed out. A key the list lacks has the folder checked at once; a deleted key still waits."""
    keys, allowed = keys
    with _curve_pub(keys, allowed, reload_s=60.0) as (sec, srv, endpoint):
        assert _admitted(keys, "subscriber", sec.public, endpoint, srv)  # the folder read: the next check in 60 s
        (allowed / "intruder.key").write_bytes((keys / "intruder.key").read_bytes())
        assert _admitted(keys, "intruder", sec.public, endpoint, srv, timeout=5.0)
        (allowed / "intruder.key").unlink()
        assert _admitted(keys, "intruder", sec.public, endpoint, srv)  # known until the next check, as documented


def test_a_half_written_or_foreign_key_file_keeps_the_allow_list_and_its_gate(keys, caplog):
    """A `.key` file that holds no key yet (an operator copying one in) or never will (a TLS key) is logged and
    skipped: the other files' keys are read, the ZAP handler keeps answering (allow-listed clients in, others out),
    and the file is read once it is complete."""
    keys, allowed = keys
    with _curve_pub(keys, allowed, reload_s=0.05) as (sec, srv, endpoint):
        assert _admitted(keys, "subscriber", sec.public, endpoint, srv)
        for content in (b"", b"-----BEGIN PRIVATE KEY-----\n"):
            (allowed / "late.key").write_bytes(content)
            time.sleep(0.1)
            with caplog.at_level(logging.ERROR, logger="pipeline.security"):
                assert not _admitted(keys, "intruder", sec.public, endpoint, srv, timeout=1.0)
            assert all(g.thread.is_alive() for g in sec.gates.values())
            assert _admitted(keys, "subscriber", sec.public, endpoint, srv)
            assert any("late.key" in r.getMessage() for r in caplog.records)
        (allowed / "late.key").write_bytes((keys / "intruder.key").read_bytes())
        assert _admitted(keys, "intruder", sec.public, endpoint, srv, timeout=5.0)  # its first handshake: a key the
        # list lacks has the folder read at once (a refused client does not retry)


def test_a_foreign_key_file_does_not_keep_a_deleted_key_admitted(keys, caplog):
    """One `.key` file that held no key (a TLS key beside the others) made the whole folder's reload fail, and the list
    stayed as it was for as long as the file did: a key deleted to revoke a peer still admitted it, a key copied in
    was not (an outside audit). Each file is read on its own now."""
    keys, allowed = keys
    (allowed / "intruder.key").write_bytes((keys / "intruder.key").read_bytes())
    allow = AllowList(allowed, reload_s=0.0)
    assert allow(_raw_key(keys / "intruder.key")) and allow(_raw_key(keys / "node.key"))
    (allowed / "tls.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    (allowed / "intruder.key").unlink()
    (allowed / "cam0.key").write_bytes((keys / "cam0.key").read_bytes())
    with caplog.at_level(logging.ERROR, logger="pipeline.security"):
        assert not allow(_raw_key(keys / "intruder.key"))  # before: admitted, the list frozen
    assert allow(_raw_key(keys / "cam0.key")) and allow(_raw_key(keys / "node.key"))
    assert "skipped cannot read key file" in caplog.text and "tls.key" in caplog.text


def test_an_allow_list_folder_named_like_a_pattern_is_read_as_named(keys, tmp_path):
    """zmq.auth.load_certificates globbed the folder's path: `allowed[prod]` read the keys of a folder `allowedp`
    beside it and none of its own (an outside audit)."""
    keys, _ = keys
    named, sibling = tmp_path / "allowed[prod]", tmp_path / "allowedp"
    for folder, key in ((named, "node"), (sibling, "intruder")):
        folder.mkdir()
        (folder / f"{key}.key").write_bytes((keys / f"{key}.key").read_bytes())
    allow = AllowList(named)
    assert allow(_raw_key(keys / "node.key")) and not allow(_raw_key(keys / "intruder.key"))


@pytest.mark.parametrize("damage", ["cut_short", "not_z85", "no_public_key"])
def test_a_damaged_secret_key_file_is_refused_naming_it(keys, damage):
    """A secret key cut short (a failed copy) was taken, and ZeroMQ refused it later with a bare "Invalid
    argument" and a traceback, no file named."""
    keys, _ = keys
    path, full = keys / "bad.key_secret", (keys / "cam0.key_secret").read_text()
    secret = full.split('secret-key = "')[1][:40]
    path.write_text({"cut_short": full.replace(secret, secret[:11]),
                     "not_z85": full.replace(secret, "~" * 5 + secret[5:]),  # "~" is outside z85's alphabet
                     "no_public_key": "\n".join(ln for ln in full.splitlines() if "public-key" not in ln)}[damage])
    with pytest.raises(KeyFileError, match=re.escape(str(path))):
        load_secret(path)


def _raw_key(path) -> bytes:
    return zmq.utils.z85.decode(load_public(path))


def test_an_error_in_the_gate_refuses_that_handshake_and_the_gate_answers_on():
    """The gate's thread is the context's ZAP handler: an error deciding one handshake refuses it, and the thread
    lives on (were it gone, libzmq would freeze the context's I/O thread on the unread monitors, or admit any
    CURVE client to a socket whose handler is gone)."""
    from pipeline.gate import close_gate, open_gate

    ctx = zmq.Context()
    gate = open_gate(ctx)
    calls = []

    def broken(key: bytes) -> bool:
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("broken allow-list")
        return True

    gate.allow_list = broken
    srv = ctx.socket(zmq.PUB)
    try:
        server_public, server_secret = zmq.curve_keypair()
        srv.curve_server, srv.curve_secretkey, srv.curve_publickey = True, server_secret, server_public
        gate.watch(srv, server=True, secured=True)
        endpoint = bind(srv, "tcp://127.0.0.1:*")
        client_public, client_secret = zmq.curve_keypair()

        def admitted() -> bool:
            cctx = zmq.Context()
            sub = cctx.socket(zmq.SUB)
            sub.curve_publickey, sub.curve_secretkey, sub.curve_serverkey = client_public, client_secret, server_public
            sub.subscribe(b"")
            sub.connect(endpoint)
            deadline, got = time.monotonic() + 2, False
            while time.monotonic() < deadline and not got:
                srv.send(b"x")
                got = bool(sub.poll(50))
            sub.close(0)
            cctx.term()
            return got

        assert not admitted()  # refused (libzmq's client does not try again after a refusal)
        assert admitted()
        assert len(calls) == 2
        assert gate.thread.is_alive()
    finally:
        srv.close(0)
        close_gate(gate)
        ctx.destroy(linger=0)


def test_a_server_socket_refuses_curve_clients_once_its_gate_is_gone(keys):
    """libzmq admits every CURVE client to a server socket whose context has no ZAP handler (the 'Stonehouse'
    default) unless the socket enforces its ZAP domain: the gate makes its sockets enforce it."""
    from pipeline.gate import close_gate, open_gate

    keys, allowed = keys
    ctx = zmq.Context()
    gate = open_gate(ctx)
    srv = ctx.socket(zmq.PUB)
    try:
        server_public, server_secret = zmq.auth.load_certificate(str(keys / "node.key_secret"))
        srv.curve_server, srv.curve_secretkey, srv.curve_publickey = True, server_secret, server_public
        gate.watch(srv, server=True, secured=True)
        assert srv.getsockopt(zmq.ZAP_ENFORCE_DOMAIN) == 1
    finally:
        srv.close(0)
        close_gate(gate)
        ctx.destroy(linger=0)



def test_a_context_terminates_when_its_gate_stops_right_after_watching_a_socket():
    """A socket watched less than the gate's poll (100 ms) before the gate stops: its monitor socket is closed too,
    else zmq.Context.term() waits for it forever."""
    from pipeline.gate import close_gate, open_gate

    for _ in range(3):
        ctx = zmq.Context()
        gate = open_gate(ctx)
        sock = ctx.socket(zmq.PUB)
        gate.watch(sock, server=True)
        sock.close(0)
        close_gate(gate)
        term = threading.Thread(target=ctx.term, daemon=True)
        term.start()
        term.join(5)
        if term.is_alive():
            ctx.destroy(linger=0)
        assert not term.is_alive()


_OUTLIVES_ITS_GATE = """
import time

import zmq
from pipeline.gate import close_gate, open_gate

ctx, peer_ctx = zmq.Context(), zmq.Context()
gate = open_gate(ctx)
srv = ctx.socket(zmq.PULL)
gate.watch(srv, server=True)
port = srv.bind_to_random_port("tcp://127.0.0.1")
close_gate(gate)  # before the socket is closed: a node whose thread outlived its join, a stage closed out of order
peer = peer_ctx.socket(zmq.PUSH)
peer.connect(f"tcp://127.0.0.1:{port}")  # the socket's next event
peer.send(b"x")
print("delivered" if srv.poll(5000) and srv.recv() == b"x" else "stalled", flush=True)
other = ctx.socket(zmq.PUB)
other_port = other.bind_to_random_port("tcp://127.0.0.1")
other.close(0)
again = ctx.socket(zmq.PUB)
for _ in range(50):  # the port comes free once the context's I/O thread closes the listener
    try:
        again.bind(f"tcp://127.0.0.1:{other_port}")
        print("rebound", flush=True)
        break
    except zmq.ZMQError:
        time.sleep(0.1)
for sock in (srv, again, peer):
    sock.close(0)
peer_ctx.term()
ctx.term()
print("terminated", flush=True)
"""


def test_a_socket_that_outlives_its_gate_does_not_stall_its_context():
    """A watched socket still open when its gate's last user closes the gate: its next event (a peer connecting)
    must not freeze the context. With the monitor's reader closed, libzmq blocked the context's I/O thread on that
    event for ever: the socket got nothing, another socket's closed port stayed bound, the context never ended
    (three CI runs: a camera's reset could not bind its port again). Run in a child process, which a stall hangs."""
    try:
        out = subprocess.run([sys.executable, "-c", _OUTLIVES_ITS_GATE], capture_output=True, text=True, timeout=60,
                             cwd=Path(__file__).resolve().parents[1]).stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    assert out.split() == ["delivered", "rebound", "terminated"]


def test_a_gate_opened_right_after_its_context_s_last_one_closed_answers():
    """A node run again in one process: the context's last gate may still be ending (its thread ends within a turn
    of its last user's close) when the next is opened; the next is that one or a new one that waited for the ZAP
    endpoint, and either answers handshakes."""
    from pipeline.gate import close_gate, open_gate

    ctx = zmq.Context()
    try:
        for i in range(30):
            gate = open_gate(ctx)
            sock = ctx.socket(zmq.PULL)
            gate.watch(sock, server=True)
            port = sock.bind_to_random_port("tcp://127.0.0.1")
            peer = ctx.socket(zmq.PUSH)
            peer.connect(f"tcp://127.0.0.1:{port}")
            peer.send(b"%d" % i)
            assert sock.poll(5000) and sock.recv() == b"%d" % i  # admitted by the gate's ZAP answer
            peer.close(0)
            sock.close(0)
            close_gate(gate)
            time.sleep(0.01 * (i % 15))  # across the gate's turn, so some opens find it ended and some ending
    finally:
        ctx.destroy(linger=0)


def test_the_last_close_of_a_gate_ends_its_thread_and_a_lingering_gate_starts_afresh():
    """The stages destroy their context right after giving the gate back: its thread must be gone by then (a
    destroy that closed the gate's sockets under it crashed the process). A gate still reading a socket that
    outlived its users is handed to the next user without the last one's allow-list or counts, and ends when the
    context is destroyed."""
    from pipeline.gate import close_gate, open_gate

    ctx = zmq.Context()
    gate = open_gate(ctx)
    sock = ctx.socket(zmq.PULL)
    gate.watch(sock, server=True)
    sock.bind("tcp://127.0.0.1:*")
    sock.close(0)
    close_gate(gate)
    assert not gate.thread.is_alive()

    gate = open_gate(ctx)
    gate.allow_list, gate.counts = (lambda key: True), {"unknown_key": 7}
    kept = ctx.socket(zmq.PULL)
    gate.watch(kept, server=True)
    close_gate(gate)  # `kept` is still open: the gate reads its monitor on
    again = open_gate(ctx)
    assert again is gate and again.thread.is_alive()
    assert again.allow_list is None and again.counts == {}
    close_gate(again)
    ctx.destroy(linger=0)
    gate.thread.join(2)
    assert not gate.thread.is_alive()
