"""`ssdnet run` (stages as spawned processes), its config, the sinks and `ssdnet subscribe`."""
from __future__ import annotations

import functools
import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import psutil
import pytest
import zmq

from edge.config import ConfigError, parse_config
from pipeline import http_bounds, launcher
from pipeline import protocol as P
from pipeline.config import LineConfig, load_line_config
from pipeline.launcher import _sinks, run_line
from pipeline.out_folder import KEEP_RUNS, PARTIAL, claimed, set_aside
from pipeline.sinks import ConsoleSink, JsonLines, JsonlSink, MetricsSink, OverlaySink, ScoresSink
from pipeline.stages import LineError
from pipeline.stats import StreamStats
from pipeline.stopping import ctrl_c_flag
from pipeline.subscribe import subscribe
from pipeline.transport import Publisher, make_socket
from signal_helpers import signal_once_taken
from test_pipeline_node import FastDetector, wait_until  # a picklable stand-in for the SSDnet detector
from tools.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]


def line_config(frames=8, **sinks) -> LineConfig:
    cam = {"kind": "synthetic", "size": 64, "fps": 50, "frames": frames}
    return parse_config(LineConfig, {
        "sources": [{**cam, "name": "cam0"}, {**cam, "name": "cam1", "textures": ["grass"], "seed": 1}],
        "node": {"threshold": 3.0, "queue_depth": 16},
        "sinks": sinks,
    })


@pytest.mark.slow
def test_run_line_end_to_end(tmp_path):
    summary = run_line(line_config(prometheus={"port": 0}), tmp_path, detector_factory=FastDetector)
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert (summary["frames"], summary["sent"], summary["dropped"]) == (16, 16, 0)
    assert summary["drops"] == {"conflated": 0, "lost": 0, "rejected": 0, "failed": 0, "bad_messages": 0,
                                  "unaccounted": 0}
    assert summary["scorer"] is None  # a custom detector: no scorer backend of the node's own
    assert summary["fps"] > 0 and not summary["interrupted"] and summary["sink_failures"] == 0
    for stage in ("fit", "score", "end_to_end", "transport", "queue"):
        assert set(summary["latency_ms"][stage]) == {"p50", "p95", "p99"}
    assert 0.5 < summary["stream"]["pixel_auroc"] <= 1 and summary["stream"]["frames"] == 16
    halves = summary["stream"]["first_half"], summary["stream"]["last_half"]  # each camera's first and last frames
    assert sum(h["frames"] for h in halves) == 16 and all(0 <= h["pixel_auroc"] <= 1 for h in halves)
    cameras = summary["stream"]["cameras"]  # the same per camera: its own 8 frames, 4 in each half
    assert set(cameras) == {"cam0", "cam1"} and all(c["frames"] == 8 for c in cameras.values())
    assert all(c[h]["frames"] == 4 for c in cameras.values() for h in ("first_half", "last_half"))
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert len(events) == summary["events"] > 0
    assert all({"source", "seq", "score", "regions", "t_capture"} <= set(e) for e in events)
    assert len(list((tmp_path / "overlays").glob("cam*_*.png"))) == summary["events"]
    assert not mp.active_children()


