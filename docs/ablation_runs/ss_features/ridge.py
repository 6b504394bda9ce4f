"""A faint scratch's evidence along its length at the pixel level (docs/ablations.md section 32): an oriented ridge
filter (2nd derivative of a Gaussian across, sigma 1 px; a Gaussian along, sigma L px; 12 orientations; the largest
magnitude), optionally each orientation in units of its own spread over the frame (`orient`: a line in a direction
the texture lacks) or against the ridge level around it (`local`, sigma 16). First each scratch frame's own pixel
AUROC by contrast stratum, against the default's map; then the default's map plus w x the `orient` map (robust z per
frame, in the default map's median per-frame spread; or only its part above t), pooled as `ssdnet eval` pools.
Usage (repository root, after features.py): python docs/ablation_runs/ss_features/ridge.py features_maps.pkl
../shared/datasets/textures-dev (output: ridge.log)."""
import pickle
import sys
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parents[1] / 'cross_frame'))
from common import contrast_strata, report  # noqa: E402

R, cats, maps = pickle.load(open(sys.argv[1], 'rb'))
M = maps['2:avg:4:0.75']
root = Path(sys.argv[2])
ANGLES = np.linspace(0, np.pi, 12, endpoint=False)


def kernel(sigma_across: float, sigma_along: float, theta: float) -> np.ndarray:
    r = int(3 * max(sigma_across, sigma_along)) + 1
    y, x = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float32)
    u = x * np.cos(theta) + y * np.sin(theta)
    v = -x * np.sin(theta) + y * np.cos(theta)
    g = np.exp(-u ** 2 / (2 * sigma_across ** 2) - v ** 2 / (2 * sigma_along ** 2))
    k = (u ** 2 / sigma_across ** 4 - 1 / sigma_across ** 2) * g
    k -= k.mean()
    return k / np.abs(k).sum()


@lru_cache(maxsize=None)  # the per-frame and the pooled part ask for the same maps
def ridge(path: str, length: float, norm: str) -> np.ndarray:
    gray = cv2.imread(path, 0).astype(np.float32)
    rs = np.stack([cv2.filter2D(gray, cv2.CV_32F, kernel(1.0, length, t)) for t in ANGLES])
    if norm == 'orient':
        rs = rs / (rs.std(axis=(1, 2), keepdims=True) + 1e-6)
    r = np.abs(rs).max(0)
    if norm == 'local':
        r = r / (cv2.GaussianBlur(r, (0, 0), 16) + 1e-6)
    return cv2.GaussianBlur(r, (0, 0), 2)


stratum = contrast_strata(root / 'manifest.json', R)
scratches = [k for k, e in R.items() if e['type'] == 'scratch']
per = {}
for k in scratches:
    s = stratum[k]
    mask = R[k]['mask'].ravel() > 0
    per.setdefault(('default', s), []).append(roc_auc_score(mask, M[k].ravel()))
    for norm in ('none', 'orient', 'local'):
        for length in (4, 8, 16):
            auroc = roc_auc_score(mask, ridge(k, length, norm).ravel())
            per.setdefault((f'ridge {norm} L{length}', s), []).append(auroc)
for name in dict.fromkeys(n for n, _ in per):
    print(f"{name:18s} scratch frames' own pixel AUROC:",
          ' '.join(f"{s} {np.mean(per[(name, s)]):.3f} ({len(per[(name, s)])})" for s in ('high(>30)', 'mid(10-30)')))

spread = np.median([m.std() for m in M.values()])
report('default', M, R, cats)
for length in (8, 16):
    z = {}
    for k in M:
        r = ridge(k, length, 'orient')
        med = np.median(r)
        z[k] = (r - med) / (1.4826 * np.median(np.abs(r - med)) + 1e-6)
    report(f'ridge orient L{length} alone', z, R, cats)
    for w in (0.05, 0.1, 0.2, 0.4):
        report(f'+ {w} x ridge orient L{length}', {k: M[k] + w * spread * z[k] for k in M}, R, cats)
    for t in (2, 3):
        for w in (0.2, 0.4):
            report(f'+ {w} x (ridge orient L{length} - {t})+', {k: M[k] + w * spread * np.clip(z[k] - t, 0, None)
                                                                for k in M}, R, cats)
