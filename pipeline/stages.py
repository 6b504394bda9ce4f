"""The stage processes of a line (`ssdnet run`): spawned, reporting back, stopped through one event.

Each stage (a camera, the node) is a spawned process running `run_stage`, which calls the stage's
entry point (`pipeline.sources.run_camera`, `pipeline.node.run_node`) and reports its endpoint,
its result or its failure on a queue. This module imports nothing heavy, so a camera process
(which imports it and its entry point's module) never loads torch.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .stopping import poke

log = logging.getLogger(__name__)
READY_TIMEOUT_S = 60.0
# errors whose message is the whole story (a scorer backend that cannot load, a missing video file, a bad config,
# a port in use)
USER_ERRORS = ("BackendUnavailable", "SourceFatal", "ConfigError", "VGGWeightsError", "FileNotFoundError", "BindError",
               "KeyFileError")
JOIN_TIMEOUT_S = 5.0  # how long a stopped stage may take to end before it is killed (`Stages.shutdown`'s default)
PARENT_CHECK_S = 0.5  # how often a stage checks that its launcher still runs


class LineError(RuntimeError):
    """A stage failed to start or died."""


def run_stage(name: str, target: Callable[..., Any], args: tuple, kwargs: dict, reports: Any, level: int,
              stop: Any) -> None:
    """Body of a stage process: run `target`, reporting its endpoint and its result (or failure); `stop` (the line's
    event, which `target` watches) is set should the launcher die without setting it (SIGKILL, the OOM killer)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the launcher stops stages itself
    # so does `systemctl stop`: a stop, not a kill. The handler runs on the main thread wherever it is, even inside
    # `stop.is_set()` holding the event's lock, where `stop.set()` hung on that lock for good: it takes no lock,
    # only writes to a pipe that wakes the parent-watch thread, which sets `stop`
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.signal(signal.SIGTERM, lambda *_: poke(write_fd))
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s")
    threading.Thread(target=_stop_with_parent, args=(name, stop, read_fd), name="parent-watch", daemon=True).start()
    try:
        result = target(*args, on_ready=lambda endpoint: reports.put(("ready", name, endpoint)), **kwargs)
    except Exception as e:
        user = type(e).__name__ in USER_ERRORS  # its message says what to fix: no class name, no traceback
        what = str(e) if user else f"{type(e).__name__}: {e}"
        if (endpoint := getattr(e, "endpoint", None)) is not None:  # a BindError: name the key that set it
            what = f"{bind_key(name, args[0] if args else None, endpoint)}: {e}"
        if user:
            logging.getLogger(__name__).error("%s failed: %s", name, what)
        else:
            logging.getLogger(__name__).exception("%s failed", name)
        reports.put(("failed", name, what))
        sys.exit(1)
    reports.put(("done", name, result))


def _stop_with_parent(name: str, stop: Any, read_fd: int) -> None:
    """Set `stop` once SIGTERM wrote to the pipe `read_fd` reads, or once this process's parent, the launcher, is gone:
    a stage never outlives its line (it would hold its ports and the event log)."""
    parent = os.getppid()
    while not stop.is_set():  # never stop.wait(): a process that exits waiting on the event hangs its set() for good
        if select.select([read_fd], [], [], PARENT_CHECK_S)[0]:
            stop.set()
        elif os.getppid() != parent:
            log.error("%s: the ssdnet run that started it is gone; stopping", name)
            stop.set()


def bind_key(stage: str, cfg: Any, endpoint: str) -> str:
    """The config key that set `endpoint` of a stage whose config is `cfg` (a source's or the node's):
    `sources[cam0].bind`, `node.bind`, `node.replay_bind`; the stage's name when none did."""
    field = next((f for f in ("bind", "replay_bind") if getattr(cfg, f, None) == endpoint), None)
    if field is None:
        return stage
    return f"node.{field}" if type(cfg).__name__ == "NodeConfig" else f"sources[{stage}].{field}"


class Stages:
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
        proc = self.ctx.Process(target=run_stage, args=(name, target, args, kwargs, self.reports, level, self.stop),
                                name=name, daemon=True)
        # Ctrl-C reaches the whole process group: a stage still starting (importing torch, before run_stage ignores
        # it) died of it with a traceback, and the line failed instead of stopping. Blocked here, SIGINT stays
        # blocked in the stage it starts; the launcher gets any that came meanwhile once it is unblocked.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
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

    def await_ready(self, names: list[str], cancel: threading.Event | None = None) -> list[str]:
        """The stages' endpoints once all are ready; KeyboardInterrupt when `cancel` is set meanwhile."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(n in self.endpoints for n in names):
            self.poll(timeout=0.1)
            if cancel is not None and cancel.is_set():  # before a stage's failure: it may have been the Ctrl-C's
                raise KeyboardInterrupt
            if failed := [n for n in names if n in self.failures or n in self.dead()]:
                raise LineError("; ".join(f"{n} failed to start: {self.failures.get(n, 'exited')}" for n in failed))
            if time.monotonic() > deadline:
                raise LineError(f"stages not ready after {READY_TIMEOUT_S:.0f} s: "
                                f"{[n for n in names if n not in self.endpoints]}")
        return [self.endpoints[n] for n in names]

    def shutdown(self, grace: Mapping[str, float] | None = None) -> None:
        """Stop every stage; one that has not ended JOIN_TIMEOUT_S later (its `grace` in seconds, if given) is
        killed."""
        self.stop.set()
        start = time.monotonic()
        for name, proc in self.procs.items():
            deadline = start + (grace or {}).get(name, JOIN_TIMEOUT_S)
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            self.poll()
            if proc.is_alive():
                log.warning("%s did not stop in time, killing it", name)
                proc.kill()  # SIGTERM only asks a stage to stop
                proc.join(timeout=1.0)
        self.poll()
