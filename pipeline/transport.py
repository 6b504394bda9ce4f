"""ZeroMQ plumbing shared by the stages: socket limits, binding, a publisher with bounded subscriptions,
readiness waits, rate-limited logging.

Convention: producers bind (cameras their frame socket, the node its result socket), consumers
connect, so any number of consumers can come and go without the producer knowing them.
"""
from __future__ import annotations

import errno
import logging
import math
import re
import resource
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import zmq

from .protocol import MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES

log = logging.getLogger(__name__)

LINGER_MS = 500  # close() waits at most this long for queued messages: shutdown never hangs
REBIND_S = 10.0  # how long a Publisher reset retries binding its endpoint again before it gives up
# a bound socket closes a connection whose ZMTP handshake (CURVE's too) is not done this long after it was accepted:
# ZeroMQ's 30 s let idle TCP connections hold a file descriptor each (8000 took 8000)
HANDSHAKE_MS = 3000
# A peer whose machine lost power or its cable (no FIN: TCP keeps a half-open connection for minutes to hours) frees
# its slot (pipeline.gate counts the close) in seconds: the kernel closes a connection whose data stays unacknowledged,
# or unsent behind a closed receive window, for TCP_USER_TIMEOUT_MS (ZMQ_TCP_MAXRT is Linux's TCP_USER_TIMEOUT), and
# an idle one whose keepalive probes go unanswered (the first after KEEPALIVE_IDLE_S, then every KEEPALIVE_INTVL_S,
# bounded by the same timeout). A peer that stopped reading (a hung process: its kernel still ACKs) is dropped once its
# buffers are full and its window has stayed shut for the timeout; an idle hung peer keeps its slot (docs/protocol.md
# section 6). Not ZMTP heartbeats (ZMQ_HEARTBEAT_IVL): with them libzmq 4.3.5 aborts the process when a peer whose
# input it had stopped (its receive queue full) hangs up before the next PING (libzmq issue 4364;
# tests/test_peer_floods.py: any admitted subscriber could end the node that way).
TCP_USER_TIMEOUT_MS = 5000
KEEPALIVE_IDLE_S = 2
KEEPALIVE_INTVL_S = 1
# what a peer may have sent a bound socket of the line (pipeline.gate drops the connection past it) since the socket's
# owner last took a message from that connection (`took`): libzmq holds a message's parts until its last one comes and
# counts only whole messages against RCVHWM, so one peer sending parts without end made it hold memory without bound
# (1 M parts of 512 B to the node's result socket: +880 MB in 1 s; tests/test_peer_floods.py). The node's camera
# connections allow a whole frame more (pipeline.node.input_unread_bytes).
MAX_UNREAD_BYTES = 256 * 1024
TAKEN: dict[int, int] = {}  # file descriptor of a connection -> messages taken from it (`took`)
MAX_UPSTREAM_BYTES = 512  # what a subscriber may send an XPUB: a (un)subscription or a credit grant (pipeline/flow.py)
MAX_MESSAGE_PART_BYTES = MAX_PAYLOAD_BYTES + MAX_HEADER_BYTES  # zmq.MAXMSGSIZE applies per part
ENDPOINT_PATTERN = re.compile(r"^(tcp://\S+:(\*|\d{1,5})|ipc://\S+)$")
_BIND_HINTS = {  # what to do about a bind the machine refuses
    errno.EADDRINUSE: "is already in use: choose another port, or `*` for any free port, or stop the other program",
    errno.EADDRNOTAVAIL: "is not an address of this machine: bind one of its addresses, or 0.0.0.0 for all",
    errno.EACCES: "is not open to this user: choose a port above 1023, or check the ipc folder's permissions",
}


class StopFlag(Protocol):
    """threading.Event or multiprocessing.Event."""

    def is_set(self) -> bool: ...


