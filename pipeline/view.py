"""The live view: a small web page served from the line (`sinks.view`, `ssdnet run --view`, `ssdnet view`).

Per camera it shows the latest frame with its anomaly overlay (one colour scale for every frame,
`edge.overlay.annotated_overlay`), the image score against the threshold, a short score history,
the latest events with their regions, per-stage latency (p50 of the last results) and the
counters; for the node its state and counters. No build step, no CDN: the page, its script and
its style sheet ship in this package (`pipeline/static/`), and the server is the standard
library's `ThreadingHTTPServer`.

Endpoints (GET only; anything else is 404/405, with a one-line reason):
    /                  the page                     /static/view.js, /static/view.css
    /api/state         the whole state, JSON        /api/stream   server-sent events (below)
    /api/frame/<cam>   the latest overlay, PNG      /healthz      "ok"

`/api/stream` sends `snapshot` (the whole state) first, then `camera` (a camera's new result),
`event` (an anomaly event, with its event-log number `log_seq` when known) and `node` (node and
camera heartbeats). A browser that loses the stream reconnects by itself (EventSource) and gets a
snapshot again, so it catches up with what it missed (the latest `view.events` events per camera). The state keeps
the MAX_CAMERAS cameras heard from most recently (`cameras_forgotten` counts those dropped for them).

Access: bound to 127.0.0.1 unless `view.host` says otherwise. On loopback the Host header must
name a loopback host (no DNS rebinding from a web page). Anywhere else a token is required: the
browser presents it once as `/?token=...` and gets it back as an HttpOnly, SameSite=Strict
cookie; `view.allow` can restrict client networks as well. Requests are bounded (10 s to send a whole
request; a thread per connection, at most `view.max_clients` live streams + OTHER_CONNECTIONS connections at
once, the one waiting longest for its request closed for a new one; validated paths and camera names); a bad
request costs that request only and is counted.
"""
from __future__ import annotations

import errno
import hmac
import importlib.resources
import ipaddress
import json
import logging
import queue
import re
import secrets
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from edge.args import above, between
from edge.config import ConfigError
from edge.overlay import annotated_overlay, scale_range

from . import protocol as P
from .http_bounds import AwaitsRequest, BoundedConnections
from .sink_config import ViewConfig, is_loopback_host
from .stats import STAGES, CameraClocks
from .transport import ThrottledLog

log = logging.getLogger(__name__)
STATIC = {"view.js": "text/javascript; charset=utf-8", "view.css": "text/css; charset=utf-8"}
COOKIE = "ssdnet_view"
_SOURCE = re.compile(P.SOURCE_PATTERN)
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
KEEPALIVE_S = 10.0
OTHER_CONNECTIONS = 32  # connections at once beyond view.max_clients live streams (`http_bounds.BoundedConnections`)
LATENCY_WINDOW = 50
CLIENT_QUEUE = 256


def _static(name: str) -> bytes:
    return importlib.resources.files("pipeline").joinpath("static", name).read_bytes()


class _Camera:
    def __init__(self, name: str, history: int, events: int):
        self.name = name
        self.result: dict[str, Any] | None = None  # the latest result's header fields
        self.picture: tuple[np.ndarray | None, np.ndarray, tuple] | None = None  # image, map, boxes
        self.frame_version = 0
        self.png: tuple[int, bytes] | None = None
        self.history: deque[tuple[int, float, bool]] = deque(maxlen=history)
        self.events: deque[dict[str, Any]] = deque(maxlen=events)
        self.latency: deque[dict[str, float]] = deque(maxlen=LATENCY_WINDOW)
        self.clock = CameraClocks()  # its clock ahead of the node's, taken out of its latencies
        self.scored = self.events_seen = self.skipped = 0
        self.last_seq: int | None = None
        self.camera: dict[str, Any] = {}  # its own heartbeat: state, last frame age, counters
        self.node_counters: dict[str, int] = {}  # the node's counters for it (from its end of stream)

    def as_dict(self) -> dict[str, Any]:
        latency = {}
        for stage in STAGES:
            values = [d[stage] for d in self.latency if stage in d]
            latency[stage] = round(float(np.median(values)), 1) if values else None
        return {"name": self.name, "result": self.result, "frame_version": self.frame_version,
                "history": [[s, round(v, 4), a] for s, v, a in self.history], "events": list(self.events)[::-1],
                "latency_ms": latency, "counters": {"scored": self.scored, "events": self.events_seen,
                                                    "not_scored": self.skipped, **self.node_counters},
                "camera": self.camera}


