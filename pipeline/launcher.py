"""`ssdnet run CONFIG --out DIR [--frames N]`: run a whole streaming line from one YAML config.

Every camera and the node run as spawned processes; this process is the collector. It subscribes
to the node, shows progress, writes OUT/events.jsonl and OUT/overlays/ as results come, and at the
end OUT/summary.json (frames, fps, dropped, latency_ms.<stage>.{p50,p95,p99}, and stream pixel
AUROC/AUPRC when the cameras know ground truth) and a summary table.

Start-up needs no sleeps: each camera waits for a subscriber before streaming, and the node
subscribes to the cameras only once the collector has subscribed to it. The line ends when every
camera's end of stream has come through the node, on the timeout, or on Ctrl-C: stages ignore
SIGINT and are stopped through a shared event, sockets linger at most 0.5 s, and a stage that has
not exited 5 s later (a node in the middle of a long fit) is terminated.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import protocol as P
from .config import LineConfig, load_line_config
from .eventlog import CatchUp, ReplayClient
from .node import DetectorFactory, run_node
from .security import secure_stage
from .sinks import ConsoleSink, JsonlSink, MetricsSink, OverlaySink, Sink, Subscriber, deliver
from .sources import run_camera
from .stages import READY_TIMEOUT_S, LineError, Stages
from .stats import StreamStats

log = logging.getLogger(__name__)
def _sinks(cfg: LineConfig, out: Path) -> list[Sink]:
    sinks: list[Sink] = [JsonlSink(out / "events.jsonl", append=False)]
    if cfg.sinks.overlays:
        sinks.append(OverlaySink(out / "overlays", cfg.sinks.overlay_alpha))
    if cfg.sinks.console:
        sinks.append(ConsoleSink())
    if cfg.sinks.prometheus is not None:
        metrics = MetricsSink(cfg.sinks.prometheus.host, cfg.sinks.prometheus.port)
        log.info("metrics on http://%s:%d/metrics", cfg.sinks.prometheus.host, metrics.port)
        sinks.append(metrics)
    return sinks


def run_line(cfg: LineConfig, out: str | Path, frames: int | None = None, timeout_s: float | None = None,
             detector_factory: DetectorFactory | None = None, progress: bool = False) -> dict:
    """Run the line until every camera has ended; write OUT/events.jsonl, overlays and summary.json.

    `frames` overrides every camera's frame limit; `detector_factory` (picklable) replaces the SSDnet
    detector, e.g. in tests. Returns the summary.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timeout_s = timeout_s or cfg.timeout_s
    sources = [s.model_copy(update={"frames": frames or s.frames or cfg.frames}) for s in cfg.sources]
    names = [s.name for s in sources]
    expected = sum(s.frames for s in sources) if all(s.frames for s in sources) else None
    line, stats, sinks = Stages(), StreamStats(cfg.sinks.auroc_pixels_per_frame), _sinks(cfg, out)
    sub, catch = None, None
    node_cfg = cfg.node
    if node_cfg.event_log is None:
        node_cfg = node_cfg.model_copy(update={"event_log": out / "node-events.db"})

    def collect(msg: P.Message, delivered: float, log_seq: int | None = None) -> None:
        stats.add(msg, delivered)
        deliver(sinks, msg, delivered, log_seq)

    started, interrupted, timed_out = time.time(), False, False
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not progress)
    try:
        for src in sources:
            line.start(src.name, run_camera, src, line.stop, security=cfg.security)
        cameras = line.await_ready(names)
        line.start(cfg.node.name, run_node, node_cfg, cameras, line.stop, detector_factory=detector_factory,
                   wait_for_subscriber_s=READY_TIMEOUT_S, security=cfg.security, input_names=names)
        node_endpoint, replay = line.await_ready([cfg.node.name])[0]  # (results, replay): node_cfg has an event log
        server_key = None
        if cfg.security is not None:
            server_key = secure_stage(cfg.security, cfg.security.client_name).server_key(cfg.node.name)
        # events come from the node's event log (in order, none lost); live events only say "fetch now"
        catch = CatchUp(ReplayClient(replay, server_key=server_key))
        catch.sync()
        sub = Subscriber(node_endpoint, (b"anomaly/", b"event/", b"eos/", b"heartbeat/"), server_key=server_key)
        pending, dropped = set(names), 0
        with bar:
            task = bar.add_task("frames", total=expected, info="")
            while pending:
                if timeout_s is not None and time.time() - started > timeout_s:
                    timed_out = True
                    log.warning("timeout after %.0f s; still running: %s", timeout_s, sorted(pending))
                    break
                msg = sub.recv(100)
                line.poll()
                if cfg.node.name in line.dead():
                    exit_code = line.procs[cfg.node.name].exitcode
                    raise LineError(f"node died: {line.failures.get(cfg.node.name, f'exit code {exit_code}')}")
                for name in set(line.dead()) & pending:
                    log.error("camera %s died: %s", name, line.failures.get(name, "no end of stream"))
                    pending.discard(name)
                for n, header in catch.on_message(msg):
                    collect(P.Message(header), time.time(), n)
                if msg is None:
                    continue
                delivered = time.time()
                if msg.kind != "event":
                    collect(msg, delivered)
                if msg.kind == "eos":
                    pending.discard(msg.source)
                elif msg.kind == "heartbeat" and msg.header.role == "node":
                    dropped = sum(msg.header.counters.get(k, 0) for k in ("conflated", "lost", "rejected", "failed"))
                frames_done = sum(stats.frames.values())
                rate = frames_done / max(1e-9, delivered - (stats.first_capture or delivered))
                bar.update(task, completed=frames_done,
                           info=f"{rate:.2f} fps  {sum(stats.events.values())} events  {dropped} dropped")
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted; stopping the line")
    finally:
        if catch is not None:
            try:  # events whose live copy was dropped after the last one seen
                for n, header in catch.sync():
                    collect(P.Message(header), time.time(), n)
            except Exception as e:
                log.warning("could not fetch the last events from the node's log: %s", e)
            catch.close()
        if sub is not None:
            sub.close()
        line.shutdown()
        for sink in sinks:
            sink.close()
    summary = stats.summary(line.results.get(cfg.node.name))
    summary.update(wall_s=round(time.time() - started, 3), interrupted=interrupted, timed_out=timed_out)
    if sub is not None:
        summary["bad_messages_at_collector"] = sub.bad_messages
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def print_summary(summary: dict) -> None:
    table = Table(title="ssdnet run", show_header=False)
    drops = summary.get("drops")
    detail = f" ({', '.join(f'{k} {v}' for k, v in drops.items())})" if drops else ""
    rows = [("frames scored", f"{summary['frames']} of {summary['sent']} sent"),
            ("dropped", f"{summary['dropped']}{detail}"), ("fps", f"{summary['fps']}"),
            ("events", f"{summary['events']}"), ("wall time", f"{summary['wall_s']:.1f} s")]
    if scorer := summary.get("scorer"):
        rows.append(("scorer backend", f"{scorer['backend']} on {scorer['provider']} ({scorer['reason']})"))
    if stream := summary.get("stream"):
        rows.append(("stream pixel AUROC / AUPRC", f"{stream['pixel_auroc']} / {stream['pixel_auprc']} "
                                                   f"over {stream['frames']} frames"))
    for stage, p in summary["latency_ms"].items():
        if p is not None:
            rows.append((f"latency {stage} p50/p95/p99", f"{p['p50']:.1f} / {p['p95']:.1f} / {p['p99']:.1f} ms"))
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _main(args: argparse.Namespace) -> int:
    cfg = load_line_config(args.config)
    try:
        summary = run_line(cfg, args.out, frames=args.frames, timeout_s=args.timeout, progress=True)
    except LineError as e:
        print(f"ssdnet run: error: {e}", file=sys.stderr)
        return 1
    print_summary(summary)
    print(f"wrote {Path(args.out) / 'summary.json'} and {Path(args.out) / 'events.jsonl'}")
    return 130 if summary["interrupted"] else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a streaming line (cameras -> node -> sinks) from a YAML config",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="line config (YAML), e.g. configs/demo.yaml")
    p.add_argument("--out", required=True, type=Path, help="output folder: summary.json, events.jsonl, overlays/")
    p.add_argument("--frames", type=_positive, help="frames per camera (overrides the config)")
    p.add_argument("--timeout", type=float, help="stop after this many seconds")
    p.set_defaults(func=_main)
