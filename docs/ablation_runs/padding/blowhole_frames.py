"""Which frames make blowhole's AUPRC after 200 warm-up frames (section 30): pooled AUPRC / AUROC of each saved stream
(blowhole_stream.py), the frames with pixels above the normal pixels' 99.9th percentile outside the defect, and the
AUPRC without frame 10. Usage: python docs/ablation_runs/padding/blowhole_frames.py before.npz after.npz
(output: blowhole.log)"""
import sys
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

for path in sys.argv[1:]:
    z = np.load(path)
    n = len([k for k in z if k.startswith('amap')])
    maps = [z[f'amap{i}'] for i in range(n)]
    masks = [z[f'mask{i}'] > 0 for i in range(n)]
    y = np.concatenate([m.ravel() for m in masks])
    s = np.concatenate([m.ravel() for m in maps])
    print(path, n, 'AUPRC %.3f AUROC %.3f' % (average_precision_score(y, s), roc_auc_score(y, s)))
    thr = np.quantile(s[~y], 0.999)
    for i in range(n):
        m = maps[i]
        fp = (m > thr) & ~masks[i]
        h, w = m.shape
        if fp.sum() > 0:
            ys, xs = np.nonzero(fp)
            db, dt = np.minimum(h - 1 - ys, w - 1 - xs), np.minimum(ys, xs)
            print(f'  frame {i:03d} {h}x{w} label {z[f"label{i}"]} px above {fp.sum()}, within 20 px of the bottom/right '
                  f'{(db < 20).mean():.2f}, of the top/left {(dt < 20).mean():.2f}; defect px {masks[i].sum()}, '
                  f'max in the defect {m[masks[i]].max() if masks[i].any() else 0:.3f}, max {m.max():.3f}')
    keep = [i for i in range(n) if i != 10]
    print('  without frame 010: AUPRC %.3f' % average_precision_score(
        np.concatenate([masks[i].ravel() for i in keep]), np.concatenate([maps[i].ravel() for i in keep])))