MAX_CAMERAS = 64  # the cameras the page keeps: past it, the one heard from least recently is forgotten (a node
# restarted with cameras that name themselves anew each run grew it, and every snapshot, ~66 KB a 96 px camera)


class LiveState:
    """What the page shows, updated from delivered messages (any thread) and read by the HTTP threads."""

    def __init__(self, cfg: ViewConfig, line: str = "line"):
        self.cfg, self.line = cfg, line
        self._lock = threading.Lock()
        self._cameras: dict[str, _Camera] = {}  # the camera heard from most recently last
        self.forgotten = 0  # cameras dropped past MAX_CAMERAS
        self.node: dict[str, Any] = {}
        self.version = 0
        self._clients: set[queue.Queue] = set()
        self.started = time.time()

    # ---------------------------------------------------------------- updates

    def update(self, msg: P.Message, delivered: float, log_seq: int | None = None) -> None:
        h = msg.header
        with self._lock:
            if h.kind == "anomaly":
                self._result(msg, delivered)
                self._broadcast("camera", self._cameras[h.source].as_dict())
            elif h.kind == "event":
                cam = self._camera(h.source)
                record = {**P.event_record(h), "log_seq": log_seq, "delivered": delivered}
                cam.events.append(record)
                cam.events_seen += 1
                self._broadcast("event", record)
            elif h.kind == "heartbeat" and h.role == "node":
                self.node = {"name": h.source, "state": h.state, "counters": dict(h.counters), "t": h.t_capture,
                             "last_frame_age": h.last_frame_age}
                self._broadcast("node", {"node": self.node})
            elif h.kind == "heartbeat":
                cam = self._camera(h.source)
                cam.camera = {"state": h.state, "last_frame_age": h.last_frame_age, "counters": dict(h.counters),
                              "t": h.t_capture}
                self._broadcast("node", {"camera": h.source, "status": cam.camera})
            elif h.kind == "eos":
                cam = self._camera(h.source)
                cam.camera = {**cam.camera, "state": "ended", "counters": dict(h.counters)}
                cam.node_counters = {k: v for k, v in h.counters.items()
                                     if k in ("received", "conflated", "lost", "rejected", "failed")}
                self._broadcast("camera", cam.as_dict())

    def _camera(self, name: str) -> _Camera:
        cam = self._cameras.pop(name, None)
        if cam is None:
            cam = _Camera(name, self.cfg.history, self.cfg.events)
            if len(self._cameras) >= MAX_CAMERAS:
                del self._cameras[next(iter(self._cameras))]
                self.forgotten += 1
        self._cameras[name] = cam
        return cam

    def _result(self, msg: P.Message, delivered: float) -> None:
        h = msg.header
        cam = self._camera(h.source)
        anomalous = h.label == "anomalous"
        if cam.last_seq is not None and h.seq > cam.last_seq + 1:
            cam.skipped += h.seq - cam.last_seq - 1
        cam.last_seq = h.seq
        cam.scored += 1
        cam.history.append((h.seq, float(h.score), anomalous))
        cam.latency.append(cam.clock.latencies(h, delivered))
        lo, hi = scale_range(h.threshold, self.cfg.overlay_range)
        cam.result = {"seq": h.seq, "score": h.score, "threshold": h.threshold, "label": h.label,
                      "regions": [list(r.bbox) for r in h.regions], "t_capture": h.t_capture, "delivered": delivered,
                      "model_version": h.model_version, "product": h.product, "has_image": "image" in msg.arrays,
                      "scale": [lo, hi]}
        image = np.array(msg.arrays["image"]) if "image" in msg.arrays else None
        cam.picture = (image, P.anomaly_map(msg).copy(), tuple(r.bbox for r in h.regions))
        cam.frame_version += 1

    # ---------------------------------------------------------------- reads

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        return {"line": self.line, "version": self.version, "node": self.node, "started": self.started,
                "cameras": {name: cam.as_dict() for name, cam in sorted(self._cameras.items())},
                "cameras_forgotten": self.forgotten}

    def frame_png(self, name: str) -> bytes | None:
        """The latest overlay of camera `name` as PNG (rendered once per result, on request)."""
        with self._lock:
            cam = self._cameras.get(name)
            if cam is None or cam.picture is None or cam.result is None:
                return None
            if cam.png is not None and cam.png[0] == cam.frame_version:
                return cam.png[1]
            version, (image, amap, boxes), result = cam.frame_version, cam.picture, cam.result
        picture = annotated_overlay(image, amap, result["score"], result["threshold"], boxes, self.cfg.overlay_range)
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(picture[:, :, ::-1]))
        if not ok:
            return None
        with self._lock:
            cam.png = (version, buf.tobytes())
        return buf.tobytes()

    # ---------------------------------------------------------------- live clients

    def listen(self) -> tuple[queue.Queue, str] | None:
        """A new stream client's queue and its first message (the snapshot); None when too many are connected."""
        with self._lock:
            if len(self._clients) >= self.cfg.max_clients:
                return None
            q: queue.Queue = queue.Queue(CLIENT_QUEUE)
            self._clients.add(q)
            return q, _sse("snapshot", self._snapshot(), self.version)

    def unlisten(self, q: queue.Queue) -> None:
        with self._lock:
            self._clients.discard(q)

    def drop_clients(self) -> None:
        """Close every live stream (their browsers reconnect and catch up)."""
        with self._lock:
            for q in self._clients:
                _offer(q, None)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def _broadcast(self, kind: str, data: dict[str, Any]) -> None:
        self.version += 1
        if not self._clients:
            return
        message = _sse(kind, data, self.version)
        for q in list(self._clients):
            if not _offer(q, message):  # a browser that does not keep up is dropped; it reconnects to a snapshot
                self._clients.discard(q)
                _offer(q, None, force=True)