def test_a_line_run_again_in_its_folder_starts_afresh_and_keeps_the_last_run_apart(tmp_path):
    """Run twice into one folder: the second run's event log and events.jsonl start at log_seq 1 and agree; the first
    run's results are in OUT/previous/, whole."""
    first = run_line(line_config(), tmp_path, detector_factory=FastDetector)
    logged = (tmp_path / "events.jsonl").read_text()
    second = run_line(line_config(), tmp_path, detector_factory=FastDetector)
    assert first["events"] == second["events"] > 0
    assert (tmp_path / "previous" / "events.jsonl").read_text() == logged
    assert {p.name for p in (tmp_path / "previous").iterdir()} >= {"events.jsonl", "summary.json", "node-events.db"}
    seqs = {}
    for line in (tmp_path / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        seqs.setdefault(event["source"], []).append(event["log_seq"])
    assert all(s == list(range(1, len(s) + 1)) for s in seqs.values())  # a fresh log: each camera's from 1


def test_a_folder_keeps_its_last_runs_each_one_further_back_and_removes_only_the_oldest(tmp_path):
    """A line restarted into one folder kept one run back and removed the one before it, event log and all (a soak's
    third restart lost its first run's events); now the last KEEP_RUNS runs are kept."""
    for run in range(KEEP_RUNS + 2):
        (tmp_path / "events.jsonl").write_text(f"run {run}\n")
        (tmp_path / "node-events.db").write_text(f"log {run}\n")
        assert set_aside(tmp_path) == tmp_path / "previous"
        assert not (tmp_path / "events.jsonl").exists()
    newest = KEEP_RUNS + 1
    kept = ["previous", *(f"previous-{n}" for n in range(2, KEEP_RUNS + 1))]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    for back, name in enumerate(kept):
        assert (tmp_path / name / "events.jsonl").read_text() == f"run {newest - back}\n"
        assert (tmp_path / name / "node-events.db").read_text() == f"log {newest - back}\n"
    assert set_aside(tmp_path) is None  # nothing to set aside: nothing moves
    assert (tmp_path / "previous" / "events.jsonl").read_text() == f"run {newest}\n"
    shutil.rmtree(tmp_path / "previous-3")  # a gap (a folder removed by hand): runs shift into it, none is lost
    (tmp_path / "events.jsonl").write_text("run gap\n")
    set_aside(tmp_path)
    assert [(tmp_path / n / "events.jsonl").read_text() for n in kept] == [
        "run gap\n", *(f"run {newest - back}\n" for back in (0, 1, 3, 4))]


def test_a_run_cut_short_while_setting_the_last_one_aside_does_not_split_it(tmp_path):
    """A crash between two of set_aside's moves left part of a run in previous/ and part in OUT; the next run moved
    the rest to a previous/ of its own, the first part to previous-2/: one run's events and event log apart."""
    (tmp_path / "previous").mkdir()
    (tmp_path / "previous" / "events.jsonl").write_text("run 0\n")
    for name in ("events.jsonl", "scores.jsonl", "summary.json", "node-events.db"):
        (tmp_path / name).write_text(f"run 1 {name}\n")
    rename, moved = Path.rename, []

    def crash_after_two(self, target):
        if len(moved) == 2:
            raise KeyboardInterrupt  # the run is killed mid-move
        moved.append(self)
        return rename(self, target)

    with mock.patch.object(Path, "rename", crash_after_two), pytest.raises(KeyboardInterrupt):
        set_aside(tmp_path)
    assert set_aside(tmp_path) == tmp_path / "previous"
    assert sorted(p.name for p in (tmp_path / "previous").iterdir()) == [
        "events.jsonl", "node-events.db", "scores.jsonl", "summary.json"]
    assert all(p.read_text() == f"run 1 {p.name}\n" for p in (tmp_path / "previous").iterdir())
    assert sorted(p.name for p in (tmp_path / "previous-2").iterdir()) == ["events.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["previous", "previous-2"]


def test_a_run_cut_short_while_set_aside_then_a_stage_writing_out_stay_two_runs(tmp_path):
    """A partial run left by a cut, then a stage of its own (`--stage sinks`, which sets nothing aside) writing OUT:
    its events.jsonl replaced the partial run's on the next move (a rename over a file); now each is a run of its
    own."""
    (tmp_path / PARTIAL).mkdir()
    (tmp_path / PARTIAL / "events.jsonl").write_text("run 1\n")  # what the cut left
    (tmp_path / "events.jsonl").write_text("run 2\n")  # the stage's
    (tmp_path / "summary.json").write_text("{}\n")
    assert set_aside(tmp_path) == tmp_path / "previous"
    assert (tmp_path / "previous" / "events.jsonl").read_text() == "run 2\n"
    assert (tmp_path / "previous" / "summary.json").exists()
    assert (tmp_path / "previous-2" / "events.jsonl").read_text() == "run 1\n"
    assert not (tmp_path / PARTIAL).exists()


def test_a_folder_whose_oldest_run_cannot_be_removed_says_so_before_anything_moves(tmp_path):
    for n in range(2, KEEP_RUNS + 1):
        (tmp_path / f"previous-{n}").mkdir()
    (tmp_path / "previous").mkdir()
    (tmp_path / f"previous-{KEEP_RUNS}" / "events.jsonl").write_text("oldest\n")
    (tmp_path / "events.jsonl").write_text("last\n")
    with mock.patch("shutil.rmtree", side_effect=PermissionError("Permission denied")):
        with pytest.raises(LineError, match=f"cannot remove .*previous-{KEEP_RUNS}.*give another --out"):
            set_aside(tmp_path)
    assert (tmp_path / "events.jsonl").read_text() == "last\n"  # nothing moved
    assert (tmp_path / f"previous-{KEEP_RUNS}" / "events.jsonl").read_text() == "oldest\n"


def test_a_sinks_stage_restarted_before_any_event_keeps_the_scores_it_wrote(tmp_path):
    """`--stage sinks` resumes from its files' cursors; before a first event there are none, and its scores.jsonl
    (27 lines in an audit) was written afresh on a restart. A whole line (no cursors) starts its files afresh."""
    cfg = line_config(scores=True, overlays=False, console=False)
    lines = "".join(json.dumps({"source": "cam0", "seq": i}) + "\n" for i in range(3))
    (tmp_path / "scores.jsonl").write_text(lines)
    for sink in _sinks(cfg, tmp_path, resume={}):  # a sinks stage that has seen no event yet
        sink.close()
    assert (tmp_path / "scores.jsonl").read_text() == lines
    for sink in _sinks(cfg, tmp_path):
        sink.close()
    assert (tmp_path / "scores.jsonl").read_text() == ""


def test_two_runs_cannot_write_one_folder_at_once(tmp_path, capsys):
    config = tmp_path / "line.yaml"
    config.write_text("sources:\n  - {name: cam0, kind: synthetic, size: 64, frames: 2}\n")
    with claimed(tmp_path / "out", ("node", "sinks")):  # a line running there
        assert cli_main(["run", str(config), "--out", str(tmp_path / "out")]) == 2  # the user's mistake: usage's code
        err = capsys.readouterr().err
        assert err.startswith("ssdnet run: error: ") and err.count("\n") == 1  # one line, nothing started
        assert "is being written by another ssdnet run (its node, pid" in err and "give another --out" in err
        with pytest.raises(LineError, match="its sinks"):  # the collector's files too
            with claimed(tmp_path / "out", ("sinks",)):
                pass
    with claimed(tmp_path / "out", ("node", "sinks")):  # free once that run has ended
        pass


def test_a_failing_sink_is_counted_and_the_line_goes_on(tmp_path, monkeypatch, caplog):
    """A full disk under events.jsonl must not end the line: the other sinks still get every event, the run
    completes, and summary.json says how many messages a sink failed on."""
    def full_disk(self, msg, delivered, log_seq=None):
        if msg.kind == "event":
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(JsonlSink, "handle", full_disk)
    summary = run_line(line_config(), tmp_path, detector_factory=FastDetector)
    assert summary["frames"] == 16 and not summary["interrupted"] and summary["events"] > 0
    assert summary["sink_failures"] == summary["events"]  # every event, once each
    assert len(list((tmp_path / "overlays").glob("cam*_*.png"))) == summary["events"]  # the next sink got them
    assert "JsonlSink failed on event cam" in caplog.text and "No space left on device" in caplog.text
    assert (tmp_path / "events.jsonl").read_text() == ""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_run_line_stops_on_ctrl_c(tmp_path, sig):
    """Ctrl-C, or SIGTERM as `docker stop`, `systemctl stop` and `timeout` send it (it once killed the launcher
    alone: the camera and node processes ran on, holding their ports, and no summary was written)."""
    sent = signal_once_taken(sig)
    summary = run_line(line_config(frames=None, overlays=False), tmp_path, detector_factory=FastDetector)
    assert summary["interrupted"] and time.monotonic() - sent[0] < 15
    assert not mp.active_children()
    assert json.loads((tmp_path / "summary.json").read_text())["interrupted"]


@pytest.mark.slow
def test_a_second_ctrl_c_while_the_line_shuts_down_still_leaves_its_summary(tmp_path, monkeypatch):
    """Shutting a line down takes seconds (the node's grace, the sinks' flush), and run_line gave Ctrl-C back to
    Python's handler first: a second Ctrl-C meanwhile raised KeyboardInterrupt out of the shutdown, with the sinks
    left unclosed and no summary.json. It only sets the flag again until the summary is written."""
    shutdown = launcher.Stages.shutdown

    def impatient(self, *args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # the second Ctrl-C, as the stages stop
        return shutdown(self, *args, **kwargs)

    monkeypatch.setattr(launcher.Stages, "shutdown", impatient)
    previous, scores = signal.getsignal(signal.SIGINT), tmp_path / "scores.jsonl"

    def ctrl_c_once_scoring() -> None:
        wait_until(lambda: scores.exists() and scores.stat().st_size > 0, timeout=60)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c_once_scoring, daemon=True).start()
    summary = run_line(line_config(frames=None, scores=True), tmp_path, detector_factory=FastDetector)
    assert summary["interrupted"] and summary["stopped_by"] == "SIGINT" and not mp.active_children()
    assert json.loads((tmp_path / "summary.json").read_text())["frames"] == summary["frames"] > 0
    assert len(scores.read_text().splitlines()) == summary["frames"]
    assert signal.getsignal(signal.SIGINT) is previous


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["sigterm", "ctrl_c"])
def test_ssdnet_run_stopped_by_sigterm_flushes_its_results_and_exits_0_ctrl_c_130(tmp_path, monkeypatch, capsys,
                                                                                  restore_signals, sig, code):
    """`docker stop` (SIGTERM) exited 130, as Ctrl-C does, so a supervisor took a requested stop for a failure: it is a
    clean stop now, exit 0 (as the node and camera stages exit), with its scores flushed and summary.json saying
    `stopped_by`; Ctrl-C stays 130."""
    monkeypatch.setattr(launcher, "run_line", functools.partial(run_line, detector_factory=FastDetector))
    config = tmp_path / "line.yaml"
    config.write_text("sources: [{name: cam0, kind: synthetic, size: 64, fps: 50}]\nsinks: {scores: true}\n")
    scores = tmp_path / "out" / "scores.jsonl"

    def stop_once_scoring() -> None:
        wait_until(lambda: scores.exists() and scores.stat().st_size > 0, timeout=60)
        os.kill(os.getpid(), sig)

    threading.Thread(target=stop_once_scoring, daemon=True).start()
    assert cli_main(["run", str(config), "--out", str(tmp_path / "out")]) == code
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["interrupted"] and summary["stopped_by"] == sig.name and not mp.active_children()
    assert len(scores.read_text().splitlines()) == summary["frames"] > 0
    assert f"interrupted{' by SIGTERM' if sig == signal.SIGTERM else ''}: partial" in capsys.readouterr().out


@pytest.mark.slow
def test_the_progress_bar_of_a_folder_and_a_synthetic_camera_shows_their_total(tmp_path, monkeypatch):
    """It showed "N/?" unless every camera had `frames`: a folder's images are known before it streams."""
    bars, progress_bar = [], launcher._progress

    def kept(progress: bool) -> launcher.Progress:
        bars.append(progress_bar(progress))
        return bars[-1]

    monkeypatch.setattr(launcher, "_progress", kept)
    (tmp_path / "frames").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "frames" / f"{i}.png"), np.random.default_rng(i).integers(0, 255, (48, 48, 3),
                                                                                             np.uint8))
    cfg = parse_config(LineConfig, {"sources": [{"name": "shelf", "kind": "folder", "path": tmp_path / "frames",
                                                 "flow": "credit"},  # every frame scored, however loaded the machine
                                                {"name": "cam0", "kind": "synthetic", "size": 64, "frames": 2,
                                                 "flow": "credit"}],
                                    "sinks": {"overlays": "off"}})
    summary = run_line(cfg, tmp_path / "out", detector_factory=FastDetector, progress=True)
    (task,) = bars[0].tasks
    assert task.total == 5 and task.completed == summary["frames"] == 5


