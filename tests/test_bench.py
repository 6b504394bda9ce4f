"""`ssdnet bench --quick`: every section runs and the JSON has the documented keys with sane numbers."""
from __future__ import annotations

import json
import math

import pytest

from tools.cli import main as cli_main


def _numbers(obj):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)


@pytest.mark.slow
def test_bench_quick_json(tmp_path):
    out = tmp_path / "bench.json"
    rc = cli_main(["bench", "--quick", "--size", "64", "--steps", "2", "--frames", "3", "--transport-frames", "3",
                   "--backends", "torch", "--threads", "1", "--json", str(out)])
    r = json.loads(out.read_text())
    assert rc == 0, r["errors"]
    assert r["errors"] == {}
    for key in ("fp32", "fp32_channels_last", "amp"):
        assert r["fit_step_ms"][key] > 0
    for key in ("compile_fp32", "compile_amp", "cuda_graph"):
        v = r["fit_step"][key]
        assert isinstance(v, dict) or v.startswith("n/a")
    assert r["scorer_ms"]["torch"] > 0 and r["scorer_ms_no_update"]["torch"] > 0
    assert r["transport"]["project_fps"] > 0 and r["transport"]["bare_fps"] > 0
    assert r["pipeline"]["fps"] > 0 and r["pipeline"]["node_fps"] > 0 and r["pipeline"]["frames"] == 3
    assert set(r["pipeline"]["latency_ms"]["end_to_end"]) == {"p50", "p95", "p99"}
    scorer = r["pipeline"]["scorer"]  # the real line's node says which backend `auto` picked: the CPU's fastest
    assert (scorer["backend"], scorer["provider"]) == ("torch", "cpu") and scorer["reason"].startswith("auto")
    frame = r["frame"]  # this config's warm frame beside the previous default's, measured in the same run
    assert frame["config"]["frame_ms"] > 0 and frame["previous default"]["frame_ms"] > 0 and frame["ratio"] > 0
    sizes = r["memory_sizes"]  # the memory table: rows and search time grow with the size; 0 MB is off
    assert frame["config"]["bank_rows"] == sizes["16"]["rows"] and frame["previous default"]["bank_rows"] == 0  # full
    assert sizes["0"]["rows"] == 0 and 0 < sizes["4"]["rows"] < sizes["16"]["rows"] < sizes["64"]["rows"]
    assert sizes["64"]["bytes"] <= 64 * 2**20 and sizes["64"]["search_ms"] > 0 and sizes["64"]["add_ms"] > 0
    assert r["peak_rss_mb"] > 0
    assert r["flops"]["fit_step"] > 0 and r["flops"]["score"] > r["flops"]["fit_step"] / 100
    for key in ("fit_step_ms", "scorer_ms", "transport", "pipeline", "flops"):
        assert all(math.isfinite(x) for x in _numbers(r[key])), key
    assert all(r["pipeline"][k] > 0 for k in ("fps", "node_fps", "ratio", "fps_with_startup", "node_fps_with_startup"))
    # steady is read from every result, not from the events: a run with fewer than two events printed its start-up
    # rate as steady (an audit saw 9.45 = 9.45)
    assert r["pipeline"]["fps"] != r["pipeline"]["fps_with_startup"]


@pytest.mark.parametrize("args, says", [
    (["--size", "0"], "--size: must be at least 32"),  # 0 was taken as unset: a 64 px run
    (["--size", "20"], "--size: must be at least 32"),  # 3 sections failed with FrameError after the others ran
    (["--batch", "0"], "--batch: must be at least 1"),  # the fit step failed: 'need at least one array to stack'
    (["--backends", "torch,onnxrt"], "--backends: unknown backend 'onnxrt'"),  # ignored: torch alone was measured
])
def test_bench_refuses_a_bad_size_batch_or_backend_at_the_start(args, says, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["bench", "--quick", *args])
    assert e.value.code == 2 and says in capsys.readouterr().err
