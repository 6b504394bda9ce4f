"""A lighting step on one camera: 40 gravel frames, then 90 at GAIN x their brightness with a drawn defect in every
third; per 30 frames after the step: defects flagged of 10, normal frames flagged of 20, image AUROC; the frames at
which the camera's normal moved (docs/ablations.md section 47).

    python docs/ablation_runs/changeover/lighting.py default|before GAIN   # ~2 min on 2 CPU cores
"""
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
sys.path.insert(0, str(Path(__file__).parent))
import changeover as co
import edge.calibration as calibration
from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.synthetic import draw_defect
variant, gain = sys.argv[1], float(sys.argv[2])
if variant == "before":
    calibration.ScoreCalibrator.observe = co.observe_before
rng = np.random.default_rng(0)
old = list(co.crops("gravel", 40, rng))
new, lab = [], []
for i, f in enumerate(co.crops("gravel", 90, rng)):
    f = np.clip(f * gain, 0, 255).astype(np.uint8)
    if i % 3 == 2:
        f, _ = draw_defect(f, rng)
    new.append(f); lab.append(i % 3 == 2)
det = Detector(SSDNetConfig(), "cpu")
for f in old: det.process(f)
cal, moved = [], []
for i, f in enumerate(new):
    d = det.process(f); cal.append(d.calibrated)
    if d.normal_moved: moved.append(i)
cal, lab = np.array(cal), np.array(lab)
print(variant, gain, moved, "; ".join(f"{int((cal[s:s+30][lab[s:s+30]]>3).sum())}/10, {int((cal[s:s+30][~lab[s:s+30]]>3).sum())}/20, {roc_auc_score(lab[s:s+30], cal[s:s+30]):.3f}" for s in range(0, 90, 30)))
