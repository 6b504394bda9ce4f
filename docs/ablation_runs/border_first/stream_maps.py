"""Stream a dev set's categories through the default Detector as `ssdnet eval --mode stream` does and save every
frame's map, mask and score (one .npz per category) for offline analysis of the border's share of the maps.

    python docs/ablation_runs/border_first/stream_maps.py DATASET OUT [--warmup DIR --warmup-frames N] [--config F]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from edge.config import load_config
from edge.detector import Detector
from tools.eval.dataset import list_categories, load_category
from tools.eval.evaluate import warm_up, warmup_paths

p = argparse.ArgumentParser()
p.add_argument("dataset")
p.add_argument("out")
p.add_argument("--warmup")
p.add_argument("--warmup-frames", type=int)
p.add_argument("--config")
p.add_argument("--part", default="0/1", help="i/n: this process takes every n-th category from the i-th")
a = p.parse_args()
torch.set_num_threads(1)
out = Path(a.out)
out.mkdir(parents=True, exist_ok=True)
i, n = (int(v) for v in a.part.split("/"))
det = Detector(load_config(a.config), "cpu")
for category in list_categories(a.dataset)[i::n]:
    samples = load_category(a.dataset, category)
    det.reset()
    if a.warmup:
        det.restore(warm_up(det, warmup_paths(Path(a.warmup), category, a.warmup_frames), lambda: None))
    maps, masks, scores, kinds = [], [], [], []
    for s in samples:
        d = det.process(s.image)
        maps.append(d.anomaly_map.astype(np.float32))
        masks.append(s.mask)
        scores.append(d.score)
        kinds.append(s.defect_type)
    np.savez_compressed(out / f"{category}.npz", maps=np.array(maps, dtype=object), masks=np.array(masks, dtype=object),
                        scores=np.array(scores), kinds=np.array(kinds))
    print(category, flush=True)
