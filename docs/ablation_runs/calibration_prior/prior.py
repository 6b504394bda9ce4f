"""The calibration's prior measured on normal frames, and what candidate priors flag (docs/ablations.md section 60).

    python docs/ablation_runs/calibration_prior/prior.py FRAME_STATS.json [NORMAL_RAWS.json ...] ['[[0.6, 0.06], ...]']

FRAME_STATS.json: frame_stats.py's output (each frame scored as a camera's first); NORMAL_RAWS.json: normal streams
recorded by ../regions/normal_raws.py (their first 16 frames, scored before the memory enters, count as that
camera's). Prints the prior measured (the median and robust spread of the good frames' scores, each camera counted
alike), then for each candidate (median, scale): the frames scored alone (`ssdnet score`) that are events at threshold
3, and the events among a camera's first 10 frames, over 100 random orders of each camera's frames (the calibration
leans on the prior there; the frames before the memory enters score the same in any order).
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

import numpy as np

from edge.calibration import MAD_TO_STD, ScoreCalibrator
from edge.config import CalibrationConfig

THRESHOLD, FIRST, ORDERS = 3.0, 10, 100

args = sys.argv[1:]
candidates = json.loads(args.pop()) if args and args[-1].startswith("[") else [[0.6, 0.06], [0.7, 0.1]]
cameras: dict[tuple[str, str], list[tuple[bool, float]]] = defaultdict(list)
for row in json.load(open(args[0])):
    cameras[row["root"], row["camera"]].append((row["defective"], row["score"]))
for path in args[1:]:
    recorded = json.load(open(path))
    cameras["normal streams", recorded["source"]] = [(False, s) for s in recorded["raw"][:16]]

good = [np.array([s for d, s in frames if not d]) for frames in cameras.values()]
pooled = np.concatenate([np.quantile(g, np.linspace(0.005, 0.995, 100)) for g in good if len(g)])
median = float(np.median(pooled))
print(f"prior measured on {len(good)} cameras' normal frames: median {median:.3f}, robust spread "
      f"{MAD_TO_STD * float(np.median(np.abs(pooled - median))):.3f}")

rng = np.random.default_rng(0)
for prior_median, prior_scale in candidates:
    cfg = CalibrationConfig(prior_median=prior_median, prior_scale=prior_scale)
    alone, first = defaultdict(lambda: np.zeros(4)), defaultdict(lambda: np.zeros(4))  # good events, good, def...
    for (root, _), frames in cameras.items():
        for defective, raw in frames:
            alone[root] += [0, 0, raw >= prior_median + THRESHOLD * prior_scale, 1] if defective else \
                [raw >= prior_median + THRESHOLD * prior_scale, 1, 0, 0]
        for _ in range(ORDERS):
            cal = ScoreCalibrator(cfg)
            for i in rng.permutation(len(frames))[:FIRST]:
                defective, raw = frames[i]
                event = cal.calibrate(raw) >= THRESHOLD
                first[root] += [0, 0, event, 1] if defective else [event, 1, 0, 0]
                cal.observe(raw)
    print(f"prior {prior_median} / {prior_scale}:")
    for root in alone:
        a, f = alone[root], first[root]
        print(f"  {root:16s} scored alone: good {int(a[0])}/{int(a[1])}, defective {int(a[2])}/{int(a[3])} events;"
              f"  first {FIRST} frames: good {f[0] / max(f[1], 1):.3f}, defective {f[2] / max(f[3], 1):.3f} events")
