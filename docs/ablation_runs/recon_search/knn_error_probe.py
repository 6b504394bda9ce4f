"""The reconstruction's error against the error of the frame's own look-alike cells (issue 13; a probe).

A masked-pass reconstruction errs most where the texture is hardest to predict, defect or not (sections 6, 41, 43).
Here each 8 px cell's error is compared with the errors of the k cells that look most alike in the self-similarity's
features (the same VGG19 cells, local statistics and k nearest outside the radius as the default's map): a busy
look of the texture has busy look-alikes that err as much; a defect's look-alikes are normal cells that the net
predicts better. Per image, the shipped net (configs/ssdnet-fit.yaml's fit) untrained (the identity start) and after
a cold fit of --steps steps; maps:
  S       the default's own-frame self-similarity map (the distance less 0.75 x its spacing term)
  l2      the shipped multi-scale L2 map            l2nn   its cell error less the mean of its k look-alikes'
  perc    the shipped perceptual map                percnn the same for the perceptual error
  l2ratio log of the cell error over its look-alikes' mean
each smoothed and std-normalised per image as the scorer does; pixel AUROC / AUPRC over the images pooled; then
S + w x (a nn map) for w 0.25, 0.5, 1.

    cd docs/ablation_runs/recon_search && python knn_error_probe.py textures --bad 2 --steps 60
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from common import DATASETS, build, metrics, norm, subset, tensor

from edge.device import autocast
from edge.knn import grid_features
from edge.local_stats import stats_features
from edge.vgg import cosine_similarity

ap = argparse.ArgumentParser()
ap.add_argument("dataset", choices=DATASETS)
ap.add_argument("--bad", type=int, default=2)
ap.add_argument("--good", type=int, default=0)
ap.add_argument("--steps", type=int, default=60)
a = ap.parse_args()
cfg, fitter, scorer = build()
root, cats = DATASETS[a.dataset]
sc = scorer.cfg


@torch.no_grad()
def look_alikes(x, h, w):
    """(cells,) frame-cell index of each frame cell's k nearest look-alikes (cells, k), the grid (gh, gw), the cell."""
    f, cell = scorer.knn_cell(int(x.shape[-2]), int(x.shape[-1]))
    assert f == 1
    g = grid_features(scorer._features(x), tuple(x.shape[-2:]), cell)
    g = torch.cat([g.float(), sc.knn_stats_weight * stats_features(x, cell, sc.knn_stats_sigma)], 1)
    fh, fw = -(-h // cell), -(-w // cell)
    g = g[..., :fh, :fw]
    q = g.flatten(2)[0].t()  # (cells, C)
    ys, xs = torch.meshgrid(torch.arange(fh), torch.arange(fw), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    near = ((ys[:, None] - ys[None]).abs() <= sc.knn_radius) & ((xs[:, None] - xs[None]).abs() <= sc.knn_radius)
    d = torch.cdist(q, q).masked_fill(near, float("inf"))
    return d.topk(sc.knn_k, dim=1, largest=False).indices, (fh, fw), cell


def against_alikes(m, nearest, grid, cell, h, w):
    """Cell means of map m (1,1,H,W) over the frame; each less (and, log, over) its look-alikes' mean; upsampled."""
    e = F.avg_pool2d(m[..., :h, :w], cell, cell, ceil_mode=True)[0, 0].flatten()
    ref = e[nearest].mean(1)
    out = {}
    for key, v in (("nn", e - ref), ("ratio", torch.log((e + 1e-6) / (ref + 1e-6)))):
        v = v.view(1, 1, *grid)
        v = F.interpolate(v, scale_factor=cell, mode="bilinear", align_corners=False)[..., :h, :w]
        out[key] = F.pad(v, (0, m.shape[-1] - w, 0, m.shape[-2] - h), mode="replicate")
    return out


@torch.no_grad()
def maps(x, h, w):
    with autocast(x.device, sc.amp):
        return {k: v.float() for k, v in _maps(x, h, w).items()}


def _maps(x, h, w):
    out = {k: torch.zeros_like(x[:, :1]) for k in ("l2", "perc")}
    layers = sc.vgg_layers
    acts_x = scorer.vgg(x, layers)
    n = len(scorer.scales)
    for s in scorer.scales:
        rec = scorer.reconstruct(x, s, sc.masks)
        out["l2"] += ((x - rec.float()) ** 2).sum(1, keepdim=True) / n
        acts_r = scorer.vgg(rec, layers)
        for name in layers:
            d = 1 - cosine_similarity(acts_r[name], acts_x[name]).unsqueeze(1)
            d = F.interpolate(d.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
            out["perc"] += d / (len(layers) * n)
    nearest, grid, cell = look_alikes(x, h, w)
    for key in ("l2", "perc"):
        alike = against_alikes(out[key], nearest, grid, cell, h, w)
        out[key + "nn"] = alike["nn"]
        out[key + "ratio"] = alike["ratio"]
    knn = scorer.knn_map(x, frame=(h, w))[0]
    out["S"] = knn[:, :1] - sc.knn_spacing_weight * knn[:, 1:2]
    return out


res = {}
t_all = time.time()
for cat in cats:
    for s in subset(root, cat, a.bad, a.good):
        x = tensor(fitter, s.image)
        h, w = s.image.shape[:2]
        mask = s.mask if s.mask is not None else np.zeros((h, w), bool)
        fitter.reset()
        for stage, steps in (("untrained", 0), ("fitted", a.steps)):
            if steps:
                fitter.fit(x, steps)
            fitter.model.eval()
            for key, m in maps(x, h, w).items():
                res.setdefault((stage, key), ([], []))[0].append(norm(scorer, m, h, w))
                res[(stage, key)][1].append(mask)
        print(f"{cat} {s.path.parent.name}/{s.path.name} {time.time() - t_all:.0f}s", flush=True)
for (stage, key), (ms, ks) in sorted(res.items()):
    auc, ap_ = metrics(ms, ks)
    print(f"{a.dataset} {stage:9s} {key:9s} {auc:.3f} / {ap_:.3f}")
for stage in ("untrained", "fitted"):
    ks = res[(stage, "S")][1]
    for key in ("l2nn", "percnn", "l2ratio", "percratio", "l2", "perc"):
        for wt in (0.25, 0.5, 1.0):
            ms = [res[(stage, "S")][0][i] + wt * res[(stage, key)][0][i] for i in range(len(ks))]
            auc, ap_ = metrics(ms, ks)
            print(f"{a.dataset} {stage:9s} S+{wt}x{key:9s} {auc:.3f} / {ap_:.3f}")
print(f"total {time.time() - t_all:.0f}s")
