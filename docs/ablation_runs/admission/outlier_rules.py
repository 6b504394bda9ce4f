"""Section 40: can a rule tell a crack's cells from a tile's own marks, where section 39's threshold cannot (both stand
2-3 robust stds above their frame's median self-similarity)? As own_rule.py: the split's crack warm-up streamed through
a Detector with the distance rule alone (`admit_own_mad: null`, section 38's); for every frame the memory admits, of
the cells the distance rule calls normal, the self-similarity z (robust stds above the frame's median), the memory
distance over the camera's typical one, and the 8-connected component of cells with z > LOW each lies in (its cells,
its longer side in cells). A rule keeps a cell out if z > 3, or z > T and (its component has >= N cells or spans >= L,
or its distance ratio > r, or < r: the memory knows it unusually well). Printed: the share kept out of the crack's cells (the mask, one cell dilated) / of all
cells of the normal frames. Usage, from the repository root:
    python docs/ablation_runs/admission/outlier_rules.py SHARED_DATASETS SPLIT_OUT   (output: outlier_rules.log)"""
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, '.')
from edge import memory as memmod  # noqa: E402
from edge.config import SSDNetConfig  # noqa: E402
from edge.detector import Detector  # noqa: E402

torch.set_num_threads(1)
det = Detector(SSDNetConfig.model_validate({'memory': {'admit_own_mad': None}}))
shared, split = Path(sys.argv[1]), Path(sys.argv[2])
gt = shared / 'real-dev/mtd_crack/ground_truth/crack'
bad = sorted((shared / 'real-dev/mtd_crack/test/crack').glob('*.png'))[0::2]
LOWS = (1.0, 1.5, 2.0)
cur, rows = {}, {'crack': [], 'good': []}
orig_add = memmod.FeatureMemory.add


def add(self, feats, normal, distance=None):
    """Columns: z, distance ratio, then (component cells, component span) at each of LOWS."""
    own = det.backend.memory_maps[0, 0].float().numpy()
    valid = normal.numpy()
    if valid.any():
        med = np.median(own[valid])
        z = (own - med) / (1.4826 * np.median(np.abs(own[valid] - med)) + 1e-12)
        cols = [z, distance.float().numpy() / max(det.memory.typical[1], 1e-12)]
        for low in LOWS:
            _, lab, st, _ = cv2.connectedComponentsWithStats((z > low).astype(np.uint8), connectivity=8)
            cols += [st[lab, cv2.CC_STAT_AREA] * (lab > 0),
                     np.maximum(st[lab, cv2.CC_STAT_WIDTH], st[lab, cv2.CC_STAT_HEIGHT]) * (lab > 0)]
        f = np.stack(cols, -1)
        if cur.get('mask') is not None:
            gh, gw = valid.shape
            m, c = cur['mask'], 8
            mp = np.zeros((gh * c, gw * c), np.uint8)
            mp[:m.shape[0], :m.shape[1]] = m
            mc = cv2.dilate((mp.reshape(gh, c, gw, c).max((1, 3)) > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
            rows['crack'].append(f[valid & (mc > 0)])
        else:
            rows['good'].append(f[valid])
    return orig_add(self, feats, normal, distance)


memmod.FeatureMemory.add = add
for i, p in enumerate(sorted((split / 'warmup/mtd_crack').glob('*.png'))):
    cur.clear()
    if i % 10 == 5:
        src = bad[(i // 10) % len(bad)]
        cur['mask'] = cv2.imread(str(gt / f'{src.stem}_mask.png'), 0) > 127
    det.process(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))
R = {k: np.concatenate(v) for k, v in rows.items()}


def report(name, out):
    print(f'{name}: {out(R["crack"]).mean():.3f} / {out(R["good"]).mean():.3f}', flush=True)


print(f'cells the distance rule admits: crack {len(R["crack"])}, normal frames {len(R["good"])}; '
      'kept out: crack / normal')
report('z > 2 (section 39)', lambda f: f[:, 0] > 2)
report('z > 3', lambda f: f[:, 0] > 3)
for li, low in enumerate(LOWS):
    for n, span in ((2, 99), (3, 99), (4, 99), (6, 99), (99, 3), (99, 4), (99, 5)):
        report(f'z > 3, or z > 2 in a component at z > {low} of >= {n} cells or spanning >= {span}',
               lambda f, li=li, n=n, span=span: (f[:, 0] > 3)
               | ((f[:, 0] > 2) & ((f[:, 2 + 2 * li] >= n) | (f[:, 3 + 2 * li] >= span))))
for k in R:
    mid = R[k][(R[k][:, 0] > 2) & (R[k][:, 0] <= 3), 1]
    print(f'{k}: distance ratio of the cells at 2 < z <= 3, deciles 1/3/5/7/9:',
          np.round(np.quantile(mid, [0.1, 0.3, 0.5, 0.7, 0.9]), 2))
for t in (1.5, 2.0):
    for r in (0.7, 0.8, 0.9, 1.0, 1.1):
        report(f'z > 3, or z > {t} and distance ratio > {r}',
               lambda f, t=t, r=r: (f[:, 0] > 3) | ((f[:, 0] > t) & (f[:, 1] > r)))
for r in (0.5, 0.6, 0.7, 0.8, 0.9):
    report(f'z > 3, or z > 2 and distance ratio < {r}', lambda f, r=r: (f[:, 0] > 3) | ((f[:, 0] > 2) & (f[:, 1] < r)))
