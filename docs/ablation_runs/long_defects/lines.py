"""Long straight defects on scikit-image textures, each frame scored alone (a fresh Detector, fit-free default):
per line length, the frames' mean pixel AUROC and the image AUROC against the same crops without a line
(docs/ablations.md section 65). 18 crops of 320 x 240 px (brick, grass, gravel; 6 each), a 3 px line of 24 / 48 / 96 /
192 px at a random angle, dark (grey 20) or bright (235) in turn. Each argument NAME='{score overrides}':

    python docs/ablation_runs/long_defects/lines.py 'default={}' 'far={"knn_far_weight":1}'   # ~25 s per config
"""
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from edge.config import SSDNetConfig  # noqa: E402
from edge.detector import Detector  # noqa: E402

torch.set_num_threads(1)
TEX = {"brick": data.brick(), "grass": data.grass(), "gravel": data.gravel()}
H, W = 240, 320
rng = np.random.default_rng(0)
frames = []
for name, t in TEX.items():
    t = t if t.ndim == 3 else np.repeat(t[..., None], 3, 2)
    for i in range(6):
        y, x = rng.integers(0, t.shape[0] - H), rng.integers(0, t.shape[1] - W)
        crop = np.ascontiguousarray(t[y:y + H, x:x + W])
        frames.append((name, "good", 0, crop, None))
        for L in (24, 48, 96, 192):
            f, m = crop.copy(), np.zeros((H, W), np.uint8)
            ang = rng.uniform(0, np.pi)
            cy, cx = rng.integers(60, H - 60), rng.integers(80, W - 80)
            dy, dx = np.sin(ang) * L / 2, np.cos(ang) * L / 2
            p1, p2 = (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy))
            val = 20 if i % 2 == 0 else 235
            cv2.line(f, p1, p2, (val, val, val), 3)
            cv2.line(m, p1, p2, 1, 3)
            frames.append((name, "line", L, f, m > 0))
CONFIGS = {k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])} or {"default": {}}
for cname, over in CONFIGS.items():
    cfg = SSDNetConfig.model_validate({"score": over})
    t0 = time.time()
    res = []
    for name, kind, L, f, m in frames:
        det = Detector(cfg, "cpu")
        d = det.process(f)
        amap = d.anomaly_map
        auc = roc_auc_score(m.ravel(), amap.ravel()) if m is not None else np.nan
        res.append((name, kind, L, auc, d.score))
    out = [cname]
    for L in (24, 48, 96, 192):
        aucs = [r[3] for r in res if r[2] == L]
        good = [r[4] for r in res if r[1] == "good"]
        bad = [r[4] for r in res if r[2] == L]
        iauc = roc_auc_score([0] * len(good) + [1] * len(bad), good + bad)
        out.append(f"L{L}: px {np.mean(aucs):.3f} img {iauc:.3f}")
    print(" | ".join(out), f"({time.time()-t0:.0f}s)", flush=True)
