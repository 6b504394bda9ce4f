"""The gate of a ZeroMQ context: one thread that is the context's ZAP handler and reads the monitors of its sockets.

libzmq asks the context's ZAP handler (`inproc://zeromq.zap.01`) about every peer that handshakes with a CURVE
server socket, and, with the NULL mechanism (no security), with a socket that has a ZAP domain; a refusal (status
400) closes the peer's connection before it gets a pipe, so it is sent nothing and holds nothing. The gate answers:
- a CURVE client's key must be in the allow-list (`AllowList`, set by `pipeline.security`); refusals are counted
  as `unknown_key`;
- on a socket with a `PeerLimit`, a peer is refused (counted, logged) while `most` peers are admitted. libzmq's
  handshake events name no connection, and some failed handshakes emit none, so a count of handshaked peers kept
  from them could be driven down by a peer. The gate counts what it can tell exactly instead: the socket's
  connections older than WINDOW_S (ACCEPTED and DISCONNECTED events name their file descriptor), each of which
  has passed the gate, since the socket closes one still handshaking after `transport.HANDSHAKE_MS`; plus the
  peers it admitted within the last WINDOW_S, open or not. That never counts fewer than are admitted and open
  (one admitted and closed within WINDOW_S counts until then), and never counts a connection that does not
  handshake. The monitor is drained before each answer, in the same thread, so every connection accepted
  before the asking one is known.
- a connection of a socket with an `UnreadLimit` (a `PeerLimit` is one), accepted or connected, whose peer sent more
  than its `most_unread` bytes since the socket's owner last took a message from it (`transport.took`; the kernel's
  count of the bytes it received, TCP_INFO) is shut down (counted with the refusals, logged): libzmq holds the parts
  of a message until its last one comes, without bound. Checked each turn (at most 100 ms apart); ipc connections are
  not (a Unix socket counts no bytes received: docs/protocol.md section 6). A connecting socket connects again by
  itself.
The failed handshakes of secured sockets (`watch(..., secured=True)`) are counted by reason for
`pipeline.security` (`refusal_reason`): a socket has one monitor, so both uses share it.
"""
from __future__ import annotations

import logging
import os
import queue
import socket
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count

import zmq
from zmq.utils.monitor import parse_monitor_message

from .transport import HANDSHAKE_MS, MAX_UNREAD_BYTES, TAKEN, ThrottledLog

log = logging.getLogger(__name__)
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_FREE_S = 1.0  # how long a new gate waits for the context's last one to free the ZAP endpoint
WINDOW_S = HANDSHAKE_MS / 1000 + 1.0  # a connection older than this has handshaked (a second for the timer's lag)
_EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
           | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_MONITOR_STOPPED)
_ids = count()
_BYTES_RECEIVED = slice(128, 136)  # struct tcp_info's tcpi_bytes_received (Linux 4.1 on), a little-endian u64
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # struct linger {l_onoff, l_linger}: close() resets the connection


SERVER_REFUSALS = ("plaintext", "wrong_server_key", "unknown_key", "protocol_error")
CLIENT_REFUSALS = ("handshake_failed", "refused_by_peer")


