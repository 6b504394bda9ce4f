"""Scoring masks of several block sizes, and training on them, as reconstruction-by-inpainting methods do (RIAD,
Zavrtanik et al. 2021: the error maps of masks of 2-16 px averaged) (issue 13: "scoring masks sized to the scale and
to defects (several block sizes) with training and scoring corruptions matched").

Per image: the shipped net and loss (configs/ssdnet-fit.yaml's fit), a cold fit of --steps steps, trained
  shipped   on 8 px blocks (corruption.mask_block 8), or
  multi     on blocks of a size drawn per step from --blocks;
then its reconstruction maps (L2 + perceptual, each smoothed and std-normalised per image, summed) scored with the
masked passes' blocks of each size in --blocks, and with the mean of those maps over the sizes ("mean").
Pixel AUROC / AUPRC over the images pooled.

    python docs/ablation_runs/recon_search/mask_sizes.py textures --bad 2 --steps 60
"""
import argparse
import random
import time

import edge.fitter
from common import DATASETS, build, metrics, norm, recon_maps, subset, tensor
from edge.corrupt import corrupt
from edge.scoring import AnomalyScorer

ap = argparse.ArgumentParser()
ap.add_argument("dataset", choices=DATASETS)
ap.add_argument("--bad", type=int, default=2)
ap.add_argument("--steps", type=int, default=60)
ap.add_argument("--blocks", default="4,8,16,32")
a = ap.parse_args()
blocks = [int(b) for b in a.blocks.split(",")]
cfg, fitter, _ = build()
root, cats = DATASETS[a.dataset]
scorers = {b: AnomalyScorer(fitter.model, cfg.score.model_copy(update={"mask_block": b}), cfg.fit.scales,
                            fitter.vgg).eval() for b in blocks}
pick = random.Random(0)


def multi_corrupt(clean, c, generator):
    return corrupt(clean, c.model_copy(update={"mask_block": pick.choice(blocks)}), generator)


res, t0 = {}, time.time()
for cat in cats:
    for s in subset(root, cat, a.bad, 0):
        x, (h, w) = tensor(fitter, s.image), s.image.shape[:2]
        for train in ("shipped", "multi"):
            edge.fitter.corrupt = corrupt if train == "shipped" else multi_corrupt
            fitter.reset()
            fitter.fit(x, a.steps)
            fitter.model.eval()
            per_block = {}
            for b, sc in scorers.items():
                l2, perc = recon_maps(sc, x)
                per_block[b] = norm(sc, l2, h, w) + norm(sc, perc, h, w)
            per_block["mean"] = sum(per_block[b] for b in blocks) / len(blocks)
            for key, m in per_block.items():
                res.setdefault((train, str(key)), ([], []))[0].append(m)
                res[(train, str(key))][1].append(s.mask)
        print(f"{cat} {s.path.parent.name}/{s.path.name} {time.time() - t0:.0f}s", flush=True)
for (train, key), (ms, ks) in res.items():
    auc, ap_ = metrics(ms, ks)
    print(f"{a.dataset} train {train:7s} score blocks {key:4s} {auc:.3f} / {ap_:.3f}")
print(f"total {time.time() - t0:.0f}s")
