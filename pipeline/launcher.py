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
import multiprocessing as mp
import queue
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .config import LineConfig, load_line_config
from .eventlog import CatchUp, ReplayClient
from .node import DetectorFactory, run_node
from .sinks import ConsoleSink, JsonlSink, MetricsSink, OverlaySink, Sink, Subscriber
from . import protocol as P
from .sources import run_camera
from .stats import StreamStats

log = logging.getLogger(__name__)
READY_TIMEOUT_S = 60.0
JOIN_TIMEOUT_S = 5.0


class LineError(RuntimeError):
    """A stage failed to start or died."""


def _stage(name: str, target: Callable[..., Any], args: tuple, kwargs: dict, reports: Any, level: int) -> None:
    """Body of a stage process: run `target`, reporting its endpoint and its result (or failure)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the launcher stops stages itself
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s")
    try:
        result = target(*args, on_ready=lambda endpoint: reports.put(("ready", name, endpoint)), **kwargs)
    except Exception as e:
        logging.getLogger(__name__).exception("%s failed", name)
        reports.put(("failed", name, f"{type(e).__name__}: {e}"))
        sys.exit(1)
    reports.put(("done", name, result))


class _Line:
    """The stage processes of one run and the reports they send back."""

    def __init__(self) -> None:
        self.ctx = mp.get_context("spawn")
        self.stop = self.ctx.Event()
        self.reports = self.ctx.Queue()
        self.procs: dict[str, mp.process.BaseProcess] = {}
        self.endpoints: dict[str, str] = {}
        self.results: dict[str, Any] = {}
        self.failures: dict[str, str] = {}

    def start(self, name: str, target: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        level = logging.getLogger().getEffectiveLevel()
        proc = self.ctx.Process(target=_stage, args=(name, target, args, kwargs, self.reports, level), name=name, daemon=True)
        proc.start()
        self.procs[name] = proc

    def poll(self, timeout: float = 0.0) -> None:
        """Take in the stages' reports."""
        try:
            while True:
                kind, name, value = self.reports.get(timeout=timeout)
                {"ready": self.endpoints, "done": self.results, "failed": self.failures}[kind][name] = value
                timeout = 0.0
        except queue.Empty:
            pass

    def dead(self) -> list[str]:
        """Stages that exited with an error."""
        return [name for name, p in self.procs.items() if p.exitcode not in (None, 0)]

    def await_ready(self, names: list[str]) -> list[str]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(n in self.endpoints for n in names):
            self.poll(timeout=0.1)
            if failed := [n for n in names if n in self.failures or n in self.dead()]:
                raise LineError("; ".join(f"{n} failed to start: {self.failures.get(n, 'exited')}" for n in failed))
            if time.monotonic() > deadline:
                raise LineError(f"stages not ready after {READY_TIMEOUT_S:.0f} s: {[n for n in names if n not in self.endpoints]}")
        return [self.endpoints[n] for n in names]

    def shutdown(self) -> None:
        self.stop.set()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for name, proc in self.procs.items():
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            self.poll()
            if proc.is_alive():
                log.warning("%s did not stop in time, terminating it", name)
                proc.terminate()
                proc.join(timeout=1.0)
        self.poll()


def _run_camera(cfg, stop, security=None, on_ready=None):
    """Camera stage; with `security` its tcp socket is a CURVE server (key `<camera name>.key_secret`)."""
    if security is not None:
        import zmq

        from .security import Security
        from .transport import secure

        secure(zmq.Context.instance(), Security.from_config(security, cfg.name))
    return run_camera(cfg, stop, on_ready)


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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timeout_s = timeout_s or cfg.timeout_s
    sources = [s.model_copy(update={"frames": frames or s.frames or cfg.frames}) for s in cfg.sources]
    names = [s.name for s in sources]
    expected = sum(s.frames for s in sources) if all(s.frames for s in sources) else None
    line, stats, sinks, sub, catch = _Line(), StreamStats(cfg.sinks.auroc_pixels_per_frame), _sinks(cfg, out), None, None
    node_cfg = cfg.node if cfg.node.event_log is not None else cfg.node.model_copy(update={"event_log": out / "node-events.db"})

    def deliver(msg, delivered, log_seq=None):
        stats.add(msg, delivered)
        for sink in sinks:
            sink.handle(msg, delivered, log_seq=log_seq) if log_seq is not None and isinstance(sink, JsonlSink) else sink.handle(msg, delivered)
    started, interrupted, timed_out = time.time(), False, False
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn(), disable=not progress)
    try:
        for src in sources:
            line.start(src.name, _run_camera, src, line.stop, cfg.security)
        cameras = line.await_ready(names)
        line.start(cfg.node.name, run_node, node_cfg, cameras, line.stop, detector_factory=detector_factory,
                   wait_for_subscriber_s=READY_TIMEOUT_S, security=cfg.security, input_names=names)
        node_endpoint, replay = line.await_ready([cfg.node.name])[0]  # (results, replay): node_cfg has an event log
        server_key = None
        if cfg.security is not None:
            import zmq

            from .security import Security
            from .transport import secure

            security = Security.from_config(cfg.security, cfg.security.client_name)
            secure(zmq.Context.instance(), security)
            server_key = security.server_key(cfg.node.name)
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
                    raise LineError(f"node died: {line.failures.get(cfg.node.name, 'exit code %s' % line.procs[cfg.node.name].exitcode)}")
                for name in set(line.dead()) & pending:
                    log.error("camera %s died: %s", name, line.failures.get(name, "no end of stream"))
                    pending.discard(name)
                for n, header in catch.on_message(msg):
                    deliver(P.Message(header), time.time(), n)
                if msg is None:
                    continue
                delivered = time.time()
                if msg.kind != "event":
                    deliver(msg, delivered)
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
                    deliver(P.Message(header), time.time(), n)
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
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ssdnet run", show_header=False)
    drops = summary.get("drops")
    detail = f" ({', '.join(f'{k} {v}' for k, v in drops.items())})" if drops else ""
    rows = [("frames scored", f"{summary['frames']} of {summary['sent']} sent"), ("dropped", f"{summary['dropped']}{detail}"),
            ("fps", f"{summary['fps']}"), ("events", f"{summary['events']}"), ("wall time", f"{summary['wall_s']:.1f} s")]
    if stream := summary.get("stream"):
        rows.append(("stream pixel AUROC / AUPRC", f"{stream['pixel_auroc']} / {stream['pixel_auprc']} over {stream['frames']} frames"))
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
