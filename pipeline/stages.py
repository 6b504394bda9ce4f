"""The stage processes of a line (`ssdnet run`): spawned, reporting back, stopped through one event.

Each stage (a camera, the node) is a spawned process running `run_stage`, which calls the stage's
entry point (`pipeline.sources.run_camera`, `pipeline.node.run_node`) and reports its endpoint,
its result or its failure on a queue. This module imports nothing heavy, so a camera process
(which imports it and its entry point's module) never loads torch.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
READY_TIMEOUT_S = 60.0
# errors whose message is the whole story (a scorer backend that cannot load, a missing video file, a bad config)
USER_ERRORS = ("BackendUnavailable", "SourceFatal", "ConfigError", "VGGWeightsError", "FileNotFoundError")
JOIN_TIMEOUT_S = 5.0


class LineError(RuntimeError):
    """A stage failed to start or died."""


def run_stage(name: str, target: Callable[..., Any], args: tuple, kwargs: dict, reports: Any, level: int) -> None:
    """Body of a stage process: run `target`, reporting its endpoint and its result (or failure)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the launcher stops stages itself
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s")
    try:
        result = target(*args, on_ready=lambda endpoint: reports.put(("ready", name, endpoint)), **kwargs)
    except Exception as e:
        if type(e).__name__ in USER_ERRORS:  # says what to fix: no traceback
            logging.getLogger(__name__).error("%s failed: %s: %s", name, type(e).__name__, e)
        else:
            logging.getLogger(__name__).exception("%s failed", name)
        reports.put(("failed", name, f"{type(e).__name__}: {e}"))
        sys.exit(1)
    reports.put(("done", name, result))


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
        proc = self.ctx.Process(target=run_stage, args=(name, target, args, kwargs, self.reports, level), name=name,
                                daemon=True)
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

    def await_ready(self, names: list[str], cancel: threading.Event | None = None) -> list[str]:
        """The stages' endpoints once all are ready; KeyboardInterrupt when `cancel` is set meanwhile."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(n in self.endpoints for n in names):
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt
            self.poll(timeout=0.1)
            if failed := [n for n in names if n in self.failures or n in self.dead()]:
                raise LineError("; ".join(f"{n} failed to start: {self.failures.get(n, 'exited')}" for n in failed))
            if time.monotonic() > deadline:
                raise LineError(f"stages not ready after {READY_TIMEOUT_S:.0f} s: "
                                f"{[n for n in names if n not in self.endpoints]}")
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
