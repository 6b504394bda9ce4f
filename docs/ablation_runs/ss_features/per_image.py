"""Frame by frame: each defective frame's own pixel AUROC (its pixels only), the mean per defect type, for one spec of
features.py's maps: is it the map's units between frames that lose, or the ranking inside a frame (section 31)?
Usage (repository root, after features.py): python docs/ablation_runs/ss_features/per_image.py features_maps.pkl
2:avg:4:0.75 (output: per_image.log)."""
import pickle
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

R, cats, maps = pickle.load(open(sys.argv[1], 'rb'))
M = maps[sys.argv[2]]
per = {}
for k, e in R.items():
    if e['label']:
        per.setdefault(e['type'], []).append(roc_auc_score(e['mask'].ravel() > 0, M[k].ravel()))
for t, v in sorted(per.items()):
    print(f"{t:16s} {np.mean(v):.3f} over {len(v)} frames")
print(f"{'all':16s} {np.mean(sum(per.values(), [])):.3f}")
