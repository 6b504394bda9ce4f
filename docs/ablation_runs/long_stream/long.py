"""Stream N synthetic frames of one texture through one Detector, as the node does, and print per window of W frames:
pooled pixel AUROC / AUPRC (maps at half resolution), recall (defective frames whose calibrated score is over 3),
false rate (normal frames over 3), image AUROC of the raw score, and the memory's rows.

    python docs/ablation_runs/long_stream/long.py TEXTURE N W SEED [CONFIG|-] [DEFECT_PROB]
"""
import json
import sys
import time

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from edge.config import SSDNetConfig, load_config
from edge.detector import Detector
from edge.synthetic import sample

name, n, window, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cfg_path = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
prob = float(sys.argv[6]) if len(sys.argv) > 6 else 0.1
torch.set_num_threads(1)
det = Detector(load_config(cfg_path) if cfg_path else SSDNetConfig(), "cpu")
rng = np.random.default_rng(seed)
rows, maps, masks = [], [], []
t0 = time.time()
for i in range(n):
    image, mask = sample(name, 160, rng, prob)
    d = det.process(image)
    rows.append({"bad": bool(mask.any()), "cal": float(d.calibrated), "raw": float(d.score), "mem": d.memory_rows})
    maps.append(d.anomaly_map[::2, ::2].astype(np.float32))
    masks.append(mask[::2, ::2] > 0)
    if (i + 1) % window == 0:
        w = rows[-window:]
        m, k = np.stack(maps), np.stack(masks)
        bad, good = [r for r in w if r["bad"]], [r for r in w if not r["bad"]]
        print(json.dumps({
            "frames": i + 1, "auroc": round(roc_auc_score(k.ravel(), m.ravel()), 4),
            "auprc": round(average_precision_score(k.ravel(), m.ravel()), 4),
            "recall3": round(float(np.mean([r["cal"] > 3 for r in bad])), 3) if bad else None,
            "false3": round(float(np.mean([r["cal"] > 3 for r in good])), 3),
            "img_auroc": round(roc_auc_score([r["bad"] for r in w], [r["raw"] for r in w]), 3) if bad else None,
            "mem": w[-1]["mem"], "s": round(time.time() - t0)}), flush=True)
        maps, masks = [], []