@pytest.mark.slow
def test_the_progress_bar_of_a_folder_with_files_it_skips_reaches_its_total(tmp_path, monkeypatch):
    """A folder's bar (`expected_frames`: its files) ended short by the files the camera skipped (unreadable, too
    small: never sent): they advance it now, a camera's count at most its total (`frames` 2 of 4 files, one
    unreadable), and the bar counts them in words."""
    bars, progress_bar = [], launcher._progress

    def kept(progress: bool) -> launcher.Progress:
        bars.append(progress_bar(progress))
        return bars[-1]

    monkeypatch.setattr(launcher, "_progress", kept)
    rng = np.random.default_rng(0)
    for folder, names in (("shelf", ("0.png", "2.png", "3.png")), ("bench", ("1.png", "2.png", "3.png"))):
        (tmp_path / folder).mkdir()
        for name in names:
            cv2.imwrite(str(tmp_path / folder / name), rng.integers(0, 255, (48, 48, 3), np.uint8))
    (tmp_path / "shelf" / "1.png").write_bytes(b"not an image")
    cv2.imwrite(str(tmp_path / "shelf" / "4.png"), np.zeros((16, 16, 3), np.uint8))  # below the minimum size
    (tmp_path / "bench" / "0.png").write_bytes(b"")
    folder = {"kind": "folder", "flow": "credit"}
    cfg = parse_config(LineConfig, {"sources": [{**folder, "name": "shelf", "path": tmp_path / "shelf"},
                                                {**folder, "name": "bench", "path": tmp_path / "bench", "frames": 2}],
                                    "sinks": {"overlays": "off"}})
    summary = run_line(cfg, tmp_path / "out", detector_factory=FastDetector, progress=True)
    assert summary["frames"] == 5 and summary["unreadable"] == 2 and summary["too_small"] == 1
    (task,) = bars[0].tasks
    assert task.total == 5 + 2 and task.completed == task.total
    assert "2 unreadable" in task.fields["info"] and "1 too small" in task.fields["info"]


