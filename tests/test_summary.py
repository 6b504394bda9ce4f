"""The run summary says where each camera's frames went (a multi-camera audit found drops summed over cameras only)."""
from __future__ import annotations

import json
import re
import time

import cv2
import numpy as np
import pytest

from edge.config import parse_config
from pipeline import protocol as P
from pipeline.config import LineConfig
from pipeline.launcher import print_summary, run_line
from pipeline.stats import SOURCE_COUNTERS, StreamStats
from test_pipeline_launcher import line_config
from test_pipeline_node import FastDetector


def eos(source: str, frames: int, run: str | None = None, **counters: int) -> P.Message:
    return P.Message(P.EosHeader(kind="eos", source=source, seq=frames - 1, t_capture=time.time(), frames=frames,
                                 counters=counters, run=run))


def result(source: str, seq: int, run: str | None = None) -> P.Message:
    amap, desc = P.quantize_map(np.zeros((8, 8), np.float32), "float16")
    return P.Message(P.AnomalyHeader(kind="anomaly", source=source, seq=seq, t_capture=time.time(), score=0.5,
                                     threshold=3.0, label="normal", model_version=1, fit_steps=0, fit_ms=0.0,
                                     score_ms=1.0, payloads=(desc,), run=run), {"map": amap})


def beat(source: str, sent: int, run: str | None = None, **counters: int) -> P.Message:
    """A camera's heartbeat as the node forwards it: its `sent` counter (and others) and its run id."""
    return P.Message(P.HeartbeatHeader(kind="heartbeat", source=source, seq=sent - 1, t_capture=time.time(),
                                       role="source", state="streaming", counters={"sent": sent, **counters}, run=run))


def node_report(**per_camera: dict[str, int]) -> dict:
    return {"sources": {cam: {**dict.fromkeys(SOURCE_COUNTERS, 0), **c} for cam, c in per_camera.items()},
            "bad_messages": 0, "scorer": None}


def test_each_camera_has_its_drops_by_cause_and_the_rest_is_unaccounted(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rows unwrapped
    stats = StreamStats()
    for seq in range(10):
        stats.add(result("fast", seq), time.time())
    for seq in range(3):
        stats.add(result("slow", seq), time.time())
    stats.add(eos("fast", 20), time.time())
    stats.add(eos("slow", 3), time.time())
    summary = stats.summary(node_report(fast={"conflated": 9, "downscaled": 4}, slow={}))
    assert (summary["dropped"], summary["drops"]["conflated"]) == (10, 9)
    assert summary["drops"]["unaccounted"] == 1  # the frame in flight when the line stopped: no cause counted it
    fast, slow = summary["sources"]["fast"], summary["sources"]["slow"]
    assert (fast["frames"], fast["sent"], fast["conflated"], fast["downscaled"]) == (10, 20, 9, 4)
    assert (slow["frames"], slow["sent"], slow["conflated"], slow["downscaled"]) == (3, 3, 0, 0)

    print_summary({**summary, "wall_s": 1.0})
    out = capsys.readouterr().out
    assert "10 of 20 scored, 0 events (conflated 9, unaccounted 1, downscaled 4)" in out
    assert "3 of 3 scored, 0 events" in out


def test_the_table_names_a_failed_camera_and_leaves_out_halves_without_a_defect(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    summary = StreamStats().summary()
    summary["sources"] = {"cam0": {"frames": 5, "sent": 5, "events": 1},
                          "rtsp": {"frames": 0, "sent": None, "events": 0, "failure": "cannot open rtsp://x"}}
    half = {"pixel_auroc": None, "pixel_auprc": None, "image_auroc": None, "frames": 2}
    summary["stream"] = {"pixel_auroc": 0.9, "pixel_auprc": 0.5, "frames": 5,
                         "cameras": {"cam0": {"first_half": half, "last_half": {**half, "pixel_auroc": 0.9}}}}
    print_summary({**summary, "wall_s": 1.0})
    out = capsys.readouterr().out
    assert "0 of ? scored, 0 events; stage failed: cannot open rtsp://x" in out
    assert "None" not in out  # a camera's half without a defect has no AUROC: no "None / None" row


def test_the_table_says_when_the_run_was_cut_short(capsys, monkeypatch):
    """An interrupted or timed-out run's table says so in its title: its counts are partial, not lost data."""
    monkeypatch.setenv("COLUMNS", "200")
    summary = {**StreamStats().summary(), "wall_s": 1.0}
    for flags, title in (({}, "ssdnet run"), ({"interrupted": True}, "ssdnet run (interrupted: partial)"),
                         ({"timed_out": True}, "ssdnet run (timed out)")):
        print_summary({**summary, "interrupted": False, "timed_out": False, **flags})
        assert capsys.readouterr().out.split("\n")[0].strip() == title


@pytest.mark.parametrize("key, extra, words", [
    ("unreadable", lambda path: path.write_text("a text file named .png"),
     "1 unreadable file skipped (the log names each)"),
    ("too_small", lambda path: cv2.imwrite(str(path), np.zeros((20, 50, 3), np.uint8)),  # below 32 px a side
     "1 too-small frame skipped (below 32x32 px)")])
def test_what_a_camera_skipped_is_in_the_summary_and_the_table(tmp_path, capsys, monkeypatch, key, extra, words):
    """"6 of 6 sent" looked complete while a folder camera had skipped a file it could not read (`unreadable`) or a
    frame below the minimum size (`too_small`), never sent: the run's summary.json and table say how many, in all
    and per camera."""
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("good", "bad"):
        (tmp_path / name).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / name / f"{i:03d}.png"), np.full((40, 50, 3), 40 * i, np.uint8))
    extra(tmp_path / "bad" / "001b.png")
    cfg = parse_config(LineConfig, {**line_config().model_dump(mode="json", exclude={"sources"}), "sources": [
        {"kind": "folder", "name": name, "path": str(tmp_path / name)} for name in ("good", "bad")]})
    summary = run_line(cfg, tmp_path / "out", detector_factory=FastDetector)
    assert summary == json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["frames"], summary["sent"], summary["dropped"]) == (6, 6, 0)
    assert summary[key] == 1 and summary["sources"]["bad"][key] == 1
    assert key not in summary["sources"]["good"]

    print_summary(summary)
    out = capsys.readouterr().out
    assert f"6 of 6 sent; {words}" in out
    assert f"3 of 3 scored, 0 events ({key} 1)" in out


