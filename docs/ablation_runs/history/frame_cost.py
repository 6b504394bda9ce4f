"""A warm frame's cost with and without the memory's history (docs/ablations.md section 34), side by side in one run:
Detector.process on 256 x 256 textures, the two configs interleaved frame by frame, 1 thread, medians.
Usage (repository root): python docs/ablation_runs/history/frame_cost.py [FRAMES] [HISTORY_FRAMES]"""
import statistics
import sys
import time

import numpy as np
import torch

from edge.config import SSDNetConfig, parse_config
from edge.detector import Detector
from edge.synthetic import texture

torch.set_num_threads(1)
frames = int(sys.argv[1]) if len(sys.argv) > 1 else 24
history = int(sys.argv[2]) if len(sys.argv) > 2 else 8
rng = np.random.default_rng(0)
images = [texture("gravel", 256, rng) for _ in range(frames)]
dets = {f"history {h}": Detector(parse_config(SSDNetConfig, {"memory": {"history_frames": h}}), "cpu")
        for h in (0, history)}
ms: dict[str, list[float]] = {name: [] for name in dets}
for i, image in enumerate(images):
    for name, det in dets.items():
        t = time.perf_counter()
        det.process(image)
        if i >= history:  # once the ring is full
            ms[name].append((time.perf_counter() - t) * 1000)
base = statistics.median(ms["history 0"])
for name, v in ms.items():
    print(f"{name}: median {statistics.median(v):.0f} ms over {len(v)} frames, {statistics.median(v) / base:.2f}x")
