"""The sinks stage (`ssdnet run CONFIG --stage sinks`) started late or restarted: it ends when the node says every
camera has ended (the ends of stream went out before it subscribed: it waited for ever), resumes from its files'
cursors only on the event log they count in (against a node on a new log it skipped that log's first events), and its
summary says it resumed. A node and cameras in threads, the stage in this thread, over tcp."""
from __future__ import annotations

import json
import logging
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import zmq

from edge.config import parse_config
from pipeline import launcher
from pipeline import protocol as P
from pipeline.config import LineConfig, NodeConfig
from pipeline.eventlog import EventLog
from pipeline.launcher import run_sinks_stage
from pipeline.node import EdgeNode
from pipeline.sinks import JsonLines, JsonlSink, Subscriber
from pipeline.sources import run_camera
from services import free_port
from signal_helpers import signal_once_taken
from test_pipeline_node import FastDetector, wait_until
from tools.cli import main as cli_main

FRAMES = 6


pytestmark = pytest.mark.usefixtures("restore_signals")  # the stage runs in the test's process


def line_config(event_log: Path, frames: int = FRAMES) -> LineConfig:
    ports = [free_port() for _ in range(4)]
    cam = {"kind": "synthetic", "size": 64, "fps": 50, "frames": frames, "heartbeat_s": 0.1, "flow": "credit"}
    return parse_config(LineConfig, {
        "sources": [{**cam, "name": "cam0", "bind": f"tcp://127.0.0.1:{ports[0]}"},
                    {**cam, "name": "cam1", "bind": f"tcp://127.0.0.1:{ports[1]}", "textures": ["brick"], "seed": 1}],
        "node": {"bind": f"tcp://127.0.0.1:{ports[2]}", "replay_bind": f"tcp://127.0.0.1:{ports[3]}",
                 "threshold": 0.0, "heartbeat_s": 0.1, "event_log": str(event_log)},
        "sinks": {"overlays": "off", "console": False},
    })


def all_ended(probe: Subscriber, cameras: int) -> bool:
    """Whether the node heartbeat received next (within 0.1 s) says each of its cameras has ended."""
    beat = probe.recv(100)
    return beat is not None and beat.header.counters.get("cameras_ended") == cameras


@contextmanager
def threaded_line(cfg: LineConfig, wait_for_subscriber_s: float):
    """A node and its cameras in threads, serving until the block ends, once the node's event log is made; the node
    subscribes to its cameras once a subscriber has, or `wait_for_subscriber_s` has passed. Yields the node."""
    stop = threading.Event()
    node = EdgeNode(cfg.node, [s.bind for s in cfg.sources], FastDetector, input_names=[s.name for s in cfg.sources])
    threads = [threading.Thread(target=node.run, args=(stop, None, wait_for_subscriber_s), daemon=True),
               *(threading.Thread(target=run_camera, args=(s, stop), daemon=True) for s in cfg.sources)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: node.replay_endpoint is not None)  # its event log is made
        yield node
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        assert not any(t.is_alive() for t in threads)


@contextmanager
def line(cfg: LineConfig, ended: bool):
    """`threaded_line`: entered once the node has forwarded every camera's end of stream, nobody listening (`ended`);
    else the node subscribes to its cameras only once a subscriber (the sinks stage) has. Yields the id of the node's
    event log."""
    with threaded_line(cfg, 0.0 if ended else 10.0):
        if ended:
            probe = Subscriber(cfg.node.bind, (f"heartbeat/{cfg.node.name}".encode(),))
            wait_until(lambda: all_ended(probe, len(cfg.sources)), timeout=15)
            probe.close()
        db = EventLog(cfg.node.event_log, readonly=True)
        log_id = db.log_id
        db.close()
        yield log_id


def logged(path: Path) -> list[tuple[str, int, int | None]]:
    return [(r["source"], r["log_seq"], r.get("log_id")) for r in JsonLines.records(path)]


