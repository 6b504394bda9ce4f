"""Image-level score variants on the default map (docs/ablations.md section 4), from the raw maps
that abl5.py saved (70 images: per category good/000 and each defect type's 000). Image AUROC is
pooled over categories (maps are standardised per image, so scores are comparable).
  python docs/ablation_runs/abl7_image_score.py /tmp/abl5"""
import glob
import os
import sys

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score


def z(m: np.ndarray) -> np.ndarray:
    return (m - m.mean()) / (m.std() + 1e-8)


def largest_blob(m: np.ndarray, level: float) -> float:
    n, _, stats, _ = cv2.connectedComponentsWithStats((m > level).astype(np.uint8))
    return float(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0.0


SCORES = {
    "top 0.1 % mean (default)": lambda m: float(np.sort(m.ravel())[-66:].mean()),
    "max": lambda m: float(m.max()),
    "top 1 % mean": lambda m: float(np.sort(m.ravel())[-655:].mean()),
    "area above 3 std": lambda m: float((m > 3).mean()),
    "area above 4 std": lambda m: float((m > 4).mean()),
    "largest blob above 3 std": lambda m: largest_blob(m, 3),
    "largest blob above 4 std": lambda m: largest_blob(m, 4),
    "kurtosis": lambda m: float((m ** 4).mean()),
}

labels, maps = [], []
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.npz"))):
    d = np.load(path)
    maps.append(z(0.25 * z(d["l2_m8"]) + 0.25 * z(d["p_m8"]) + z(d["knn_in"])))
    labels.append(int(d["mask"].any()))
print(f"{len(labels)} images, {sum(labels)} defective")
for name, f in SCORES.items():
    print(f"{name:28s} image AUROC {roc_auc_score(labels, [f(m) for m in maps]):.3f}")
