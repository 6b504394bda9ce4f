"""Where the streamed maps of dump_maps.py put their values (section 14's targets summary): per category the
pixel AUROC of the map, of a per-frame constant at the image score (the mean of the map's top 0.1 %), and
inside the defective frames only; and for crack and blowhole how many frames have their maximum on the
frame's first or last row or column. Usage: python where_maps.py A.pkl[,B.pkl]   (output: where_maps.log)"""
import pickle
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

rows = {}
for f in sys.argv[1].split(','):
    rows.update(pickle.load(open(f, 'rb')))
for cat, items in rows.items():
    labels, values, levels, inside_y, inside_v = [], [], [], [], []
    for r in items:
        m = r['amap'].astype(np.float32)
        y = (r['mask'] > 0).ravel() if r['mask'] is not None else np.zeros(m.size, bool)
        labels.append(y), values.append(m.ravel()), levels.append(np.full(m.size, np.quantile(m, 0.999)))
        if r['label']:
            inside_y.append(y), inside_v.append(m.ravel())
    y = np.concatenate(labels)
    print(f"{cat}: map {roc_auc_score(y, np.concatenate(values)):.3f}, frame constant "
          f"{roc_auc_score(y, np.concatenate(levels)):.3f}, inside defective frames "
          f"{roc_auc_score(np.concatenate(inside_y), np.concatenate(inside_v)):.3f}")
for cat in ('mtd_crack', 'mtd_blowhole'):
    border = {0: [0, 0], 1: [0, 0]}
    for r in rows[cat]:
        m = r['amap'].astype(np.float32)
        yy, xx = np.unravel_index(m.argmax(), m.shape)
        border[r['label']][0] += yy in (0, m.shape[0] - 1) or xx in (0, m.shape[1] - 1)
        border[r['label']][1] += 1
    print(f"{cat}: maximum on the border in {border[0][0]} of {border[0][1]} good, "
          f"{border[1][0]} of {border[1][1]} defective frames")
