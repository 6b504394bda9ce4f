"""Per-frame image statistics of the warm-up stream (default config, as `ssdnet eval --warmup` streams it): the
score, and the mean and top quantiles of the border-corrected map the score reads. Usage (repository root):
python docs/ablation_runs/image_score/history.py WARMUP_DIR N OUT.json"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, '.')
from edge.config import SSDNetConfig  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.images import read_rgb  # noqa: E402
from tools.eval.evaluate import warmup_paths  # noqa: E402

torch.set_num_threads(1)
det = Detector(SSDNetConfig())
rows = []
for p in warmup_paths(Path(sys.argv[1]), '', int(sys.argv[2])):
    img = read_rgb(p)
    d = det.process(img)
    h, w = img.shape[:2]
    sm = det.backend.score_map
    m = sm[0, 0, :h, :w].float().numpy() if sm is not None else d.anomaly_map
    if det.border is not None and det.border.ready:
        m = det.border.apply(m)
    v = np.sort(m.ravel().astype(np.float64))
    rows.append(dict(score=d.score, calibrated=d.calibrated, mean=float(v.mean()),
                     top9=float(v[int(0.9 * v.size):].mean()), top99=float(v[int(0.99 * v.size):].mean()),
                     memory=bool(det.memory.ready)))
json.dump(rows, open(sys.argv[3], 'w'))
