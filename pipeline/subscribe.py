"""`ssdnet subscribe ENDPOINT...`: print a node's events live (and optionally log them as JSONL).

With `--replay ENDPOINT` (the node's `node.replay_bind`, served when `node.event_log` is set) no
event is lost: live events only trigger a fetch of "events of S after my last log_seq" from the
node's event log, so a jump (events dropped while this subscriber was slow, disconnected or down)
is noticed and filled in order; with `--jsonl`, a restarted subscriber resumes after the highest
`log_seq` in the file; a node that is not up yet is waited for (retried with backoff, up to
`--timeout`). With security on at the node, pass this subscriber's key (`--key
NAME.key_secret`, its public half in the node's allow-list) and the node's public key
(`--server-key NODE.key`).
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence

import zmq

from edge.args import above, at_least

from . import protocol as P
from .eventlog import CatchUp, ReplayClient, first_sync
from .security import Security, load_public
from .sinks import REOPEN_S, ConsoleSink, JsonlSink, Sink, Subscriber, deliver
from .stopping import stop_on_signals, stopped
from .transport import ENDPOINT_PATTERN, secure

log = logging.getLogger(__name__)
UNHEARD = "is the node up, and is this its node.bind endpoint?"  # the hint when nothing comes


def endpoint_arg(text: str) -> str:
    """An ENDPOINT argument (`ssdnet subscribe`, `ssdnet view`): a ZeroMQ endpoint a client can connect to, or an
    error that says what to write instead (`tcp://` added to a bare host:port, a port for `*`, a port in 1-65535)."""
    if ENDPOINT_PATTERN.match(text):
        port = text.rsplit(":", 1)[1] if text.startswith("tcp://") else None
        if port == "*":
            raise argparse.ArgumentTypeError(f"{text!r} names no port (`*` is for a node's bind: any free port): give "
                                             "the port the node bound, as its start-up line prints it")
        if port is not None and not 1 <= int(port) <= 65535:
            raise argparse.ArgumentTypeError(f"{text!r}: port {port} is out of range: use 1-65535")
        return text
    if "://" not in text and ENDPOINT_PATTERN.match(f"tcp://{text}"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a ZeroMQ endpoint (did you mean tcp://{text}?)")
    raise argparse.ArgumentTypeError(f"{text!r} is not a ZeroMQ endpoint like tcp://127.0.0.1:5600 or "
                                     "ipc:///tmp/node")


class NothingHeard(RuntimeError):
    """Nothing came from the endpoints before the timeout: a wrong endpoint or a node that is down (said what to do)."""


class Unheard:
    """Tells a wrong or dead endpoint from a quiet line: `saw` warns once when nothing came from `endpoints` in
    `after_s` seconds, `error` is the failure to raise when nothing came before a timeout."""

    def __init__(self, endpoints: Sequence[str], after_s: float = 5.0):
        self.endpoints, self.after_s = ", ".join(endpoints), after_s
        self.start = time.monotonic()
        self.heard = self._hinted = False

    def saw(self, msg: P.Message | None) -> None:
        """Note one receive (None: nothing came)."""
        self.heard = self.heard or msg is not None
        if not (self.heard or self._hinted) and time.monotonic() - self.start > self.after_s:
            self._hinted = True
            log.warning("nothing heard from %s for %g s: %s", self.endpoints, self.after_s, UNHEARD)

    def error(self, timeout_s: float) -> NothingHeard:
        return NothingHeard(f"heard nothing from {self.endpoints} in {timeout_s:g} s: {UNHEARD}")


def client_security(ctx: zmq.Context, key: str | None, server_key: str | None) -> bytes | None:
    """The node's public key for a CURVE client (`--key`, `--server-key`), with `key` made `ctx`'s security; None for
    a plaintext client. One without the other is a ValueError: before, `--key` alone failed as 'no server public key'
    and `--server-key` alone was ignored (a plaintext client, which a node with security on refuses unseen)."""
    if (key is None) != (server_key is None):
        raise ValueError("--key and --server-key go together: this client's NAME.key_secret and the node's public "
                         "NODE.key, for a node with security on")
    if key is None:
        return None
    secure(ctx, Security(key))
    return load_public(server_key)


def subscribe(endpoints: list[str], jsonl: str | None = None, count: int | None = None, timeout_s: float | None = None,
              stall_s: float = 5.0, replay: str | None = None, from_start: bool = False, key: str | None = None,
              server_key: str | None = None, ctx: zmq.Context | None = None, jsonl_max_mb: float | None = 256,
              jsonl_backups: int = 3, stop: threading.Event | None = None) -> int:
    """Print events until `count` events, `timeout_s` seconds, or `stop` is set (`ssdnet subscribe`: Ctrl-C,
    SIGTERM); returns the number of events. A timeout without a single message or event (a node heartbeats every
    node.heartbeat_s) is a RuntimeError: a wrong or dead endpoint is said so, not taken for a quiet line. `jsonl`
    turns over past `jsonl_max_mb` (`sinks.JsonLines`)."""
    ctx = ctx or zmq.Context.instance()
    server = client_security(ctx, key, server_key)
    sinks: list[Sink] = [ConsoleSink(stall_s=stall_s)]
    jsonl_sink = JsonlSink(jsonl, max_mb=jsonl_max_mb, backups=jsonl_backups) if jsonl else None
    if jsonl_sink is not None:
        sinks.append(jsonl_sink)
    sub = Subscriber(endpoints, (b"event/", b"eos/", b"heartbeat/"), ctx=ctx, server_key=server, reopen_s=REOPEN_S)
    catch = None
    if replay:
        resume = jsonl_sink.written if jsonl_sink is not None else None
        catch = CatchUp(ReplayClient(replay, ctx, server_key=server), resume=resume, from_start=from_start)
    unheard = Unheard(endpoints, stall_s)
    deadline = unheard.start + timeout_s if timeout_s else float("inf")
    stop = stop or threading.Event()
    total = 0  # events handed on

    def logged(events: list[tuple[int | None, P.EventHeader | P.EosHeader]]) -> int:
        """Hand on events from the node's log and ends of stream (the JSONL file records which log the events count
        in), no more events than `count` leaves room for; how many events."""
        if jsonl_sink is not None:
            jsonl_sink.log_id = catch.log_id
        room, handed = (math.inf if count is None else count - total), 0
        for n, header in events:
            if handed >= room:
                break
            deliver(sinks, P.Message(header), time.time(), n)
            handed += header.kind == "event"
        return handed

    try:
        if catch is not None:  # what was missed while down, before the live stream
            total += logged(first_sync(catch, replay, deadline, stop, asked="--from-start" if from_start and not resume
                                             else None))
        while (count is None or total < count) and time.monotonic() < deadline and not stop.is_set():
            msg = sub.recv(100)
            unheard.saw(msg)
            if catch is not None:
                total += logged(catch.on_message(msg))
                if msg is not None and msg.kind not in CatchUp.HANDED_ON:
                    deliver(sinks, msg, time.time())
            elif msg is not None:
                deliver(sinks, msg, time.time())
                total += msg.kind == "event"
    finally:
        sub.close()
        if catch is not None:
            catch.close()
        for sink in sinks:
            sink.close()
    if not (unheard.heard or total) and time.monotonic() >= deadline:
        raise unheard.error(timeout_s)
    return total


def until_stopped(command: str, follow: Callable[[threading.Event], object]) -> int:
    """Run `ssdnet subscribe` or `ssdnet view` (`follow`, given the flag Ctrl-C and SIGTERM set: its files closed, no
    traceback); its exit code: 1 when nothing was heard (the message says what to check: no exception class, no "-v
    shows where"), else `stopping.stopped`'s."""
    stop = stop_on_signals()
    try:
        follow(stop)
    except NothingHeard as e:
        print(f"ssdnet {command}: error: {e}", file=sys.stderr)
        return 1
    return stopped(command, stop)


def _main(args: argparse.Namespace) -> int:
    if args.from_start and not args.replay:
        print("ssdnet subscribe: error: --from-start reads the node's event log from its start: give the node's "
              "--replay ENDPOINT", file=sys.stderr)
        return 2
    return until_stopped("subscribe", lambda stop: subscribe(
        args.endpoints, args.jsonl, args.count, args.timeout, args.stall, args.replay, args.from_start, args.key,
        args.server_key, jsonl_max_mb=args.jsonl_max_mb or None, jsonl_backups=args.jsonl_backups, stop=stop))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("subscribe", help="print a node's anomaly events live", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("endpoints", nargs="+", type=endpoint_arg, metavar="ENDPOINT",
                   help="node endpoint(s), e.g. tcp://127.0.0.1:5600")
    p.add_argument("--jsonl", help="also append events to this JSONL file")
    p.add_argument("--jsonl-max-mb", type=at_least(0, float), default=256,
                   help="--jsonl turns over past this many MB, to FILE.1, FILE.2, ... (default 256; 0 = no bound)")
    p.add_argument("--jsonl-backups", type=at_least(0), default=3, help="turned-over --jsonl files kept (default 3)")
    p.add_argument("--count", type=at_least(1), help="exit after this many events")
    p.add_argument("--timeout", type=above(0), help="exit after this many seconds")
    p.add_argument("--stall", type=above(0), default=5.0, help="report a stage whose last frame "
                                                            "is older than this, seconds")
    p.add_argument("--replay", type=endpoint_arg, metavar="ENDPOINT",
                   help="the node's replay endpoint: fetch missed events, none is lost")
    p.add_argument("--from-start", action="store_true", help="with --replay and no resumable "
                                                             "--jsonl: every logged event first")
    p.add_argument("--key", metavar="FILE", help="this subscriber's NAME.key_secret "
                                                 "(CURVE, when the node has security on)")
    p.add_argument("--server-key", metavar="FILE", help="the node's public NODE.key (with --key)")
    p.set_defaults(func=_main)