def _offer(q: queue.Queue, item: str | None, force: bool = False) -> bool:
    try:
        q.put_nowait(item)
        return True
    except queue.Full:
        if force:
            try:
                q.get_nowait()
                q.put_nowait(item)
            except (queue.Empty, queue.Full):
                pass
        return False


def _sse(kind: str, data: dict[str, Any], version: int) -> str:
    return f"id: {version}\nevent: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class _Handler(AwaitsRequest, BaseHTTPRequestHandler):  # the whole request in REQUEST_S, not each read (a slow loris)
    server: ViewServer
    timeout = 10  # seconds a client may take to send its request: slow or silent clients are dropped
    protocol_version = "HTTP/1.1"
    server_version = "ssdnet-view"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:
        self.server.bad_requests += 1
        self.server.throttled.warning(f"view: bad request from {self.address_string()}: {format % args}")

    # ------------------------------------------------------------ responses

    def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", _CSP)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _refuse(self, status: HTTPStatus, reason: str) -> None:
        self.server.refused += 1
        self.server.throttled.warning(f"view: {status.value} for {self.address_string()} {self.command} "
                                      f"{self.path[:80]!r}: {reason}")
        self._send(status, f"{status.value} {status.phrase}: {reason}\n".encode())

    # ------------------------------------------------------------ access

    def _admitted(self, query: dict[str, list[str]]) -> tuple[bool, str | None]:
        """(admitted, token to set as cookie); refuses with the reason itself when not."""
        cfg = self.server.cfg
        if cfg.allow:
            client = ipaddress.ip_address(self.client_address[0])
            if not any(client in ipaddress.ip_network(n, strict=False) for n in cfg.allow):
                self._refuse(HTTPStatus.FORBIDDEN, "client address not in view.allow")
                return False, None
        if cfg.loopback and self.server.token is None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
            if not is_loopback_host(host):
                self._refuse(HTTPStatus.FORBIDDEN, "Host header is not a loopback name")
                return False, None
        if self.server.token is None:
            return True, None
        offered = query.get("token", [None])[0]
        if offered is None:  # split, not SimpleCookie: its parser took quadratic time on backslashes (CVE-2024-7592)
            pairs = (part.strip().partition("=") for part in (self.headers.get("Cookie") or "").split(";"))
            offered = next((value for key, _, value in pairs if key == COOKIE), None)
        if offered is None or not hmac.compare_digest(offered.encode(), self.server.token.encode()):
            self._refuse(HTTPStatus.UNAUTHORIZED, "token missing or wrong (open the URL with ?token=... once)")
            return False, None
        return True, offered if "token" in query else None

    # ------------------------------------------------------------ methods

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        try:
            self._get()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):  # a client that does not read its answers:
            self.close_connection = True  # closed, not held for the requests it sent ahead (a slot for each)
        except Exception as e:  # noqa: BLE001 - one request's failure never stops the page
            self.server.throttled.warning(f"view: {self.path[:80]!r} failed: {type(e).__name__}: {e}")
            try:
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"500 internal error\n")
            except OSError:
                pass

    def _not_allowed(self) -> None:
        self._refuse(HTTPStatus.METHOD_NOT_ALLOWED, "the view is read-only (GET)")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _get(self) -> None:
        parts = urlsplit(self.path)
        try:
            query = parse_qs(parts.query, max_num_fields=8, strict_parsing=False)
        except ValueError:
            self._refuse(HTTPStatus.BAD_REQUEST, "malformed query")
            return
        admitted, new_token = self._admitted(query)
        if not admitted:
            return
        path = parts.path
        state = self.server.state
        if path in ("/", "/index.html"):
            headers = {}
            if new_token is not None:
                headers["Set-Cookie"] = f"{COOKIE}={new_token}; HttpOnly; SameSite=Strict; Path=/"
            self._send(HTTPStatus.OK, _static("index.html"), "text/html; charset=utf-8", headers)
        elif path.startswith("/static/") and path[len("/static/"):] in STATIC:
            name = path[len("/static/"):]
            self._send(HTTPStatus.OK, _static(name), STATIC[name])
        elif path == "/api/state":
            self._send(HTTPStatus.OK, json.dumps(state.snapshot()).encode(), "application/json")
        elif path == "/api/stream":
            self._stream()
        elif path.startswith("/api/frame/"):
            name = path[len("/api/frame/"):]
            if not _SOURCE.match(name):
                self._refuse(HTTPStatus.BAD_REQUEST, "not a camera name")
                return
            png = state.frame_png(name)
            if png is None:
                self._send(HTTPStatus.NOT_FOUND, b"404 no frame of that camera yet\n")
            else:
                self._send(HTTPStatus.OK, png, "image/png")
        elif path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"")
        elif path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"404 not found\n")

    def _stream(self) -> None:
        if self.command == "HEAD":  # the headers alone: no body, and no live view's place taken
            self._stream_headers()
            return
        listening = self.server.state.listen()
        if listening is None:
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, f"{self.server.cfg.max_clients} live views already open")
            return
        q, first = listening
        try:
            self._stream_headers()
            self.wfile.write(f"retry: 1000\n{first}".encode())
            self.wfile.flush()
            quiet_since = time.monotonic()
            while not self.server.closing.is_set():
                try:
                    item = q.get(timeout=1.0)
                except queue.Empty:
                    if self._gone():
                        return
                    if time.monotonic() - quiet_since < KEEPALIVE_S:
                        continue
                    item = ": keepalive\n\n"
                if item is None:
                    return
                quiet_since = time.monotonic()
                self.wfile.write(item.encode())
                self.wfile.flush()
        finally:
            self.server.state.unlisten(q)

    def _stream_headers(self) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _gone(self) -> bool:
        """The browser closed the stream (its socket reads as end of file)."""
        try:  # poll, not select: select refuses a descriptor past 1023, which a process with many connections has
            ready = select.poll()
            ready.register(self.connection, select.POLLIN)
            return bool(ready.poll(0)) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


