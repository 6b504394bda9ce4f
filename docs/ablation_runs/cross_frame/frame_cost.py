"""A warm default frame (256x256 brick, one thread) with the history of 0 / 4 / 8 frames, interleaved, medians
of frames 4-12. Needs the history patch applied: git apply docs/ablation_runs/cross_frame/history.patch, then
python docs/ablation_runs/cross_frame/frame_cost.py (and git checkout -- edge tools tests to go back)."""
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, '.')
from edge.config import SSDNetConfig, parse_config  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.synthetic import texture  # noqa: E402

torch.set_num_threads(1)
rng = np.random.default_rng(0)
imgs = [texture("brick", 256, rng) for _ in range(12)]
dets = {h: Detector(parse_config(SSDNetConfig, {"memory": {"history_frames": h, "min_frames": 2}})) for h in (0, 4, 8)}
ts = {h: [] for h in dets}
for im in imgs:
    for h, d in dets.items():
        t = time.perf_counter()
        d.process(im)
        ts[h].append((time.perf_counter() - t) * 1000)
base = statistics.median(ts[0][3:])
for h in ts:
    ms = statistics.median(ts[h][3:])
    print(f"history of {h} frames: {ms:.0f} ms per warm frame = {ms / base:.2f}x without")
