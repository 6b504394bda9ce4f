"""How far the self-similarity's features go on textures-dev given a reference that leaks the answer
(docs/ablations.md section 33): each frame's cells are searched, instead of or beside the frame's own, in the cells of
its category's good frames (the other good frames for a good one). Those are crops of the same source picture and
overlap the tested frame: a better reference than a line ever has, so a bound on the features, not a method.
Features: the default's (VGG19 relu1_2 + relu2_2 + relu3_1 of the 2x frame on 4 px cells, local statistics at W),
k 5; the frame's own search excludes its 8-cell neighbourhood. `rescaled`: the reference distances times the
frame-alone map's median over their own (section 13's units); `spacing`: less section 28's 0.75 x the neighbours' own
frame-alone distances, centred (the default's term; a reference cell's is its distance within its own crop).
`earlier frames`: what a stream holds, the frame's cells and those of every frame before it in stream order (on
textures-dev these overlap it too).
Usage (repository root): python docs/ablation_runs/ss_features/reference_bound.py CACHE.pkl [manifest.json|- [W]]
(CACHE: docs/ablation_runs/line_stats/cache.py of all 14 categories, fp32; W: the local statistics' weight, 0.2 as the
default's; output: reference_bound.log, and reference_bound_w.log for W 0.5, 1 and 2; on a real-dev cache, with `-`
for the manifest: reference_bound_real.log, where `the good crops` are the category's other good frames)."""
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).parents[3]), str(Path(__file__).parents[1] / 'cross_frame'), str(Path(__file__).parent)]
from common import by_contrast, contrast_strata, near_mask, report, upmap  # noqa: E402
from reference import earlier_search, grid_of, nearest, spaced  # noqa: E402
from reference import cells as cells_at  # noqa: E402
from tools.eval.metrics import pixel_auroc  # noqa: E402

torch.set_num_threads(2)
W = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
R = pickle.load(open(sys.argv[1], 'rb'))
cats: dict[str, list[str]] = {}
for k, e in R.items():
    cats.setdefault(e['cat'], []).append(k)


def cells(e) -> torch.Tensor:
    return cells_at(e, W)


def history(F_: dict, own: dict, earlier: list[str], k: str) -> torch.Tensor:
    """The frame's search of its own and the earlier frames' cells (reference.earlier_search; the frame alone, spaced,
    for a stream's first frame)."""
    d = own[k][0]
    return earlier_search(F_, own, k, earlier, grid_of(R[k])) if earlier else spaced(d, d[own[k][1]])


maps: dict[str, dict] = {}
for c, ks in cats.items():
    F_ = {k: cells(R[k]) for k in ks}
    own = {k: nearest(F_[k], F_[k], near_mask(*grid_of(R[k]))) for k in ks}
    for i, k in enumerate(ks):
        grid, size = grid_of(R[k]), R[k]['size']
        padded = tuple(4 * s for s in grid)
        goods = [j for j in ks if R[j]['type'] == 'good' and j != k]
        (d, i_own), (ref, i_ref) = own[k], nearest(F_[k], torch.cat([F_[j] for j in goods]))
        ref_own = torch.cat([own[j][0] for j in goods])
        ref_r = ref * d.median() / ref.median()  # section 13: the frame keeps its own map's level
        for v, m in (('frame', d), ('frame, spacing', spaced(d, d[i_own])), ('reference', ref),
                     ('either', torch.minimum(d, ref)), ('reference, rescaled', ref_r),
                     ('either, rescaled', torch.minimum(d, ref_r)),
                     ('reference, rescaled, spacing', spaced(ref_r, ref_own[i_ref])),
                     ('earlier frames, rescaled, spacing', history(F_, own, ks[:i], k))):
            maps.setdefault(v, {})[k] = upmap(m, grid, padded, size)
    print(c, flush=True)
for v, m in maps.items():
    report(v, m, R, cats)
if len(sys.argv) > 2 and sys.argv[2] != '-':
    stratum_of = contrast_strata(sys.argv[2], R)
    for v, m in maps.items():
        for name, groups in by_contrast(R, cats, stratum_of):
            rows = [pixel_auroc([m[k] for k in kk], [R[k]['mask'] for k in kk]) for kk in groups]
            print(f"{v}: defects changed by {name} grey levels, pooled AUROC {np.mean(rows):.3f}", flush=True)
    # How much of each frame its reference holds: the share of its pixels that lie in one of the other good crops
    # (textures-dev's crops are 256 x 256, the set's README).
    manifest, CROP = json.load(open(sys.argv[2])), 256
    shares = []
    for cat in manifest['categories'].values():
        goods = [im for im in cat['images'] if im['defect_type'] == 'good']
        for im in cat['images']:
            (y, x), held = im['crop_yx'], np.zeros((CROP, CROP), bool)
            for gy, gx in (g['crop_yx'] for g in goods if g is not im):
                held[max(gy - y, 0):max(gy - y + CROP, 0), max(gx - x, 0):max(gx - x + CROP, 0)] = True
            shares.append(held.mean())
    print(f"share of a frame's pixels in its reference: mean {np.mean(shares):.2f}, median {np.median(shares):.2f}, "
          f"min {np.min(shares):.2f}, max {np.max(shares):.2f}")
