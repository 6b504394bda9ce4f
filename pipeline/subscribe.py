"""`ssdnet subscribe ENDPOINT...`: print a node's events live (and optionally log them as JSONL)."""
from __future__ import annotations

import argparse
import time

from .sinks import ConsoleSink, JsonlSink, Sink, Subscriber


def subscribe(endpoints: list[str], jsonl: str | None = None, count: int | None = None, timeout_s: float | None = None,
              stall_s: float = 5.0) -> int:
    """Print events until `count` events, `timeout_s` seconds, or Ctrl-C; returns the number of events."""
    sinks: list[Sink] = [ConsoleSink(stall_s=stall_s)]
    if jsonl:
        sinks.append(JsonlSink(jsonl))
    sub = Subscriber(endpoints, (b"event/", b"eos/", b"heartbeat/"))
    deadline = time.monotonic() + timeout_s if timeout_s else float("inf")
    events = 0
    try:
        while (count is None or events < count) and time.monotonic() < deadline:
            msg = sub.recv(100)
            if msg is not None:
                for sink in sinks:
                    sink.handle(msg, time.time())
                events += msg.kind == "event"
    finally:
        sub.close()
        for sink in sinks:
            sink.close()
    return events


def _main(args: argparse.Namespace) -> int:
    try:
        subscribe(args.endpoints, args.jsonl, args.count, args.timeout, args.stall)
    except KeyboardInterrupt:
        pass
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("subscribe", help="print a node's anomaly events live", description=__doc__)
    p.add_argument("endpoints", nargs="+", metavar="ENDPOINT", help="node endpoint(s), e.g. tcp://127.0.0.1:5600")
    p.add_argument("--jsonl", help="also append events to this JSONL file")
    p.add_argument("--count", type=int, help="exit after this many events")
    p.add_argument("--timeout", type=float, help="exit after this many seconds")
    p.add_argument("--stall", type=float, default=5.0, help="report a stage whose last frame is older than this, seconds")
    p.set_defaults(func=_main)