@pytest.mark.slow
def test_a_line_whose_launcher_is_killed_stops_its_stages(tmp_path):
    """SIGKILL (the OOM killer) leaves no launcher to stop the stages: each sees its parent gone and stops, instead of
    scoring on under PID 1 holding its ports and the event log."""
    script = ("import sys; sys.path[:0] = ['tests', '.']\n"
              "from test_pipeline_launcher import FastDetector, line_config\n"
              "from pipeline.launcher import run_line\n"
              f"run_line(line_config(frames=None, overlays=False, scores=True), {str(tmp_path)!r}, "
              "detector_factory=FastDetector)\n")
    launcher, stages = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT), []
    try:
        wait_until(lambda: (tmp_path / "scores.jsonl").exists() and (tmp_path / "scores.jsonl").stat().st_size > 0,
                   timeout=60)
        stages = psutil.Process(launcher.pid).children()
        assert len(stages) >= 3  # two cameras and the node (and multiprocessing's resource tracker)
        launcher.kill()
        launcher.wait(5)
        _, alive = psutil.wait_procs(stages, timeout=15)
        assert not alive, [p.cmdline()[-1] for p in alive]
    finally:  # a failed run leaves none behind either (and pytest's own children, its resource tracker, alone)
        if launcher.poll() is None:
            stages = psutil.Process(launcher.pid).children()
            launcher.kill()
        for p in stages:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


class DyingDetector(FastDetector):
    """A node that dies on its 4th frame (a driver's segfault, the OOM killer)."""

    def process(self, image):
        if self.calls == 3:
            os._exit(9)
        return super().process(image)


@pytest.mark.slow
def test_a_line_whose_node_died_still_writes_what_it_saw(tmp_path):
    with pytest.raises(LineError, match="node died"):
        run_line(line_config(frames=None, overlays=False), tmp_path, detector_factory=DyingDetector)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failed"].startswith("node died") and summary["frames"] >= 1 and not mp.active_children()


def test_ctrl_c_sets_the_flag_the_launchers_loops_check_and_raises_nothing():
    """Ctrl-C raised KeyboardInterrupt wherever the launcher's main thread was: between the statistics and the sinks it
    cut a result in two (CI: summary.json counted 2 frames, scores.jsonl held 1), and in a finaliser Python dropped it
    (the line ran on). It only sets the flag now, which the loops check between messages."""
    previous = signal.getsignal(signal.SIGINT)
    flag, restore = ctrl_c_flag()
    try:
        signal.raise_signal(signal.SIGINT)  # the handler runs before this returns: a KeyboardInterrupt would fail here
        assert flag.wait(10) and flag.signal == "SIGINT"
    finally:
        restore()
    assert signal.getsignal(signal.SIGINT) is previous


@pytest.mark.slow
@pytest.mark.parametrize("planned", [False, True])
def test_run_line_timeout(tmp_path, capfd, caplog, planned):
    """An endless line stops at the timeout with a summary; 20 s leaves the spawned node (which loads torch) time to
    start and score on a loaded 2-core machine. No end of stream reaches the sinks: each camera's sent count is the
    one its stage logs as it stops (once the last heartbeat's or result's, a frame or more short). A planned stop (a
    soak's --minutes) is no timeout: it was warned of as one and its summary said `timed_out`."""
    caplog.set_level(logging.INFO)  # the stages log at the launcher's level
    summary = run_line(line_config(frames=None, overlays=False), tmp_path, timeout_s=20.0,
                       detector_factory=FastDetector, planned_stop=planned)
    assert (summary["timed_out"], summary.get("planned_stop", False)) == (not planned, planned)
    assert summary["frames"] > 0
    stops = [(r.levelname, r.getMessage().split(" after")[0]) for r in caplog.records if r.name == "pipeline.launcher"]
    assert (("INFO", "planned stop") if planned else ("WARNING", "timeout")) in stops
    logged = dict(re.findall(r"\[(cam\d)\] .*end of stream \(.*\); frames sent: (\d+)", capfd.readouterr().err))
    assert {s: summary["sources"][s]["sent"] for s in logged} == {s: int(n) for s, n in logged.items()}
    assert set(logged) == {"cam0", "cam1"} and summary["sent"] >= summary["frames"]
    assert not mp.active_children()


def test_cli_reports_config_errors(tmp_path, capsys):
    path = tmp_path / "line.yaml"
    path.write_text("sources:\n  - {name: cam0, kind: synthetic, fps: -1}\nnode: {input: pull, colour: red}\n")
    assert cli_main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "sources.0.synthetic.fps" in err and "node.colour" in err
    with pytest.raises(SystemExit):
        cli_main(["run", str(path), "--out", str(tmp_path), "--frames", "0"])


@pytest.mark.parametrize("change, fragment", [
    ({"node": {"input": "pull"}}, "pub pairs with sub"),
    ({"sources": [{"kind": "synthetic", "name": "a"}, {"kind": "synthetic", "name": "a"}]}, "unique"),
    ({"sources": [{"kind": "synthetic", "name": "a", "bind": "http://x"}]}, "ZeroMQ endpoint"),
    ({"node": {"attach_image": "never"}}, "attach_image"),
    ({"node": {"name": "a"}, "sources": [{"kind": "synthetic", "name": "a"}]}, "also a source"),
    ({"sources": [{"kind": "webcam", "name": "a"}]}, "synthetic"),
    ({"sources": [{"kind": "folder", "name": "a", "path": "/nonexistent"}]}, "path"),
])
def test_config_errors_are_readable(change, fragment):
    data = {"sources": [{"kind": "synthetic", "name": "a"}], **change}
    with pytest.raises(ConfigError, match=fragment):
        parse_config(LineConfig, data, "line.yaml")


