"""The self-similarity at two of its scales, combined per frame (docs/ablations.md section 38), from the maps that
features.py saved (one or more of its pickles, merged): FINE + W x COARSE in raw units (both kNN distances of
unit-norm features with the same statistics), and the larger of the two once the coarse map is rescaled to the fine
one's mean and std over the frame.
Usage (repository root): MAPS=tex.pkl python docs/ablation_runs/ss_features/features.py ../shared/datasets/textures-dev
2:avg:4:0.75 1:avg:4:0.75 1:avg:4:0.75:8 (the same for real-dev), then
python docs/ablation_runs/multires/combine.py 2:avg:4:0.75 1:avg:4:0.75:8 tex.pkl (combine_textures.log,
combine_real.log; then with 1:avg:4:0.75 as FINE)."""
import pickle
import sys

import numpy as np

sys.path[:0] = ['.', 'docs/ablation_runs/cross_frame']
from common import report  # noqa: E402

fine_spec, coarse_spec, *paths = sys.argv[1:]
maps = {}
for path in paths:
    R, cats, saved = pickle.load(open(path, 'rb'))
    maps.update(saved)
fine, coarse = maps[fine_spec], maps[coarse_spec]
print(f'FINE {fine_spec}, COARSE {coarse_spec}')
report('fine alone', fine, R, cats)
report('coarse alone', coarse, R, cats)
for w in (0.25, 0.5, 1.0, 2.0, 3.0):
    report(f'fine + {w} coarse', {k: fine[k] + w * coarse[k] for k in fine}, R, cats)


def matched(c, f):
    return (c - c.mean()) / (c.std() + 1e-8) * f.std() + f.mean()


report('max(fine, matched coarse)', {k: np.maximum(fine[k], matched(coarse[k], fine[k])) for k in fine}, R, cats)
