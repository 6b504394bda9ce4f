"""`ssdnet run CONFIG --out DIR [--frames N] [--view] [--stage STAGE]`: run a streaming line from one YAML config.

Whole line (`--stage all`, the default): every camera and the node run as spawned processes; this
process is the collector. It subscribes to the node, shows progress, writes OUT/events.jsonl,
OUT/scores.jsonl (`sinks.scores`) and OUT/overlays/ as results come, serves the live page
(`sinks.view`, `--view`), and at the end OUT/summary.json (frames, fps, dropped,
latency_ms.<stage>.{p50,p95,p99}, and stream pixel AUROC/AUPRC when the cameras know ground
truth) and a summary table.

One stage per process, on its own machine, from the same config (`--stage`):
    camera:NAME   that camera (binds its `bind`; a fixed port, reachable by the node); it writes nothing, so it
                  needs no --out
    node          the node: reads every source at its `address` (default: its bind), publishes on
                  `node.bind`, keeps OUT/node-events.db (or `node.event_log`), and runs the MQTT
                  bridge (`sinks.mqtt`)
    sinks         the collector: events from the node's log (none lost; a fresh OUT starts from the
                  first logged event, a reused one after its events.jsonl), scores, overlays, the
                  live page, summary.json; ends when every source's end of stream came through, or
                  the node says each camera has ended (ends that went out before it started)
A stage runs until it ends (cameras, sinks), `--timeout`, Ctrl-C (exit code 130) or SIGTERM (a requested
stop: exit code 0), as the whole line does.

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
import math
import re
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edge.args import above, at_least
from edge.config import MIN_SIDE, ConfigError
from edge.images import IMAGE_SUFFIXES, image_files

from . import protocol as P
from .config import MAX_TIMEOUT_S, LineConfig, load_line_config
from .eventlog import CatchUp, Cursors, ReplayClient, first_sync
from .out_folder import FolderBusy, claimed, keep_earlier, set_aside
from .security import secure_stage
from .sink_config import ViewConfig
from .sinks import (
    REOPEN_S,
    ConsoleSink,
    JsonlSink,
    MetricsSink,
    OverlaySink,
    ScoresSink,
    Sink,
    Subscriber,
    counted,
    deliver,
)
from .sources import crop_outside, expected_frames, run_camera
from .stages import READY_TIMEOUT_S, LineError, Stages
from .stats import DROP_COUNTERS, StreamStats
from .stopping import ctrl_c_flag, stop_code, stop_on_signals
from .transport import raise_open_file_limit

if TYPE_CHECKING:
    from .node import DetectorFactory

log = logging.getLogger(__name__)
_WILDCARD = re.compile(r"^tcp://(0\.0\.0\.0|\*|\[::\]|::):")
NODE_STOP_S = 30.0  # the node's time to stop (save each camera's model to node.checkpoint_dir, close its event log)
ENDED_WAIT_S = 10.0  # a sinks stage stops once the node has said for this long that each of its cameras has ended


def _sinks(cfg: LineConfig, out: Path, resume: dict[str, int] | None = None) -> list[Sink]:
    """The collector's sinks; with `resume` (the sinks stage: its cursors, none before a first event) appending to
    the files there, else (a whole line, its last results set aside) writing them afresh."""
    turn, append = {"max_mb": cfg.sinks.jsonl_max_mb, "backups": cfg.sinks.jsonl_backups}, resume is not None
    sinks: list[Sink] = [JsonlSink(out / "events.jsonl", append=append, resume=resume, **turn)]
    if cfg.sinks.scores:
        sinks.append(ScoresSink(out / "scores.jsonl", append=append, **turn))
    if cfg.sinks.overlays != "off":
        sinks.append(OverlaySink(out / "overlays", cfg.sinks.overlay_alpha, cfg.sinks.overlays,
                                 cfg.sinks.overlay_range, cfg.sinks.overlays_max_mb))
    if cfg.sinks.console:
        sinks.append(ConsoleSink())
    if cfg.sinks.prometheus is not None:
        metrics = MetricsSink(cfg.sinks.prometheus.host, cfg.sinks.prometheus.port)
        log.info("metrics on http://%s:%d/metrics", cfg.sinks.prometheus.host, metrics.port)
        sinks.append(metrics)
    if cfg.sinks.view is not None:
        from .view import ViewSink  # the HTTP server only where a page is served

        view = cfg.sinks.view
        if view.overlay_range is None and cfg.sinks.overlay_range is not None:
            view = view.model_copy(update={"overlay_range": cfg.sinks.overlay_range})
        sinks.append(ViewSink(view, cfg.sinks.mqtt.line if cfg.sinks.mqtt and cfg.sinks.mqtt.line else cfg.node.name,
                              announce=lambda url: Console(stderr=True).print(f"[bold]live view:[/] {url}")))
    return sinks


def with_view(cfg: LineConfig) -> LineConfig:
    """`--view`: the live page on (defaults unless the config has a `sinks.view`), and every result with its frame."""
    sinks = cfg.sinks if cfg.sinks.view is not None else cfg.sinks.model_copy(update={"view": ViewConfig()})
    node = cfg.node
    if node.attach_image == "anomalous":
        log.info("--view: node.attach_image 'always' (the page shows every frame)")
        node = node.model_copy(update={"attach_image": "always"})
    return cfg.model_copy(update={"sinks": sinks, "node": node})


class Collector:
    """The subscriber end of a line: live results and heartbeats from the node, events from its event log
    (`eventlog.CatchUp`: in order, none lost), each handed to the statistics and to every sink. Ends of stream come
    live, or from the node's log when lost live (`CatchUp` too); `take_ended` says whose came since it was asked."""

    def __init__(self, endpoint: str, replay: str | None, sinks: Sequence[Sink], stats: StreamStats,
                 server_key: bytes | None = None, resume: Cursors | None = None, from_start: bool = False):
        self.sinks, self.stats = list(sinks), stats
        self.sink_failures = 0  # messages a sink failed on (logged; the others still got them)
        self.node_counters: dict[str, int] | None = None  # the node's own, from its last heartbeat taken in
        self._ended: list[str] = []  # cameras whose end of stream was handed on, since `take_ended`
        self.catch = None
        if replay is not None:  # live events only say "fetch now"
            self.catch = CatchUp(ReplayClient(replay, server_key=server_key), resume=resume, from_start=from_start)
        self.sub = Subscriber(endpoint, (b"anomaly/", b"event/", b"eos/", b"heartbeat/"), server_key=server_key,
                              reopen_s=REOPEN_S)

    def collect(self, msg: P.Message, delivered: float, log_seq: int | None = None) -> None:
        self.stats.add(msg, delivered)
        self.sink_failures += deliver(self.sinks, msg, delivered, log_seq)
        if msg.kind == "eos":
            self._ended.append(msg.source)
        elif msg.kind == "heartbeat" and msg.header.role == "node":
            self.node_counters = dict(msg.header.counters)

    def take_ended(self) -> list[str]:
        """The cameras whose end of stream was handed on (live, or from the node's log) since the last call."""
        ended, self._ended = self._ended, []
        return ended

    def _logged(self, events: list[tuple[int | None, P.EventHeader | P.EosHeader]]) -> None:
        """Hand on events from the node's log, and ends of stream (`CatchUp`: live or from the log, each once); the
        JSONL sinks record which log their `log_seq` count in."""
        for sink in self.sinks:
            if isinstance(sink, JsonlSink):
                sink.log_id = self.catch.log_id
        for n, header in events:
            self.collect(P.Message(header), time.time(), n)

    def sync(self) -> None:
        """Fetch the events the node logged that this collector has not had (at the start, at the end)."""
        if self.catch is not None:
            self._logged(self.catch.sync())

    def first_sync(self, deadline: float, stop: threading.Event, asked: str | None = None) -> None:
        """Before the live stream: the events the node logged that this collector has not had, waiting for a node that
        is not up yet (`eventlog.first_sync`; `asked`: it reads the log from its start, and why)."""
        if self.catch is not None:
            self._logged(first_sync(self.catch, self.catch.client.endpoint, deadline, stop, asked))

    def step(self, timeout_ms: int = 100) -> P.Message | None:
        """Take in the next message (or none within `timeout_ms`); returns it."""
        msg = self.sub.recv(timeout_ms)
        if self.catch is not None:
            self._logged(self.catch.on_message(msg))
        if msg is not None and (self.catch is None or msg.kind not in CatchUp.HANDED_ON):
            self.collect(msg, time.time())
        return msg

    def final_heartbeat(self, wait_s: float = 1.0) -> None:
        """After the last end of stream: take in the node heartbeat the node sends right after it (or wait `wait_s`),
        so that the sinks, the live page among them, end on the node's final counters, not those of a frame before."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            msg = self.step(100)
            if msg is not None and msg.kind == "heartbeat" and msg.header.role == "node":
                return

    def close(self) -> None:
        if self.catch is not None:
            try:  # events whose live copy was dropped after the last one seen
                self.sync()
            except Exception as e:
                log.warning("could not fetch the last events from the node's log: %s", e)
            self.catch.close()
        self.sub.close()


def _progress(progress: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), disable=not progress)


def _fps(fps: float) -> str:
    """Frames per second as the bar and the table show them."""
    return f"{fps:.2f}"


SKIPPED = {"unreadable": "unreadable", "too_small": "too small"}  # a camera's files and frames never sent, in words


def _info(stats: StreamStats, now: float, dropped: int) -> str:
    """The bar's line; `now` on the monotonic clock (`StreamStats.fps`)."""
    rate = stats.fps(now) or 0.0
    skipped = "".join(f"  {n} {words}" for name, words in SKIPPED.items()
                      if (n := sum(stats.camera_counts(name).values())))
    return f"{_fps(rate)} fps  {counted(sum(stats.events.values()), 'event')}  {dropped} dropped{skipped}"


