"""CURVE encryption and a ZAP allow-list of client public keys for sockets that cross machines.

Key files are ZeroMQ certificates as `zmq.auth.create_certificates` writes them (`ssdnet keys DIR
--name NAME`): `NAME.key` (public) and `NAME.key_secret` (public + secret).

- A stage that binds (camera, node results, node replay) is a CURVE server with its own secret
  key; a ZAP handler (`CountingAuthenticator`, a `zmq.auth.thread.ThreadAuthenticator`) admits a
  client only if its public key is in the allow-list folder (`*.key` files). Refusals are logged
  (throttled) and counted (`refused`). The folder is re-read when its contents change (checked at
  most every `reload_s` on the next connection attempt): adding or deleting a `.key` file admits
  or refuses *new* connections without a restart; an established CURVE session stays up.
- A stage that connects (node -> cameras, subscribers -> node) is a CURVE client with its own
  secret key and the server's public key.

Only `tcp://` endpoints are secured; `ipc://` stays on the machine and is protected by file
permissions. `transport.bind`/`transport.connect` apply the policy registered for a socket's
context with `transport.secure(ctx, Security(...))`, so every stage gets it without knowing.

Every refused connection is logged (throttled) with its reason and counted (`Security.refusals()`),
from ZeroMQ's socket monitor events on each secured socket (`HandshakeMonitor`):
- server side (a bound socket): `plaintext` (a client without CURVE: ZMTP mechanism mismatch),
  `wrong_server_key` (a CURVE client that encrypted for another server key: the HELLO does not
  open), `unknown_key` (a valid client key not in the allow-list: ZAP answered 400),
  `protocol_error` (any other failed handshake, among them a client that hung up mid-handshake:
  libzmq then reports no detail, and a plaintext client racing the server's greeting is one);
- client side (a connecting socket): `handshake_failed` (the server is not the one whose key we
  pinned, or speaks no CURVE), `refused_by_peer` (the server's allow-list does not hold our key).
The node adds them to its heartbeat counters as `refused_<reason>`.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from .transport import ThrottledLog, secure

log = logging.getLogger(__name__)


class KeyFileError(ValueError):
    """A key file is missing or unreadable."""


def load_public(path: str | Path) -> bytes:
    """The z85 public key of a `.key` (or `.key_secret`) certificate file."""
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"public key file {path} not found (make one with `ssdnet keys DIR --name NAME`)")
    public, _ = zmq.auth.load_certificate(str(path))
    if public is None:
        raise KeyFileError(f"{path} holds no public key")
    return public


def load_secret(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys of a `.key_secret` certificate file."""
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"secret key file {path} not found (make one with `ssdnet keys DIR --name NAME`)")
    public, secret = zmq.auth.load_certificate(str(path))
    if not secret:
        raise KeyFileError(f"{path} holds no secret key (a .key_secret file is needed)")
    return public, secret


def _signature(directory: Path) -> tuple:
    try:
        return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in directory.glob("*.key")))
    except OSError:
        return ()


class CountingAuthenticator(ThreadAuthenticator):
    """ThreadAuthenticator for CURVE with an allow-list folder that counts, logs and reloads."""

    def __init__(self, ctx: zmq.Context, authorized_dir: Path, reload_s: float = 5.0):
        super().__init__(ctx, log=logging.getLogger(__name__ + ".zap"))
        self.authorized_dir, self.reload_s = Path(authorized_dir), reload_s
        self.refused = 0
        self.admitted = 0
        self._checked = 0.0
        self._sig: tuple = ()
        self._lock = threading.Lock()
        self._log = ThrottledLog(log, 1.0)

    def start(self) -> None:
        super().start()
        self.reload(force=True)

    def reload(self, force: bool = False) -> bool:
        """Re-read the allow-list if its files changed; True if it did."""
        now = time.monotonic()
        if not force and now - self._checked < self.reload_s:
            return False
        self._checked = now
        sig = _signature(self.authorized_dir)
        if not force and sig == self._sig:
            return False
        self._sig = sig
        self.configure_curve(domain="*", location=str(self.authorized_dir))
        log.info("CURVE allow-list %s: %d key(s)", self.authorized_dir, len(self.certs.get("*", {})))
        return True

    async def _authenticate_curve(self, domain: str, client_key: bytes) -> tuple[bool, bytes]:  # async in pyzmq >= 25
        self.reload()
        allowed, reason = await super()._authenticate_curve(domain, client_key)
        with self._lock:
            if allowed:
                self.admitted += 1
            else:
                self.refused += 1
        if not allowed:
            key = zmq.utils.z85.encode(client_key).decode() if len(client_key) == 32 else repr(client_key[:8])
            self._log.warning(f"refused a connection: client key {key} is not in {self.authorized_dir} "
                              f"({reason.decode(errors='replace')}; {self.refused} refused so far)")
        return allowed, reason


