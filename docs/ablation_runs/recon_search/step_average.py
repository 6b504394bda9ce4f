"""The reconstruction maps averaged over the fit's steps instead of taken at one step (issue 13; a probe).

Section 6's stop-rule probe found that each image has a fit step whose maps localise its defect far better than the
fixed 60 (0.755 / 0.810 against 0.701 / 0.715 pixel AUROC, the step chosen with the labels) and that no label-free
rule finds it. Deep Image Prior's answer to "when to stop" is to average the outputs over the iterations; here the
multi-scale reconstruction maps (norm L2 + norm perceptual, as the scorer) of the shipped cold fit (configs/
ssdnet-fit.yaml's fit, gradient clipped) are taken every --every steps up to --steps and averaged over a window of
steps. Per image, pooled pixel AUROC / AUPRC of: the untrained net, fixed 60, the averages, the self-similarity S
(the default's own-frame map) and S + w x (the reconstruction map).

    cd docs/ablation_runs/recon_search && python step_average.py textures --bad 2 --steps 200 --every 20
"""
import argparse
import time

import numpy as np
from common import DATASETS, build, knn_map, metrics, norm, recon_maps, subset, tensor

ap = argparse.ArgumentParser()
ap.add_argument("dataset", choices=DATASETS)
ap.add_argument("--bad", type=int, default=2)
ap.add_argument("--good", type=int, default=0)
ap.add_argument("--steps", type=int, default=200)
ap.add_argument("--every", type=int, default=20)
a = ap.parse_args()
cfg, fitter, scorer = build()
root, cats = DATASETS[a.dataset]
steps = list(range(0, a.steps + 1, a.every))
WINDOWS = {"avg 20-60": (20, 60), "avg 20-200": (20, 200), "avg 60-200": (60, 200), "avg 100-200": (100, 200)}
maps = {k: [] for k in ["untrained", "fixed 60", *WINDOWS, "S"]}
masks = []
t_all = time.time()
for cat in cats:
    for s in subset(root, cat, a.bad, a.good):
        t0 = time.time()
        x = tensor(fitter, s.image)
        h, w = s.image.shape[:2]
        fitter.reset()
        per_step = {}
        for i, step in enumerate(steps):
            if i:
                fitter.fit(x, steps=step - steps[i - 1])
            l2, perc = recon_maps(scorer, x)
            per_step[step] = norm(scorer, l2, h, w) + norm(scorer, perc, h, w)
        maps["untrained"].append(per_step[0])
        maps["fixed 60"].append(per_step[60])
        for k, (lo, hi) in WINDOWS.items():
            maps[k].append(np.mean([m for st, m in per_step.items() if lo <= st <= hi], axis=0))
        maps["S"].append(norm(scorer, knn_map(scorer, x, h, w), h, w))
        masks.append(s.mask)
        auc = [metrics([per_step[st]], [s.mask])[0] for st in steps]
        print(f"{cat} {s.path.parent.name}/{s.path.name} {time.time() - t0:.0f}s auc by step "
              + " ".join(f"{v:.3f}" for v in auc), flush=True)

print(f"\n{a.dataset}: {len(masks)} images, total {time.time() - t_all:.0f}s; pooled pixel AUROC / AUPRC")
for k, m in maps.items():
    print(f"{k:14s} %.3f / %.3f" % metrics(m, masks))
for k in ["fixed 60", "avg 20-200", "avg 60-200"]:
    for wt in (0.25, 0.5):
        comb = [sm + wt * rm for sm, rm in zip(maps["S"], maps[k])]
        print(f"S + {wt} x {k:11s} %.3f / %.3f" % metrics(comb, masks))
