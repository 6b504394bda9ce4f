"""Stream N synthetic frames of one texture through one Detector and print, every 250 frames and at each frame whose
camera's normal moved or was recalled: the memory's rows, the calibration's (median, scale), the raw score, the recall
of the last 25 defective frames at calibrated 3 and the median calibrated score of the last 200 normal ones.

    python docs/ablation_runs/long_stream/moved.py TEXTURE N SEED [DEFECT_PROB [CONFIG]]
"""
import json
import sys

import numpy as np
import torch

from edge.config import SSDNetConfig, load_config
from edge.detector import Detector
from edge.synthetic import sample

name, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
prob = float(sys.argv[4]) if len(sys.argv) > 4 else 0.1
torch.set_num_threads(1)
det = Detector(load_config(sys.argv[5]) if len(sys.argv) > 5 else SSDNetConfig(), "cpu")
rng = np.random.default_rng(seed)
bad_cal, cals = [], []
for i in range(n):
    image, mask = sample(name, 160, rng, prob)
    d = det.process(image)
    (bad_cal if mask.any() else cals).append(d.calibrated)
    if d.normal_moved or d.normal_recalled or i % 250 == 249:
        print(json.dumps({"i": i, "moved": d.normal_moved, "recalled": d.normal_recalled, "mem": d.memory_rows,
                          "calib": [round(float(x), 4) for x in d.calibration], "raw": round(float(d.score), 4),
                          "recall3_last": round(float(np.mean(np.array(bad_cal[-25:]) > 3)), 2) if bad_cal else None,
                          "good_cal_med": round(float(np.median(cals[-200:])), 2)}), flush=True)
