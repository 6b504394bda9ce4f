"""What the cross-frame scripts (and line_stats/variants.py) share: the neighbourhood mask, k-nearest distances, the map at image size and
the per-category metrics (pixel AUROC / AUPRC, image AUROC on the top 0.1 %, pixel AUROC per defect type), and each
defect's contrast stratum from a dataset's manifest with the frames pooled by it."""
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from edge.filters import gaussian_blur, gaussian_kernel
from tools.eval.metrics import image_auroc, pixel_auprc, pixel_auroc

K4 = gaussian_kernel(4.0)


def near_mask(gh, gw, r=8):
    ys = torch.arange(gh); xs = torch.arange(gw)
    by = (ys[:, None] - ys[None]).abs() <= r; bx = (xs[:, None] - xs[None]).abs() <= r
    return (by[:, None, :, None] & bx[None, :, None, :]).reshape(gh * gw, gh * gw)


def topk_nearest(q, ref, k, mask=None):
    """Each row of q: the distances to its k nearest rows of ref (nearest first, rows where `mask` is set left out),
    and which rows those are."""
    cl = 2 * q @ ref.T - (ref * ref).sum(1)[None]
    if mask is not None:
        cl.masked_fill_(mask, float('-inf'))
    t, idx = cl.topk(min(k, ref.shape[0]), dim=1)
    return ((q * q).sum(1)[:, None] - t).clamp_min(0).sqrt(), idx


def topk_dist(q, ref, k, mask=None):
    return topk_nearest(q, ref, k, mask)[0]


def upmap(d, grid, padded, size):
    """gh x gw cell distances of a frame padded to `padded` -> the smoothed map, cropped to the frame's `size`."""
    m = torch.as_tensor(np.asarray(d, np.float32)).reshape(1, 1, *grid)
    m = gaussian_blur(F.interpolate(m, size=tuple(padded), mode='bilinear', align_corners=False), K4)[0, 0]
    return m[:size[0], :size[1]].numpy()


def report(name, maps, R, cats):
    """Print the mean over categories of one variant's maps ({key: map}) as `ssdnet eval` pools them (pixel
    AUROC / AUPRC per category, image AUROC on the top 0.1 %), with pixel AUROC per defect type and category."""
    res, types = {}, {}
    for c, ks in cats.items():
        sc = [float(np.sort(maps[k].ravel())[-max(1, int(0.001 * maps[k].size)):].mean()) for k in ks]
        masks = [R[k]['mask'] for k in ks]
        res[c] = (pixel_auroc([maps[k] for k in ks], masks), pixel_auprc([maps[k] for k in ks], masks),
                  image_auroc(sc, [R[k]['label'] for k in ks]))
        for ty in {R[k]['type'] for k in ks} - {'good'}:
            kk = [k for k in ks if R[k]['type'] in (ty, 'good')]
            types.setdefault(ty, []).append(pixel_auroc([maps[k] for k in kk], [R[k]['mask'] for k in kk]))
    m = np.mean(list(res.values()), 0)
    print(f"{name} AUROC {m[0]:.3f} AUPRC {m[1]:.3f} img {m[2]:.3f} | "
          + ' '.join(f"{t}:{np.mean(v):.3f}" for t, v in sorted(types.items()))
          + ' | ' + ' '.join(f"{c[:5]}:{r[0]:.2f}" for c, r in res.items()), flush=True)


def contrast_strata(manifest: str | Path, keys) -> dict[str, str]:
    """{key: contrast stratum} for the frame paths `keys` whose image the dataset's manifest.json gives one (its
    defects'; matched on <category>/test/<type>/<file>)."""
    m = json.load(open(manifest))
    strata = {im['image']: im['contrast_stratum'] for c in m['categories'].values() for im in c['images']
              if 'contrast_stratum' in im}
    return {k: strata[rel] for k in keys if (rel := '/'.join(Path(k).parts[-4:])) in strata}


def by_contrast(R, cats, stratum_of):
    """(name, [per category: its good frames' keys and those of its defects in the group]) for the defects that change
    the frame by more than 30 grey levels and for those of 30 or fewer, as `ssdnet eval` pools a category."""
    for name, faint in (('> 30', False), ('<= 30', True)):
        yield name, [[k for k in ks if not R[k]['label'] or k in stratum_of and (stratum_of[k] != 'high(>30)') == faint]
                     for ks in cats.values()]
