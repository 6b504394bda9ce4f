"""Section 24: a warm 256x256 frame with a full 16 MB bank at the default (160 values, 256 cells of 512 candidates)
against section 23's (320 values, 128 of 256), one thread, side by side (interleaved rounds, medians); each bank filled
to capacity with unit rows after 20 frames. Also a write of one frame's cells into the full bank (the coreset).
Usage from the repository root: python docs/ablation_runs/cells_share/frame_cost.py (output: frame_cost.log)."""
import time

import numpy as np
import torch

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.memory import grid_shape
from edge.sizes import feature_dim
from edge.synthetic import sample

torch.set_num_threads(1)
rng = np.random.default_rng(0)
frames = [sample("grass", 256, rng, 0.0)[0] for _ in range(24)]
SECTION_23 = {"dims": 320, "per_frame": 128, "candidates": 256, "per_frame_share": 1.0}
dets = {"default (section 24)": Detector(SSDNetConfig()),
        "section 23's": Detector(SSDNetConfig.model_validate({"memory": SECTION_23}))}
for det in dets.values():
    for f in frames[:20]:
        det.process(f)
    m = det.memory
    g = torch.Generator().manual_seed(0)
    m.bank.copy_(torch.nn.functional.normalize(torch.randn(m.bank.shape, generator=g), dim=1))
    m.spacing.fill_(m.typical_spacing)
    m.count = len(m.bank)
times = {k: [] for k in dets}
writes = {k: [] for k in dets}
for r in range(8):
    for k, det in dets.items():
        t = time.perf_counter()
        det.process(frames[20 + r % 4])
        times[k].append((time.perf_counter() - t) * 1000)
        m = det.memory
        feats = torch.randn(1, feature_dim(m.cfg), *grid_shape(256, 256, m.cfg))
        t = time.perf_counter()
        m.add(feats, torch.ones(feats.shape[-2:], dtype=torch.bool), torch.rand(feats.shape[-2:]))
        writes[k].append((time.perf_counter() - t) * 1000)
base = np.median(times["section 23's"])
for k, v in times.items():
    print(f"{k:22s} warm frame {np.median(v):7.0f} ms ({np.median(v) / base:.2f}x)  write "
          f"{np.median(writes[k]):5.1f} ms  bank rows {len(dets[k].memory.bank)}")
