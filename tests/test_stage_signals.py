"""A stage process (`pipeline.stages.run_stage`), and a command that stops on signals (`pipeline.stopping`), stop on
SIGTERM or Ctrl-C wherever the signal lands in them."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

from pipeline.stages import Stages, run_stage


def _sigterm_inside_is_set(stop, on_ready) -> bool:
    """A stage's SIGTERM that lands while its main thread is inside `stop.is_set()` (which its loops call between
    messages), holding the event's lock; returns whether `stop` was set within 30 s."""
    on_ready("-")
    with stop._cond:  # the lock `stop.is_set()` holds
        signal.raise_signal(signal.SIGTERM)  # the handler runs before this returns
    deadline = time.monotonic() + 30
    while not stop.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    return stop.is_set()


def test_a_stage_stops_on_a_sigterm_that_lands_while_it_checks_its_stop_flag():
    """`systemctl stop` sends SIGTERM to every process of the line. A stage's handler set the line's event itself,
    waiting on the lock the interrupted `stop.is_set()` held: the stage hung for good, until the launcher killed it
    with its results unsent."""
    ctx = mp.get_context("spawn")
    stop, reports = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=run_stage, args=("cam0", _sigterm_inside_is_set, (stop,), {}, reports, logging.INFO,
                                               stop), daemon=True)
    proc.start()
    try:
        assert reports.get(timeout=60) == ("ready", "cam0", "-")
        assert reports.get(timeout=60) == ("done", "cam0", True)
        proc.join(30)
        assert proc.exitcode == 0
    finally:
        proc.kill()
        proc.join(5)


def _ready(stop, on_ready) -> str:
    on_ready("-")
    return "done"


def test_a_stage_still_starting_outlives_a_ctrl_c():
    """Ctrl-C reaches every process of the line's group. A stage still starting (importing, before it ignores
    Ctrl-C) died of it with a traceback, and the line failed instead of stopping (an outside audit)."""
    stages = Stages()
    try:
        stages.start("cam0", _ready, stages.stop)
        os.kill(stages.procs["cam0"].pid, signal.SIGINT)  # at once: its interpreter is still starting
        assert stages.await_ready(["cam0"]) == ["-"]
        stages.procs["cam0"].join(30)
        stages.poll()
        assert stages.results == {"cam0": "done"} and stages.procs["cam0"].exitcode == 0
    finally:
        stages.shutdown()


WAITING = """
import signal
from pipeline.stopping import ctrl_c_flag, stop_on_signals
for make in (stop_on_signals, lambda: ctrl_c_flag()[0]):
    stop = make()
    with stop._cond:  # where `stop.wait()` is as the signal lands: `ssdnet run --view` lingering, `ssdnet subscribe`
        signal.raise_signal(signal.SIGINT)
    assert stop.wait(20) and stop.signal == "SIGINT"
print("stopped")
"""


def test_a_command_stops_on_a_ctrl_c_that_lands_while_it_waits_on_its_stop_flag():
    """`ssdnet subscribe` and the live page left up after `ssdnet run --view` wait on their stop flag; the handler set
    the flag itself, on the lock the interrupted `wait()` held: the command hung for good."""
    done = subprocess.run([sys.executable, "-c", WAITING], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "stopped", done.stderr
