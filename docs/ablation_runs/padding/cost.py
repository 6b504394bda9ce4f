"""What keeping the padding's cells out of the self-similarity costs: knn_distance_and_spacing on a 64 x 64 grid
(a 256 px frame at 4 px cells; 448 VGG19 values and 5 local statistics per cell) with and without a frame of 62 x 62 cells, interleaved, one thread.
Usage (repository root): python docs/ablation_runs/padding/cost.py  (output: cost.log)"""
import time

import torch
import torch.nn.functional as F

from edge.knn import knn_distance_and_spacing

torch.set_num_threads(1)
feats = F.normalize(torch.randn(1, 453, 64, 64), dim=1)
times = {"whole grid": [], "frame of 62 x 62 cells": []}
for _ in range(10):
    for name, frame in (("whole grid", None), ("frame of 62 x 62 cells", (62, 62))):
        t0 = time.perf_counter()
        knn_distance_and_spacing(feats, 5, 8, frame)
        times[name].append(time.perf_counter() - t0)
base = sorted(times["whole grid"])[5]
for name, t in times.items():
    print(f"{name:24s} median {sorted(t)[5] * 1000:7.1f} ms  {sorted(t)[5] / base:.3f}x")