def test_demo_config_is_valid():
    cfg = load_line_config(ROOT / "configs" / "demo.yaml")
    assert all(s.size == 256 for s in cfg.sources)
    assert {t for s in cfg.sources for t in s.textures} == {"brick", "grass", "gravel"}
    assert all(len(s.textures) == 1 for s in cfg.sources)  # one model per texture: warm starts never cross textures


def test_node_budget_keys_map_onto_the_fit_config_with_a_deprecation_line(caplog):
    """node.budget_ms / node.frame_budget_ms (older line configs) become node.ssdnet.fit.budget_ms /
    frame_budget_ms, next to warm_steps, where the Detector's scheduler reads them."""
    with caplog.at_level("WARNING", logger="pipeline.config"):
        cfg = parse_config(LineConfig, {"sources": [{"kind": "synthetic", "name": "a"}],
                                        "node": {"budget_ms": 150, "frame_budget_ms": 400,
                                                 "ssdnet": {"fit": {"warm_steps": 5}}}})
    fit = cfg.node.ssdnet.fit
    assert (fit.budget_ms, fit.frame_budget_ms, fit.warm_steps) == (150, 400, 5)
    assert sum("deprecated" in r.message and "node.ssdnet.fit." in r.message for r in caplog.records) == 2
    new = parse_config(LineConfig, {"sources": [{"kind": "synthetic", "name": "a"}],
                                    "node": {"ssdnet": {"fit": {"frame_budget_ms": 400}}}})
    assert new.node.ssdnet.fit.frame_budget_ms == 400 and new.node.ssdnet.fit.budget_ms is None
    with pytest.raises(ConfigError, match="disagree"):
        parse_config(LineConfig, {"sources": [{"kind": "synthetic", "name": "a"}],
                                  "node": {"budget_ms": 150, "ssdnet": {"fit": {"budget_ms": 90}}}})
    with pytest.raises(ConfigError, match="budget_ms"):
        parse_config(LineConfig, {"sources": [{"kind": "synthetic", "name": "a"}], "node": {"budget_ms": -1}})


def anomaly(seq=0, label="anomalous") -> P.Message:
    image = np.full((32, 32, 3), 100, np.uint8)
    amap = np.zeros((32, 32), np.float32)
    amap[4:10, 4:10] = 8.0
    q, desc = P.quantize_map(amap, "float16")
    stamps = {"capture": 1.0, "received": 1.01, "fitted": 1.05, "scored": 1.06, "published": 1.07}
    header = P.AnomalyHeader(v=1, kind="anomaly", source="cam0", seq=seq, t_capture=1.0, stamps=stamps,
                             payloads=(desc, P.describe("image", image)), score=8.0, threshold=3.0, label=label,
                             model_version=1, fit_steps=5, fit_ms=40.0, score_ms=10.0,
                             regions=(P.Region(bbox=(4, 4, 6, 6), area=36, peak=8.0),))
    return P.Message(header, {"map": q, "image": image})


def event(seq=0, source="cam0") -> P.Message:
    return P.Message(P.EventHeader(v=1, kind="event", source=source, seq=seq, t_capture=1.0, score=8.0, threshold=3.0,
                                   model_version=1))


def test_jsonl_and_overlay_sinks(tmp_path):
    jsonl, overlays = JsonlSink(tmp_path / "events.jsonl"), OverlaySink(tmp_path / "overlays")
    for msg in (anomaly(0), event(0), anomaly(1, "normal")):
        jsonl.handle(msg, 2.0)
        overlays.handle(msg, 2.0)
    jsonl.close()
    assert json.loads((tmp_path / "events.jsonl").read_text())["seq"] == 0
    assert [p.name for p in (tmp_path / "overlays").iterdir()] == ["cam0_000000.png"]


def test_overlays_stay_within_their_disk_budget_oldest_first(tmp_path):
    """A line that runs for months must not fill the disk with overlays: past `max_mb` the oldest PNGs go, an
    earlier run's first; one written again counts once, as the newest; without a budget none goes."""
    probe = OverlaySink(tmp_path / "probe")
    probe.handle(anomaly(0), 2.0)
    size = (tmp_path / "probe" / "cam0_000000.png").stat().st_size
    folder = tmp_path / "overlays"
    folder.mkdir()
    (folder / "earlier_000000.png").write_bytes(b"x" * size)  # a previous run's
    sink = OverlaySink(folder, max_mb=(3.5 * size) / 2**20)
    for seq in (0, 1, 2, 1, 3, 4):
        sink.handle(anomaly(seq), 2.0)
    kept = sorted(p.name for p in folder.iterdir())
    assert kept == ["cam0_000001.png", "cam0_000003.png", "cam0_000004.png"]  # 1 was written again after 2
    assert sink.written == 6 and sink.deleted == 3 and sum(p.stat().st_size for p in folder.iterdir()) <= 3.5 * size
    unbounded = OverlaySink(folder)
    for seq in range(5, 9):
        unbounded.handle(anomaly(seq), 2.0)
    assert len(list(folder.iterdir())) == 7 and unbounded.deleted == 0


