"""The frame's mirrored and rotated copies as more candidates for its self-similarity (docs/ablations.md section 32).
Each copy's cells are computed as the default's (VGG19 relu1_2 + relu2_2 + relu3_1 of the 2x frame on 4 px cells,
local statistics, fp32) and searched beside the frame's own; a cell never matches a cell of any copy that shows the
same place of the frame (within the 8-cell neighbourhood, in the frame's coordinates), so a defect cannot find its own
mirror image. The spacing term reads each neighbour's distance at its place in the frame.
Variants: `id` (the default), `flip` (the frame, its left-right, up-down and both flips), `d8` (flips and rotations).
Usage (repository root): python docs/ablation_runs/ss_features/symmetry.py ../shared/datasets/textures-dev id flip d8
(output: symmetry.log; `d8` stopped after 6 categories, the other 8 run with `id flip` on a folder of links to them;
the maps go to symmetry_maps.pkl)."""
import pickle
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path[:0] = [str(Path(__file__).parents[3]), str(Path(__file__).parents[1] / 'cross_frame')]
from common import report  # noqa: E402
from edge.config import SSDNetConfig  # noqa: E402
from edge.filters import gaussian_blur, gaussian_kernel  # noqa: E402
from edge.fitter import image_to_tensor  # noqa: E402
from edge.knn import grid_features  # noqa: E402
from edge.local_stats import stats_features  # noqa: E402
from edge.vgg import build_vgg  # noqa: E402
from tools.eval.dataset import load_category  # noqa: E402

torch.set_num_threads(2)
vgg = build_vgg(SSDNetConfig()).eval()
K4 = gaussian_kernel(4.0)
LAYERS = ('relu1_2', 'relu2_2', 'relu3_1')
K, RADIUS, W_SPACING = 5, 8, 0.75


def flip(t, dims):
    """t flipped along dims (none: t itself)."""
    return t.flip(dims) if dims else t


TRANSFORMS = {
    'id': [lambda t: t],
    'flip': [lambda t, d=d: flip(t, d) for d in ((), (-1,), (-2,), (-2, -1))],
}
TRANSFORMS['d8'] = TRANSFORMS['flip'] + [lambda t, d=d: flip(t.transpose(-2, -1), d)
                                         for d in ((), (-1,), (-2,), (-2, -1))]


def cells(x):
    """(C, gh*gw) features of the default's self-similarity for a (1, 3, H, W) frame."""
    h, w = x.shape[-2:]
    acts = vgg(F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False), LAYERS)
    g = torch.cat([grid_features(acts, (2 * h, 2 * w), 8), 0.2 * stats_features(x, 4, 4.0)], 1)
    return g[0].flatten(1), g.shape[-2:]


def copies(x, transforms):
    """Each copy's cell features (C, gh*gw) and the frame's cell coordinates (rows, columns) they show."""
    out = []
    for t in transforms:
        f, (gh, gw) = cells(t(x))
        if not out:
            gy, gx = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing='ij')
        out.append((f, t(gy).flatten(), t(gx).flatten()))
    return out, gy.shape


def symmetric_map(cps, shape):
    """(1, 1, gh, gw) self-similarity map of the frame (cps[0]), its candidates the cells of every copy in cps."""
    ref, ry, rx = (torch.cat(v, -1) for v in zip(*cps))
    ref = ref.T
    n = cps[0][0].shape[1]
    near = ((ry[:n, None] - ry[None]).abs() <= RADIUS) & ((rx[:n, None] - rx[None]).abs() <= RADIUS)
    sq = (ref * ref).sum(1)
    top, idx = (2 * ref[:n] @ ref.T - sq[None]).masked_fill_(near, float('-inf')).topk(K, dim=1)
    d = (sq[:n, None] - top).clamp_min(0).sqrt().mean(1)
    spacing = d[ry[idx] * shape[1] + rx[idx]].mean(1)
    return (d - W_SPACING * (spacing - spacing.mean())).reshape(1, 1, *shape)


root, variants = Path(sys.argv[1]), sys.argv[2:]
R, cats, maps = {}, {}, {v: {} for v in variants}
for c in sorted(p.name for p in root.iterdir() if p.is_dir()):
    for s in load_category(root, c):
        x = image_to_tensor(s.image, torch.device('cpu'), 64)
        key = str(s.path)
        R[key] = dict(mask=s.mask, label=s.label, cat=c, type=s.defect_type, size=s.image.shape[:2])
        cats.setdefault(c, []).append(key)
        H, W = R[key]['size']
        with torch.inference_mode():
            cps, shape = copies(x, TRANSFORMS[max(variants, key=lambda v: len(TRANSFORMS[v]))])
            for v in variants:
                m = symmetric_map(cps[:len(TRANSFORMS[v])], shape)
                m = F.interpolate(m, size=x.shape[-2:], mode='bilinear', align_corners=False)
                maps[v][key] = gaussian_blur(m, K4)[0, 0, :H, :W].numpy()
    for v in variants:
        report(f"{c[:10]:10s} {v:6s}", maps[v], R, {c: cats[c]})
pickle.dump((R, cats, maps), open('symmetry_maps.pkl', 'wb'))
for v in variants:
    report(f"{v:6s}", maps[v], R, cats)
