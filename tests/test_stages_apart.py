"""Stages on their own machines: every stage of one line config started as its own process (`ssdnet run CONFIG
--stage camera:NAME|node|sinks`), talking over tcp; every event gets through to the sinks."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.eventlog import EventLog
from pipeline.launcher import peer_endpoint
from services import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_peer_endpoint_reads_a_wildcard_bind_as_this_machine():
    assert peer_endpoint("tcp://0.0.0.0:5555", None) == "tcp://127.0.0.1:5555"
    assert peer_endpoint("tcp://0.0.0.0:5555", "tcp://cam0.plant:5555") == "tcp://cam0.plant:5555"
    assert peer_endpoint("ipc:///run/cam0", None) == "ipc:///run/cam0"


def test_a_stage_without_a_fixed_port_is_refused(tmp_path, capsys):
    from tools.cli import main

    cfg = tmp_path / "line.yaml"
    cfg.write_text(yaml.safe_dump({"sources": [{"name": "cam0", "kind": "synthetic"}]}))
    assert main(["run", str(cfg), "--out", str(tmp_path), "--stage", "camera:cam0"]) == 2  # refused, not failed
    assert "fixed port" in capsys.readouterr().err
    assert main(["run", str(cfg), "--out", str(tmp_path), "--stage", "camera:nope"]) == 2
    assert "no source named 'nope'" in capsys.readouterr().err
    cfg.write_text(yaml.safe_dump({"sources": [], "node": {"connect": ["tcp://127.0.0.1:5555"]}}))
    assert main(["run", str(cfg), "--out", str(tmp_path / "out")]) == 2
    assert "no camera of its own" in capsys.readouterr().err


def test_a_camera_stage_needs_no_out_folder_the_others_do(tmp_path, capsys, restore_signals):
    """A camera stage writes nothing, yet `--out` was required of it (and it made that folder, empty). It is not now,
    and one given is still taken; every other stage still requires it (the usage's exit code, 2)."""
    from tools.cli import main

    cfg = tmp_path / "line.yaml"
    cfg.write_text(yaml.safe_dump({"sources": [{"name": "cam0", "kind": "synthetic", "size": 64,
                                                "bind": f"tcp://127.0.0.1:{free_port()}"}]}))
    for out in ([], ["--out", str(tmp_path / "cam")]):  # no node: it waits for one until its timeout
        assert main(["run", str(cfg), "--stage", "camera:cam0", "--timeout", "0.3", *out]) == 0
        assert re.match(r"camera cam0: \d+ frames? sent", capsys.readouterr().out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["line.yaml"]
    for stage in ("all", "node", "sinks"):
        assert main(["run", str(cfg), "--stage", stage]) == 2
        assert "the following arguments are required: --out" in capsys.readouterr().err


@pytest.mark.slow
def test_each_stage_in_its_own_process_over_tcp_gets_every_event_through(tmp_path):
    ports = [free_port() for _ in range(4)]
    cam = {"kind": "synthetic", "size": 64, "frames": 6, "fps": 20, "flow": "credit"}
    line = {
        "sources": [{**cam, "name": "cam0", "bind": f"tcp://127.0.0.1:{ports[0]}", "textures": ["grass"]},
                    {**cam, "name": "cam1", "bind": f"tcp://127.0.0.1:{ports[1]}", "textures": ["brick"], "seed": 1}],
        "node": {"bind": f"tcp://127.0.0.1:{ports[2]}", "replay_bind": f"tcp://127.0.0.1:{ports[3]}",
                 "threshold": -1000.0, "threads": 1,
                 "ssdnet": {"score": {"pixel_weight": 0.0, "perceptual_weight": 0.0}}},
        "sinks": {"overlays": "off", "scores": True},
    }
    cfg = tmp_path / "line.yaml"
    cfg.write_text(yaml.safe_dump(line))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def stage(name: str, out: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name.replace(':', '-')}.log", "w")
        return subprocess.Popen([sys.executable, "-m", "tools.cli", "run", str(cfg), "--out", str(tmp_path / out),
                                 "--stage", name], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    procs = {name: stage(name, out) for name, out in (("node", "node"), ("sinks", "sinks"), ("camera:cam0", "c0"),
                                                       ("camera:cam1", "c1"))}
    try:
        assert procs["sinks"].wait(timeout=240) == 0, (tmp_path / "sinks.log").read_text()[-3000:]
        for name in ("camera:cam0", "camera:cam1"):
            assert procs[name].wait(timeout=30) == 0, (tmp_path / f"{name.replace(':', '-')}.log").read_text()[-2000:]
        procs["node"].send_signal(signal.SIGTERM)  # a node serves until it is told to stop
        assert procs["node"].wait(timeout=30) == 0, (tmp_path / "node.log").read_text()[-2000:]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(5)
    heads = EventLog(tmp_path / "node" / "node-events.db", readonly=True).read_heads()
    assert heads == {"cam0": 6, "cam1": 6}  # threshold -1000: every frame an event (a calibrated score may be < 0)
    events = [json.loads(x) for x in (tmp_path / "sinks" / "events.jsonl").read_text().splitlines()]
    expected = [(c, n) for c in ("cam0", "cam1") for n in range(1, 7)]
    assert sorted((e["source"], e["log_seq"]) for e in events) == expected
    summary = json.loads((tmp_path / "sinks" / "summary.json").read_text())
    assert summary["events"] == 12 and summary["sent"] == 12 and not summary["interrupted"]
    assert len((tmp_path / "sinks" / "scores.jsonl").read_text().splitlines()) == summary["frames"] > 0
    # each stage ends on a line in words, not a dict of its counters
    assert re.search(r"^camera cam0: 6 frames sent(?: \(.*\))?; run [0-9a-f]{16}$", (tmp_path / "camera-cam0.log")
                     .read_text(), re.M)
    assert re.search(r"^node stopped: 12 frames received, 12 scored, 12 events from 2 cameras",
                     (tmp_path / "node.log").read_text(), re.M)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["sigterm", "ctrl_c"])
@pytest.mark.parametrize("stage", ["camera:cam0", "node"])
def test_a_camera_or_node_stage_exits_130_on_ctrl_c_and_0_on_sigterm(tmp_path, monkeypatch, capsys, restore_signals,
                                                                     stage, sig, code):
    """A camera or node stage exited 0 on Ctrl-C, where `ssdnet run` and the sinks stage exit 130 (README "Stopping"):
    every stage exits 130 on Ctrl-C and 0 on SIGTERM (a requested stop), and says which signal stopped it."""
    import functools
    import threading

    from pipeline import launcher
    from test_pipeline_node import FastDetector
    from tools.cli import main

    monkeypatch.setattr(launcher, "run_node_stage", functools.partial(launcher.run_node_stage,
                                                                      detector_factory=FastDetector))
    ports = [free_port() for _ in range(3)]
    cfg = tmp_path / "line.yaml"
    cfg.write_text(yaml.safe_dump({
        "sources": [{"name": "cam0", "kind": "synthetic", "size": 64, "bind": f"tcp://127.0.0.1:{ports[0]}"}],
        "node": {"bind": f"tcp://127.0.0.1:{ports[1]}", "replay_bind": f"tcp://127.0.0.1:{ports[2]}"}}))
    timer = threading.Timer(1.0, os.kill, (os.getpid(), sig))  # no peer: the stage waits until stopped
    timer.start()
    try:
        assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--stage", stage]) == code
    finally:
        timer.cancel()
    assert capsys.readouterr().out.rstrip().endswith(f"; stopped by {sig.name}")


def _slow_to_stop(stop, on_ready, done: str) -> str:
    """A stage that, once stopped, ends only when the file `done` exists (a node still saving its cameras' models)."""
    import time
    from pathlib import Path

    on_ready("inproc://slow")
    while not stop.is_set():
        time.sleep(0.05)
    deadline = time.monotonic() + 60
    while not Path(done).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return "ended"


def test_a_stage_given_more_time_to_stop_ends_by_itself_the_others_are_killed(monkeypatch, tmp_path):
    """`ssdnet run`'s Ctrl-C gives the node NODE_STOP_S (its checkpoints, its event log), the rest JOIN_TIMEOUT_S: the
    camera, still busy past its time, is killed; the node, done once the camera is gone, ends by itself."""
    import threading

    from pipeline import stages
    from pipeline.launcher import NODE_STOP_S
    from test_pipeline_node import wait_until

    monkeypatch.setattr(stages, "JOIN_TIMEOUT_S", 1.0)  # the camera's default
    line = stages.Stages()
    never, node_done = tmp_path / "never", tmp_path / "node-done"
    line.start("camera", _slow_to_stop, line.stop, done=str(never))  # its deadline comes first
    line.start("node", _slow_to_stop, line.stop, done=str(node_done))
    line.await_ready(["camera", "node"])

    def finish_node() -> None:  # the node's stop ends only after the camera's deadline has passed
        wait_until(lambda: line.procs["camera"].exitcode is not None, timeout=NODE_STOP_S)
        node_done.touch()

    threading.Thread(target=finish_node, daemon=True).start()
    line.shutdown(grace={"node": NODE_STOP_S})
    assert line.procs["node"].exitcode == 0 and line.results["node"] == "ended"
    assert line.procs["camera"].exitcode not in (0, None)  # killed
