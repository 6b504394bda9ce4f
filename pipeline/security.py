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
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

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

    def serve(self, sock: zmq.Socket) -> None:
        """Make `sock` a CURVE server admitting only allow-listed clients (before bind)."""
        if self.authorized_dir is None:
            raise KeyFileError("a CURVE server needs an allow-list folder (security.authorized_dir)")
        self._authenticator(sock.context)
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True

    def client(self, sock: zmq.Socket, server_key: bytes) -> None:
        """Make `sock` a CURVE client of the server with public key `server_key` (before connect)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = server_key

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
