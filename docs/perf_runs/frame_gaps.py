"""Each camera's longest gap between two frames' captures in a line's scores.jsonl, and the span of all of them:
`python docs/perf_runs/frame_gaps.py OUT/scores.jsonl` (docs/perf_runs/two_credit_cameras.yaml)."""
from __future__ import annotations

import json
import sys
from itertools import pairwise


def main(path: str) -> None:
    with open(path) as lines:
        records = [json.loads(line) for line in lines]
    for camera in sorted({r["source"] for r in records}):
        times = [r["t_capture"] for r in records if r["source"] == camera]
        gaps = [b - a for a, b in pairwise(times)]
        print(f"{camera}: {len(times)} frames, longest gap {max(gaps, default=0.0):.1f} s")
    captured = [r["t_capture"] for r in records]
    print(f"all frames within {max(captured) - min(captured):.1f} s")


if __name__ == "__main__":
    main(sys.argv[1])