def test_jsonl_files_turn_over_past_their_budget_and_a_restart_resumes_from_every_kept_file(tmp_path):
    """A line that runs for months must not fill the disk with events.jsonl / scores.jsonl: past `max_mb` the file
    becomes FILE.1 (FILE.1 FILE.2, ...), `backups` are kept; the resume cursors read them all (a camera whose last
    event is in a backup resumes after it, not from its first event; one whose every record was turned out, too); a
    fresh start empties them."""
    path = tmp_path / "events.jsonl"
    line = len(json.dumps({**P.event_record(event(0).header), "log_seq": 1})) + 1
    sink = JsonlSink(path, max_mb=2.5 * line / 2**20, backups=2)
    for n in range(1, 11):
        sink.handle(event(n, "cam1" if n == 7 else "cam0"), 2.0, log_seq=n)  # cam1's one event, a while ago
    sink.close()
    files = JsonLines.files(path)
    assert [f.name for f in files] == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    assert all(f.stat().st_size <= 2.5 * line for f in files)
    kept = [json.loads(x)["log_seq"] for f in reversed(files) for x in f.read_text().splitlines()]
    assert kept == list(range(kept[0], 11)) and len(kept) >= 5  # the newest, in order; the oldest went
    assert JsonlSink.cursors(path) == {"cam0": 10, "cam1": 7}  # cam1's record is in a backup
    for start in (11, 16):  # cam0 floods on, in this sink and in a restarted one: cam1's record is turned out
        sink = JsonlSink(path, max_mb=2.5 * line / 2**20, backups=2)
        for n in range(start, start + 5):
            sink.handle(event(n, "cam0"), 2.0, log_seq=n)
        sink.close()
    assert all(json.loads(x)["source"] == "cam0" for f in JsonLines.files(path) for x in f.read_text().splitlines())
    assert JsonlSink.cursors(path) == {"cam0": 20, "cam1": 7}  # kept in events.jsonl.cursors
    scores = ScoresSink(tmp_path / "scores.jsonl", max_mb=2.5 * line / 2**20, backups=1)
    for seq in range(10):
        scores.handle(anomaly(seq), 2.0)
    scores.close()
    assert len(JsonLines.files(tmp_path / "scores.jsonl")) == 2
    JsonlSink(path, append=False).close()  # not resuming: this run's file alone
    assert JsonLines.files(path) == [path] and path.read_text() == "" and JsonlSink.cursors(path) == {}
    assert not JsonlSink.cursors_file(path).exists()
    JsonlSink.cursors_file(path).write_text("{torn")  # not a sink's: ignored, the log's events come again
    assert JsonlSink.cursors(path) == {}
    for bad in ({"max_mb": 1, "backups": 0}, {"max_mb": -1}):
        with pytest.raises(ValueError, match="max_mb > 0"):
            JsonLines(path, **bad)


def test_metrics_sink_serves_prometheus_text():
    sink = MetricsSink(port=0)
    try:
        sink.handle(anomaly(0), 1.2)
        sink.handle(anomaly(1), 1.3)
        sink.handle(P.Message(P.HeartbeatHeader(v=1, kind="heartbeat", source="node", seq=-1, t_capture=1.0,
                                                role="node",
                                                state="idle", last_frame_age=0.5, counters={"conflated": 4})), 1.3)
        text = urllib.request.urlopen(f"http://127.0.0.1:{sink.port}/metrics", timeout=5).read().decode()
    finally:
        sink.close()
    assert 'ssdnet_stage_latency_seconds_count{stage="end_to_end"} 2.0' in text
    assert 'ssdnet_results_total{label="anomalous",source="cam0"} 2.0' in text
    assert 'ssdnet_stage_count{counter="conflated",role="node",source="node"} 4.0' in text
    fps = next(line for line in text.splitlines() if line.startswith('ssdnet_fps{source="cam0"}'))
    assert float(fps.split()[-1]) == pytest.approx(10.0)


def test_a_metrics_endpoint_that_cannot_listen_names_its_keys():
    """`prometheus: {host: 'no such host'}` ended the run with a bare gaierror, naming no key, and a prometheus port
    equal to the view's passed validation, the view then blaming another program (an outside audit)."""
    with pytest.raises(ConfigError, match=r"cannot listen on no such host:0 .*sinks.prometheus.host"):
        MetricsSink(host="no such host", port=0)
    held = MetricsSink(port=0)
    try:
        with pytest.raises(ConfigError, match="sinks.prometheus.port"):
            MetricsSink(port=held.port)
    finally:
        held.close()
    line = {"sources": [{"kind": "synthetic", "name": "a"}],
            "sinks": {"view": {"port": 9200}, "prometheus": {"port": 9200}}}
    with pytest.raises(ConfigError, match="view.port and prometheus.port are both 9200 on one host"):
        parse_config(LineConfig, line, "line.yaml")
    line["sinks"]["prometheus"]["host"] = "127.0.0.2"  # another address of this machine
    parse_config(LineConfig, line, "line.yaml")


def test_metrics_sink_bounds_the_counter_names_of_a_source_and_skips_negative_values(caplog):
    """A peer sending heartbeats with ever new counter names gets series for its first MAX_COUNTERS names only; the
    rest, and a negative value, are counted as dropped, and logged once."""
    sink = MetricsSink(port=0)

    def beat(counters, source="cam9"):
        sink.handle(P.Message(P.HeartbeatHeader(v=1, kind="heartbeat", source=source, seq=0, t_capture=1.0,
                                                role="source", state="streaming", counters=counters)), 1.0)

    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.sinks"):
            for i in range(3):
                beat({f"c{i}_{j}": 1 for j in range(P.MAX_COUNTERS)})
            beat({"c0_0": 5, "c0_1": -5})
            beat({"credit_upto": -1}, "cred")  # -1: a credit camera not yet granted, exported as before
        text = urllib.request.urlopen(f"http://127.0.0.1:{sink.port}/metrics", timeout=5).read().decode()
    finally:
        sink.close()
    series = [line for line in text.splitlines() if line.startswith("ssdnet_stage_count{")]
    assert len(series) == P.MAX_COUNTERS + 1
    assert 'ssdnet_stage_count{counter="c0_0",role="source",source="cam9"} 5.0' in series
    assert 'ssdnet_stage_count{counter="credit_upto",role="source",source="cred"} -1.0' in series
    assert 'ssdnet_metrics_dropped_counters_total{reason="name_limit"} 256.0' in text
    assert 'ssdnet_metrics_dropped_counters_total{reason="negative"} 1.0' in text
    assert len([r for r in caplog.records if "counter names" in r.getMessage()]) == 1


