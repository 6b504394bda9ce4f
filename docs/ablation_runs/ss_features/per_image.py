"""Frame by frame: each defective frame's own pixel AUROC (its pixels only), the mean per defect type, for one spec of
features.py's maps: is it the map's units between frames that lose, or the ranking inside a frame (section 31)?
Given the dataset's manifest.json, also per defect type and contrast stratum (the defect's mean change in grey levels),
and pooled as `ssdnet eval` pools (each category's good frames with its defects of > 30 or <= 30 grey levels, the mean
over categories): which defects make textures-dev's gap (section 32).
Usage (repository root, after features.py): python docs/ablation_runs/ss_features/per_image.py features_maps.pkl
2:avg:4:0.75 [../shared/datasets/textures-dev/manifest.json] (output: per_image.log; the lines the manifest adds:
per_stratum.log)."""
import pickle
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from tools.eval.metrics import pixel_auprc, pixel_auroc

sys.path.insert(0, str(Path(__file__).parents[1] / 'cross_frame'))
from common import by_contrast, contrast_strata  # noqa: E402

R, cats, maps = pickle.load(open(sys.argv[1], 'rb'))
M = maps[sys.argv[2]]
stratum_of = contrast_strata(sys.argv[3], R) if len(sys.argv) > 3 else {}
per, by_stratum = {}, {}
for k, e in R.items():
    if e['label']:
        auroc = roc_auc_score(e['mask'].ravel() > 0, M[k].ravel())
        per.setdefault(e['type'], []).append(auroc)
        if k in stratum_of:
            by_stratum.setdefault((e['type'], stratum_of[k]), []).append(auroc)
            by_stratum.setdefault(('all', stratum_of[k]), []).append(auroc)
for t, v in sorted(per.items()):
    print(f"{t:16s} {np.mean(v):.3f} over {len(v)} frames")
print(f"{'all':16s} {np.mean(sum(per.values(), [])):.3f}")
for (t, s), v in sorted(by_stratum.items()):
    print(f"{t:16s} {s:11s} {np.mean(v):.3f} over {len(v)} frames")
for name, groups in by_contrast(R, cats, stratum_of) if stratum_of else ():
    rows = [(pixel_auroc([M[k] for k in kk], [R[k]['mask'] for k in kk]),
             pixel_auprc([M[k] for k in kk], [R[k]['mask'] for k in kk])) for kk in groups]
    auroc, auprc = np.mean(rows, 0)
    print(f"pooled, defects changed by {name} grey levels: AUROC / AUPRC {auroc:.3f} / {auprc:.3f} over {len(rows)}"
          " categories")
