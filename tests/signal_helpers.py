"""Signals a test sends to its own process, once the code under test has taken them."""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable


def signal_once_taken(sig: signal.Signals, when: Callable[[], bool] = lambda: True, timeout: float = 60) -> list[float]:
    """Send `sig` to this process from a thread once the code under test has put its handler in place of the one in
    place now (a signal before that stops pytest itself: KeyboardInterrupt, or SIGTERM's default, death) and `when()`
    holds; returns a list that gets the monotonic time it was sent."""
    previous, sent = signal.getsignal(sig), []

    def send() -> None:
        deadline = time.monotonic() + timeout
        while not (signal.getsignal(sig) is not previous and when()):
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
        sent.append(time.monotonic())
        os.kill(os.getpid(), sig)

    threading.Thread(target=send, daemon=True).start()
    return sent
