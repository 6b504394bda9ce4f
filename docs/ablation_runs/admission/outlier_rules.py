"""Section 40: can a rule tell a crack's cells from a tile's own marks, where section 39's threshold cannot (both stand
2-3 robust stds above their frame's median self-similarity)? As own_rule.py (crack_warmup.py: the split's crack
warm-up streamed with the distance rule alone), for the cells the distance rule admits: the self-similarity z, the
memory distance over the camera's typical one, and the 8-connected component of cells with z > LOW each lies in (its
cells, its longer side in cells). A rule keeps a cell out if z > 3, or z > T and (its component has >= N cells or
spans >= L; or its distance ratio > r, or < r: the memory knows it unusually well). Printed: the share kept out of
the crack's cells (the mask, one cell dilated) / of all cells of the normal frames. Usage, from the repository root:
    python docs/ablation_runs/admission/outlier_rules.py SHARED_DATASETS SPLIT_OUT   (output: outlier_rules.log)"""
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path[:0] = ['.', 'docs/ablation_runs/admission']
from crack_warmup import admitted_cells  # noqa: E402

LOWS = (1.0, 1.5, 2.0)


def columns(z, ratio):
    """z, distance ratio, then (component cells, component span) at each of LOWS."""
    cols = [z, ratio]
    for low in LOWS:
        _, lab, st, _ = cv2.connectedComponentsWithStats((z > low).astype(np.uint8), connectivity=8)
        cols += [st[lab, cv2.CC_STAT_AREA] * (lab > 0),
                 np.maximum(st[lab, cv2.CC_STAT_WIDTH], st[lab, cv2.CC_STAT_HEIGHT]) * (lab > 0)]
    return np.stack(cols, -1)


R = admitted_cells(Path(sys.argv[1]), Path(sys.argv[2]), columns)


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
