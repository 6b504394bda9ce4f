"""Rules that keep a defect seen again from vouching for itself when a frame's self-similarity also searches the
camera's earlier frames (docs/ablations.md sections 34, 35), offline on a cache of the default's features.
Each frame's cells are searched in its own cells (outside its 8-cell neighbourhood) and every cell of the frames
before it in stream order (defects included), rescaled to the frame-alone map's median, less section 28's spacing
term (section 33's `earlier frames, rescaled, spacing`). Then:
- `gated z3`: earlier cells that stand more than 3 robust std above their own frame's median are left out;
- `max(frame, earlier)`: the larger of the frame-alone and the with-history verdicts (a history can raise a cell,
  never clear it); `mean(...)`: their mean; `max z`: the larger of the two in robust std of their frame;
- with MARGINS=m1,m2 (none unless set): `max(frame, earlier > m)` takes the with-history verdict only where it
  stands more than m robust std (of the frame-alone map) above the frame-alone one, `frame + (earlier - m)+` adds
  only what stands above that margin;
- with a textures-dev manifest, `no overlap`: the earlier frames' cells that overlap the tested crop in the source
  picture are left out (textures-dev's crops of a category overlap; this removes the leak section 33 measured).
Usage (repository root): [GATED=0] [MARGINS=0.5,1] python docs/ablation_runs/history/rule.py CACHE.pkl W [manifest.json]
(CACHE from docs/ablation_runs/line_stats/cache.py ... fp32; GATED=0 skips the gated search; logs: rule_*.log,
section 35's rule_*_margins.log with GATED=0 MARGINS=0.5,1,2)."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pickle
import torch

sys.path[:0] = [str(Path(__file__).parents[1] / 'ss_features')]
from reference import cells, earlier_search, grid_of, nearest, spaced  # noqa: E402
from common import near_mask, report, upmap  # noqa: E402

torch.set_num_threads(1)
W = float(sys.argv[2])
GATED = os.environ.get('GATED', '1') == '1'
MARGINS = [float(m) for m in os.environ.get('MARGINS', '').split(',') if m]
R = pickle.load(open(sys.argv[1], 'rb'))
cats: dict[str, list[str]] = {}
for k, e in R.items():
    cats.setdefault(e['cat'], []).append(k)
crop = {}  # textures-dev: each frame's place in its source picture (256 px crops)
if len(sys.argv) > 3:
    for cat in json.load(open(sys.argv[3]))['categories'].values():
        crop.update({im['image']: im['crop_yx'] for im in cat['images']})


def spread(m: torch.Tensor) -> torch.Tensor:
    return (m - m.median()).abs().median() * 1.4826


def z(m: torch.Tensor) -> torch.Tensor:
    return (m - m.median()) / spread(m)


def margins(v: dict, fs: torch.Tensor, hist: torch.Tensor, tag: str = '') -> None:
    """At each margin m (robust std of the frame-alone map): the with-history verdict only where it stands more than m
    above the frame-alone one, and the frame-alone one plus what stands above that."""
    for m in MARGINS:
        cut = fs + m * spread(fs)
        v[f'max(frame, earlier{tag} > {m:g})'] = torch.where(hist > cut, hist, fs)
        v[f'frame + (earlier{tag} - {m:g})+'] = fs + (hist - cut).clamp(min=0)


def outside(j: str, k: str) -> torch.Tensor:
    """Frame j's cells that do not overlap frame k's crop."""
    gh, gw = grid_of(R[j])
    (yj, xj), (yk, xk) = (crop['/'.join(Path(f).parts[-4:])] for f in (j, k))
    ys, xs = yj + 4 * torch.arange(gh), xj + 4 * torch.arange(gw)
    return ~(((ys + 4 > yk) & (ys < yk + 256))[:, None] & ((xs + 4 > xk) & (xs < xk + 256))[None]).reshape(-1)


def searched(F_, own, k, earlier, keep=None):
    return earlier_search(F_, own, k, earlier, grid_of(R[k]), keep)


maps: dict[str, dict] = {}
shares = []
for c, ks in cats.items():
    F_ = {k: cells(R[k], W) for k in ks}
    own = {k: nearest(F_[k], F_[k], near_mask(*grid_of(R[k]))) for k in ks}
    fs = {k: spaced(own[k][0], own[k][0][own[k][1]]) for k in ks}
    for i, k in enumerate(ks):
        grid, earlier = grid_of(R[k]), ks[:i]
        v = {'frame, spacing': fs[k]}
        hist = searched(F_, own, k, earlier) if earlier else fs[k]
        v['earlier, rescaled, spacing'] = hist
        if GATED:
            gated = searched(F_, own, k, earlier, torch.cat([z(fs[j]) <= 3 for j in earlier])) if earlier else fs[k]
            v['earlier, gated z3'] = gated
        v['max(frame, earlier)'] = torch.maximum(fs[k], hist)
        v['mean(frame, earlier)'] = 0.5 * (fs[k] + hist)
        margins(v, fs[k], hist)
        if GATED:
            v['max(frame, earlier gated)'] = torch.maximum(fs[k], gated)
        if crop:
            keep = torch.cat([outside(j, k) for j in earlier]) if earlier else None
            apart = searched(F_, own, k, earlier, keep) if earlier else fs[k]
            if earlier:
                shares.append(1 - float(keep.float().mean()))
            v['earlier, no overlap'] = apart
            v['max(frame, earlier no overlap)'] = torch.maximum(fs[k], apart)
            v['mean(frame, earlier no overlap)'] = 0.5 * (fs[k] + apart)
            margins(v, fs[k], apart, ' no overlap')
        v['max z'] = torch.maximum(z(fs[k]), z(hist)) if earlier else z(fs[k])
        for name, m in v.items():
            maps.setdefault(name, {})[k] = upmap(m, grid, tuple(4 * s for s in grid), R[k]['size'])
    print(c, flush=True)
print('W', W)
for name, m in maps.items():
    report(name, m, R, cats)
if shares:
    print(f"share of the earlier frames' cells that overlap the tested frame: {np.mean(shares):.2f}")