def _done(stats: StreamStats, totals: dict[str, int | None]) -> int:
    """The bar's frames done: each camera's frames scored and those it skipped (`SKIPPED`: counted in its expected
    frames, never sent), at most its total."""
    skipped = [stats.camera_counts(name) for name in SKIPPED]
    done = {c: stats.frames[c] + sum(s.get(c, 0) for s in skipped) for c in totals}
    return sum(n if totals[c] is None else min(n, totals[c]) for c, n in done.items())


def _preflight(cfg: LineConfig, sources: Sequence = (), node: bool = True) -> None:
    """What the file system shows wrong before any stage starts: a ConfigError naming the key (exit 2), not a stage
    that fails to start midway (exit 1)."""
    for s in sources:
        found = None
        if s.kind == "folder":
            try:
                found = image_files(s.path)
            except OSError as e:
                raise ConfigError(f"sources[{s.name}].path {s.path}: cannot list it: {e}") from None
            if not found:
                raise ConfigError(f"sources[{s.name}].path {s.path}: no images ({', '.join(IMAGE_SUFFIXES)}) there: "
                                  "a folder source needs at least one")
        if s.kind in ("folder", "video") and (size := crop_outside(s, found[0] if found else None)) is not None:
            raise ConfigError(f"sources[{s.name}].crop {list(s.crop)} (x, y, width, height) lies outside its first "
                              f"frame, {size[0]}x{size[1]} px: nothing of it could be scored (the crop's x and y are "
                              "its top-left corner, in the frame's pixels)")
    if node and cfg.node.event_log is not None and cfg.node.event_log.is_dir():
        raise ConfigError(f"node.event_log {cfg.node.event_log} is a folder: name the SQLite file of the event log "
                          f"(as {cfg.node.event_log / 'node-events.db'})")
    if node and cfg.node.checkpoint_dir is not None and cfg.node.checkpoint_dir.exists() \
            and not cfg.node.checkpoint_dir.is_dir():
        raise ConfigError(f"node.checkpoint_dir {cfg.node.checkpoint_dir} is a file: name a folder (created if need "
                          "be)")


