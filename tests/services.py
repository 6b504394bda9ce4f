"""External programs some tests drive for real: Debian's mosquitto (MQTT broker) and chromium + chromedriver.

`.ci/run` installs them (apt) before the tests, so in CI (CI=true) a missing one fails the test; on a
machine where they cannot be installed the test is skipped, saying what to install.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def require(*programs: str) -> dict[str, str]:
    """Paths of `programs`; skip (fail in CI) when one is missing."""
    found = {p: shutil.which(p) or shutil.which(p, path="/usr/sbin:/usr/bin") for p in programs}
    missing = [p for p, path in found.items() if path is None]
    if missing:
        why = f"{', '.join(missing)} not installed (apt-get install -y chromium chromium-driver mosquitto)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: .ci/run installs it before the tests")
        pytest.skip(why)
    return found  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_released(port: int) -> bool:
    """Whether a listener on 127.0.0.1:`port` has closed (ZeroMQ closes a socket's listener on its own thread, after
    `close()` returns): the port binds again, with SO_REUSEADDR as ZeroMQ binds."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Mosquitto:
    """A mosquitto broker on 127.0.0.1:`port` with persistence (sessions and queued QoS 1 messages survive
    a restart), optionally requiring a username and password."""

    def __init__(self, tmp_path: Path, users: dict[str, str] | None = None):
        paths = require("mosquitto", *(["mosquitto_passwd"] if users else []))
        self.exe, self.port, self.dir = paths["mosquitto"], free_port(), tmp_path / f"mosquitto-{id(self)}"
        self.dir.mkdir()
        user = pwd.getpwuid(os.getuid()).pw_name  # as root mosquitto would drop to user mosquitto: keep the tmp dir's
        lines = [f"listener {self.port} 127.0.0.1", f"user {user}", "persistence true",
                 f"persistence_location {self.dir}/", "log_dest stderr", "log_type error", "log_type warning"]
        if users:
            pwfile = self.dir / "passwd"
            for i, (user, password) in enumerate(users.items()):
                subprocess.run([paths["mosquitto_passwd"], "-b", *(["-c"] if i == 0 else []), str(pwfile), user,
                                password], check=True, capture_output=True, timeout=30)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "log.txt", "ab"))
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a clean stop writes the persistence file
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
