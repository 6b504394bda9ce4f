"""Stream N synthetic frames of one texture through one Detector and print every 250 frames the median and robust
spread of the last 200 normal frames' raw scores, the calibration's (median, scale) and the memory's blend, floor and
typical (mean, spread) distance.

    python docs/ablation_runs/long_stream/blend.py TEXTURE N SEED DEFECT_PROB [CONFIG]
"""
import json
import sys

import numpy as np
import torch

from edge.config import SSDNetConfig, load_config
from edge.detector import Detector
from edge.synthetic import sample

name, n, seed, prob = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
torch.set_num_threads(1)
det = Detector(load_config(sys.argv[5]) if len(sys.argv) > 5 else SSDNetConfig(), "cpu")
rng = np.random.default_rng(seed)
raws = []
for i in range(n):
    image, mask = sample(name, 160, rng, prob)
    d = det.process(image)
    if not mask.any():
        raws.append(d.score)
    if i % 250 == 249:
        r = np.array(raws[-200:])
        mad = 1.4826 * np.median(np.abs(r - np.median(r)))
        m = det.memory
        out = {"i": i, "raw_med": round(float(np.median(r)), 4), "raw_mad": round(float(mad), 4),
               "calib": [round(float(x), 4) for x in d.calibration]}
        if m is not None and m.ready:
            out.update(blend=[round(float(x), 3) for x in m.blend], floor=[round(float(x), 3) for x in m.floor],
                       typical=[round(float(x), 3) for x in m.typical])
        print(json.dumps(out), flush=True)