def refusal_reason(event: int, value: int, server: bool) -> str | None:
    """The reason a failed handshake's monitor event stands for (None: not a refusal; pipeline.security)."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return "unknown_key" if server else "refused_by_peer"
    if event not in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
        return None
    if not server:
        return "handshake_failed"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "plaintext"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "wrong_server_key"
    return "protocol_error"


def _socket_of(fd: int) -> socket.socket:
    """A socket on a duplicate of `fd` (closing it leaves libzmq's open); OSError when `fd` is no socket."""
    dup = os.dup(fd)
    try:
        return socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        raise


class UnreadLimit:
    """At most `most_unread` bytes from the peer of each connection of the sockets it is given to (`Gate.watch`) since
    a message was last taken from it; `refused` counts the connections shut down past it, and `on_drop` is told of
    each (in the gate's thread)."""

    def __init__(self, most_unread: int = MAX_UNREAD_BYTES, on_drop: Callable[[], None] | None = None):
        self.most_unread, self.on_drop = most_unread, on_drop
        self.refused = 0
        self._log = ThrottledLog(log, 5.0)

    def drop(self, endpoint: str, peer: str, unread: int) -> None:
        self.refused += 1
        if self.on_drop is not None:
            self.on_drop()
        self._log.warning(f"dropped a connection at {endpoint} (peer {peer}): it sent {unread} bytes that are no "
                          f"message taken (a message that never ends?), over {self.most_unread} ({self.refused} "
                          "refused so far)")


class PeerLimit(UnreadLimit):
    """At most `most` connections on one bound socket, and on each socket bound again in its place: how many are
    admitted now (`peers`) and how many were refused (`refused`, over all of them, with those cut off unread)."""

    def __init__(self, most: int, what: str, key: str):
        super().__init__()
        self.most, self.what, self.key = most, what, key  # key: the config key that sets `most`, for the log
        self.peers = 0  # admitted and open on the socket watched last, as the gate counts them (module docstring)

    def refuse(self, endpoint: str) -> None:
        self.refused += 1
        self._log.warning(f"refused a connection to {endpoint}: {self.most} {self.what} connected already "
                          f"({self.key}; {self.refused} refused so far)")


@dataclass
class _Watched:
    """One monitored socket, as the gate thread keeps it."""

    what: str  # for the log: "a XPUB server socket"
    domain: bytes  # its ZAP domain (a server's)
    server: bool
    secured: bool
    limit: UnreadLimit | None
    endpoint: str = ""
    conns: dict[int, float] = field(default_factory=dict)  # its connections open now: fd -> when accepted or connected
    admitted: deque[float] = field(default_factory=deque)  # when the gate admitted a peer, within WINDOW_S
    # fd -> (the connection's addresses, the kernel's count of bytes received from it when its owner last took a
    # message from it or 0, TAKEN's count then): `_bound_unread`
    unread: dict[int, tuple[tuple, int, int]] = field(default_factory=dict)

    def peers(self, now: float) -> int:
        """Admitted peers, counted as the module docstring says."""
        while self.admitted and now - self.admitted[0] > WINDOW_S:
            self.admitted.popleft()
        return len(self.admitted) + sum(now - t > WINDOW_S for t in self.conns.values())


class Gate:
    """The ZAP handler and socket monitor of one context (module docstring); `open_gate` shares one per context."""

    def __init__(self, ctx: zmq.Context):
        self.ctx = ctx
        self.allow_list: Callable[[bytes], bool] | None = None  # CURVE: whether a client key is admitted
        self.counts: dict[str, int] = {}  # failed handshakes of secured sockets by reason
        self.on_refusal: Callable[[str, str, int, str], None] | None = None  # (reason, what, value, endpoint)
        self.lock = threading.Lock()
        self._users = 0  # open_gate's callers that have not closed it (under _GATES_LOCK)
        self._new: queue.Queue[tuple[zmq.Socket, _Watched]] = queue.Queue()
        self._domains: dict[bytes, tuple[zmq.Socket, _Watched]] = {}
        self._watched: weakref.WeakKeyDictionary[zmq.Socket, _Watched] = weakref.WeakKeyDictionary()
        self._zap = ctx.socket(zmq.REP)
        self._zap.linger = 0
        self._bind_zap()
        self.thread = threading.Thread(target=self._run, name="zap-gate", daemon=True)
        self.thread.start()

    def _bind_zap(self) -> None:
        """Bind the ZAP endpoint, waiting up to ZAP_FREE_S for the context's last gate to let go of it: libzmq frees
        it a moment after its socket is closed, in its reaper thread."""
        deadline = time.monotonic() + ZAP_FREE_S
        while True:
            try:
                self._zap.bind(ZAP_ENDPOINT)
                return
            except zmq.ZMQError as e:
                if e.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                    self._zap.close(0)
                    raise
                time.sleep(0.01)

    def watch(self, sock: zmq.Socket, *, server: bool, secured: bool = False, limit: UnreadLimit | None = None) -> None:
        """Monitor `sock` (from its owner's thread, before bind or connect); a server socket gets a ZAP domain of its
        own, so NULL peers are asked about too. Watched again, a socket keeps its monitor and gains `secured` and
        `limit`."""
        with self.lock:
            watched = self._watched.get(sock)
            if watched is None:
                address = f"inproc://gate-monitor-{id(self)}-{next(_ids)}"
                what = f"a {zmq.SocketType(sock.type).name} {'server' if server else 'client'} socket"
                watched = self._watched[sock] = _Watched(what, address.encode(), server, secured, limit)
            else:
                address = ""
            watched.secured |= secured
            watched.limit = limit or watched.limit
        if not address:
            return
        if server:
            sock.zap_domain = watched.domain  # names the socket in its peers' ZAP requests
            sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)  # what WINDOW_S relies on
            # without a ZAP handler (the gate stopped) libzmq would admit every CURVE client: refuse them instead
            sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        sock.monitor(address, _EVENTS)
        mon = self.ctx.socket(zmq.PAIR)
        mon.rcvhwm = 0  # libzmq blocks its I/O thread on a full monitor pipe: never full, the gate drains it
        mon.linger = 0
        mon.connect(address)
        self._new.put((mon, watched))

    def _run(self) -> None:
        poller, monitors = zmq.Poller(), {}
        poller.register(self._zap, zmq.POLLIN)
        try:
            while not self._done(poller, monitors) and not self.ctx.closed:  # destroyed: its sockets are gone
                try:
                    self._turn(poller, monitors)
                except zmq.ZMQError:
                    raise
                except Exception:  # noqa: BLE001 - the thread must live: gone, it would leave the monitors unread
                    # (libzmq then blocks the context's I/O thread on them) and the context without a ZAP handler
                    log.exception("ZAP gate: an error, going on")
        except zmq.ZMQError:  # the context was terminated under us: nothing left to answer
            pass
        finally:
            with _GATES_LOCK:  # first: no open_gate gets it from here on
                self._forget()
            self._zap.close(0)  # a gate opened meanwhile waits for the endpoint (`_bind_zap`)
            self._adopt(poller, monitors)  # those watched since the last turn too: the context would wait for them
            for mon in monitors:
                mon.close(0)

    def _done(self, poller: zmq.Poller, monitors: dict[zmq.Socket, _Watched]) -> bool:
        """Whether the thread may end: no user holds the gate and every socket it watches is closed (its monitor
        said so). A monitor's reader closed before its socket makes libzmq 4.3 block, for ever, the thread that
        emits the socket's next event: the context's I/O thread for a connection's, and with it every socket of the
        context (a closed listener keeps its port, the ZAP endpoint stays bound). So a socket that outlives the
        gate's last user keeps the gate reading it, until it is closed or the context is terminated; a user that
        opens the gate meanwhile gets this one."""
        if self._users:
            return False
        with _GATES_LOCK:
            self._adopt(poller, monitors)
            if self._users or monitors:
                return False
            self._forget()
            return True

    def _forget(self) -> None:
        """No longer the gate `open_gate` gives for its context (under _GATES_LOCK)."""
        if _GATES.get(self.ctx) is self:
            del _GATES[self.ctx]

    def _turn(self, poller: zmq.Poller, monitors: dict[zmq.Socket, _Watched]) -> None:
        self._adopt(poller, monitors)
        for sock in dict(poller.poll(100)):
            if sock is self._zap:
                self._answer(self._zap.recv_multipart(), poller, monitors)
            elif sock in monitors:
                self._drain(sock, monitors[sock], poller, monitors)
        now = time.monotonic()
        for watched in monitors.values():
            if isinstance(watched.limit, PeerLimit):
                watched.limit.peers = watched.peers(now)
            if watched.limit is not None:
                self._bound_unread(watched, watched.limit)

    @staticmethod
    def _bound_unread(watched: _Watched, limit: UnreadLimit) -> None:
        """Reset (SO_LINGER 0, then shutdown) each TCP connection whose peer sent over `limit.most_unread` bytes since
        a message was last taken from it. A connection is told apart from a later one on the same file descriptor by
        its addresses; one closed meanwhile (its DISCONNECTED event not drained yet) fails the calls and is passed
        over."""
        most = limit.most_unread
        for fd in list(watched.conns):
            try:
                with _socket_of(fd) as conn:
                    who = (conn.getsockname(), conn.getpeername())
                    received = int.from_bytes(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
                                              [_BYTES_RECEIVED], "little")
                    taken = TAKEN.get(fd, 0)
                    known, since, taken_then = watched.unread.get(fd, ((), 0, taken))
                    if known != who:  # a new connection: all it sent counts
                        since, taken_then = 0, taken
                    if received - since > most and taken == taken_then:
                        # reset, not closed in order: once shut down, the kernel sends no window update, so a peer
                        # whose window was shut (the socket's buffer full) waited in its send until the orphaned
                        # connection timed out (tcp_fin_timeout, 60 s). libzmq reads its end, closes it (the reset)
                        # and drops the parts.
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
                        conn.shutdown(socket.SHUT_RDWR)
                        limit.drop(watched.endpoint, f"{who[1][0]}:{who[1][1]}", received - since)
                    if received - since > most or taken != taken_then:  # counted from here on
                        since = received
                    watched.unread[fd] = (who, since, taken)
            except OSError:  # closed meanwhile, or not TCP (ipc)
                watched.unread.pop(fd, None)

    def _adopt(self, poller: zmq.Poller, monitors: dict[zmq.Socket, _Watched]) -> None:
        while True:
            try:
                mon, watched = self._new.get_nowait()
            except queue.Empty:
                return
            monitors[mon] = watched
            poller.register(mon, zmq.POLLIN)
            self._domains[watched.domain] = (mon, watched)

    def _drain(self, mon: zmq.Socket, watched: _Watched, poller: zmq.Poller,
               monitors: dict[zmq.Socket, _Watched]) -> None:
        """Take in every event the socket's monitor holds; its end unregisters it."""
        while True:
            try:
                msg = parse_monitor_message(mon.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            event, value = msg["event"], int(msg["value"])
            if msg["endpoint"]:
                watched.endpoint = msg["endpoint"].decode(errors="replace")
            if event == zmq.EVENT_MONITOR_STOPPED:
                poller.unregister(mon)
                del monitors[mon]
                self._domains.pop(watched.domain, None)
                mon.close(0)
                return
            if event in (zmq.EVENT_ACCEPTED, zmq.EVENT_CONNECTED):
                watched.conns[value] = time.monotonic()
            elif event == zmq.EVENT_DISCONNECTED:
                watched.conns.pop(value, None)
                watched.unread.pop(value, None)
                TAKEN.pop(value, None)
            elif watched.secured and not (watched.server and event == zmq.EVENT_HANDSHAKE_FAILED_AUTH) \
                    and (reason := refusal_reason(event, value, watched.server)) is not None:
                self._count(reason, watched, value)  # a server's ZAP refusals are counted where they are made

    def _count(self, reason: str, watched: _Watched, value: int) -> None:
        with self.lock:
            self.counts[reason] = self.counts.get(reason, 0) + 1
        if self.on_refusal is not None:
            self.on_refusal(reason, watched.what, value, watched.endpoint)

    def _answer(self, request: list[bytes], poller: zmq.Poller, monitors: dict[zmq.Socket, _Watched]) -> None:
        """Answer one ZAP request: version, request id, domain, address, identity, mechanism, credentials."""
        if len(request) < 6:
            self._zap.send_multipart([b"1.0", request[1] if len(request) > 1 else b"", b"500", b"bad request", b"",
                                      b""])
            return
        try:
            status, reason, user = self._decide(request, poller, monitors)
        except Exception:  # noqa: BLE001 - refused, and the REP socket answers, so the next request can be read
            log.exception("ZAP gate: refused a handshake on an error")
            status, reason, user = b"500", b"internal error", b""
        self._zap.send_multipart([b"1.0", request[1], status, reason, user, b""])

    def _decide(self, request: list[bytes], poller: zmq.Poller,
                monitors: dict[zmq.Socket, _Watched]) -> tuple[bytes, bytes, bytes]:
        """(status, reason, user id) for one ZAP request."""
        domain, mechanism, credentials = request[2], request[5], request[6:]
        self._adopt(poller, monitors)
        mon, watched = self._domains.get(domain, (None, None))
        if mon is not None and watched is not None:
            self._drain(mon, watched, poller, monitors)  # every connection accepted before this one
        status, reason, user = b"200", b"OK", b""
        if mechanism == b"CURVE":
            key = credentials[0] if credentials else b""
            user = zmq.utils.z85.encode(key) if len(key) == 32 else b""
            if self.allow_list is None or not user or not self.allow_list(key):
                status, reason = b"400", b"unknown key"
                if watched is not None:
                    self._count("unknown_key", watched, 400)
        elif mechanism != b"NULL":
            status, reason = b"400", b"mechanism not allowed"
        if status == b"200" and watched is not None and isinstance(watched.limit, PeerLimit):
            now = time.monotonic()
            if watched.peers(now) >= watched.limit.most:
                status, reason = b"400", b"too many connections"
                watched.limit.refuse(watched.endpoint)
            else:
                watched.admitted.append(now)
        return status, reason, user

_GATES: weakref.WeakKeyDictionary[zmq.Context, Gate] = weakref.WeakKeyDictionary()
_GATES_LOCK = threading.Lock()


def open_gate(ctx: zmq.Context) -> Gate:
    """The gate of `ctx`, started by the first caller; each caller closes it (`close_gate`) once done, after closing
    the sockets it watched and before the context is terminated."""
    with _GATES_LOCK:
        gate = _GATES.get(ctx)
        if gate is None:
            gate = _GATES[ctx] = Gate(ctx)
        elif not gate._users:  # a gate lingering for its sockets (Gate._done): its new users start afresh
            with gate.lock:
                gate.allow_list, gate.on_refusal, gate.counts = None, None, {}
        gate._users += 1
        return gate


def close_gate(gate: Gate) -> None:
    """Give `gate` back. The last user's close waits (up to 2 s) for its thread to end, which it does within a turn
    (100 ms) once the sockets it watches are closed (`Gate._done`): a context destroyed next closes whatever sockets
    are left from its own thread, and a gate thread still using them crashed the process (a review's 300 cycles:
    3 of 21 runs)."""
    with _GATES_LOCK:
        gate._users -= 1
        last = gate._users == 0
    if last:
        gate.thread.join(timeout=2)
