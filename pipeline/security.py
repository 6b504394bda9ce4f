"""CURVE encryption and a ZAP allow-list of client public keys for sockets that cross machines.

Key files are ZeroMQ certificates as `zmq.auth.create_certificates` writes them (`ssdnet keys DIR
--name NAME`): `NAME.key` (public) and `NAME.key_secret` (public + secret).

- A stage that binds (camera, node results, node replay) is a CURVE server with its own secret
  key; its context's ZAP handler (`pipeline.gate`, which also bounds the node's subscribers and a camera's peers)
  admits a client only if its public key is in the allow-list folder (`*.key` files, `AllowList`). Refusals are logged
  (throttled) and counted (`refused`). The folder is re-read when its contents change: checked on a
  connection attempt, at most every `reload_s`, and at once for a key the list lacks; so adding a `.key` file admits
  the key's next connection, deleting one refuses new connections within `reload_s`, without a restart; an
  established CURVE session stays up.
- A stage that connects (node -> cameras, subscribers -> node) is a CURVE client with its own
  secret key and the server's public key.

Only `tcp://` endpoints are secured; `ipc://` stays on the machine and is protected by file
permissions. `transport.bind`/`transport.connect` apply the policy registered for a socket's
context with `transport.secure(ctx, Security(...))`, so every stage gets it without knowing.

Every refused connection is logged (throttled) with its reason and counted (`Security.refusals()`),
from ZeroMQ's socket monitor events on each secured socket (read by the gate):
- server side (a bound socket): `plaintext` (a client without CURVE: ZMTP mechanism mismatch),
  `wrong_server_key` (a CURVE client that encrypted for another server key: the HELLO does not
  open), `unknown_key` (a valid client key not in the allow-list: ZAP answered 400),
  `protocol_error` (any other failed handshake, among them a client that hung up mid-handshake:
  libzmq then reports no detail, and a plaintext client racing the server's greeting is one);
- client side (a connecting socket): `handshake_failed` (the server is not the one whose key we
  pinned, or speaks no CURVE), `refused_by_peer` (the server's allow-list does not hold our key, or the
  node holds `node.max_subscribers` peers already, or the camera `sources[].max_peers`; ZeroMQ does not retry
  either).
The node adds them to its heartbeat counters as `refused_<reason>`.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import zmq
import zmq.auth

from .gate import CLIENT_REFUSALS, SERVER_REFUSALS, Gate, close_gate, open_gate
from .transport import ThrottledLog, secure

log = logging.getLogger(__name__)


class KeyFileError(ValueError):
    """A key file is missing or unreadable."""


def load_public(path: str | Path) -> bytes:
    """The z85 public key of a `.key` (or `.key_secret`) certificate file; KeyFileError naming the file when it
    cannot be read or holds no valid key."""
    return _load(path, "public")[0]


def load_secret(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys of a `.key_secret` certificate file (KeyFileError as `load_public`)."""
    public, secret = _load(path, "secret")
    if secret is None:
        raise KeyFileError(f"{path} holds no secret key (a .key_secret file is needed)")
    return public, secret


def _load(path: str | Path, which: str) -> tuple[bytes, bytes | None]:
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"{which} key file {path} not found (make one with `ssdnet keys DIR --name NAME`)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:  # unreadable, or no public key in it
        raise KeyFileError(f"cannot read key file {path}: {e}") from None
    for key in (public, secret):
        if key is not None and not _is_z85_key(key):  # else a bare "Invalid argument" from ZeroMQ, later
            raise KeyFileError(f"{path} holds a key that is not 40 characters of z85 (cut short or damaged: make "
                               "a new pair with `ssdnet keys DIR --name NAME`)")
    return public, secret


def _is_z85_key(key: bytes) -> bool:
    try:
        return len(key) == 40 and len(zmq.utils.z85.decode(key)) == 32
    except (ValueError, KeyError):  # a character outside z85's alphabet
        return False


def _signature(directory: Path) -> tuple:
    try:
        return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in directory.glob("*.key")))
    except OSError:
        return ()


class AllowList:
    """The client public keys a CURVE server admits: the `*.key` files of a folder, re-read when they change
    (checked on a handshake at most every `reload_s`, and at once for a key the list lacks: a refused client does not
    retry, so one that came within `reload_s` of a key's copying-in stayed out). Called by the context's gate
    (pipeline.gate)."""

    def __init__(self, directory: Path, reload_s: float = 5.0):
        self.directory, self.reload_s = Path(directory), reload_s
        self.keys: set[bytes] = set()  # z85
        self._by_file: dict[str, bytes] = {}  # file name -> its key
        self.refused = 0
        self._checked = -float("inf")
        self._sig: tuple = ()
        self._log = ThrottledLog(log, 1.0)
        self._error_log = ThrottledLog(log, 5.0)

    def reload(self, force: bool = False) -> None:
        """Re-read the folder if its files changed (at most every `reload_s`, unless `force`)."""
        now = time.monotonic()
        if now - self._checked < self.reload_s and not force:
            return
        self._checked = now
        sig = _signature(self.directory)
        if sig == self._sig and self.keys:
            return
        by_file: dict[str, bytes] = {}
        for path in sorted(self.directory.glob("*.key")) if self.directory.is_dir() else ():  # the folder's name is
            try:  # no pattern (zmq.auth.load_certificates globbed it: `allowed[prod]` read `allowedp`)
                by_file[path.name] = load_public(path)
            except KeyFileError as e:  # one being copied in (empty yet), or no key: skipped, the others read
                kept = self._by_file.get(path.name)  # (before, the whole list stayed as it was: deleted keys too)
                if kept is not None:
                    by_file[path.name] = kept
                self._error_log.error(f"CURVE allow-list: skipped {e}" + (" (its last key kept)" if kept else ""))
        self._sig, self._by_file, self.keys = sig, by_file, set(by_file.values())
        log.info("CURVE allow-list %s: %d key(s)", self.directory, len(self.keys))

    def __call__(self, client_key: bytes) -> bool:
        """Whether the 32-byte `client_key` is allow-listed; a refusal is logged (throttled) with the key."""
        self.reload()
        key = zmq.utils.z85.encode(client_key)
        if key not in self.keys:
            self.reload(force=True)  # a folder's stat, and its read only where it changed
        if key in self.keys:
            return True
        self.refused += 1
        self._log.warning(f"refused a connection: client key {key.decode()} is not in {self.directory} "
                          f"({self.refused} refused so far)")
        return False