def test_a_sinks_stage_started_after_every_end_of_stream_ends_with_every_event_and_resumes_on_it(tmp_path, caplog,
                                                                                                    monkeypatch):
    """Started after the line ended, it waited for ends of stream that had gone out (until its timeout, `interrupted`).
    Run again in its folder on the same node, it resumes after its events (none twice) and says `resumed`."""
    monkeypatch.setattr(launcher, "ENDED_WAIT_S", 0.5)
    cfg, out = line_config(tmp_path / "node.db"), tmp_path / "sinks"
    with line(cfg, ended=True) as log_id, caplog.at_level(logging.INFO, logger="pipeline.launcher"):
        first = run_sinks_stage(cfg, out, timeout_s=10)
        assert not first["interrupted"] and first["wall_s"] < 10
        assert "the end of stream of cam0, cam1 came before this stage subscribed" in caplog.text
        db = EventLog(tmp_path / "node.db", readonly=True)
        assert db.read_heads() == {"cam0": FRAMES, "cam1": FRAMES}  # threshold 0: every frame an event
        db.close()
        expected = [(c, n, log_id) for c in ("cam0", "cam1") for n in range(1, FRAMES + 1)]
        assert sorted(logged(out / "events.jsonl")) == expected
        assert (first["events"], first["resumed"], first["ended_before_start"]) == (2 * FRAMES, False, ["cam0", "cam1"])
        again = run_sinks_stage(cfg, out, timeout_s=10)
    assert sorted(logged(out / "events.jsonl")) == expected
    assert (again["resumed"], again["dropped"], again["events"], again["interrupted"]) == (True, None, 0, False)


def test_a_sinks_stage_s_first_start_reads_the_logged_events_at_info_not_as_recovered(tmp_path, caplog, monkeypatch):
    """A sinks stage's first start in its folder reads the node's event log from its start: those events were asked
    for, yet the node's first heartbeat counted them missed (`recovered 12 missed event(s)`, a warning, on every
    start), as `ssdnet subscribe --from-start` did before it said them at INFO."""
    monkeypatch.setattr(launcher, "ENDED_WAIT_S", 0.5)
    cfg, out = line_config(tmp_path / "node.db"), tmp_path / "sinks"
    with line(cfg, ended=True), caplog.at_level(logging.INFO, logger="pipeline"):
        summary = run_sinks_stage(cfg, out, timeout_s=10)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "event(s)" in r.getMessage()]
    assert said == [("INFO", f"read {2 * FRAMES} event(s) from the node's event log, logged before this subscriber "
                             "started (a sinks stage's first start in its folder)")]
    assert summary["events"] == 2 * FRAMES and len(logged(out / "events.jsonl")) == 2 * FRAMES


def test_a_sinks_stage_restarted_against_a_node_on_a_new_event_log_reads_that_log_from_its_start(tmp_path, caplog):
    """Its cursors (6 per camera) counted in the old log: the new log's first 4 events per camera were skipped. Its
    summary.json says it resumed, and has no drop count though it saw both cameras' ends of stream."""
    cfg, out = line_config(tmp_path / "old.db"), tmp_path / "sinks"
    with line(cfg, ended=False) as old_log:
        first = run_sinks_stage(cfg, out, timeout_s=10)
    assert (first["resumed"], first["sent"], first["frames"], first["dropped"]) == (False, 12, 12, None)
    cfg = line_config(tmp_path / "new.db", frames=4)  # the node back on another log (a lost volume)
    with line(cfg, ended=False) as new_log, caplog.at_level(logging.WARNING, logger="pipeline.eventlog"):
        summary = run_sinks_stage(cfg, out, timeout_s=10)
    old = [(c, n, old_log) for c in ("cam0", "cam1") for n in range(1, FRAMES + 1)]
    new = [(c, n, new_log) for c in ("cam0", "cam1") for n in range(1, 5)]
    records = logged(out / "events.jsonl")
    assert sorted(records[:len(old)]) == old and sorted(records[len(old):]) == new
    assert old_log != new_log
    assert f"the node's event log is a new one (log {new_log}, the cursors' {old_log}" in caplog.text
    cursors = JsonlSink.cursors(out / "events.jsonl")
    assert cursors == {"cam0": 4, "cam1": 4} and cursors.log_id == new_log
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (summary["resumed"], summary["dropped"], summary["sent"], summary["frames"]) == (True, None, 8, 8)
    assert summary["events"] == 8 and not summary["interrupted"]


