"""How a line, a stage, `ssdnet subscribe` and `ssdnet view` stop on a signal: Ctrl-C (SIGINT) and SIGTERM (`docker
stop`, `systemctl stop`, `kill`) set a `Stop`, and the exit code tells them apart (README "Stopping")."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable


class Stop(threading.Event):
    """Set to stop a line or a stage; `signal` names the signal that set it ("SIGINT": Ctrl-C, "SIGTERM": `docker
    stop`, `systemctl stop`, `kill`), None when none did (a timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.signal: str | None = None


def poke(fd: int) -> None:
    """Write a byte to the non-blocking pipe `fd`, from a signal handler: no lock taken (a pipe full of earlier
    signals: one is enough)."""
    with contextlib.suppress(BlockingIOError):
        os.write(fd, b"\0")


def on_signals(stop: Stop) -> Callable[[], None]:
    """Ctrl-C and SIGTERM set `stop` and raise nothing; returns the function that puts their old handlers back. A
    KeyboardInterrupt lands between any two statements: it once cut a result between a line's statistics and its sinks
    (summary.json counted a frame that scores.jsonl lacked), and Python drops one raised in a finaliser. The handler
    runs on the main thread wherever it is, even inside `stop.wait()` holding the event's lock, where `stop.set()`
    would wait on that lock for ever: it takes no lock, only writes to a pipe whose reader thread sets `stop`."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def handler(signum, frame):  # noqa: ARG001
        stop.signal = signal.Signals(signum).name
        poke(write_fd)

    def relay() -> None:
        while os.read(read_fd, 1):  # b"": the pipe was closed (`restore`)
            stop.set()
        os.close(read_fd)

    threading.Thread(target=relay, name="signals", daemon=True).start()
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
        os.close(write_fd)

    return restore


def ctrl_c_flag() -> tuple[Stop, Callable[[], None]]:
    """A flag that Ctrl-C or SIGTERM sets (the caller's loops check it), and the function that puts the previous
    handlers back. Off the main thread: a flag nobody sets."""
    flag = Stop()
    if threading.current_thread() is not threading.main_thread():
        return flag, lambda: None
    return flag, on_signals(flag)


def stop_on_signals() -> Stop:
    """A flag that Ctrl-C and SIGTERM set, for the rest of the process: no KeyboardInterrupt (and no traceback) ever,
    even from a signal that comes as the process exits."""
    stop = Stop()
    on_signals(stop)
    return stop


def stop_code(stopped_by: str | None) -> int:
    """A command's exit code: 130 after Ctrl-C (an interrupted command), else 0 (SIGTERM is a requested stop, done
    cleanly: what systemd and container supervisors count as one; no signal: it ended or timed out)."""
    return 130 if stopped_by == "SIGINT" else 0


def stopped(command: str, stop: Stop) -> int:
    """The exit code of `ssdnet subscribe` or `ssdnet view` once it ended, as `ssdnet run`'s: 130 after Ctrl-C, 0
    after SIGTERM (a requested stop), ending or timing out; a stop by a signal is said."""
    if stop.signal is not None:
        print(f"ssdnet {command}: stopped by {stop.signal}", file=sys.stderr)
    return stop_code(stop.signal)
