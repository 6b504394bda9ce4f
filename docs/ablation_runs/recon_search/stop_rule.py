"""(1) A stopping rule for the cold fit from the error on blocks the net never learnt.

Per image: cold fit of the shipped U-Net (default fit = configs/ssdnet-fit.yaml) for up to --steps
steps, with a fixed random 10 % of the image's 8 px blocks held out of the loss: in every loss term
(L2 and VGG) the held-out pixels of both reconstruction and target are replaced by the (detached)
reconstruction, so their true values never reach a gradient (they stay visible in the input, as
context). Every --every steps: held-out error = mean L2 / perceptual error on the held-out pixels in
the scorer's masked passes (each block hidden in one of the 4 passes), and the
reconstruction-only map (norm L2 + norm perceptual) of the image.

    python docs/ablation_runs/recon_search/stop_rule.py textures --bad 2 --steps 200 --every 20
"""
import argparse
import math
import pickle
import time

import numpy as np
import torch

from common import DATASETS, build, metrics, norm, recon_maps, subset, tensor
from edge.corrupt import corrupt as corrupt_fn
from edge.patches import to_patches
from edge.device import autocast
from edge.vgg import cosine_similarity

ap = argparse.ArgumentParser()
ap.add_argument("dataset", choices=DATASETS)
ap.add_argument("--bad", type=int, default=2)
ap.add_argument("--steps", type=int, default=200)
ap.add_argument("--every", type=int, default=20)
ap.add_argument("--hold", type=float, default=0.10)
ap.add_argument("--save", default="/tmp/stop_rule")
a = ap.parse_args()
cfg, fitter, scorer = build()
root, cats = DATASETS[a.dataset]


def masked_step(grids, holds):
    """edge.fitter.Fitter.step_loss with the held-out pixels taken out of every loss term."""
    loss = torch.zeros(())
    with autocast(fitter.device, fitter.amp):
        for p, hp in zip(grids, holds):
            k = max(1, math.ceil(cfg.fit.patch_fraction * p.shape[0]))
            idx = torch.randperm(p.shape[0], generator=fitter.generator)[:k]
            clean, h = p[idx], hp[idx]
            out = fitter.model(corrupt_fn(clean, cfg.corruption, fitter.generator)[0].contiguous(memory_format=fitter.fmt))
            out = out.float()
            keep = 1 - h
            l2 = (((out - clean) ** 2) * keep).sum() / (3 * keep.sum()).clamp_min(1)
            out_m = torch.where(h > 0, out.detach(), out)
            tgt_m = torch.where(h > 0, out.detach(), clean)
            with torch.no_grad():
                target = fitter.vgg(tgt_m, cfg.loss.vgg_layers)
            feats = fitter.vgg(out_m, cfg.loss.vgg_layers)
            cos = [cosine_similarity(feats[n], target[n]).mean() for n in cfg.loss.vgg_layers]
            loss = loss + cfg.loss.pixel_weight * l2 + cfg.loss.perceptual_weight * (1 - sum(cos) / len(cos))
    return loss


rows = []
t_all = time.time()
for cat in cats:
    for s in subset(root, cat, a.bad, 0):
        t0 = time.time()
        x = tensor(fitter, s.image)
        h, w = s.image.shape[:2]
        rng = np.random.default_rng(0)
        blocks = rng.random((math.ceil(h / 8), math.ceil(w / 8))) < a.hold
        hold = np.zeros(x.shape[-2:], np.float32)
        hold[:h, :w] = np.kron(blocks, np.ones((8, 8)))[:h, :w]
        hold_t = torch.from_numpy(hold)[None, None]
        grids = fitter.patch_grids(x)
        holds = [to_patches(hold_t, sc) for sc in cfg.fit.scales]
        fitter.reset()
        curve = []
        for step in range(a.steps + 1):
            if step % a.every == 0:
                fitter.model.eval()
                l2, perc = recon_maps(scorer, x)
                hm = hold_t > 0
                curve.append(dict(step=step, hold_l2=float(l2[hm].mean()), hold_perc=float(perc[hm].mean()),
                                  map=(norm(scorer, l2, h, w) + norm(scorer, perc, h, w)).astype(np.float16)))
            if step == a.steps:
                break
            fitter.model.train()
            loss = masked_step(grids, holds)
            fitter.optimizer.zero_grad(set_to_none=True)
            fitter.scaler.scale(loss).backward()
            fitter.scaler.step(fitter.optimizer)
            fitter.scaler.update()
        rows.append(dict(cat=cat, path=str(s.path), mask=s.mask, curve=curve, seconds=time.time() - t0))
        auc = [metrics([c["map"]], [s.mask])[0] for c in curve]
        print(f"{cat} {s.path.parent.name}/{s.path.name} {time.time()-t0:.0f}s "
              f"hold_l2 {' '.join('%.4f' % c['hold_l2'] for c in curve)} | auc {' '.join(f'{v:.3f}' for v in auc)}",
              flush=True)
pickle.dump(rows, open(f"{a.save}_{a.dataset}.pkl", "wb"))
print(f"total {time.time()-t_all:.0f}s")