SERVER_REFUSALS = ("plaintext", "wrong_server_key", "unknown_key", "protocol_error")
CLIENT_REFUSALS = ("handshake_failed", "refused_by_peer")
_MONITORED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
              | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


def refusal_reason(event: int, value: int, server: bool) -> str | None:
    """The reason a socket monitor event stands for (None: not a refusal)."""
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


class HandshakeMonitor:
    """One thread reading the ZeroMQ monitor sockets of a process's secured sockets: counts and logs
    (throttled) every failed handshake by reason. A monitored socket's monitor ends when it closes."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(SERVER_REFUSALS + CLIENT_REFUSALS, 0)
        self._new: queue.Queue[tuple[zmq.Socket, bool, str]] = queue.Queue()
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._logs = {reason: ThrottledLog(log, 1.0) for reason in self.counts}
        self._thread: threading.Thread | None = None
        self._watched: weakref.WeakSet[zmq.Socket] = weakref.WeakSet()

    def watch(self, sock: zmq.Socket, server: bool) -> None:
        """Monitor `sock`'s handshakes (call from the thread that owns `sock`, before bind/connect); a
        socket is watched once however often it binds or connects."""
        with self._lock:
            if sock in self._watched:
                return
            self._watched.add(sock)
        what = f"a {zmq.SocketType(sock.type).name} {'server' if server else 'client'} socket"
        mon = sock.get_monitor_socket(_MONITORED)  # an inproc PAIR, handed to the monitor thread
        self._new.put((mon, server, what))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="handshake-monitor", daemon=True)
                self._thread.start()

    def _count(self, reason: str, what: str, value: int, endpoint: str) -> None:
        with self._lock:
            self.counts[reason] += 1
            n = self.counts[reason]
        detail = {"plaintext": "a client without CURVE", "wrong_server_key": "a client using another server key",
                  "unknown_key": "a client key not in the allow-list",
                  "protocol_error": f"handshake failed ({value:#x}), or the client hung up during it",
                  "handshake_failed": "the server's key is not the pinned one, or it speaks no CURVE",
                  "refused_by_peer": "our key is not in the server's allow-list"}[reason]
        if reason != "unknown_key":  # the ZAP handler logs those itself, with the client's key
            self._logs[reason].warning(f"refused a connection on {what} {endpoint} ({reason}: {detail}; {n} so far)")

    def _run(self) -> None:
        poller, socks = zmq.Poller(), {}
        try:
            while not self._halt.is_set():
                while True:
                    try:
                        mon, server, what = self._new.get_nowait()
                    except queue.Empty:
                        break
                    socks[mon] = (server, what)
                    poller.register(mon, zmq.POLLIN)
                for mon in dict(poller.poll(100)):
                    msg = parse_monitor_message(mon.recv_multipart())
                    server, what = socks[mon]
                    if msg["event"] == zmq.EVENT_MONITOR_STOPPED:
                        poller.unregister(mon)
                        del socks[mon]
                        mon.close(0)
                    elif (reason := refusal_reason(msg["event"], msg["value"], server)) is not None:
                        endpoint = msg["endpoint"].decode(errors="replace") if msg["endpoint"] else ""
                        self._count(reason, what, msg["value"], endpoint)
        except zmq.ZMQError:  # the context was terminated under us: nothing left to watch
            pass
        finally:
            for mon in socks:
                mon.close(0)

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


class Security:
    """One stage's CURVE identity, the allow-list its servers admit, and where servers' public keys live."""

    def __init__(self, secret_file: str | Path, authorized_dir: str | Path | None = None,
                 public_keys_dir: str | Path | None = None, reload_s: float = 5.0):
        self.secret_file = Path(secret_file)
        self.public, self.secret = load_secret(self.secret_file)
        self.authorized_dir = Path(authorized_dir) if authorized_dir is not None else None
        self.public_keys_dir = Path(public_keys_dir) if public_keys_dir is not None else self.secret_file.parent
        self.reload_s = reload_s
        self._auth: dict[int, CountingAuthenticator] = {}
        self._lock = threading.Lock()
        self.monitor = HandshakeMonitor()

    @classmethod
    def from_config(cls, cfg, name: str) -> Security:
        """The identity `name` (a camera, node or subscriber name) of a `security:` config section."""
        return cls(Path(cfg.keys_dir) / f"{name}.key_secret", cfg.authorized_dir, cfg.public_keys_dir or cfg.keys_dir,
                   cfg.reload_s)

    def server_key(self, name: str) -> bytes:
        """Public key of the server stage `name` (`<public_keys_dir>/<name>.key`)."""
        return load_public(self.public_keys_dir / f"{name}.key")

    @property
    def refused(self) -> int:
        return sum(a.refused for a in self._auth.values())

    def refusals(self) -> dict[str, int]:
        """Failed handshakes of this stage's secured sockets so far, by reason (module docstring)."""
        with self.monitor._lock:
            return dict(self.monitor.counts)

    def serve(self, sock: zmq.Socket) -> None:
        """Make `sock` a CURVE server admitting only allow-listed clients (before bind)."""
        if self.authorized_dir is None:
            raise KeyFileError("a CURVE server needs an allow-list folder (security.authorized_dir)")
        self._authenticator(sock.context)
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True
        self.monitor.watch(sock, server=True)

    def client(self, sock: zmq.Socket, server_key: bytes) -> None:
        """Make `sock` a CURVE client of the server with public key `server_key` (before connect)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = server_key
        self.monitor.watch(sock, server=False)

    def _authenticator(self, ctx: zmq.Context) -> CountingAuthenticator:
        with self._lock:
            auth = self._auth.get(id(ctx))
            if auth is None:
                auth = self._auth[id(ctx)] = CountingAuthenticator(ctx, self.authorized_dir, self.reload_s)
                auth.start()
            return auth

    def close(self) -> None:
        """Stop the ZAP handlers (before the context is terminated)."""
        with self._lock:
            for auth in self._auth.values():
                auth.stop()
            self._auth.clear()
        self.monitor.stop()


def make_keypair(directory: str | Path, name: str, force: bool = False) -> tuple[Path, Path]:
    """Write DIR/NAME.key and DIR/NAME.key_secret (secret readable by the owner only)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not force and (public.exists() or secret.exists()):
        raise FileExistsError(f"{public} or {secret} exists already (use --force to replace)")
    public_file, secret_file = zmq.auth.create_certificates(str(directory), name)
    Path(secret_file).chmod(0o600)
    return Path(public_file), Path(secret_file)


def secure_stage(cfg, name: str, ctx: zmq.Context | None = None) -> Security:
    """CURVE on every tcp socket of `ctx` (default: the process's context) that `transport.bind` or
    `transport.connect` sets up from now on, as stage `name` of a `security:` section (SecurityConfig)."""
    sec = Security.from_config(cfg, name)
    secure(ctx or zmq.Context.instance(), sec)
    return sec