def run_line(cfg: LineConfig, out: str | Path, frames: int | None = None, timeout_s: float | None = None,
             detector_factory: DetectorFactory | None = None, progress: bool = False,
             views: list | None = None, planned_stop: bool = False) -> dict:
    """Run the line until every camera has ended; write OUT/events.jsonl, overlays and summary.json.

    `frames` overrides every camera's frame limit; `detector_factory` (picklable) replaces the SSDnet
    detector, e.g. in tests. With `views` (a list), the live page (`sinks.view`) is appended to it as soon
    as it serves and left up for the caller to close; else it closes with the line. With `planned_stop`,
    `timeout_s` is the run's planned length (`ssdnet soak`): reaching it is logged at INFO, not warned of, and
    the summary says `planned_stop` (true, there only then), not `timed_out`. Returns the summary.
    """
    if not cfg.sources:
        raise ConfigError("the config has no camera of its own (its node reads node.connect): run its node with "
                        "`--stage node` and its sinks with `--stage sinks`")
    from edge.device import resolve_device  # here: torch, which a camera's own stage (`--stage camera`) never loads

    from .node import run_node
    resolve_device(cfg.node.ssdnet.device)  # a device this machine lacks: a ConfigError before any stage starts
    _preflight(cfg, cfg.sources)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_aside(out)  # a fresh event log and files, the last run's results in OUT/previous/
    timeout_s = timeout_s or cfg.timeout_s
    sources = [s.model_copy(update={"frames": frames or s.frames or cfg.frames}) for s in cfg.sources]
    names = [s.name for s in sources]
    totals = {s.name: expected_frames(s) for s in sources}
    expected = None if None in totals.values() else sum(totals.values())
    line, stats, sinks = Stages(), StreamStats(cfg.sinks.auroc_pixels_per_frame), _sinks(cfg, out)
    pages = [s for s in sinks if _is_view(s)]
    if views is not None:
        views.extend(pages)
    collector = None
    node_cfg = cfg.node
    if node_cfg.event_log is None:
        node_cfg = node_cfg.model_copy(update={"event_log": out / "node-events.db"})

    # the run's time on the monotonic clock: a system clock stepped by NTP (or a board that boots in 1970, then syncs)
    # neither ends it at once nor lets it run past its --timeout, and wall_s stays its length
    started, interrupted, timed_out, failure = time.monotonic(), False, False, None
    bar = _progress(progress)
    ctrl_c, restore = ctrl_c_flag()
    try:
        for src in sources:
            line.start(src.name, run_camera, src, line.stop, security=cfg.security)
        cameras = line.await_ready(names, cancel=ctrl_c)
        line.start(cfg.node.name, run_node, node_cfg, cameras, line.stop, detector_factory=detector_factory,
                   wait_for_subscriber_s=READY_TIMEOUT_S, security=cfg.security, input_names=names,
                   mqtt=cfg.sinks.mqtt)
        # (results, replay): node_cfg has an event log
        node_endpoint, replay = line.await_ready([cfg.node.name], cancel=ctrl_c)[0]
        server_key = None
        if cfg.security is not None:
            server_key = secure_stage(cfg.security, cfg.security.client_name).server_key(cfg.node.name)
        collector = Collector(node_endpoint, replay, sinks, stats, server_key)
        collector.sync()
        pending, dropped = set(names), 0
        with bar:
            task = bar.add_task("frames", total=expected, info="")
            while pending:
                if ctrl_c.is_set():  # Ctrl-C, SIGTERM: taken between two messages, none cut in half
                    raise KeyboardInterrupt
                if timeout_s is not None and time.monotonic() - started > timeout_s:
                    timed_out = True
                    if planned_stop:
                        log.info("planned stop after %.0f s; stopping the line", timeout_s)
                    else:
                        log.warning("timeout after %.0f s; still running: %s", timeout_s, sorted(pending))
                    break
                msg = collector.step(100)
                pending.difference_update(collector.take_ended())
                line.poll()
                if cfg.node.name in line.dead():
                    exit_code = line.procs[cfg.node.name].exitcode
                    raise LineError(f"node died: {line.failures.get(cfg.node.name, f'exit code {exit_code}')}")
                for name in set(line.dead()) & pending:
                    log.error("camera %s died: %s", name, line.failures.get(name, "no end of stream"))
                    pending.discard(name)
                if msg is None:
                    continue
                if msg.kind == "heartbeat" and msg.header.role == "node":
                    dropped = sum(msg.header.counters.get(k, 0) for k in ("conflated", "lost", "rejected", "failed"))
                bar.update(task, completed=_done(stats, totals), info=_info(stats, time.monotonic(), dropped))
            if not pending:
                collector.final_heartbeat()
    except KeyboardInterrupt:
        interrupted = True
        log.warning("%s; stopping the line", ctrl_c.signal or "interrupted")
    except Exception as e:  # a stage died, a sink failed: what the line did until then is still summed up
        failure = str(e) if isinstance(e, LineError) else f"{type(e).__name__}: {e}"
        raise
    finally:
        try:  # a second Ctrl-C (shutting down takes seconds) only sets the flag again: no sink is left half-closed
            if collector is not None:
                collector.close()
            line.shutdown(grace={cfg.node.name: NODE_STOP_S})
            for sink in sinks:
                if views is None or not _is_view(sink):
                    sink.close()
            if collector is not None or failure is None:
                summary = _summary(line, stats, names, cfg.node.name, collector)
                summary.update(wall_s=round(time.monotonic() - started, 3), interrupted=interrupted,
                               stopped_by=ctrl_c.signal if interrupted else None,
                               timed_out=timed_out and not planned_stop, failed=failure)
                if timed_out and planned_stop:  # there only then: a run's own --timeout is `timed_out`
                    summary["planned_stop"] = True
                (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        finally:
            restore()
    return summary


def _summary(line: Stages, stats: StreamStats, cameras: list[str], node: str, collector: Collector | None) -> dict:
    for name in cameras:  # stopped before its end of stream came through (Ctrl-C, the timeout): the camera's count
        if isinstance(counters := line.results.get(name), dict):
            stats.camera_stopped(name, counters)
    summary = stats.summary(line.results.get(node), cameras)
    for name in set(cameras) & set(line.failures):  # a camera never heard from (a dead RTSP source): why
        summary["sources"][name]["failure"] = line.failures[name]
    if collector is not None:
        summary.update(bad_messages_at_collector=collector.sub.bad_messages, sink_failures=collector.sink_failures)
    return summary


def _is_view(sink: Sink) -> bool:
    return type(sink).__name__ == "ViewSink"


# ---------------------------------------------------------------- one stage per process


def peer_endpoint(bind: str, address: str | None) -> str:
    """Where other stages reach an endpoint bound as `bind`: `address`, else the bind with a wildcard host
    (0.0.0.0, *) read as this machine."""
    return address or _WILDCARD.sub("tcp://127.0.0.1:", bind)


def _fixed(what: str, endpoint: str) -> str:
    if endpoint.endswith(":*"):
        raise ConfigError(f"{what} binds {endpoint} (any free port): give it a fixed port "
                        "(e.g. tcp://0.0.0.0:5555) to run it as a stage of its own")
    return endpoint


def _timer(stop: threading.Event, timeout_s: float | None) -> threading.Event:
    """Set `stop` after `timeout_s` (None or 0: never); returns a flag set only if the timeout did it."""
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        stop.set()

    if timeout_s:
        t = threading.Timer(timeout_s, fire)
        t.daemon = True
        t.start()
    return fired


def run_camera_stage(cfg: LineConfig, name: str, frames: int | None = None, timeout_s: float | None = None) -> dict:
    src = next((s for s in cfg.sources if s.name == name), None)
    if src is None:
        raise ConfigError(f"no source named {name!r} in the config (sources: {[s.name for s in cfg.sources]})")
    _fixed(f"camera {name}", src.bind)
    _preflight(cfg, [src], node=False)
    src = src.model_copy(update={"frames": frames or src.frames or cfg.frames})
    stop = stop_on_signals()
    _timer(stop, timeout_s or cfg.timeout_s)
    counters = run_camera(src, stop, on_ready=lambda ep: log.info("camera %s on %s", name, ep), security=cfg.security)
    return {**counters, "stopped_by": stop.signal}


def run_node_stage(cfg: LineConfig, out: Path, timeout_s: float | None = None,
                   detector_factory: DetectorFactory | None = None) -> dict:
    from edge.device import resolve_device  # here, as in run_line: torch

    from .node import run_node
    node_cfg = cfg.node
    _fixed("node.bind", node_cfg.bind)
    resolve_device(node_cfg.ssdnet.device)
    _preflight(cfg)
    if node_cfg.event_log is None:
        out.mkdir(parents=True, exist_ok=True)
        node_cfg = node_cfg.model_copy(update={"event_log": out / "node-events.db"})
    _fixed("node.replay_bind", node_cfg.replay_bind)
    inputs = [peer_endpoint(_fixed(f"camera {s.name}", s.bind), s.address) for s in cfg.sources]
    stop = stop_on_signals()
    _timer(stop, timeout_s or cfg.timeout_s)
    result = run_node(node_cfg, inputs, stop, on_ready=lambda ep: log.info("node ready: %s", ep),
                      detector_factory=detector_factory, security=cfg.security,
                      input_names=[s.name for s in cfg.sources], mqtt=cfg.sinks.mqtt)
    return {**result, "stopped_by": stop.signal}


def run_sinks_stage(cfg: LineConfig, out: Path, timeout_s: float | None = None, progress: bool = False) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    node = cfg.node
    endpoint = peer_endpoint(_fixed("node.bind", node.bind), node.address)
    replay = peer_endpoint(_fixed("node.replay_bind", node.replay_bind), node.replay_address)
    resume = JsonlSink.cursors(out / "events.jsonl")
    stats, sinks = StreamStats(cfg.sinks.auroc_pixels_per_frame), _sinks(cfg, out, resume=resume)
    server_key = None
    if cfg.security is not None:
        server_key = secure_stage(cfg.security, cfg.security.client_name).server_key(node.name)
    stop = stop_on_signals()
    timed_out = _timer(stop, timeout_s or cfg.timeout_s)
    collector = Collector(endpoint, replay, sinks, stats, server_key, resume=resume or None, from_start=not resume)
    named = [s.name for s in cfg.sources] + [n for names in cfg.node.connect_cameras.values() for n in names]
    pending, started, before_start, forever = set(named), time.monotonic(), [], not named
    log.info("sinks: following %s (events from %s); %s", endpoint, replay, "until stopped (no camera named)"
             if forever else f"waiting for the end of stream of {', '.join(sorted(pending))}")
    try:
        # a first start reads the node's log from its start: those events were asked for, not missed (a warning);
        # it waits for the node until `stop` (a signal, or the timeout's timer)
        collector.first_sync(math.inf, stop, None if resume else "a sinks stage's first start in its folder")
        with _progress(progress) as bar:
            task = bar.add_task("frames", total=None, info="")
            ended_since = None  # since when the node says each of its cameras has ended, none streaming since
            while (pending or forever) and not stop.is_set():
                msg = collector.step(100)
                pending.difference_update(collector.take_ended())  # live, or from the node's log when lost live
                if msg is not None and msg.kind == "heartbeat" and msg.header.role == "node":  # the node's socket
                    ended = msg.header.counters.get("cameras_ended", 0)
                    if forever or not (ended >= len(named) and ended == msg.header.counters.get("cameras")):
                        ended_since = None
                    elif ended_since is None:
                        ended_since = time.monotonic()
                elif msg is not None and (msg.kind == "anomaly" or
                                          msg.kind == "heartbeat" and msg.header.state != "ended"):
                    ended_since = None  # a camera streams (again)
                if ended_since is not None and time.monotonic() - ended_since >= ENDED_WAIT_S:
                    before_start.extend(sorted(pending))
                    log.info("sinks: the node says each of its cameras has ended and none has streamed for %.0f s; "
                             "the end of stream of %s came before this stage subscribed: taking the rest of its event "
                             "log and stopping", ENDED_WAIT_S, ", ".join(before_start))
                    pending.clear()  # `collector.close` syncs the event log (a node not answering: a warning)
                bar.update(task, completed=sum(stats.frames.values()), info=_info(stats, time.monotonic(), 0))
            if not pending:
                collector.final_heartbeat()
            else:
                log.warning("sinks: %s after %.0f s; no end of stream from %s", "timeout" if timed_out.is_set()
                            else "stopped", time.monotonic() - started, ", ".join(sorted(pending)))
    finally:
        collector.close()
        for sink in sinks:
            sink.close()
    summary = stats.summary(cameras=named)
    stopped = bool(pending) or forever  # before its cameras' ends, or a stage that follows the node until stopped
    interrupted = stopped and not timed_out.is_set()
    # `frames` are the results this stage received, `events` those it took from the node's log (logged before it
    # subscribed too), `sent` the cameras' whole runs: no drop count from them; the node's own counts are its own
    summary.update(wall_s=round(time.monotonic() - started, 3), interrupted=interrupted,
                   stopped_by=stop.signal if interrupted else None, timed_out=stopped and timed_out.is_set(),
                   sink_failures=collector.sink_failures, resumed=bool(resume), ended_before_start=before_start,
                   dropped=None, node_counters=collector.node_counters)
    keep_earlier(out / "summary.json")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ---------------------------------------------------------------- the command


def print_summary(summary: dict) -> None:
    by = " by SIGTERM" if summary.get("stopped_by") == "SIGTERM" else ""
    ended = f" (interrupted{by}: partial)" if summary.get("interrupted") else \
        " (timed out)" if summary.get("timed_out") else " (stopped as planned)" if summary.get("planned_stop") else ""
    table = Table(title=f"ssdnet run{ended}", show_header=False)
    drops = summary.get("drops")
    detail = f" ({', '.join(f'{k} {v}' for k, v in drops.items())})" if drops else ""
    sent = summary["sent"]
    scored = f"{summary['frames']} of {sent} sent" if sent is not None else f"{summary['frames']} (no camera reported)"
    for key, noun, why in (("unreadable", "unreadable file", "the log names each"),
                           ("too_small", "too-small frame", f"below {MIN_SIDE}x{MIN_SIDE} px")):
        if n := summary.get(key):  # never sent: "of N sent" alone would look complete
            scored += f"; {counted(n, noun)} skipped ({why})"
    fps = _fps(summary["fps"]) if summary["fps"] is not None else "- (fewer than two results)"
    dropped = "-" if summary["dropped"] is None else summary["dropped"]
    done = "received" if "node_counters" in summary else "scored"  # a sinks stage: the results it received
    rows = [(f"frames {done}", scored), ("dropped", f"{dropped}{detail}"),
            *_camera_rows(summary.get("sources", {}), done), ("fps", fps), ("events", f"{summary['events']}"),
            ("wall time", f"{summary['wall_s']:.1f} s")]
    if "node_counters" in summary:
        rows.insert(2, ("the node's counts", _node_counts(summary["node_counters"])))
    if unheard := summary.get("unheard"):
        rows.insert(2, ("sent unheard", f"{unheard} (no node subscribed: ZeroMQ dropped them; a node that saw the gap "
                                        "counts them lost too)"))
    if refused := summary.get("refused_peers"):  # a security signal: who else tried to take a camera's frames?
        rows.insert(2, ("camera peers refused", f"{refused} (connections past sources[].max_peers: another node, or "
                                                "a peer that is not the line's; docs/protocol.md section 6)"))
    if scorer := summary.get("scorer"):
        rows.append(("scorer backend", f"{scorer['backend']} on {scorer['provider']} ({scorer['reason']})"))
    if stream := summary.get("stream"):
        rows.append(("stream pixel AUROC / AUPRC", _accuracy(stream, image=False)))
        for part, name in (("first_half", "first"), ("last_half", "last")):
            if (s := stream.get(part)) is not None:  # does a camera get better as it streams (memory, calibration)?
                rows.append((f"  over each camera's {name} half", _accuracy(s)))
        for camera, c in stream.get("cameras", {}).items():
            halves = [c.get(part) for part in ("first_half", "last_half")]
            if all(h is not None and h["pixel_auroc"] is not None for h in halves):  # a half without a defect: none
                rows.append((f"  {camera}: first half -> last half", " -> ".join(
                    f"{h['pixel_auroc']} / {h['pixel_auprc']}" for h in halves)))
    if ahead := {camera: s for camera, s in summary.get("clock_ahead_s", {}).items() if s >= 0.1}:
        rows.append(("camera clocks ahead of the node's", ", ".join(f"{c} {s:g} s" for c, s in ahead.items())
                     + " (taken out of their latencies; sync them: NTP or PTP)"))
    for stage, p in summary["latency_ms"].items():
        if p is not None:
            rows.append((f"latency {stage} p50/p95/p99", f"{p['p50']:.1f} / {p['p95']:.1f} / {p['p99']:.1f} ms"))
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _node_counts(counters: dict[str, int] | None) -> str:
    """A sinks stage's row of the node's own counts, since the node started, as its last heartbeat said them."""
    if counters is None:
        return "- (no node heartbeat heard)"
    dropped = sum(counters.get(k, 0) for k in DROP_COUNTERS)
    return (f"{counters.get('scored', 0)} scored, {counted(counters.get('events', 0), 'event')}, {dropped} dropped "
            "since it started (its last heartbeat)")


def _accuracy(s: dict, image: bool = True) -> str:
    """Pixel AUROC / AUPRC (and image AUROC) over `s`'s frames; a dash where they have no defective (or normal)
    frame to rank, never None."""
    if s["pixel_auroc"] is None:
        return f"- (no defective frame among {s['frames']})"
    text = f"{s['pixel_auroc']} / {s['pixel_auprc']}"
    if image:
        text += f", image AUROC {'-' if s['image_auroc'] is None else s['image_auroc']}"
    frames = counted(s["frames"], "frame")
    return f"{text} ({frames})" if image else f"{text} over {frames}"


def _camera_rows(sources: dict[str, dict], done: str = "scored") -> list[tuple[str, str]]:
    """With two cameras or more, or one whose stage failed, a row each: frames `done` (scored, or a sinks stage's
    received) of sent, events, its drops by cause, frames sent unheard and scored downscaled, files skipped unreadable
    and frames skipped too small."""
    if len(sources) < 2 and not any("failure" in c for c in sources.values()):
        return []
    rows = []
    for camera, c in sorted(sources.items()):
        causes = {k: c.get(k)
                  for k in (*DROP_COUNTERS, "unaccounted", "unheard", "downscaled", "unreadable", "too_small",
                            "refused_peers")}
        detail = ", ".join(f"{k} {n}" for k, n in causes.items() if n)
        sent = "?" if c.get("sent") is None else c["sent"]
        failure = f"; stage failed: {c['failure']}" if "failure" in c else ""
        rows.append((f"  {camera}", f"{c.get('frames', 0)} of {sent} {done}, {counted(c.get('events', 0), 'event')}"
                                    + (f" ({detail})" if detail else "") + failure))
    return rows


def _stage(text: str) -> str:
    if text in ("all", "node", "sinks") or (text.startswith("camera:") and len(text) > len("camera:")):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: one of all, node, sinks, camera:NAME")


def _linger(url: str) -> None:
    """After a line with the live page ends: keep the page up until Ctrl-C or SIGTERM."""
    Console(stderr=True).print(f"the line has ended; the live view stays up at {url} until Ctrl-C")
    stop, restore = ctrl_c_flag()
    try:
        stop.wait()
    finally:
        restore()


def _main(args: argparse.Namespace) -> int:
    camera = args.stage.startswith("camera:")
    if args.out is None and not camera:
        print("ssdnet run: error: the following arguments are required: --out (by every stage but camera:NAME, "
              "which writes nothing)", file=sys.stderr)
        return 2
    raise_open_file_limit()  # for every stage: a peer's connections must not exhaust them
    cfg = load_line_config(args.config)
    if args.view:
        cfg = with_view(cfg)
    views: list = []
    roles = ("node",) if args.stage == "node" else ("sinks",) if args.stage == "sinks" else \
        ("node", "sinks")  # what the stage writes in OUT
    try:
        with nullcontext() if camera else claimed(args.out, roles):  # a camera stage writes nothing: no OUT
            return _run(args, cfg, views)
    except LineError as e:
        print(f"ssdnet run: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, FolderBusy) else 1
    finally:
        for view in views:
            view.close()


def _counts(counts: dict, skip: tuple[str, ...] = ()) -> str:
    """A stage's final counters in words, those not zero: "3 unheard, 1 reconnects"."""
    return ", ".join(f"{n} {name}" for name, n in counts.items() if name not in skip and isinstance(n, int) and n)


def _stopped_by(stopped_by: str | None) -> str:
    return f"; stopped by {stopped_by}" if stopped_by else ""


def _run(args: argparse.Namespace, cfg: LineConfig, views: list) -> int:
    if args.stage.startswith("camera:"):
        name = args.stage.split(":", 1)[1]
        counters = run_camera_stage(cfg, name, args.frames, args.timeout)
        rest = _counts(counters, skip=("sent",))
        print(f"camera {name}: {counted(counters['sent'], 'frame')} sent" + (f" ({rest})" if rest else "") +
              (f"; run {counters['run']}" if counters.get("run") else "") + _stopped_by(counters["stopped_by"]))
        return stop_code(counters["stopped_by"])
    if args.stage == "node":
        result = run_node_stage(cfg, args.out, args.timeout)
        totals = {k: sum(c.get(k, 0) for c in result["sources"].values()) for k in ("received", "scored", "events")}
        rest = _counts({k: v for k, v in result.items() if k not in totals})
        print(f"node stopped: {counted(totals['received'], 'frame')} received, {totals['scored']} scored, "
              f"{counted(totals['events'], 'event')} from {counted(len(result['sources']), 'camera')}"
              + (f" ({rest})" if rest else "")
              + _stopped_by(result["stopped_by"]))
        return stop_code(result["stopped_by"])
    if args.stage == "sinks":
        summary = run_sinks_stage(cfg, args.out, args.timeout, progress=True)
    else:
        summary = run_line(cfg, args.out, frames=args.frames, timeout_s=args.timeout, progress=True, views=views)
    print_summary(summary)
    print(f"wrote {Path(args.out) / 'summary.json'} and {Path(args.out) / 'events.jsonl'}")
    if views and args.view and not summary["interrupted"]:
        _linger(views[0].url)
    if summary["interrupted"]:
        return stop_code(summary["stopped_by"] or "SIGINT")  # stopped by no signal: a KeyboardInterrupt
    if not summary["frames"] and not summary.get("ended_before_start"):  # a line that scored nothing did not do its
        # job, whatever the warnings said (a sinks stage started after the ends of stream took only the event log)
        print("ssdnet run: error: no frame was scored (the warnings above say why)", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a streaming line (cameras -> node -> sinks), or one of its stages, from a "
                                   "YAML config", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="line config (YAML), e.g. configs/demo.yaml")
    p.add_argument("--out", type=Path, help="output folder: summary.json, events.jsonl, overlays/ (required by every "
                                            "stage but camera:NAME, which writes nothing)")
    p.add_argument("--frames", type=at_least(1), help="frames per camera (overrides the config)")
    p.add_argument("--timeout", type=above(0, high=MAX_TIMEOUT_S), help="stop after this many seconds (at most a "
                                                                       "year)")
    p.add_argument("--view", action="store_true", help="serve the live page (sinks.view; 127.0.0.1:8765 unless "
                                                       "configured) and keep it up after the line ends, until Ctrl-C")
    p.add_argument("--stage", type=_stage, default="all", metavar="STAGE",
                   help="all (default: the whole line here), node, sinks, or camera:NAME (one stage per process)")
    p.set_defaults(func=_main)
