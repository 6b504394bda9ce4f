"""Does the shipped cold fit (Fitter.fit, no held-out blocks) blow up too past ~80 steps, as in stop_rule.txt?
Plain fit, 20 steps at a time; prints the masked-view L2 error over the whole image (relative to step 0) and
the reconstruction-only pixel AUROC of the image.

    python docs/ablation_runs/recon_search/diverge_check.py canvas 1 200

Run before `fit.grad_clip` existed (the fit was unclipped); with today's clipped default it no longer blows up
(clip_check.py compares the two).
"""
import sys

import numpy as np

from common import TEX, build, load_category, metrics, norm, recon_maps, tensor

cat, idx, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cfg, fitter, scorer = build()
s = [x for x in load_category(TEX[0], cat) if x.label][-1 if idx else 0]
x = tensor(fitter, s.image)
h, w = s.image.shape[:2]
fitter.reset()
out = []
for step in range(0, steps + 1, 20):
    if step:
        fitter.fit(x, 20)  # continues from the current weights and optimizer state
    l2, perc = recon_maps(scorer, x)
    auc = metrics([norm(scorer, l2, h, w) + norm(scorer, perc, h, w)], [s.mask])[0]
    out.append((step, float(l2[..., :h, :w].mean()), auc))
print(cat, s.path.parent.name + "/" + s.path.name, "plain fit: step L2/L2_0 AUROC:",
      " ".join(f"{st}:{e / out[0][1]:.3g}/{a:.3f}" for st, e, a in out))