def test_metrics_endpoint_drops_silent_clients_and_bounds_its_connections(monkeypatch):
    """Each connection of the metrics endpoint has a thread: a client that sends nothing is closed after REQUEST_S
    (before: never, prometheus_client's server has no timeout), and past max_connections the one waiting longest
    for its request gives way to a new one (a scrape still gets through)."""
    monkeypatch.setattr(http_bounds, "REQUEST_S", 1.0)
    sink = MetricsSink(port=0)
    try:
        silent = [socket.create_connection(("127.0.0.1", sink.port), timeout=10) for _ in range(40)]
        wait_until(lambda: sink.server.connections <= sink.server.max_connections)  # those closed for others ended
        url = f"http://127.0.0.1:{sink.port}/metrics"
        assert b"ssdnet_events" in urllib.request.urlopen(url, timeout=5).read()
        wait_until(lambda: sink.server.connections == 0, timeout=5)
        for s in silent:
            s.settimeout(2)
            assert s.recv(1024) == b""  # closed by the server
            s.close()
    finally:
        sink.close()


def test_a_metrics_client_resetting_mid_request_is_counted_not_a_traceback_on_stderr(capfd):
    """The metrics endpoint printed a 29-line traceback for each client that reset its connection mid-request, as
    often as any peer liked, and counted none (the view did not: its handler of failures now serves both)."""
    sink = MetricsSink(port=0)
    try:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", sink.port), timeout=10)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.2)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends a reset
            s.close()
        wait_until(lambda: sink.server.bad_requests == 3)
        assert "Traceback" not in capfd.readouterr().err
        assert b"ssdnet_events" in urllib.request.urlopen(f"http://127.0.0.1:{sink.port}/metrics", timeout=5).read()
    finally:
        sink.close()


def test_subscribe_prints_events(capsys):
    ctx = zmq.Context()
    pub = Publisher(ctx, "tcp://127.0.0.1:*", sndhwm=1000, max_topics=1000, name="test")
    stop = threading.Event()

    def publish():
        pub.wait_for_subscriber(5, stop)
        seq = 0
        while not stop.wait(0.01):
            P.send(pub.sock, event(seq))
            seq += 1

    t = threading.Thread(target=publish)
    t.start()
    try:
        assert subscribe([pub.endpoint], count=3, timeout_s=10) == 3
    finally:
        stop.set()
        t.join()
        pub.close(0)
        ctx.term()
    assert capsys.readouterr().out.count("ANOMALY cam0") >= 3


def test_stream_stats_stay_bounded_on_a_long_run():
    """A line runs for months: latencies and ground-truth frames are uniform samples of bounded size."""
    stats = StreamStats(max_frames=20, max_latencies=50)
    mask = np.zeros((32, 32), np.uint8)
    mask[4:10, 4:10] = 1
    for seq in range(400):
        msg = anomaly(seq)
        defective = seq % 2 == 0
        msg.arrays["mask"] = mask if defective else np.zeros_like(mask)
        if not defective:
            msg.arrays["map"] = np.zeros_like(msg.arrays["map"])
        stats.add(msg, delivered=2.0)
    assert all(len(v) == 50 and v.seen == 400 for v in stats.latency.values() if v.seen)
    stream = stats.summary()["stream"]
    assert stream["frames"] == 400 and stream["frames_sampled"] == 20 and 0 < stream["defective_frames"] < 20
    assert stream["pixel_auroc"] == 1.0  # the map is high exactly under the masks of the sampled frames
    assert stats.summary()["frames"] == 400 and stats.summary()["latency_ms"]["fit"]["p50"] == 40.0


def test_the_stream_accuracy_pools_a_bounded_sample_of_pixels_close_to_all_of_them():
    """A run stopped after hours must write its summary in seconds: past `max_pixels` each accuracy pools a uniform
    sample of its frames' pixels, whose AUROC and AUPRC are near those of all of them, the same at every call."""
    rng = np.random.default_rng(0)
    exact, sampled = StreamStats(), StreamStats(max_pixels=25_000)
    for seq in range(40):
        msg = anomaly(seq)
        mask = np.zeros((32, 32), np.uint8)
        mask[rng.integers(0, 24):, rng.integers(0, 24):][:8, :8] = 1
        msg.arrays["map"] = (rng.normal(size=(32, 32)) + 1.5 * mask).astype(np.float16)  # noisy: AUROC well below 1
        msg.arrays["mask"] = mask
        for stats in (exact, sampled):
            stats.add(msg, delivered=2.0)
    full, part = exact.summary()["stream"], sampled.summary()["stream"]
    assert full["pixels"] == 40 * 32 * 32 and 24_900 <= part["pixels"] <= 25_000
    assert part["first_half"]["pixels"] == full["first_half"]["pixels"] == 20 * 32 * 32  # under the cap: every pixel
    assert 0.8 < full["pixel_auroc"] < 0.95 and abs(part["pixel_auroc"] - full["pixel_auroc"]) < 0.03
    assert abs(part["pixel_auprc"] - full["pixel_auprc"]) < 0.05
    assert sampled.summary()["stream"] == part  # the same sample at every call


def test_a_line_that_scores_no_frame_exits_with_an_error(tmp_path, capsys):
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "tiny.png"), np.zeros((8, 8, 3), np.uint8))  # under the 32 px minimum
    path = tmp_path / "line.yaml"
    path.write_text(f"sources:\n  - {{name: shelf, kind: folder, path: {tmp_path / 'frames'}}}\n")
    assert cli_main(["run", str(path), "--out", str(tmp_path / "out")]) == 1
    assert "no frame was scored" in capsys.readouterr().err


