"""Print each frame's novel share (its cells beyond `novel_ratio` x the camera's typical memory distance), calibrated
score and memory rows, streaming a folder of frames (every tenth from index 5 marked defective: warm10.py's folders)
or N synthetic 160 px frames of a texture without defects (seed 5), through one Detector.

    python docs/ablation_runs/long_stream/shares.py FOLDER|TEXTURE N [CONFIG]
"""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from edge.config import SSDNetConfig, load_config
from edge.detector import Detector
from edge.synthetic import sample

torch.set_num_threads(1)
src, n = sys.argv[1], int(sys.argv[2])
det = Detector(load_config(sys.argv[3]) if len(sys.argv) > 3 else SSDNetConfig(), "cpu")
novel_share, last = det._novel_share, {}


def spy(*args):
    """The detector's own novel share of the frame, kept for the print."""
    share = novel_share(*args)
    last["share"] = None if share is None else round(float(share), 3)
    return share


det._novel_share = spy
rng = np.random.default_rng(5)
files = sorted(Path(src).glob("*.png")) if Path(src).is_dir() else None
for i in range(n):
    if files:
        image, bad = cv2.cvtColor(cv2.imread(str(files[i])), cv2.COLOR_BGR2RGB), i % 10 == 5
    else:
        image, bad = sample(src, 160, rng, 0.0)[0], False
    last["share"] = None
    d = det.process(image)
    print(json.dumps({"i": i, "bad": bad, "novel": last["share"], "cal": round(float(d.calibrated), 2),
                      "rows": d.memory_rows}), flush=True)