class ViewServer(BoundedConnections, ThreadingHTTPServer):
    """The page's HTTP server (a thread per connection, bounded: `BoundedConnections`); `url` is where a browser opens
    it."""

    name = "view"
    request_queue_size = 64

    def __init__(self, cfg: ViewConfig, state: LiveState):
        self.cfg, self.state = cfg, state
        token = cfg.secret()
        self.token = token if token is not None else (None if cfg.loopback else secrets.token_urlsafe(24))
        self.closing = threading.Event()
        self.throttled = ThrottledLog(log, 5.0)
        self.bad_requests = self.refused = 0
        self.max_connections = cfg.max_clients + OTHER_CONNECTIONS
        if ":" in cfg.host:  # an IPv6 address (ThreadingHTTPServer's family is IPv4)
            self.address_family = socket.AF_INET6
        try:
            super().__init__((cfg.host, cfg.port), _Handler)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                hint = ("is another `ssdnet run --view` or `ssdnet view` up? Choose another port with sinks.view.port "
                        "(ssdnet run) or --port (ssdnet view); 0 = any free port")
            else:
                hint = "check sinks.view.host (ssdnet run) or --host (ssdnet view)"
            where = f"{cfg.host}:{cfg.port}"
            raise ConfigError(f"the live view cannot listen on {where} ({e.strerror}): {hint}") from e  # exit 2
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="view",
                                        daemon=True)

    @property
    def url(self) -> str:
        host = self.cfg.host if ":" not in self.cfg.host else f"[{self.cfg.host}]"
        host = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def start(self) -> ViewServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.closing.set()
        self.state.drop_clients()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=2)


