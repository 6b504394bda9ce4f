"""A warm frame's cost with and without the memory's history (docs/ablations.md sections 34, 35), side by side in one
run: Detector.process on 256 x 256 textures, the configs interleaved frame by frame, 1 thread, medians; the history
at the config's margin and at margin 0 (section 34's rule).
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
configs = {"history 0": {}, f"history {history}": {"history_frames": history},
           f"history {history}, margin 0": {"history_frames": history, "history_margin": 0}}
dets = {name: Detector(parse_config(SSDNetConfig, {"memory": memory}), "cpu") for name, memory in configs.items()}
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
