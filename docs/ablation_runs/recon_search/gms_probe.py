"""Which error map of the reconstruction localises: L2, perceptual, or a structure comparison (issue 13).

Per image: the shipped net (configs/ssdnet-fit.yaml's fit) untrained (the identity start) and after a cold fit of
--steps steps; its masked-pass reconstructions at every grid scale; maps compared against the input:
  l2     the shipped multi-scale L2 map
  perc   the shipped perceptual map (relu1_2, relu2_2, relu3_1)
  deep   the perceptual map on relu3_1 + relu4_1
  gms    1 - gradient magnitude similarity, averaged over a 4-level pyramid (RIAD's MSGMS, Zavrtanik et al. 2021)
  l2var  the L2 map over the input's local variance (an error where the texture is busy counts for less)
each smoothed and std-normalised per image as the scorer does; pixel AUROC / AUPRC over the images pooled.

    python docs/ablation_runs/recon_search/gms_probe.py textures --bad 2 --steps 60
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from common import DATASETS, build, metrics, msgms, norm, subset, tensor
from edge.vgg import cosine_similarity

ap = argparse.ArgumentParser()
ap.add_argument("dataset", choices=DATASETS)
ap.add_argument("--bad", type=int, default=2)
ap.add_argument("--steps", type=int, default=60)
a = ap.parse_args()
cfg, fitter, scorer = build()
root, cats = DATASETS[a.dataset]
def local_var(x, r=4):
    g = x.mean(1, keepdim=True)
    m = F.avg_pool2d(F.pad(g, (r, r, r, r), mode="reflect"), 2 * r + 1, stride=1)
    m2 = F.avg_pool2d(F.pad(g * g, (r, r, r, r), mode="reflect"), 2 * r + 1, stride=1)
    return (m2 - m * m).clamp_min(0)


@torch.no_grad()
def maps(x):
    out = {k: torch.zeros_like(x[:, :1]) for k in ("l2", "perc", "deep", "gms")}
    layers = {"perc": ("relu1_2", "relu2_2", "relu3_1"), "deep": ("relu3_1", "relu4_1")}
    acts_x = fitter.vgg(x, ("relu1_2", "relu2_2", "relu3_1", "relu4_1"))
    n = len(scorer.scales)
    for s in scorer.scales:
        rec = scorer.reconstruct(x, s, scorer.cfg.masks).float().clamp(0, 1)
        out["l2"] += ((x - rec) ** 2).sum(1, keepdim=True) / n
        out["gms"] += msgms(x, rec) / n
        acts_r = fitter.vgg(rec, ("relu1_2", "relu2_2", "relu3_1", "relu4_1"))
        for key, names in layers.items():
            for name in names:
                d = 1 - cosine_similarity(acts_r[name], acts_x[name]).unsqueeze(1)
                out[key] += F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False) / (len(names) * n)
    out["l2var"] = out["l2"] / (local_var(x) + 1e-3)
    return out


res = {}
t_all = time.time()
for cat in cats:
    for s in subset(root, cat, a.bad, 0):
        x = tensor(fitter, s.image)
        h, w = s.image.shape[:2]
        fitter.reset()
        for stage, steps in (("untrained", 0), ("fitted", a.steps)):
            if steps:
                fitter.fit(x, steps)
            fitter.model.eval()
            for key, m in maps(x).items():
                res.setdefault((stage, key), ([], []))[0].append(norm(scorer, m, h, w))
                res[(stage, key)][1].append(s.mask)
        print(f"{cat} {s.path.parent.name}/{s.path.name} {time.time() - t_all:.0f}s", flush=True)
for (stage, key), (ms, ks) in sorted(res.items()):
    auc, ap_ = metrics(ms, ks)
    print(f"{a.dataset} {stage:9s} {key:6s} {auc:.3f} / {ap_:.3f}")
for stage in ("untrained", "fitted"):
    for combo in (("l2", "perc"), ("gms", "perc"), ("gms", "deep"), ("l2var", "perc")):
        ms = [res[(stage, combo[0])][0][i] + res[(stage, combo[1])][0][i] for i in range(len(res[(stage, "l2")][0]))]
        auc, ap_ = metrics(ms, res[(stage, "l2")][1])
        print(f"{a.dataset} {stage:9s} {'+'.join(combo):10s} {auc:.3f} / {ap_:.3f}")
print(f"total {time.time() - t_all:.0f}s")