def make_socket(ctx: zmq.Context, kind: int, *, sndhwm: int = 1000, rcvhwm: int = 1000) -> zmq.Socket:
    """A socket with linger, high-water marks and the inbound message size limit set."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_PART_BYTES)
    return sock


_SECURITY: weakref.WeakKeyDictionary[zmq.Context, Any] = weakref.WeakKeyDictionary()


def secure(ctx: zmq.Context, security: Any) -> None:
    """Apply `security` (a `pipeline.security.Security`) to every tcp socket of `ctx` that `bind` or
    `connect` sets up from now on; None turns it off."""
    if security is None:
        _SECURITY.pop(ctx, None)
    else:
        _SECURITY[ctx] = security


def security_of(ctx: zmq.Context) -> Any:
    return _SECURITY.get(ctx)


class BindError(zmq.ZMQError):
    """A bind the machine refused (the port is taken, ...); the message says what to do. `endpoint` lets the
    caller name the config key that set it (pipeline.stages.run_stage)."""

    def __init__(self, endpoint: str, err: zmq.ZMQError):
        hint = _BIND_HINTS.get(err.errno, f"cannot be bound ({err.strerror}): check it")
        super().__init__(err.errno, f"{endpoint} {hint}")
        self.endpoint = endpoint


def drop_dead_peers(sock: zmq.Socket) -> None:
    """Let the kernel close a connection to a peer that vanished (TCP_USER_TIMEOUT_MS), before it connects or binds."""
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, KEEPALIVE_IDLE_S)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, KEEPALIVE_INTVL_S)
    sock.setsockopt(zmq.TCP_MAXRT, TCP_USER_TIMEOUT_MS)


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard one (the stages it starts inherit it) and return the
    limit now. Each TCP connection a peer opens holds a descriptor until its handshake is done (at most HANDSHAKE_MS):
    at systemd's soft limit of 1024, six local processes opening connections brought a node to it within 4 s, where
    opening any file (the event log, a checkpoint, /proc) fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # a hard limit the soft one may not take (unlimited on macOS): keep the soft one
        return soft
    return hard


def bind(sock: zmq.Socket, endpoint: str) -> str:
    """Bind and return the actual endpoint (a `tcp://host:*` wildcard gets a free port), closing connections that
    do not handshake within HANDSHAKE_MS and those whose peer vanished (`drop_dead_peers`); BindError
    when the machine refuses it. With a security policy on the socket's context, a tcp socket becomes a CURVE server
    first."""
    sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
    drop_dead_peers(sock)
    if (security := _SECURITY.get(sock.context)) is not None and endpoint.startswith("tcp://"):
        security.serve(sock)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as e:
        raise BindError(endpoint, e) from None
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def connect(sock: zmq.Socket, endpoint: str, server_key: bytes | None = None) -> None:
    """Connect; with a security policy on the socket's context, a tcp socket becomes a CURVE client
    of the server whose public key is `server_key` (required then)."""
    if (security := _SECURITY.get(sock.context)) is not None and endpoint.startswith("tcp://"):
        if server_key is None:
            raise ValueError(f"no server public key for {endpoint} (security is on)")
        security.client(sock, server_key)
    sock.connect(endpoint)


def took(frame: zmq.Frame) -> zmq.Frame:
    """A received frame (a part of a message), noting that a message was taken from its connection (ZMQ_SRCFD): the
    owner of a socket that pipeline.gate bounds says so of each message, else its peer's bytes count as unread."""
    try:
        fd = frame.get(zmq.SRCFD)
    except zmq.ZMQError:  # made by libzmq (an XPUB's unsubscriptions for a peer that left), or from no connection
        return frame
    TAKEN[fd] = TAKEN.get(fd, 0) + 1
    return frame


