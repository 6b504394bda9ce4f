"""Image-level scores (docs/ablations.md section 4). Part 1: variants on the standardised default
map, from the raw maps that abl5.py saved (70 images: per category good/000 and each defect type's
000), image AUROC pooled over categories. Part 2: the raw (unstandardised) self-similarity map's
top 0.1 % / max / top 1 %, on all 168 dev images, image AUROC per category (4 good vs 8 defective).
  python docs/ablation_runs/abl7_image_score.py /tmp/abl5"""
import glob
import os
import sys

import cv2
import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from tools.eval.baselines import vgg_knn  # noqa: E402
from tools.eval.dataset import list_categories, load_category  # noqa: E402

torch.set_num_threads(1)


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

root = os.environ.get("DATASET", "../shared/datasets/textures-dev")
raw = {"top 0.1 % mean": lambda m: float(np.sort(m.ravel())[-66:].mean()), "max": lambda m: float(m.max()),
       "top 1 % mean": lambda m: float(np.sort(m.ravel())[-655:].mean())}
per_cat = {name: [] for name in raw}
for cat in list_categories(root):
    samples = load_category(root, cat)
    knn = [vgg_knn(s.image) for s in samples]
    for name, f in raw.items():
        per_cat[name].append(roc_auc_score([s.label for s in samples], [f(m) for m in knn]))
for name, aucs in per_cat.items():
    print(f"raw self-similarity {name:16s} mean per-category image AUROC {np.mean(aucs):.3f}")