def test_a_sinks_stage_run_again_keeps_its_earlier_summaries_and_counts_no_drop_it_cannot_see(tmp_path, capsys,
                                                                                                 monkeypatch):
    """Started after the node had scored some frames, it counted them dropped (sent less the results it received) and
    had none of the node's own counts; run again in its folder, it wrote over its summary.json (an outside audit). Its
    summaries before are kept as summary.json.1, .2, ...; `dropped` is null, and the node's last heartbeat's counts
    stand beside its own."""
    monkeypatch.setattr(launcher, "ENDED_WAIT_S", 0.5)
    monkeypatch.setenv("COLUMNS", "200")  # the table's rows unwrapped
    cfg, out = line_config(tmp_path / "node.db", frames=50), tmp_path / "sinks"
    with threaded_line(cfg, 0.0) as node:  # the node scores before the stage subscribes, 0.8 s before the end
        wait_until(lambda: node.counters.source("cam0")["scored"] >= 10, timeout=20)
        late = run_sinks_stage(cfg, out, timeout_s=10)
        runs = [late, run_sinks_stage(cfg, out, timeout_s=10), run_sinks_stage(cfg, out, timeout_s=10)]
    assert late["frames"] < late["sent"] == late["events"] == 100  # threshold 0: every frame an event
    assert late["dropped"] is None and (late["node_counters"]["scored"], late["node_counters"]["lost"]) == (100, 0)
    kept = [json.loads((out / name).read_text()) for name in ("summary.json.2", "summary.json.1", "summary.json")]
    assert kept == runs and [s["resumed"] for s in runs] == [False, True, True]
    launcher.print_summary(late)
    rows = dict(cells[1:3] for line in capsys.readouterr().out.splitlines()
                if len(cells := [cell.strip() for cell in line.split("│")]) == 4)
    assert rows["frames received"] == f"{late['frames']} of 100 sent" and rows["dropped"] == "-"
    assert rows["the node's counts"] == "100 scored, 100 events, 0 dropped since it started (its last heartbeat)"


def event(source: str, seq: int) -> P.Message:
    return P.Message(P.EventHeader(kind="event", source=source, seq=seq, t_capture=1.0, score=9.0, threshold=3.0,
                                   model_version=1))


def test_the_cursors_say_which_event_log_they_count_in_and_old_files_still_load(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path, append=False, max_mb=0.001, backups=1)  # ~4 records a file
    sink.log_id = 11
    for n in range(1, 7):
        sink.handle(event("cam0", n), 0.0, n)
    sink.log_id = 22  # the node back on a new log, numbered from 1 again
    sink.handle(event("cam0", 100), 0.0, 1)
    for n in range(1, 13):  # cam1 floods: cam0's one record of log 22 is turned out, kept in events.jsonl.cursors
        sink.handle(event("cam1", n), 0.0, n)
    sink.close()
    assert {r["source"] for r in JsonLines.records(path)} == {"cam1"}
    cursors = JsonlSink.cursors(path)
    assert cursors == {"cam0": 1, "cam1": 12} and cursors.log_id == 22
    resumed = JsonlSink(path).written
    assert resumed == cursors and resumed.log_id == 22

    old = tmp_path / "old.jsonl"  # written before log ids: records and cursors without one
    old.write_text(json.dumps({"source": "cam0", "seq": 1, "log_seq": 3}) + "\n")
    JsonlSink.cursors_file(old).write_text(json.dumps({"cam1": 7}))
    cursors = JsonlSink.cursors(old)
    assert cursors == {"cam0": 3, "cam1": 7} and cursors.log_id == 0
    sink = JsonlSink(old)
    sink.log_id = 22  # the first log named: the cursors before it are taken as its own
    sink.handle(event("cam0", 4), 0.0, 4)
    sink.close()
    cursors = JsonlSink.cursors(old)
    assert cursors == {"cam0": 4, "cam1": 7} and cursors.log_id == 22


