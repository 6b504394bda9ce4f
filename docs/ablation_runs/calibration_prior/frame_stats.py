"""Each frame's image score as a camera's first frame sees it (frame alone, a fresh Detector), with the statistics of
the map that score reads: what a prior taken from the frame itself could use (docs/ablations.md section 60).

    python docs/ablation_runs/calibration_prior/frame_stats.py DATASET_OR_FOLDER... > OUT.json
    # a dataset (MVTec layout: every category's test frames, labelled) or a folder of normal frames; ~0.4 s a frame
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.images import read_rgb

det = Detector(SSDNetConfig())
rows = []
for root in map(Path, sys.argv[1:]):
    test = sorted(root.glob("*/test"))
    frames = ([(t.parent.name, p.parent.name != "good", p) for t in test for p in sorted(t.glob("*/*.png"))] if test
              else [(root.name, False, p) for p in sorted(root.glob("*.png"))])
    for camera, defective, path in frames:
        det.reset()
        d = det.process(read_rgb(path))
        m = det.backend.score_map[0, 0].float().cpu().numpy()
        med = float(np.median(m))
        q = np.quantile(m, [0.1, 0.25, 0.75, 0.9, 0.99]).tolist()
        rows.append({"root": root.name, "camera": camera, "defective": defective, "frame": path.name,
                     "score": round(d.score, 5), "median": round(med, 5),
                     "mad": round(float(np.median(np.abs(m - med))), 5), "std": round(float(m.std()), 5),
                     "quantiles": [round(v, 5) for v in q]})
        print(len(rows), camera, path.name, rows[-1]["score"], file=sys.stderr)
print(json.dumps(rows))
