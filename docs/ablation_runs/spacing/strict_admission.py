"""Which of the strict warm-up's defective frames (every tenth, index 5, 15, ...) the memory admits, with the
spacing on (W) or off (0): streams one category's warm-up folder of warm10.py through a default Detector.
Run from the repository root: python docs/ablation_runs/spacing/strict_admission.py W WARM10_OUT/mtd_break"""
import sys
from pathlib import Path

import cv2
import torch

from edge.config import SSDNetConfig, parse_config
from edge.detector import Detector

torch.set_num_threads(1)
w, folder = float(sys.argv[1]), Path(sys.argv[2])
det = Detector(parse_config(SSDNetConfig, {"memory": {"spacing_weight": w}}), "cpu")
admitted = []
for i, p in enumerate(sorted(folder.glob("*.png"))):
    d = det.process(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))
    if i % 10 == 5:
        admitted.append((i, round(d.calibrated, 2), d.memory_added))
print(w, folder.name, "defective frames (index, calibrated, cells added):", admitted)
print(w, "admitted defective frames:", sum(a[2] > 0 for a in admitted), "cells:", sum(a[2] for a in admitted))