class ViewSink:
    """A sink serving the live page from delivered messages (the launcher's collector or `ssdnet view`)."""

    def __init__(self, cfg: ViewConfig, line: str = "line", announce: Callable[[str], None] | None = None):
        self.state = LiveState(cfg, line)
        self.server = ViewServer(cfg, self.state).start()
        self.url = self.server.url
        if not cfg.loopback and cfg.secret() is None:
            log.warning("view: listening on %s:%d with a token made for this run: %s", cfg.host, self.server.port,
                        self.url)
        log.info("live view on %s", self.url)
        if announce is not None:
            announce(self.url)

    def handle(self, msg: P.Message, delivered: float, log_seq: int | None = None) -> None:
        self.state.update(msg, delivered, log_seq)

    def close(self) -> None:
        self.server.close()


# ---------------------------------------------------------------- ssdnet view


def follow(endpoint: str, replay: str | None, cfg: ViewConfig, line: str = "line", timeout_s: float | None = None,
           key: str | None = None, server_key: str | None = None, on_url: Callable[[str], None] | None = None,
           stop: threading.Event | None = None, unheard_s: float = 5.0) -> None:
    """Serve the live page from a running node (its results endpoint, and its replay endpoint for the events)
    until Ctrl-C, `timeout_s` or `stop` is set (an embedding program's own shutdown). Nothing heard from the node
    is a warning after `unheard_s` and a RuntimeError at `timeout_s`, as with `ssdnet subscribe`."""
    import zmq

    from .eventlog import CatchUp, ReplayClient
    from .sinks import REOPEN_S, Subscriber
    from .subscribe import Unheard, client_security

    ctx = zmq.Context.instance()
    server = client_security(ctx, key, server_key)
    sink = ViewSink(cfg, line, announce=on_url)
    sub = Subscriber(endpoint, (b"anomaly/", b"event/", b"eos/", b"heartbeat/"), ctx=ctx, server_key=server,
                     reopen_s=REOPEN_S)
    catch = CatchUp(ReplayClient(replay, ctx, server_key=server), from_start=True) if replay else None
    unheard = Unheard([endpoint], unheard_s)
    deadline = unheard.start + timeout_s if timeout_s else float("inf")
    stop = stop or threading.Event()
    try:
        while time.monotonic() < deadline and not stop.is_set():
            msg = sub.recv(100)
            unheard.saw(msg)
            if catch is not None:
                for n, header in catch.on_message(msg):
                    sink.handle(P.Message(header), time.time(), n)
            if msg is not None and (catch is None or msg.kind not in CatchUp.HANDED_ON):
                sink.handle(msg, time.time())
    finally:
        sub.close()
        if catch is not None:
            catch.close()
        sink.close()
    if not unheard.heard and time.monotonic() >= deadline:
        raise unheard.error(timeout_s)


def _main(args) -> int:
    from .subscribe import until_stopped

    cfg = ViewConfig(host=args.host, port=args.port, token=args.token)
    return until_stopped("view", lambda stop: follow(
        args.endpoint, args.replay, cfg, args.line, args.timeout, args.key, args.server_key,
        on_url=lambda url: print(f"live view: {url}", flush=True), stop=stop))


def add_parser(sub) -> None:
    import argparse

    from .subscribe import endpoint_arg

    p = sub.add_parser("view", help="serve the live web page of a running node", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("endpoint", type=endpoint_arg,
                   help="the node's results endpoint (node.bind / node.address), e.g. tcp://node:5600")
    p.add_argument("--replay", type=endpoint_arg, metavar="ENDPOINT",
                   help="the node's replay endpoint: events from its log, none missed")
    p.add_argument("--host", default="127.0.0.1", help="address the page listens on (default 127.0.0.1; anything "
                                                       "else needs a token, made and printed if not given)")
    p.add_argument("--port", type=between(0, 65535, int), default=8765, help="port (default 8765; 0 = any free port)")
    p.add_argument("--token", help="the token a browser presents once as ?token=...")
    p.add_argument("--line", default="line", help="name shown on the page")
    p.add_argument("--timeout", type=above(0), help="stop after this many seconds")
    p.add_argument("--key", metavar="FILE", help="this client's NAME.key_secret (CURVE, when the node has security on)")
    p.add_argument("--server-key", metavar="FILE", help="the node's public NODE.key (with --key)")
    p.set_defaults(func=_main)