def wait_for_peer(push: zmq.Socket, timeout_s: float, stop: StopFlag) -> bool:
    """Block until a PUSH socket has a connected peer with room (True), the timeout passes or stop is set."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline:
        if push.poll(100, zmq.POLLOUT):
            return True
    return False


class Publisher:
    """A bound XPUB socket whose subscribers cannot make ZeroMQ hold unbounded memory.

    ZeroMQ files every distinct subscription topic in a trie before the application sees it (~50 bytes of memory per
    byte of topic, measured), so one peer could subscribe to millions of topics. Here an upstream message is at most
    MAX_UPSTREAM_BYTES (ZeroMQ drops a connection that sends a longer one), ZeroMQ takes in two at a time per
    connection (RCVHWM 2: as fast as `upstream` reads them, not as fast as a peer sends), and once subscribers have
    made more than `max_topics` distinct topics since the socket was bound, it is closed and bound again at the same
    endpoint: every subscriber is dropped, its SUB socket reconnects and subscribes again by itself (~0.2 s), the trie
    starts empty and `resets` counts it. Unsubscriptions are not counted down: ZeroMQ reports one even for a topic
    that another connection still holds, so a peer could otherwise hide its subscriptions.

    `held` is what subscribers hold now, for `hears`: ZeroMQ reports a topic's first subscription and its last
    unsubscription (a subscriber that disconnects unsubscribes all of its topics), duplicates of neither. (How many
    subscribers connect is bounded by `guard`: pipeline.gate.) A peer that unsubscribes from a topic it never held
    makes it look gone until another subscribes to it afresh: it misleads `hears`, never what is sent."""

    def __init__(self, ctx: zmq.Context, endpoint: str, *, sndhwm: int, max_topics: int, name: str,
                 guard: Callable[[zmq.Socket], None] | None = None, rebind_s: float | None = REBIND_S):
        self.ctx, self.sndhwm, self.max_topics, self.name = ctx, sndhwm, max_topics, name
        self.rebind_s = rebind_s  # how long `reset` retries its bind (None: for as long as it takes)
        self.guard = guard  # called with each socket before it is bound (the node's bound on subscribers)
        self.topics: set[bytes] = set()  # distinct topics subscribed since the socket was bound
        self.held: set[bytes] = set()  # topics some subscriber holds now
        self.resets = 0
        self._log = ThrottledLog(log, 5.0)
        self.sock = self._open(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)  # a `tcp://host:*` keeps its port on a reset

    def _open(self, endpoint: str) -> zmq.Socket:
        # with RCVHWM 1000, a flood of 1 M topics held 2.2 GB despite the resets (ZeroMQ files them inside any call);
        # with 1, no CURVE handshake completes
        sock = make_socket(self.ctx, zmq.XPUB, sndhwm=self.sndhwm, rcvhwm=2)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_UPSTREAM_BYTES)
        try:
            if self.guard is not None:
                self.guard(sock)
            bind(sock, endpoint)
        except zmq.ZMQError:
            sock.close(linger=0)
            raise
        return sock

    def upstream(self, most: int = 1000) -> list[bytes]:
        """Take in up to `most` queued upstream messages: subscriptions are counted (and may reset the socket),
        both they and unsubscriptions update `held`; returns the others (credit grants, or garbage for the caller to
        refuse)."""
        others = []
        for _ in range(most):
            if not self.sock.poll(0, zmq.POLLIN):
                break
            blob = took(self.sock.recv(copy=False)).bytes
            if blob[:1] == b"\x01":
                self.topics.add(blob[1:])
                self.held.add(blob[1:])
                if len(self.topics) > self.max_topics:
                    self.reset()
                    break
            elif blob[:1] == b"\x00":
                self.held.discard(blob[1:])
            else:
                others.append(blob)
        return others

    def hears(self, topic: bytes) -> bool:
        """Whether a subscriber holds a prefix of `topic` (as of the last `upstream`): else ZeroMQ drops a message
        on it. Its prefixes are looked up, not the topics held: as quick with a thousand held as with three."""
        return any(topic[:n] in self.held for n in range(len(topic) + 1))

    def wait_for_subscriber(self, timeout_s: float, stop: StopFlag) -> bool:
        """Block until the socket has seen a subscription and the rest of that burst (nothing more for 20 ms: ZeroMQ
        hands a subscriber's topics over two at a time), True; or the timeout passes or stop is set. Other upstream
        messages meanwhile are dropped."""
        deadline = time.monotonic() + timeout_s
        while not stop.is_set() and time.monotonic() < deadline:
            if self.sock.poll(100, zmq.POLLIN):
                self.upstream()
                if self.topics:
                    while self.sock.poll(20, zmq.POLLIN):
                        self.upstream()
                    return True
        return False

    def reset(self) -> None:
        """Drop every subscriber and bind a fresh socket at the same endpoint, retried for `rebind_s` (the port is
        released a moment after the close; the error is logged every 5 s). A port still taken then (by another program,
        or as the local port of an outgoing connection: a `*` port is one of the ephemeral ones) raises BindError: a
        camera, whose stream loop this is, fails saying so; it retried for ever before, deaf to its stop."""
        self._log.warning(f"{self.name}: subscribers made over {self.max_topics} distinct topics; dropping them "
                          f"all (they reconnect; {self.resets + 1} times so far)")
        self.sock.close(linger=0)
        self.topics.clear()
        self.held.clear()
        self.resets += 1
        failed = ThrottledLog(log, 5.0)
        deadline = math.inf if self.rebind_s is None else time.monotonic() + self.rebind_s
        while True:
            try:
                self.sock = self._open(self.endpoint)
                return
            except zmq.ZMQError as e:
                if time.monotonic() >= deadline:
                    log.error("%s: gave up binding %s again after a subscription reset (%.0f s)", self.name,
                              self.endpoint, self.rebind_s)
                    raise e if isinstance(e, BindError) else BindError(self.endpoint, e) from None
                failed.warning(f"{self.name}: cannot bind {self.endpoint} again ({e}); retrying")
                time.sleep(0.05)

    def close(self, linger: int | None = None) -> None:
        self.sock.close(linger)


class ThrottledLog:
    """Logs a recurring message at most once per `interval_s`, saying how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0):
        self.logger, self.interval_s = logger, interval_s
        self._last = -float("inf")
        self._suppressed = 0

    def warning(self, msg: str) -> None:
        self._log(logging.WARNING, msg)

    def info(self, msg: str) -> None:
        self._log(logging.INFO, msg)

    def error(self, msg: str) -> None:
        self._log(logging.ERROR, msg)

    def _log(self, level: int, msg: str) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} similar suppressed)" if self._suppressed else ""
        self.logger.log(level, "%s%s", msg, more)
        self._last, self._suppressed = now, 0
