"""`ssdnet soak`'s report: the verdict agrees with the printed growth, and each process is named by its stage."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import psutil
import pytest

from pipeline.config import LineConfig
from pipeline.out_folder import claimed, set_aside
from pipeline.stats import StreamStats
from test_pipeline_node import wait_until
from tools.soak import (
    COLLECTOR,
    MIN_JUDGED_MINUTES,
    after_warmup,
    growth,
    judge,
    memory_line,
    process_label,
    sample_processes,
    stage_labels,
    verdict_line,
)

SPAWN = ["/usr/bin/python3", "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5)",
         "--multiprocessing-fork"]


def _cfg(node: str = "node") -> LineConfig:
    return LineConfig(sources=({"name": "cam0", "kind": "synthetic"}, {"name": "press3", "kind": "synthetic"}),
                      node={"name": node})


def _series(minutes: float, start_mb: float, end_mb: float, every_s: float = 5.0) -> list[tuple[float, float, float]]:
    n = int(minutes * 60 / every_s) + 1
    return [(i * every_s, start_mb + (end_mb - start_mb) * i / (n - 1), 0.5 * i * every_s) for i in range(n)]


def test_processes_are_labelled_by_stage_not_by_interpreter():
    labels = stage_labels(_cfg())
    assert labels == {"cam0": "camera:cam0", "press3": "camera:press3", "node": "node"}
    assert stage_labels(_cfg("edge1"))["edge1"] == "node:edge1"
    assert process_label(100, 100, None, ["python3", "-m", "tools.cli"], labels) == COLLECTOR == "sinks"
    assert process_label(101, 100, "cam0", SPAWN, labels) == "camera:cam0"
    assert process_label(102, 100, "press3", SPAWN, labels) == "camera:press3"
    assert process_label(103, 100, "node", SPAWN, labels) == "node"
    tracker = ["python3", "-c", "from multiprocessing.resource_tracker import main;main(5)"]
    assert process_label(104, 100, None, tracker, labels) == "helper:resource_tracker"
    assert process_label(105, 100, None, ["/usr/bin/python3", "x.py"], labels) == "other:python3[105]"


def test_a_one_minute_soak_is_too_short_to_judge_not_flat():
    # the reported case: node 558.1 -> 569.0 MB in under a minute after the warm-up, +2%, extrapolated +976 MB/h
    memory = {COLLECTOR: growth(_series(0.8, 350, 360)), "node": growth(_series(0.8, 558.1, 569.0)),
              "camera:cam0": growth(_series(0.8, 102, 102))}
    assert memory["node"]["mb_per_hour"] > 500 and memory["node"]["growth_fraction"] < 0.1
    j = judge(memory, max_growth=0.1)
    assert j["verdict"] == "too_short" and j["failed"] == [] and j["min_judged_minutes"] == MIN_JUDGED_MINUTES
    assert memory["node"]["verdict"] == "too_short" and not memory["node"]["judged"]
    assert memory[COLLECTOR]["verdict"] == "not_judged"
    line = verdict_line(j, 0.1, 0.2, 1)
    assert "flat" not in line and "too short to judge" in line and f"at least {MIN_JUDGED_MINUTES:g}" in line
    row = memory_line("node", memory["node"], 29915)
    assert row.startswith("node [29915]") and "MB/h" not in row and "too short" in row


def test_a_long_enough_soak_is_flat_only_when_nothing_grew_and_prints_its_rate():
    memory = {"node": growth(_series(8, 500, 510)), "camera:cam0": growth(_series(8, 100, 100.5))}
    j = judge(memory, max_growth=0.1)
    assert j["verdict"] == "flat" and memory["node"]["judged"] and j["judged_minutes"] >= MIN_JUDGED_MINUTES
    assert verdict_line(j, 0.1, 2, 8).startswith("flat: no stage grew by more than 10%")
    assert "+75.0 MB/h" in memory_line("node", memory["node"], 1) and "flat" in memory_line("node", memory["node"], 1)


def test_growth_past_the_limit_fails_however_short_and_the_collector_is_never_judged():
    memory = {COLLECTOR: growth(_series(0.8, 300, 400)), "node": growth(_series(0.8, 500, 600)),
              "camera:cam0": growth(_series(0.8, 100, 100))}
    j = judge(memory, max_growth=0.1)
    assert j["verdict"] == "grew" and j["failed"] == ["node"]
    assert verdict_line(j, 0.1, 0.2, 1).startswith("FAILED")


def test_no_samples_after_the_warm_up_is_not_flat():
    assert judge({}, max_growth=0.1)["verdict"] == "too_short"
    assert judge({COLLECTOR: growth(_series(8, 300, 300))}, max_growth=0.1)["verdict"] == "too_short"


def test_growth_reports_the_window_and_cpu_and_still_takes_pairs():
    m = growth(_series(2, 100, 100))
    assert m["minutes"] == 2.0 and m["cpu_cores"] == 0.5
    assert "cpu_cores" not in growth([(t, 100.0) for t in range(10)])


def test_after_warmup_reads_only_frames_captured_after_it(tmp_path):
    rows = [{"t_capture": 1000.0 + i, "end_to_end_ms": 5000.0 if i < 3 else 150.0} for i in range(13)]
    (tmp_path / "scores.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    steady = after_warmup(tmp_path / "scores.jsonl", since=1003.0)
    assert steady["frames"] == 10 and steady["end_to_end_ms"]["p50"] == 150.0
    assert steady["fps"] == round(10 / (9 + 0.15), 3)
    assert after_warmup(tmp_path / "scores.jsonl", since=2000.0) is None
    assert after_warmup(tmp_path / "missing.jsonl", since=0.0) is None


def test_a_sampling_period_or_growth_limit_out_of_range_is_refused_at_the_start(capsys):
    """--sample-s 0 or -1 sampled in a busy loop (a core of the collector's, and a stage seen before multiprocessing
    named it was reported as `other:python`); a negative --max-growth failed every soak."""
    from tools.cli import main

    for args, says in ((["--sample-s", "0"], "--sample-s: must be above 0"),
                       (["--sample-s", "-1"], "--sample-s: must be above 0"),
                       (["--max-growth", "-0.1"], "--max-growth: must be at least 0")):
        with pytest.raises(SystemExit) as e:
            main(["soak", "configs/demo.yaml", "--minutes", "1", "--warmup-minutes", "0.5", *args])
        assert e.value.code == 2 and says in capsys.readouterr().err


def _line(monkeypatch, **ended) -> dict:
    """`ssdnet soak`'s line replaced by one that returns at once, ending as `ended` says; returns run_line's kwargs."""
    called = {}

    def run_line(cfg, out, **kwargs):
        called.update(kwargs)
        return {**StreamStats().summary(), "wall_s": 10.0, "interrupted": False, "stopped_by": None,
                "timed_out": False, "failed": None, **ended}

    monkeypatch.setattr("tools.soak.run_line", run_line)
    monkeypatch.setenv("COLUMNS", "200")
    return called


def test_a_soak_whose_sources_ran_out_fails_saying_so(tmp_path, monkeypatch, capsys):
    """A line of a folder camera without `loop` ended after ~10 s of a 6-minute soak: exit 0, "too short to judge
    ... (--minutes at least 5.6)" though --minutes was 6, and no word of its sources ending."""
    from tools.cli import main

    _line(monkeypatch)  # neither stopped as planned nor interrupted: every camera's stream ended
    assert main(["soak", "configs/demo.yaml", "--minutes", "6", "--warmup-minutes", "0.1", "--out",
                 str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert ("FAILED, the line ended after 10 s of the 360 s asked: its sources ran out (a folder or video source: "
            "set `loop: true`)") in out and "--minutes at least" not in out
    report = json.loads((tmp_path / "soak.json").read_text())
    assert (report["verdict"], report["end"], report["wall_s"]) == ("ended", "sources_ended", 10.0)


def test_the_minutes_hint_never_asks_for_what_was_given():
    j = judge({"node": growth(_series(0.8, 500, 500))}, max_growth=0.1)
    assert "(--minutes at least 5.6)" in verdict_line(j, 0.1, 0.1, 1)
    assert "--minutes at least" not in verdict_line(j, 0.1, 0.1, 6)  # given: the line stopped short (Ctrl-C)


def test_a_soak_s_planned_end_is_no_timeout_and_its_unaccounted_frames_are_explained(tmp_path, monkeypatch, capsys):
    """The demo soak's end read as a failure: a timeout warning, a table titled "(timed out)" and an unexplained
    "unaccounted 1" (a frame on its way at the stop)."""
    from tools.cli import main

    called = _line(monkeypatch, planned_stop=True, dropped=1, drops={"lost": 0, "unaccounted": 1})
    assert main(["soak", "configs/demo.yaml", "--minutes", "1", "--warmup-minutes", "0.5", "--out",
                 str(tmp_path)]) == 0
    assert called["planned_stop"] and called["timeout_s"] == 60
    out = capsys.readouterr().out
    assert out.split("\n")[0].strip() == "ssdnet run (stopped as planned)"
    assert "1 unaccounted frame: in flight at the planned stop, or lost on the way" in out
    assert json.loads((tmp_path / "soak.json").read_text())["end"] == "planned"


def test_a_soak_s_report_moves_with_its_run(tmp_path):
    """The same soak run again into one --out moved summary.json, events.jsonl ... to OUT/previous/ but overwrote
    soak.json: the earlier run's verdict was lost."""
    for name in ("soak.json", "summary.json", "events.jsonl"):
        (tmp_path / name).write_text(f"run 1 {name}")
    assert set_aside(tmp_path) == tmp_path / "previous"
    assert (tmp_path / "previous" / "soak.json").read_text() == "run 1 soak.json"
    assert not (tmp_path / "soak.json").exists()


def test_a_soak_into_an_out_another_run_holds_is_refused_before_it_starts(tmp_path, monkeypatch, capsys):
    """`ssdnet run` holds its OUT; `ssdnet soak` did not, so two soaks (or a soak and a run) into one --out
    interleaved their files."""
    from tools.cli import main

    called = _line(monkeypatch)
    with claimed(tmp_path, ("sinks",)):  # another run's collector writes there
        assert main(["soak", "configs/demo.yaml", "--minutes", "1", "--warmup-minutes", "0.5", "--out",
                     str(tmp_path)]) == 1
    assert not called and f"ssdnet soak: error: {tmp_path} is being written by another ssdnet run" in \
        capsys.readouterr().err
    assert not (tmp_path / "soak.json").exists()


def test_a_stage_that_ended_is_not_sampled_at_0_mb():
    """A stage process that had exited and was not reaped yet (a camera at the soak's planned stop) was sampled at
    0 MB: its row said "284.1 -> 0.0 MB (-100.0%)"."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.4)"])
    stop, samples = threading.Event(), {}
    sampler = threading.Thread(target=sample_processes, args=(stop, 0.05, samples, {}, {}))
    sampler.start()

    def rounds() -> int:  # the sampler's rounds so far: it samples this process in every one
        return max((len(v) for k, v in list(samples.items()) if not k.endswith(f"[{child.pid}]")), default=0)

    try:
        wait_until(lambda: psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE)
        n = rounds()
        wait_until(lambda: rounds() >= n + 3)  # three rounds over it as a zombie, unreaped
    finally:
        stop.set()
        sampler.join()
        child.wait()
    rows = [series for label, series in samples.items() if label.endswith(f"[{child.pid}]")]
    assert len(rows) == 1 and len(rows[0]) >= 2 and min(rss for _, rss, _ in rows[0]) > 1
