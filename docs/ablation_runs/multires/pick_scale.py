"""The self-similarity's scale chosen per frame, from the frame itself (docs/ablations.md section 40): of the default's
map (the frame as it is, 8 px cells) and a finer one, the frame takes the one whose peak stands higher in its own
robust units, (top 0.1 % mean - median) / (1.4826 MAD); the finer map is first mapped onto the default's median and
robust spread over the frame (raw, the finer map's level differs and the pooled AUROC falls). Also: the larger of the
two; and a choice per camera, of section 37's scale where the camera's frames peak lower at it, or spread less
(1.4826 MAD / median), the median over all of the camera's frames (a bound on what its earlier frames would tell). From
the maps features.py saved (section 38), merged.
Usage (repository root): python docs/ablation_runs/multires/pick_scale.py PICKLES... (pick_scale.log: textures-dev's,
then real-dev's pickles of section 38's runs)."""
import pickle
import sys

import numpy as np

sys.path[:0] = ['.', 'docs/ablation_runs/cross_frame']
from common import report  # noqa: E402

DEFAULT = '1:avg:4:0.75:8'


def mad(m):
    return np.median(np.abs(m - np.median(m))) + 1e-8


def peak(m):
    return (np.sort(m.ravel())[-max(1, int(0.001 * m.size)):].mean() - np.median(m)) / (1.4826 * mad(m))


def spread(m):
    return 1.4826 * mad(m) / np.median(m)


def onto(c, b):
    return (c - np.median(c)) / mad(c) * mad(b) + np.median(b)


maps = {}
for path in sys.argv[1:]:
    R, cats, saved = pickle.load(open(path, 'rb'))
    maps.update(saved)
B = maps[DEFAULT]
report('the default (as it is, 8 px cells)', B, R, cats)
for fine in ('1:avg:4:0.75', '2:avg:4:0.75'):
    F = maps[fine]
    pf, pb = {k: peak(F[k]) for k in B}, {k: peak(B[k]) for k in B}
    print(f'{fine}: picked on {np.mean([pf[k] > pb[k] for k in B]):.2f} of the frames')
    report(f'pick {fine}, raw', {k: F[k] if pf[k] > pb[k] else B[k] for k in B}, R, cats)
    for r in (1.0, 1.2, 1.5):
        report(f'pick {fine} if its peak > {r} x, onto the default',
               {k: onto(F[k], B[k]) if pf[k] > r * pb[k] else B[k] for k in B}, R, cats)
    report(f'max(default, {fine} onto it)', {k: np.maximum(B[k], onto(F[k], B[k])) for k in B}, R, cats)
F = maps['2:avg:4:0.75']
for name, crit in (('peak', peak), ('spread', spread)):
    use = {c: np.median([crit(F[k]) for k in ks]) < np.median([crit(B[k]) for k in ks]) for c, ks in cats.items()}
    report(f'per camera, 2:avg:4:0.75 where its median {name} is lower ({np.mean(list(use.values())):.2f} of cameras)',
           {k: F[k] if use[c] else B[k] for c, ks in cats.items() for k in ks}, R, cats)
