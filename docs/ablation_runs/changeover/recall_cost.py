"""What looking for a kept surface costs (edge.detector's `_recall`, docs/ablations.md section 52): a camera on
gravel, its bank full, keeping 2 surfaces of brick with full banks; per warm 256 px frame at one thread, interleaved
in one run: the frame (`process`) and the search of the kept surfaces that a frame novel to its memory (or one after a
move, before its memory is ready) adds (`_recall`, no match).

    python docs/ablation_runs/changeover/recall_cost.py   # ~1 min
"""
import statistics
import time

import numpy as np
import torch

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.synthetic import texture
from tools.bench import fill_bank

torch.set_num_threads(1)
rng = np.random.default_rng(0)


def crops(name: str, n: int) -> list[np.ndarray]:
    src = texture(name, 320, np.random.default_rng(1))
    return [src[y:y + 256, x:x + 256].copy() for y, x in rng.integers(0, 64, (n, 2))]


cfg = SSDNetConfig.model_validate({"memory": {"move_frames": 10_000}})  # the full random bank moves nothing
det = Detector(cfg, "cpu")
for frame in crops("brick", 20):
    det.process(frame)
fill_bank(det.memory)
det._shelve()
det._shelve()
det._start_afresh()
for frame in crops("gravel", 20):
    det.process(frame)
fill_bank(det.memory)
frame_ms, score_ms, recall_ms = [], [], []
for frame in crops("gravel", 10):
    t = time.perf_counter()
    d = det.process(frame)
    frame_ms.append((time.perf_counter() - t) * 1000)
    score_ms.append(d.score_ms)
    t = time.perf_counter()
    assert not det._recall(torch.zeros(1, 3, 256, 256), 256, 256, torch.tensor(1.0))
    recall_ms.append((time.perf_counter() - t) * 1000)
f, sc, r = (statistics.median(v) for v in (frame_ms, score_ms, recall_ms))
print(f"| kept surfaces | bank rows each | frame ms | its scoring ms | search ms | search / frame |\n"
      f"| {len(det.shelf)} | {len(det.shelf[0].state['memory']['bank'])} | {f:.1f} | {sc:.1f} | {r:.1f} | {r / f:.3f} |")
