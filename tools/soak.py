"""`ssdnet soak CONFIG --minutes M`: run a line for a bounded time and check that it stays flat.

The cameras stream without a frame limit (a `frames` in the config or on a camera is overridden); every
`--sample-s` seconds the resident memory (RSS) and CPU time of each stage process is sampled (psutil), each
process named by its stage: `node`, `camera:NAME`, `sinks` (the collector: this process) and `helper:...`
(multiprocessing's own). Samples of the first `--warmup-minutes` (cold fits, model loading, queues filling)
are left out; then the growth of each process between the first quarter of the remaining samples and the last
quarter is reported, in MB and percent, and the soak fails (exit 1) when the node, a camera or a helper grew
by more than `--max-growth` of its size. The collector is reported but not judged: its summary statistics
grow with the frame count by design.

Only a window of at least MIN_JUDGED_MINUTES (5) after the warm-up gives a verdict on the slope: a shorter
one where nothing grew by more than `--max-growth` is reported as "too short to judge" (exit 0, `verdict`
too_short in soak.json), with no MB/hour rate: an allocator's step of a few MB in a one-minute window extrapolates
to hundreds of MB an hour. Growth beyond `--max-growth` fails however short the window (that much did grow).
A line that ends before `--minutes` fails (exit 1, `verdict` ended, `end` sources_ended in soak.json): its cameras'
sources ran out (a folder or video source without `loop: true` ends after one pass) or a camera failed. Its planned
end (`end` planned) is no timeout: a frame on its way then is counted `unaccounted`, in flight or lost on the way
(not told apart: the collector stops listening before the node stops). soak.json is moved to OUT/previous/ with the
rest of its run when the same --out is used again.

What the line's numbers mean here: the table (summary.json) covers the whole run, warm-up included, of a
line whose cameras never stop. A camera with `flow: none` (synthetic and live ones by default) and no `fps`
sends as fast as it can for the whole run: on a small machine it and the node's receiving compete with
the scoring for the cores, and the node scores only the newest frame (the rest are `conflated`). A run with
a frame limit (`ssdnet run --frames N`) has the cores to itself once its burst is sent, so its fps and
latency are not comparable. Each stage's percentiles are taken over that stage's own values: they do not
add up to the end-to-end ones, which also hold the node's work around the detector and the collector's
taking the result in. The soak therefore also reports each process's CPU use and the scored frames'
fps and end-to-end latency after the warm-up alone (from OUT/scores.jsonl, which the soak turns on).
Queues cannot grow: the node keeps at most `node.queue_depth` frames per source and every socket has a
high-water mark; the summary's drop counters show what they shed. Not part of CI.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from edge.args import above, at_least
from pipeline.config import LineConfig, load_line_config
from pipeline.launcher import LineError, print_summary, run_line
from pipeline.out_folder import claimed
from pipeline.sinks import JsonLines, counted

UNLIMITED_FRAMES = 10**9
MIN_JUDGED_MINUTES = 5.0  # the shortest window after the warm-up whose growth gives a verdict and a MB/hour rate
COLLECTOR = "sinks"  # this process: the collector, `ssdnet run --stage sinks`


def stage_labels(cfg: LineConfig) -> dict[str, str]:
    """The label of each stage process of the line, by the name the launcher starts it under
    (`pipeline.stages.Stages.start`): `camera:NAME` for a camera, `node` (or `node:NAME`) for the node."""
    labels = {s.name: f"camera:{s.name}" for s in cfg.sources}
    labels[cfg.node.name] = "node" if cfg.node.name == "node" else f"node:{cfg.node.name}"
    return labels


def process_label(pid: int, me: int, stage_name: str | None, cmdline: list[str], labels: dict[str, str]) -> str:
    """What a process of the line is: `sinks` (`me`, the collector), the stage `stage_name` is (`stage_labels`),
    `helper:resource_tracker` (multiprocessing's), else `other[PID]` with its command's first word."""
    if pid == me:
        return COLLECTOR
    if stage_name in labels:
        return labels[stage_name]
    command = " ".join(cmdline)
    if "resource_tracker" in command:
        return "helper:resource_tracker"
    if "forkserver" in command:
        return "helper:forkserver"
    return f"other:{Path(cmdline[0]).name if cmdline else '?'}[{pid}]"


def _stage_names() -> dict[int, str]:
    """pid -> name of this process's multiprocessing children (the launcher names each after its stage)."""
    return {p.pid: p.name for p in multiprocessing.active_children() if p.pid is not None}


def sample_processes(stop: threading.Event, every_s: float, samples: dict[str, list[tuple[float, float, float]]],
                     labels: dict[str, str], pids: dict[str, int]) -> None:
    """Append (seconds, RSS MB, CPU seconds used so far) per process label (`process_label`) until `stop`;
    `pids` gets each label's pid."""
    me, t0, known = psutil.Process(), time.monotonic(), {}
    while not stop.wait(every_s):
        procs = [me, *me.children(recursive=True)]
        if any(p.pid not in known for p in procs):
            names = _stage_names()
            for p in procs:
                if p.pid not in known:
                    try:
                        cmdline = p.cmdline()
                    except psutil.Error:
                        continue
                    known[p.pid] = label = process_label(p.pid, me.pid, names.get(p.pid), cmdline, labels)
                    if pids.setdefault(label, p.pid) != p.pid:  # a stage started again: tell them apart
                        known[p.pid] = f"{label}[{p.pid}]"
                        pids[known[p.pid]] = p.pid
        for proc in procs:
            try:
                if proc.pid not in known:
                    continue
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:  # ended, not reaped yet: its RSS reads 0
                        continue
                    rss_mb, cpu = proc.memory_info().rss / 2**20, proc.cpu_times()
                samples.setdefault(known[proc.pid], []).append((time.monotonic() - t0, rss_mb, cpu.user + cpu.system))
            except psutil.Error:  # a stage that just exited
                continue


def growth(series: list[tuple[float, ...]]) -> dict[str, float]:
    """Median RSS of the first and last quarter of a run of (seconds, RSS MB[, CPU seconds]) samples, the growth
    between them, its rate, how long the samples span (minutes) and, with CPU times, the CPU used (cores: 1.0 is
    one core all the time)."""
    a = np.array(series, dtype=float)
    t, rss = a[:, 0], a[:, 1]
    q = max(1, len(rss) // 4)
    first, last = float(np.median(rss[:q])), float(np.median(rss[-q:]))
    hours = max((np.median(t[-q:]) - np.median(t[:q])) / 3600, 1e-9)
    out = {"first_mb": round(first, 1), "last_mb": round(last, 1), "growth_mb": round(last - first, 1),
           "growth_fraction": round((last - first) / first, 4), "mb_per_hour": round((last - first) / hours, 1),
           "samples": len(rss), "minutes": round(float(t[-1] - t[0]) / 60, 2)}
    if a.shape[1] > 2 and t[-1] > t[0]:
        out["cpu_cores"] = round(float(a[-1, 2] - a[0, 2]) / float(t[-1] - t[0]), 2)
    return out


def judge(memory: dict[str, dict], max_growth: float, min_minutes: float = MIN_JUDGED_MINUTES) -> dict:
    """The soak's verdict on `memory` (`growth` per process label): `grew` when the node, a camera or a helper
    grew by more than `max_growth` of its size (whatever the window: that much did grow), else `too_short`
    when the window after the warm-up of any of them is shorter than `min_minutes` (or none has samples
    after it), else `flat`. Marks each process `judged` (its window is long enough for a rate) and its own
    `verdict` (grew, flat, too_short, or not_judged for the collector)."""
    failed, short = [], []
    for name, m in memory.items():
        m["judged"] = m["minutes"] >= min_minutes
        if name == COLLECTOR:
            m["verdict"] = "not_judged"
        elif m["growth_fraction"] > max_growth:
            m["verdict"] = "grew"
            failed.append(name)
        else:
            m["verdict"] = "flat" if m["judged"] else "too_short"
            if not m["judged"]:
                short.append(name)
    staged = [n for n in memory if n != COLLECTOR]
    verdict = "grew" if failed else "too_short" if short or not staged else "flat"
    window = min((memory[n]["minutes"] for n in staged), default=0.0)
    return {"verdict": verdict, "failed": sorted(failed), "judged_minutes": window, "min_judged_minutes": min_minutes}


def line_end(summary: dict) -> str:
    """How the soak's line ended: `planned` (after --minutes), `interrupted` (Ctrl-C, SIGTERM), or `sources_ended`
    (before --minutes: every camera's stream ended or its stage failed)."""
    return "planned" if summary.get("planned_stop") else "interrupted" if summary["interrupted"] else "sources_ended"


def ended_early(summary: dict, minutes: float) -> str:
    """Why a line that ended before --minutes (`line_end`: sources_ended) did, in words."""
    why = "; ".join(f"camera {name} failed: {s['failure']}" for name, s in summary["sources"].items()
                    if "failure" in s) or "its sources ran out (a folder or video source: set `loop: true`)"
    return f"the line ended after {summary['wall_s']:.0f} s of the {minutes * 60:.0f} s asked: {why}"


def verdict_line(j: dict, max_growth: float, warmup_minutes: float, minutes: float) -> str:
    """The soak's last line, after `wrote .../soak.json: `."""
    if j["verdict"] == "grew":
        return f"FAILED, grew by more than {max_growth:.0%} of their RSS: {j['failed']}"
    if j["verdict"] == "ended":
        return f"FAILED, {j['ended']}"
    if j["verdict"] == "too_short":
        needed = warmup_minutes + j["min_judged_minutes"] + 0.5
        hint = f" (--minutes at least {needed:g})" if minutes < needed else ""  # else the line stopped short
        return (f"too short to judge: {j['judged_minutes']:.1f} min of samples after the {warmup_minutes:g} min "
                f"warm-up, a verdict needs at least {j['min_judged_minutes']:g}{hint}; none grew by more than "
                f"{max_growth:.0%}")
    return (f"flat: no stage grew by more than {max_growth:.0%} of its RSS over {j['judged_minutes']:.1f} min "
            "after the warm-up")


def memory_line(name: str, m: dict, pid: int | None) -> str:
    """One process's row: its growth, the rate only where its window is long enough to judge."""
    rate = f"{m['mb_per_hour']:+.1f} MB/h" if m["judged"] else "no rate: window too short"
    cpu = f"  CPU {m['cpu_cores']:.2f} cores" if "cpu_cores" in m else ""
    who = f"{name} [{pid}]" if pid is not None else name
    return (f"{who:28s} RSS {m['first_mb']:8.1f} -> {m['last_mb']:8.1f} MB ({m['growth_mb']:+.1f} MB, "
            f"{m['growth_fraction']:+.1%} in {m['minutes']:.1f} min; {rate}){cpu}  {m['verdict'].replace('_', ' ')}")


def after_warmup(scores: Path, since: float) -> dict | None:
    """Scored frames captured from wall time `since` on (OUT/scores.jsonl and its turned-over files): how many,
    their fps (captured to delivered, as summary.json's) and end-to-end latency percentiles (ms); None without
    such frames."""
    rows = []
    for r in JsonLines.records(scores):  # its turned-over files too, line by line
        try:
            rows.append((float(r["t_capture"]), float(r["end_to_end_ms"])))
        except (ValueError, KeyError, TypeError):
            continue
    rows = [r for r in rows if r[0] >= since]
    if not rows:
        return None
    capture, e2e = np.array(rows).T
    span = float(np.max(capture + e2e / 1e3) - np.min(capture))
    p50, p95, p99 = (round(float(v), 1) for v in np.percentile(e2e, (50, 95, 99)))
    return {"frames": len(rows), "fps": round(len(rows) / span, 3) if span > 0 else None,
            "end_to_end_ms": {"p50": p50, "p95": p95, "p99": p99}}


def pacing(cfg: LineConfig) -> list[str]:
    """How each camera is paced in this soak: what its fps and end-to-end numbers mean."""
    lines = []
    for s in cfg.sources:
        flow = "credit" if s.credit_flow else "none"
        fps = f"at most {s.fps:g} fps" if s.fps else "no fps limit"
        note = ("sends as fast as it can for the whole soak; the node scores its newest frame and counts the "
                "rest as conflated" if flow == "none" and not s.fps else
                "sends only when the node has room: every frame scored" if flow == "credit" else
                "the node scores its newest frame")
        lines.append(f"camera:{s.name}: flow {flow} ({s.flow}), {fps}, no frame limit: {note}")
    return lines


def _cmd(args: argparse.Namespace) -> int:
    if args.warmup_minutes >= args.minutes:
        print(f"ssdnet soak: error: --warmup-minutes {args.warmup_minutes:g} leaves nothing of --minutes "
              f"{args.minutes:g} to judge", file=sys.stderr)
        return 2
    cfg = load_line_config(args.config)
    cfg = cfg.model_copy(update={"sinks": cfg.sinks.model_copy(update={"scores": True})})  # for after_warmup
    try:
        with claimed(Path(args.out), ("node", "sinks")):  # as `ssdnet run` holds OUT, to soak.json: two soaks into
            return _soak(args, cfg)  # one OUT interleaved their files
    except LineError as e:
        print(f"ssdnet soak: error: {e}", file=sys.stderr)
        return 1


def _soak(args: argparse.Namespace, cfg: LineConfig) -> int:
    """Run the line for --minutes while sampling its processes, judge them and write OUT/soak.json; the exit code."""
    labels = stage_labels(cfg)
    samples: dict[str, list[tuple[float, float, float]]] = {}
    pids: dict[str, int] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample_processes, args=(stop, args.sample_s, samples, labels, pids),
                               daemon=True)
    started = time.time()
    sampler.start()
    try:
        summary = run_line(cfg, args.out, frames=UNLIMITED_FRAMES, timeout_s=args.minutes * 60, progress=True,
                           planned_stop=True)
    finally:
        stop.set()
        sampler.join()
    warm = args.warmup_minutes * 60
    memory = {name: growth(kept) for name, s in samples.items() if len(kept := [x for x in s if x[0] >= warm]) >= 4}
    for name, m in memory.items():
        m["pid"] = pids.get(name)
    j = judge(memory, args.max_growth)
    end = line_end(summary)
    if end == "sources_ended" and not j["failed"]:  # it did not run its --minutes: a failed soak, whatever the memory
        j.update(verdict="ended", ended=ended_early(summary, args.minutes))
    steady = after_warmup(Path(args.out, "scores.jsonl"), started + warm)
    report = {"minutes": args.minutes, "end": end, "wall_s": summary["wall_s"],
              "warmup_minutes": args.warmup_minutes, "max_growth": args.max_growth,
              "memory": memory, "failed": j["failed"], "frames": summary["frames"], "dropped": summary["dropped"],
              "drops": summary.get("drops", {}), "verdict": j["verdict"], "judged_minutes": j["judged_minutes"],
              "min_judged_minutes": j["min_judged_minutes"], "after_warmup": steady,
              "summary_covers": "the whole run, warm-up included (summary.json)"}
    Path(args.out, "soak.json").write_text(json.dumps(report, indent=2))
    print_summary(summary)
    if end == "planned" and (n := summary.get("drops", {}).get("unaccounted")):
        print(f"{counted(n, 'unaccounted frame')}: in flight at the planned stop, or lost on the way (the collector "
              "stops listening before the node stops: the two are not told apart); frames in flight do not grow "
              "with --minutes, a loss would")
    print(f"The table covers the whole {summary['wall_s'] / 60:.1f} min, warm-up included, with every camera "
          "streaming without a frame limit:")
    for line in pacing(cfg):
        print(f"  {line}")
    if steady is not None:
        e = steady["end_to_end_ms"]
        print(f"after the {args.warmup_minutes:g} min warm-up: {steady['frames']} frames scored, {steady['fps']} fps, "
              f"end to end p50/p95/p99 {e['p50']:.1f} / {e['p95']:.1f} / {e['p99']:.1f} ms")
    else:
        print(f"after the {args.warmup_minutes:g} min warm-up: no frame scored")
    print(f"memory and CPU after the warm-up (the collector, {COLLECTOR}, is not judged):")
    for name, m in memory.items():
        print(memory_line(name, m, m["pid"]))
    print(f"wrote {Path(args.out) / 'soak.json'}: "
          + verdict_line(j, args.max_growth, args.warmup_minutes, args.minutes))
    return 1 if j["verdict"] in ("grew", "ended") else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("soak", help="run a line for a bounded time and check memory stays flat",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="line config (YAML)")
    p.add_argument("--minutes", type=at_least(0.1, float), default=10.0, help="how long to run (default 10; a "
                   f"verdict needs at least {MIN_JUDGED_MINUTES:g} after the warm-up)")
    p.add_argument("--out", default="runs/soak", help="output folder (default runs/soak)")
    p.add_argument("--sample-s", type=above(0), default=5.0, help="seconds between memory samples")
    p.add_argument("--warmup-minutes", type=at_least(0, float), default=2.0,
                   help="not judged: cold fits, loading, queues filling")
    p.add_argument("--max-growth", type=at_least(0, float), default=0.1, help="fail when a stage's RSS grows "
                                                                 "by more than this fraction")
    p.set_defaults(func=_cmd)
