"""The demo line (configs/demo.yaml) run on two checkouts, interleaved: wall time, end-to-end and queue latency
percentiles, the cameras' last frames and each camera process's memory.

    python docs/perf_runs/demo_line_end.py OLD_CHECKOUT NEW_CHECKOUT [RUNS]

Each checkout's own venv is not needed: the command runs `python -m tools.cli` with PYTHONPATH set to the checkout.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def camera_rss_mb(proc: subprocess.Popen, seconds: float) -> list[float]:
    """RSS of the line's child processes smaller than the node's, sampled once `seconds` after the start."""
    time.sleep(seconds)
    out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    rss = []
    for pid in out:
        try:
            if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            kb = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS"))
        except (OSError, StopIteration):
            continue
        rss.append(kb / 1024)
    return sorted(rss)[:-1]  # the largest is the node


def run(checkout: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "PYTHONPATH": checkout}
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "run", "configs/demo.yaml", "--out", out],
                                cwd=checkout, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rss = camera_rss_mb(proc, 20.0)
        proc.wait()
        wall = time.monotonic() - t0
        summary = json.loads(Path(out, "summary.json").read_text())
        rows = [json.loads(line) for line in open(Path(out, "scores.jsonl"))]
    last = sorted(r["end_to_end_ms"] for r in rows if r["seq"] == max(x["seq"] for x in rows))
    lat = summary["latency_ms"]
    return {"wall_s": round(wall, 1), "e2e": lat["end_to_end"], "queue": lat["queue"], "last_frames_ms": last,
            "camera_rss_mb": [round(r) for r in rss]}


def main() -> None:
    old, new = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    print("| run | checkout | wall s | end to end p50 / p95 / p99 ms | queue p99 ms | last frames' end to end ms | "
          "camera processes' RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for i in range(runs):
        for name, path in (("before", old), ("after", new)):
            r = run(path)
            e = r["e2e"]
            print(f"| {i + 1} | {name} | {r['wall_s']} | {e['p50']:.0f} / {e['p95']:.0f} / {e['p99']:.0f} | "
                  f"{r['queue']['p99']:.0f} | {', '.join(f'{v:.0f}' for v in r['last_frames_ms'])} | "
                  f"{', '.join(map(str, r['camera_rss_mb']))} |", flush=True)


if __name__ == "__main__":
    main()