def test_the_console_prints_an_event_on_one_line_when_piped(capsys):
    """Piped (no terminal: 80 columns), an event with regions is still one line, for grep and log shippers."""
    regions = tuple(P.Region(bbox=(1000 + i, 2000, 300, 400), area=5000, peak=9.5) for i in range(4))
    msg = P.Message(P.EventHeader(v=1, kind="event", source="camera-with-a-long-name", seq=123456, t_capture=1.0,
                                  score=8.0, threshold=3.0, model_version=1, regions=regions))
    ConsoleSink().handle(msg, 2.0)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and len(lines[0]) > 80 and "ANOMALY" in lines[0] and lines[0].endswith("after capture")
    assert "  4 regions (1000, 2000, 300, 400), " in lines[0]  # counted in words, as the table's "1 event"
    assert "calibrating" not in lines[0]
    ConsoleSink().handle(P.Message(msg.header.model_copy(update={"calibrating": True})), 2.0)  # a camera's first
    assert "score 8.00 > 3.00 (calibrating: against the prior)" in capsys.readouterr().out  # frames say so


def test_the_console_prints_a_cameras_own_words_as_plain_text(capsys):
    """A camera's heartbeat `state` (any 32 characters) reaches the operator's console as text, and its end of stream's
    counter names not at all: no terminal control character (ESC c resets the terminal), no rich markup (`[/]` failed
    the line, `[blink]` styled it); before, both went through."""
    from rich.console import Console

    sink = ConsoleSink(Console(soft_wrap=True, force_terminal=True))
    for state in ("\x1bc\x1b]0;owned\x07", "[/]", "[blink]x[/blink]", ":warning:"):
        sink.handle(P.Message(P.HeartbeatHeader(kind="heartbeat", role="source", state=state, source="cam9", seq=1,
                                                t_capture=1.0)), 2.0)
    sink.handle(P.Message(P.EosHeader(kind="eos", source="cam9", seq=1, t_capture=1.0, frames=2,
                                      counters={"[/]\x1bc": 1})), 2.0)
    out = capsys.readouterr().out
    assert "\x1bc" not in out and "\x07" not in out and "\x1b[5m" not in out  # no reset, bell or blink
    text = re.sub(r"\x1b\[[0-9;]*m", "", out)  # rich's own styles (its highlighter's) taken out
    assert "\\x1bc\\x1b]0;owned\\x07" in text and "[/]" in text and "[blink]x[/blink]" in text and ":warning:" in text


def test_the_console_says_an_end_of_stream_in_words(capsys):
    """A forwarded end of stream: frames sent, scored, events and the drops that are not 0, not a raw dict."""
    counters = {"sent": 32, "send_dropped": 0, "unheard": 0, "received": 32, "conflated": 2, "lost": 0, "scored": 30,
                "events": 1, "downscaled": 0}
    ConsoleSink().handle(P.Message(P.EosHeader(v=1, kind="eos", source="brick", seq=31, t_capture=1.0, frames=32,
                                               counters=counters)), 2.0)
    line = capsys.readouterr().out.strip()
    assert line.endswith("brick: end of stream, 32 frames sent, 30 scored, 1 event, 2 conflated"), line
    ConsoleSink().handle(P.Message(P.EosHeader(v=1, kind="eos", source="cam", seq=-1, t_capture=1.0, frames=0)), 2.0)
    assert capsys.readouterr().out.strip().endswith("cam: end of stream, 0 frames sent")  # a camera's own, as sent


def test_subscribe_to_an_endpoint_that_says_nothing_is_an_error(capsys, caplog):
    ctx = zmq.Context()
    pub = make_socket(ctx, zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")  # bound, silent: a wrong port or a node that is down
    try:
        with pytest.raises(RuntimeError, match="heard nothing from"):
            subscribe([f"tcp://127.0.0.1:{port}"], timeout_s=0.5, stall_s=0.2, ctx=ctx)
        assert "nothing heard from" in caplog.text  # said while waiting, too
        capsys.readouterr()
        assert cli_main(["subscribe", f"tcp://127.0.0.1:{port}", "--timeout", "0.5"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert cli_main(["view", f"tcp://127.0.0.1:{port}", "--port", "0", "--timeout", "0.5"]) == 1
        view_err = capsys.readouterr().err.strip().splitlines()
    finally:
        pub.close(0)
        ctx.term()
    # one line saying what to check, without 'RuntimeError:' and '(-v shows where)' (an audit)
    assert err[-1].startswith("ssdnet subscribe: error: heard nothing from") and "Error:" not in err[-1], err
    assert view_err[-1].startswith("ssdnet view: error: heard nothing from") and "Error:" not in view_err[-1], view_err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["sigterm", "ctrl_c"])
@pytest.mark.parametrize("command", ["subscribe", "view"])
def test_subscribe_and_view_exit_130_on_ctrl_c_and_0_on_sigterm(capsys, restore_signals, command, sig, code):
    """`ssdnet subscribe` and `ssdnet view` exited 0 on Ctrl-C and died by SIGTERM (143, their JSONL file unclosed),
    where `ssdnet run` and its stages exit 130 and 0 (README "Stopping"): they do too, and say which signal stopped
    them."""
    ctx = zmq.Context()
    pub = make_socket(ctx, zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    signal_once_taken(sig)
    try:
        assert cli_main([command, f"tcp://127.0.0.1:{port}", *(["--port", "0"] if command == "view" else [])]) == code
    finally:
        pub.close(0)
        ctx.term()
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"ssdnet {command}: stopped by {sig.name}"


def test_ctrl_c_on_ssdnet_view_prints_no_traceback():
    """Ctrl-C (as `timeout -s INT` sends it) ends `ssdnet view` with 130 and no traceback, not even an 'Exception
    ignored in atexit callback' one: the signal only sets the stop flag, which the command watches."""
    view = subprocess.Popen([sys.executable, "-m", "tools.cli", "view", "tcp://127.0.0.1:9", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert view.stdout.readline().startswith("live view: ")  # serving: past its imports, in its loop
        view.send_signal(signal.SIGINT)
        _, err = view.communicate(timeout=30)
    finally:
        view.kill()
    assert view.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1] == "ssdnet view: stopped by SIGINT", err