def test_no_unreadable_or_too_small_key_or_words_while_nothing_was_skipped(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    stats = StreamStats()
    for seq in range(2):
        stats.add(result("cam0", seq), time.time())
    stats.add(P.Message(P.EosHeader(kind="eos", source="cam0", seq=1, t_capture=time.time(), frames=2,
                                    counters={"sent": 2, "unreadable": 0, "too_small": 0})), time.time())
    summary = stats.summary()
    for key in ("unreadable", "too_small"):
        assert key not in summary and key not in summary["sources"]["cam0"]  # keys as before
    print_summary({**summary, "wall_s": 1.0})
    out = capsys.readouterr().out
    assert "unreadable" not in out and "too" not in out


def test_a_camera_restarted_during_a_backlog_has_each_run_s_frames_counted():
    """The node forwards a camera's heartbeats at once and its results once scored: a camera killed with frames
    waiting in the node and started again had its old run's last results counted as the new run's, whose own frames
    then hid them (a reviewer's repro: `sent` 47 with 50 frames scored). Counted per run id, each run's own."""
    stats = StreamStats()
    for msg in [beat("cam0", 20, "a"),  # run a's last heartbeat: 20 sent; it sent 23 before it was killed
                *(result("cam0", seq, "a") for seq in range(10)),
                beat("cam0", 0, "b"), beat("cam0", 5, "b"),  # run b's heartbeats, forwarded at once
                *(result("cam0", seq, "a") for seq in range(10, 23)),  # run a's frames that waited in the node
                *(result("cam0", seq, "b") for seq in range(27)), eos("cam0", 27, "b", sent=27)]:
        stats.add(msg, time.time())
    summary = stats.summary()
    assert (summary["frames"], summary["sent"], summary["sources"]["cam0"]["sent"]) == (50, 50, 50)


def test_an_old_run_s_end_of_stream_after_the_new_run_s_first_heartbeat_counts_that_run_once():
    """A camera's end of stream waits behind the frames before it while a camera started again heartbeats at once: the
    old run's end of stream came after the new run's first heartbeat and was counted twice (taken for the new run's,
    whose counters then went down: a restart more). Each end of stream settles its own run only."""
    stats = StreamStats()
    for msg in [beat("cam0", 10, "a", unheard=2), *(result("cam0", seq, "a") for seq in range(5)),
                beat("cam0", 0, "b", unheard=0),  # started again, run a's last 5 frames still waiting in the node
                *(result("cam0", seq, "a") for seq in range(5, 10)), eos("cam0", 10, "a", sent=10, unheard=2),
                beat("cam0", 3, "b", unheard=1), *(result("cam0", seq, "b") for seq in range(3)),
                eos("cam0", 3, "b", sent=3, unheard=1)]:
        stats.add(msg, time.time())
    summary = stats.summary()
    assert (summary["frames"], summary["sent"], summary["dropped"]) == (13, 13, 0)
    assert summary["unheard"] == summary["sources"]["cam0"]["unheard"] == 3  # 2 + 1, each run's last


def test_a_camera_stopped_before_its_end_of_stream_settles_its_own_run():
    """The line stopped a camera whose earlier run had ended: its own count (sent, and what its socket dropped) is its
    run's, next to the earlier run's end of stream (not instead of it)."""
    stats = StreamStats()
    for msg in [eos("cam0", 10, "a", sent=10), beat("cam0", 3, "b"), result("cam0", 0, "b")]:
        stats.add(msg, time.time())
    stats.camera_stopped("cam0", {"sent": 7, "send_dropped": 1, "unheard": 0, "too_small": 2, "run": "b"})
    summary = stats.summary()
    assert summary["sent"] == 18 and summary["too_small"] == 2  # 10 + 8


def test_cameras_that_name_no_run_still_have_a_restart_guessed_from_their_counters():
    """An older camera, or a third party's written from docs/protocol.md, sends no run id: a counter that went down is
    its restart, as before; next to it a camera that names its runs is counted per run."""
    stats = StreamStats()
    for msg in [beat("old", 4), beat("old", 9), beat("old", 0), beat("old", 6), eos("old", 8, sent=8),
                beat("new", 5, "r1"), beat("new", 2, "r2"), eos("new", 5, "r1", sent=5)]:
        stats.add(msg, time.time())
    for msg in [beat("cut", 9), beat("cut", 0), beat("cut", 3)]:  # restarted, then stopped before its end of stream
        stats.add(msg, time.time())
    stats.camera_stopped("cut", {"sent": 5, "send_dropped": 0})
    sources = stats.summary()["sources"]
    assert (sources["old"]["sent"], sources["new"]["sent"]) == (17, 7)  # 9 + 8; 5 + 2
    assert sources["cut"]["sent"] == 14  # 9 + its last run's own count (before: that count alone, 5)


def test_a_camera_s_runs_are_counted_in_bounded_memory():
    """A camera restarted for months, or a peer naming a new run in each heartbeat: its last MAX_RUNS runs are counted
    apart, the ones before them together, every frame still counted once."""
    from pipeline.stats import MAX_RUNS

    stats = StreamStats()
    for i in range(3 * MAX_RUNS):
        stats.add(beat("cam0", 2, f"r{i}", unheard=1), time.time())
    stats.add(eos("cam0", 2, f"r{3 * MAX_RUNS - 1}", sent=2, unheard=1), time.time())  # the last run's, as it went
    summary = stats.summary()
    assert summary["sent"] == 6 * MAX_RUNS and summary["unheard"] == 3 * MAX_RUNS
    assert len(stats._runs["cam0"]) == MAX_RUNS
    stats.add(eos("cam0", 2, "r0", sent=2, unheard=1), time.time())  # a late message of a run folded in: counted once
    assert stats.summary()["sent"] == 6 * MAX_RUNS  # (a reviewer: it was counted again, 6 * MAX_RUNS + 2)


def test_the_progress_bar_and_the_table_count_one_in_the_singular_and_show_fps_alike(capsys, monkeypatch):
    """The bar read "1 events" and the table "1 events", "(1 frames)"; the bar showed fps as 7.57, the table as
    7.595: one of a thing is in the singular, and both show fps to two decimals."""
    from pipeline.launcher import _info

    monkeypatch.setenv("COLUMNS", "200")
    stats, now = StreamStats(), time.time()
    stats.add(result("cam0", 0), now)
    stats.add(P.Message(P.EventHeader(kind="event", source="cam0", seq=0, t_capture=now, score=9.0, threshold=3.0,
                                      model_version=1)), now)
    assert _info(stats, stats._first_mono + 1 / 7.5678, 0) == "7.57 fps  1 event  0 dropped"  # 1 frame over the span
    one = {"pixel_auroc": 0.9, "pixel_auprc": 0.5, "image_auroc": None, "frames": 1}
    summary = {**stats.summary(), "fps": 7.597, "wall_s": 1.0, "stream": {**one, "first_half": one}}
    summary["sources"] = {"cam0": {"frames": 1, "sent": 1, "events": 1}, "cam1": {"frames": 0, "sent": 0, "events": 0}}
    print_summary(summary)
    out = capsys.readouterr().out
    assert "1 of 1 scored, 1 event" in out and "0.9 / 0.5, image AUROC - (1 frame)" in out and "over 1 frame" in out
    assert re.search(r"\bfps\s+\S\s+7\.60\s", out), out
    assert not re.search(r"\b1 (events|frames)\b", out), out


def test_the_table_says_how_many_peers_the_cameras_refused(capsys, monkeypatch):
    """Connections refused past a camera's max_peers are a security signal (another node, or a peer that is not the
    line's): the table says them, in total and per camera, not only summary.json (the review)."""
    monkeypatch.setenv("COLUMNS", "200")
    stats = StreamStats()
    for source in ("a", "b"):
        stats.add(result(source, 0), time.time())
        stats.add(eos(source, 1, refused_peers=3 if source == "a" else 0), time.time())
    summary = stats.summary(node_report(a={}, b={}))
    assert summary["refused_peers"] == 3
    print_summary({**summary, "wall_s": 1.0})
    out = capsys.readouterr().out
    assert re.search(r"camera peers refused\s*│\s*3 \(connections past sources\[\]\.max_peers", out), out
    assert "1 of 1 scored, 0 events (refused_peers 3)" in out
