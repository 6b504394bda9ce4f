"""`ssdnet soak CONFIG --minutes M`: run a line for a bounded time and check that it stays flat.

The cameras stream without a frame limit; every `--sample-s` seconds the resident memory (RSS) of
each stage process is sampled (psutil). Samples of the first `--warmup-minutes` (cold fits, model
loading, queues filling) are left out; then the growth of each process between the first quarter
of the remaining samples and the last quarter is reported, in MB and MB/hour, and the soak fails (exit 1)
when the node or a camera grew by more than `--max-growth` of its size. The collector (this
process) is reported but not judged: its summary statistics grow with the frame count by design.
Queues cannot grow: the node keeps at most `node.queue_depth` frames per source and every socket
has a high-water mark; the summary's drop counters show what they shed. Not part of CI.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from pipeline.config import load_line_config
from pipeline.launcher import LineError, print_summary, run_line

from .args import at_least

UNLIMITED_FRAMES = 10**9


def sample_rss(stop: threading.Event, every_s: float, samples: dict[str, list[tuple[float, float]]]) -> None:
    """Append (seconds, RSS MB) per process name (this process = 'collector') until `stop`."""
    me, t0 = psutil.Process(), time.monotonic()
    while not stop.wait(every_s):
        for proc in [me, *me.children(recursive=True)]:
            try:
                name = "collector" if proc.pid == me.pid else proc.name()
                rss_mb = proc.memory_info().rss / 2**20
                samples.setdefault(f"{name}[{proc.pid}]", []).append((time.monotonic() - t0, rss_mb))
            except psutil.Error:  # a stage that just exited
                continue


def growth(series: list[tuple[float, float]]) -> dict[str, float]:
    """Median RSS of the first and last quarter of a run, the growth between them, and its rate."""
    t, rss = np.array(series).T
    q = max(1, len(rss) // 4)
    first, last = float(np.median(rss[:q])), float(np.median(rss[-q:]))
    hours = max((np.median(t[-q:]) - np.median(t[:q])) / 3600, 1e-9)
    return {"first_mb": round(first, 1), "last_mb": round(last, 1), "growth_mb": round(last - first, 1),
            "growth_fraction": round((last - first) / first, 4), "mb_per_hour": round((last - first) / hours, 1),
            "samples": len(rss)}


def _cmd(args: argparse.Namespace) -> int:
    if args.warmup_minutes >= args.minutes:
        print(f"ssdnet soak: error: --warmup-minutes {args.warmup_minutes:g} leaves nothing of --minutes "
              f"{args.minutes:g} to judge", file=sys.stderr)
        return 2
    cfg = load_line_config(args.config)
    samples: dict[str, list[tuple[float, float]]] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(stop, args.sample_s, samples), daemon=True)
    sampler.start()
    try:
        summary = run_line(cfg, args.out, frames=UNLIMITED_FRAMES, timeout_s=args.minutes * 60, progress=True)
    except LineError as e:
        print(f"ssdnet soak: error: {e}", file=sys.stderr)
        return 1
    finally:
        stop.set()
        sampler.join()
    warm = args.warmup_minutes * 60
    memory = {name: growth(kept) for name, s in samples.items() if len(kept := [x for x in s if x[0] >= warm]) >= 4}
    judged = {n: m for n, m in memory.items() if not n.startswith("collector")}
    failed = sorted(n for n, m in judged.items() if m["growth_fraction"] > args.max_growth)
    report = {"minutes": args.minutes, "warmup_minutes": args.warmup_minutes, "max_growth": args.max_growth,
              "memory": memory, "failed": failed, "frames": summary["frames"], "dropped": summary["dropped"],
              "drops": summary.get("drops", {})}
    Path(args.out, "soak.json").write_text(json.dumps(report, indent=2))
    print_summary(summary)
    for name, m in memory.items():
        print(f"{name:32s} RSS {m['first_mb']:8.1f} -> {m['last_mb']:8.1f} MB ({m['mb_per_hour']:+.1f} MB/h)")
    print(f"wrote {Path(args.out) / 'soak.json'}: " + (f"FAILED, grew: {failed}" if failed else "flat"))
    return 1 if failed else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("soak", help="run a line for a bounded time and check memory stays flat",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="line config (YAML)")
    p.add_argument("--minutes", type=at_least(0.1, float), default=10.0, help="how long to run (default 10)")
    p.add_argument("--out", default="runs/soak", help="output folder (default runs/soak)")
    p.add_argument("--sample-s", type=float, default=5.0, help="seconds between memory samples")
    p.add_argument("--warmup-minutes", type=at_least(0, float), default=2.0,
                   help="not judged: cold fits, loading, queues filling")
    p.add_argument("--max-growth", type=float, default=0.1, help="fail when a stage's RSS grows "
                                                                 "by more than this fraction")
    p.set_defaults(func=_cmd)
