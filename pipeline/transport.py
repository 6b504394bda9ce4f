"""ZeroMQ plumbing shared by the stages: socket limits, binding, readiness waits, rate-limited logging.

Convention: producers bind (cameras their frame socket, the node its result socket), consumers
connect, so any number of consumers can come and go without the producer knowing them.
"""
from __future__ import annotations

import logging
import re
import time
import weakref
from typing import Any, Protocol

import zmq

from .protocol import MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES

LINGER_MS = 500  # close() waits at most this long for queued messages: shutdown never hangs
MAX_MESSAGE_PART_BYTES = MAX_PAYLOAD_BYTES + MAX_HEADER_BYTES  # zmq.MAXMSGSIZE applies per part
ENDPOINT_PATTERN = re.compile(r"^(tcp://\S+:(\*|\d{1,5})|ipc://\S+)$")


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


def bind(sock: zmq.Socket, endpoint: str) -> str:
    """Bind and return the actual endpoint (a `tcp://host:*` wildcard gets a free port). With a
    security policy on the socket's context, a tcp socket becomes a CURVE server first."""
    if (security := _SECURITY.get(sock.context)) is not None and endpoint.startswith("tcp://"):
        security.serve(sock)
    sock.bind(endpoint)
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def connect(sock: zmq.Socket, endpoint: str, server_key: bytes | None = None) -> None:
    """Connect; with a security policy on the socket's context, a tcp socket becomes a CURVE client
    of the server whose public key is `server_key` (required then)."""
    if (security := _SECURITY.get(sock.context)) is not None and endpoint.startswith("tcp://"):
        if server_key is None:
            raise ValueError(f"no server public key for {endpoint} (security is on)")
        security.client(sock, server_key)
    sock.connect(endpoint)


def wait_for_subscriber(xpub: zmq.Socket, timeout_s: float, stop: StopFlag) -> bool:
    """Block until an XPUB socket has seen a subscription (True), the timeout passes or stop is set."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline:
        if xpub.poll(100, zmq.POLLIN) and xpub.recv()[:1] == b"\x01":
            return True
    return False


def wait_for_peer(push: zmq.Socket, timeout_s: float, stop: StopFlag) -> bool:
    """Block until a PUSH socket has a connected peer with room (True), the timeout passes or stop is set."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline:
        if push.poll(100, zmq.POLLOUT):
            return True
    return False


def drain_subscriptions(xpub: zmq.Socket, most: int = 1000) -> None:
    """Discard up to `most` queued (un)subscription notices of an XPUB socket: a peer that churns its
    subscriptions cannot hold the caller here (what it queues meanwhile is bounded by the socket's RCVHWM)."""
    for _ in range(most):
        if not xpub.poll(0, zmq.POLLIN):
            return
        xpub.recv()


class ThrottledLog:
    """Logs a recurring warning at most once per `interval_s`, saying how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0):
        self.logger, self.interval_s = logger, interval_s
        self._last = -float("inf")
        self._suppressed = 0

    def warning(self, msg: str) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} similar suppressed)" if self._suppressed else ""
        self.logger.warning("%s%s", msg, more)
        self._last, self._suppressed = now, 0