_DETAIL = {"plaintext": "a client without CURVE", "wrong_server_key": "a client using another server key",
           "protocol_error": "handshake failed ({value:#x}), or the client hung up during it",
           "handshake_failed": "the server's key is not the pinned one, or it speaks no CURVE",
           "refused_by_peer": "the server refused us: our key is not in its allow-list, or it holds "
                              "as many peers as it admits (node.max_subscribers, sources[].max_peers); not retried"}


class Security:
    """One stage's CURVE identity, the allow-list its servers admit, and where servers' public keys live."""

    def __init__(self, secret_file: str | Path, authorized_dir: str | Path | None = None,
                 public_keys_dir: str | Path | None = None, reload_s: float = 5.0):
        self.secret_file = Path(secret_file)
        self.public, self.secret = load_secret(self.secret_file)
        self.authorized_dir = Path(authorized_dir) if authorized_dir is not None else None
        self.public_keys_dir = Path(public_keys_dir) if public_keys_dir is not None else self.secret_file.parent
        self.reload_s = reload_s
        self.gates: dict[int, Gate] = {}  # context id -> its gate: ZAP handler (allow-list) and handshake monitor
        self._lock = threading.Lock()
        self._logs = {reason: ThrottledLog(log, 1.0) for reason in _DETAIL}

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
        """Clients refused for a key the allow-list does not hold."""
        return self.refusals()["unknown_key"]

    def refusals(self) -> dict[str, int]:
        """Failed handshakes of this stage's secured sockets so far, by reason (module docstring)."""
        counts = dict.fromkeys(SERVER_REFUSALS + CLIENT_REFUSALS, 0)
        with self._lock:
            for gate in self.gates.values():
                with gate.lock:
                    for reason, n in gate.counts.items():
                        counts[reason] += n
        return counts

    def serve(self, sock: zmq.Socket) -> None:
        """Make `sock` a CURVE server admitting only allow-listed clients (before bind)."""
        if self.authorized_dir is None:
            raise KeyFileError("a CURVE server needs an allow-list folder (security.authorized_dir)")
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True
        self._gate(sock.context).watch(sock, server=True, secured=True)

    def client(self, sock: zmq.Socket, server_key: bytes) -> None:
        """Make `sock` a CURVE client of the server with public key `server_key` (before connect)."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = server_key
        self._gate(sock.context).watch(sock, server=False, secured=True)

    def _gate(self, ctx: zmq.Context) -> Gate:
        with self._lock:
            gate = self.gates.get(id(ctx))
            if gate is None:
                gate = self.gates[id(ctx)] = open_gate(ctx)
                if self.authorized_dir is not None:
                    gate.allow_list = AllowList(self.authorized_dir, self.reload_s)
                gate.on_refusal = self._refused
            return gate

    def _refused(self, reason: str, what: str, value: int, endpoint: str) -> None:
        """Log a failed handshake (throttled per reason); the allow-list logs its own refusals, with the key."""
        if reason in self._logs:
            n = self.refusals()[reason]
            self._logs[reason].warning(f"refused a connection on {what} {endpoint} ({reason}: "
                                       f"{_DETAIL[reason].format(value=value)}; {n} so far)")

    def close(self) -> None:
        """Give the gates back (after this stage's sockets are closed, before the context is terminated)."""
        with self._lock:
            gates, self.gates = list(self.gates.values()), {}
        for gate in gates:
            close_gate(gate)


def make_keypair(directory: str | Path, name: str, force: bool = False) -> tuple[Path, Path]:
    """Write DIR/NAME.key and DIR/NAME.key_secret (secret readable by the owner only)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not force and (public.exists() or secret.exists()):
        raise FileExistsError(f"{public} or {secret} exists already (use --force to replace)")
    umask = os.umask(0o077)  # the secret is never readable by others, not even between its writing and a chmod
    try:
        public_file, secret_file = zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(umask)
    Path(public_file).chmod(0o644)
    return Path(public_file), Path(secret_file)


def secure_stage(cfg, name: str, ctx: zmq.Context | None = None) -> Security:
    """CURVE on every tcp socket of `ctx` (default: the process's context) that `transport.bind` or
    `transport.connect` sets up from now on, as stage `name` of a `security:` section (SecurityConfig)."""
    sec = Security.from_config(cfg, name)
    secure(ctx or zmq.Context.instance(), sec)
    return sec
