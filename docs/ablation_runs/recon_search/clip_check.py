"""Is diverge_check.py's blow-up the optimiser's? The same cold fit, 200 steps, written out step by step:
plain (as Fitter.fit before fit.grad_clip) and with the gradient's norm clipped to 1 (fit.grad_clip's default).
Prints the masked-view L2 error (relative to step 0) and the largest training loss of each 20 steps.

    python docs/ablation_runs/recon_search/clip_check.py canvas 1 200
"""
import sys

import torch

from common import TEX, build, load_category, recon_maps, tensor

cat, idx, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for name, clip in (("plain", None), ("clip 1.0", 1.0)):
    cfg, fitter, scorer = build()
    s = [x for x in load_category(TEX[0], cat) if x.label][-1 if idx else 0]
    x = tensor(fitter, s.image)
    fitter.reset()
    grids = fitter.patch_grids(x)
    base = float(recon_maps(scorer, x)[0].mean())
    row = []
    for step in range(1, steps + 1):
        fitter.model.train()
        loss = fitter.step_loss(grids)
        fitter.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(fitter.model.parameters(), clip)
        fitter.optimizer.step()
        row.append(float(loss.detach()))
        if step % 20 == 0:
            fitter.model.eval()
            err = float(recon_maps(scorer, x)[0].mean()) / base
            print(f"{name:9s} step {step:3d} L2/L2_0 {err:.3g} max loss (last 20) {max(row[-20:]):.3g}", flush=True)
