"""The reconstruction maps of several independently seeded cold fits, averaged (issue 13; a probe).

Section 26 found that the fit's seed (the U-Net's initial weights and the corruptions' draws) moves one image's
reconstruction AUROC by 0.21 (0.75-0.96 over six seeds), and section 64 that averaging one fit's maps over its
steps helps the textures and costs real-dev. Steps of one fit are correlated; seeds are not. Here K nets, each a
60-step cold fit of the shipped net (configs/ssdnet-fit.yaml's fit) from seed k, score the same frame; their
reconstruction maps (norm L2 + norm perceptual, as the scorer) are averaged over the first 1, 2 and K seeds.
Pooled pixel AUROC / AUPRC of: each seed alone, the averages, S (the default's own-frame self-similarity) and
S + w x (each).

    cd docs/ablation_runs/recon_search && python ensemble.py textures --bad 2 --seeds 4 --steps 60
"""
import argparse
import time

import numpy as np
from common import CFG, DATASETS, knn_map, metrics, norm, recon_maps, subset, tensor

import torch
from edge.config import SSDNetConfig, parse_config
from edge.fitter import Fitter
from edge.scoring import AnomalyScorer
from edge.vgg import build_vgg

ap = argparse.ArgumentParser()
ap.add_argument("dataset", choices=DATASETS)
ap.add_argument("--bad", type=int, default=2)
ap.add_argument("--good", type=int, default=0)
ap.add_argument("--seeds", type=int, default=4)
ap.add_argument("--steps", type=int, default=60)
a = ap.parse_args()
torch.set_num_threads(1)
vgg = None
nets = []
for k in range(a.seeds):
    cfg = parse_config(SSDNetConfig, {**CFG, "fit": {"seed": k}})
    vgg = vgg or build_vgg(cfg)
    fitter = Fitter(cfg, "cpu", vgg)
    nets.append((fitter, AnomalyScorer(fitter.model, cfg.score, cfg.fit.scales, vgg).eval()))
root, cats = DATASETS[a.dataset]
sizes = sorted({1, 2, a.seeds})
maps = {**{f"seed {k}": [] for k in range(a.seeds)}, **{f"mean of {n}": [] for n in sizes if n > 1}, "S": []}
masks = []
t_all = time.time()
for cat in cats:
    for s in subset(root, cat, a.bad, a.good):
        t0 = time.time()
        h, w = s.image.shape[:2]
        per_seed = []
        for k, (fitter, scorer) in enumerate(nets):
            x = tensor(fitter, s.image)
            fitter.reset()
            fitter.fit(x, steps=a.steps)
            l2, perc = recon_maps(scorer, x)
            per_seed.append(norm(scorer, l2, h, w) + norm(scorer, perc, h, w))
            maps[f"seed {k}"].append(per_seed[-1])
        for n in sizes:
            if n > 1:
                maps[f"mean of {n}"].append(np.mean(per_seed[:n], axis=0))
        maps["S"].append(norm(nets[0][1], knn_map(nets[0][1], x, h, w), h, w))
        masks.append(s.mask)
        auc = [metrics([m], [s.mask])[0] for m in per_seed + [np.mean(per_seed, axis=0)]]
        print(f"{cat} {s.path.parent.name}/{s.path.name} {time.time() - t0:.0f}s auc by seed "
              + " ".join(f"{v:.3f}" for v in auc[:-1]) + f"; mean of {a.seeds} {auc[-1]:.3f}", flush=True)

print(f"\n{a.dataset}: {len(masks)} images, {a.seeds} seeds x {a.steps} steps, total {time.time() - t_all:.0f}s; "
      "pooled pixel AUROC / AUPRC")
for k, m in maps.items():
    print(f"{k:14s} %.3f / %.3f" % metrics(m, masks))
seed_auc = [metrics(maps[f"seed {k}"], masks) for k in range(a.seeds)]
print("seeds' mean    %.3f / %.3f" % tuple(np.mean(seed_auc, axis=0)))
for k in ["seed 0", f"mean of {a.seeds}"]:
    for wt in (0.25, 0.5):
        comb = [sm + wt * rm for sm, rm in zip(maps["S"], maps[k])]
        print(f"S + {wt} x {k:10s} %.3f / %.3f" % metrics(comb, masks))