def frame(seq: int) -> P.Message:
    image = np.zeros((32, 32, 3), np.uint8)
    return P.Message(P.FrameHeader(kind="frame", source="cam0", seq=seq, t_capture=1.0, stamps={"capture": 1.0},
                                   payloads=(P.describe("image", image),)), {"image": image})


def test_the_node_counts_the_cameras_whose_end_went_out_until_they_stream_again():
    node = EdgeNode(NodeConfig(), (), FastDetector)
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.bind("inproc://cameras-ended")

    def publish() -> None:  # what the publisher thread does with the outbox
        while not node.outbox.empty():
            item = node.outbox.get()
            item = item[0] if isinstance(item, tuple) else item  # (an event, its log number), (None, the log's total)
            if item is not None:
                node._send(sock, item)

    def ended() -> int:
        return node._heartbeat().header.counters["cameras_ended"]

    try:
        node._process(frame(0))
        node._end(P.Message(P.EosHeader(kind="eos", source="cam0", seq=0, t_capture=1.0, frames=1)))
        assert ended() == 0  # its result and end of stream still wait to go out: a heartbeat now must not say ended
        publish()
        assert ended() == 1
        node._process(frame(0))  # the camera restarted
        publish()
        assert ended() == 0
    finally:
        sock.close(linger=0)


def test_a_sinks_stage_that_times_out_says_so_and_names_the_cameras_it_never_heard(tmp_path, caplog):
    """It said `interrupted` (exit code 130) and named no camera: the audit's camera that never started."""
    cfg = line_config(tmp_path / "node-events.db")  # no node, no camera: nothing ever comes
    with caplog.at_level(logging.WARNING, logger="pipeline.launcher"):
        summary = run_sinks_stage(cfg, tmp_path / "out", timeout_s=0.5)
    assert summary["timed_out"] and not summary["interrupted"]
    assert {name: summary["sources"][name]["sent"] for name in ("cam0", "cam1")} == {"cam0": None, "cam1": None}
    assert any("timeout after" in r.getMessage() and "no end of stream from cam0, cam1" in r.getMessage()
               for r in caplog.records)


def test_a_sinks_stage_of_a_node_for_cameras_of_one_s_own_waits_for_them(tmp_path):
    """`sources: []` (the node reads `node.connect`): it waited for no camera's end of stream and stopped at once."""
    cfg = line_config(tmp_path / "node-events.db")
    node = cfg.node.model_copy(update={"connect": ("tcp://127.0.0.1:5599",),
                                       "connect_cameras": {"tcp://127.0.0.1:5599": ("press7",)}})
    cfg = cfg.model_copy(update={"sources": (), "node": node})
    summary = run_sinks_stage(cfg, tmp_path / "out", timeout_s=0.5)
    assert summary["timed_out"] and summary["sources"]["press7"]["sent"] is None


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["sigterm", "ctrl_c"])
def test_a_sinks_stage_that_follows_any_camera_stopped_by_a_signal_says_which(tmp_path, capsys, restore_signals, sig,
                                                                              code):
    """A sinks stage of a node whose cameras are not named (dynamic) runs until stopped: stopped by SIGTERM it wrote
    `interrupted: false`, `stopped_by: null` and, nothing scored, exited 1 'no frame was scored', where README's
    Stopping says a SIGTERM is a clean stop (exit 0, `stopped_by`) and Ctrl-C exits 130."""
    cfg = line_config(tmp_path / "node-events.db")
    node = cfg.node.model_copy(update={"connect": ("tcp://127.0.0.1:5599",), "dynamic_cameras": True})
    config = tmp_path / "line.yaml"
    config.write_text(json.dumps({"sources": [], "node": node.model_dump(mode="json", exclude_defaults=True),
                                  "sinks": {"overlays": "off", "console": False}}))
    signal_once_taken(sig)
    assert cli_main(["run", str(config), "--stage", "sinks", "--out", str(tmp_path / "out")]) == code
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["interrupted"] and summary["stopped_by"] == sig.name and not summary["timed_out"]
