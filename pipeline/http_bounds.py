"""Bounds for the line's small HTTP servers, the live view (`pipeline/view.py`) and the metrics endpoint
(`sinks.prometheus`): each serves a connection on a thread of its own, so a client must not hold one for ever, nor
clients many. Before, a client trickling a header byte every few seconds held its thread for ever on the view (its
10 s timeout was for each read), a silent one on the metrics endpoint (no timeout at all), and 6000 such clients from
one process made the view unreachable and its process spin on both cores."""
from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from socketserver import ThreadingMixIn
from typing import Any

from .transport import ThrottledLog

log = logging.getLogger(__name__)
REQUEST_S = 10.0  # a client has this long to send a whole request (line and headers), from its connection or its last


class BoundedConnections(ThreadingMixIn):
    """A threading server's connections bounded: at most `max_connections` at once, and each request's line and
    headers in within REQUEST_S. When all are open, the one waiting longest for its request (a slow or idle client) is
    closed for a new one; with none waiting (live streams, requests being answered) the new one is closed at once.
    Handlers call `await_request(sock)` before reading a further request on a connection (its first is awaited from
    its connection) and `requested(sock)` once its headers are in. `name` says whose they are in the log."""

    daemon_threads = True
    max_connections = 32
    name = "http"
    refused = bad_requests = 0
    throttled = ThrottledLog(log, 5.0)

    def __init__(self, *args: Any, **kwargs: Any):
        self.connections = 0  # open now, a thread each
        self._waiting: dict[socket.socket, float] = {}  # connections whose request is not in yet: its deadline
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            victim = None
            if self.connections >= self.max_connections:
                victim = min(self._waiting, key=self._waiting.__getitem__, default=None)
                if victim is None:
                    self.refused += 1
                    self.throttled.warning(f"{self.name}: closed a connection from {client_address[0]}: "
                                           f"{self.connections} open already, none of them waiting for its request")
                    self.shutdown_request(request)
                    return
                del self._waiting[victim]
            self.connections += 1
            self._waiting[request] = time.monotonic() + REQUEST_S
        if victim is not None:
            self._close_waiting(victim, f"a new connection came with {self.connections - 1} open")
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed(request)

    def _closed(self, request: Any) -> None:
        with self._connections_lock:
            self.connections -= 1
            self._waiting.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that failed outside its handler (a client resetting its connection mid-request): counted and
        logged once in a while, not a traceback on stderr for each."""
        e = sys.exc_info()[1]
        self.bad_requests += 1
        self.throttled.warning(f"{self.name}: request from {client_address[0]} failed: {type(e).__name__}: {e}")
        log.debug("%s: the request's failure", self.name, exc_info=True)

    def await_request(self, sock: socket.socket) -> None:
        """`sock`'s next request must be in within REQUEST_S (its first: from its connection)."""
        with self._connections_lock:
            self._waiting.setdefault(sock, time.monotonic() + REQUEST_S)

    def requested(self, sock: socket.socket) -> None:
        with self._connections_lock:
            self._waiting.pop(sock, None)

    def _close_waiting(self, sock: socket.socket, why: str) -> None:
        """End a connection still waiting for its request: its handler's read ends, and so does its thread."""
        self.bad_requests += 1
        self.throttled.warning(f"{self.name}: closed a connection waiting for its request: {why}")
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def service_actions(self) -> None:
        """Close the connections whose request did not come in within REQUEST_S (called by serve_forever)."""
        super().service_actions()
        now = time.monotonic()
        with self._connections_lock:
            late = [sock for sock, deadline in self._waiting.items() if deadline <= now]
            for sock in late:
                del self._waiting[sock]
        for sock in late:
            self._close_waiting(sock, f"it took over {REQUEST_S:g} s")


class AwaitsRequest:
    """The handler side of `BoundedConnections` (mixed in before an http.server handler): a connection waits for its
    request within REQUEST_S, and once its line and headers are in, no longer (a live stream may last)."""

    def handle_one_request(self) -> None:
        self.server.await_request(self.connection)  # type: ignore[attr-defined]
        try:
            super().handle_one_request()  # type: ignore[misc]
        finally:
            self.server.requested(self.connection)  # type: ignore[attr-defined]

    def parse_request(self) -> bool:
        try:
            return super().parse_request()  # type: ignore[misc]
        finally:
            self.server.requested(self.connection)  # type: ignore[attr-defined]
