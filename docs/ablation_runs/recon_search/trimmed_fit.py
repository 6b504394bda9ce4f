"""A robust per-frame fit: the loss taken away from the pixels the fit-free map S already suspects (issue 13; a probe).

The shipped cold fit trains on every pixel of the frame, the defect's included, so the longer it fits the more it may
learn to reproduce the defect (section 6: the per-image best step far above the fixed 60). Here the fit's L2 and
perceptual losses are weighted per pixel by a trust map from the frame's own self-similarity S (common.knn_map):
`trim q10` weight 0 where S is in the frame's top 10 %, `trim soft` exp(-max(0, z - 2)) with z S's robust z-score
(median, 1.4826 MAD), `hidden` the loss on the hidden pixels only (`loss.hidden_only`, section 69), `hidden+trim q10`
both (their product). The weight reaches the perceptual terms as `loss.hidden_only`'s does (edge/fitter.py
`_weighted_mean`: pooled to each VGG layer's size). The product is unchanged: the weight enters through the hidden
mask that edge.fitter's loss already takes (wrapped here), the patches carrying it as a 4th channel.
Per image, a cold fit (configs/ssdnet-fit.yaml's fit, gradient clipped) per variant, the reconstruction maps (norm L2
+ norm perceptual, as the scorer) every --every steps; pooled pixel AUROC / AUPRC per variant and step, and
S + w x the map.

    cd docs/ablation_runs/recon_search && python trimmed_fit.py textures --bad 2 --steps 120 --every 20
"""
import argparse
import time

import numpy as np

import edge.fitter as ef
import torch
from common import DATASETS, build, knn_map, metrics, norm, recon_maps, subset, tensor
from edge.patches import to_patches

_corrupt = ef.corrupt


class TrimmedFitter(ef.Fitter):
    """The shipped Fitter with a per-pixel loss weight `trust` ((1, 1, H, W) of the padded frame; None: none) times,
    with `use_hidden`, the hidden mask. The weight rides along the patches as a 4th channel, so a step draws the same
    patches and corruptions as the plain fit."""

    trust: torch.Tensor | None = None
    use_hidden = False

    def patch_grids(self, x):
        grids = super().patch_grids(x)
        if self.trust is None:
            return grids
        return [torch.cat([g, to_patches(self.trust, s)], 1) for g, s in zip(grids, self.cfg.fit.scales)]

    def _loss(self, clean):
        if self.trust is None:
            return super()._loss(clean)
        self.weight = clean[:, 3:]
        return super()._loss(clean[:, :3].contiguous())


def weighted_corrupt(clean, cfg, generator):
    """edge.corrupt, its hidden mask replaced by the loss weight (the fitter's loss runs with `hidden_only`)."""
    corrupted, hidden = _corrupt(clean, cfg, generator)
    if FITTER.trust is None:
        return corrupted, hidden
    return corrupted, FITTER.weight * hidden.float() if FITTER.use_hidden else FITTER.weight


def trust_q(s, valid, q=10.0):
    """Weight 0 where S is in the frame's top q %, else 1."""
    return (s < torch.quantile(s[valid], 1 - q / 100)).float()


def trust_soft(s, valid):
    """exp(-max(0, z - 2)), z = S's robust z-score over the frame."""
    v = s[valid]
    med = v.median()
    z = (s - med) / (1.4826 * (v - med).abs().median() + 1e-8)
    return torch.exp(-(z - 2).clamp_min(0))


VARIANTS = {  # name: (trust rule or None, hidden_only)
    "plain": (None, False),
    "trim q10": (trust_q, False),
    "trim soft": (trust_soft, False),
    "hidden": (None, True),
    "hidden+trim q10": (trust_q, True),
}

ap = argparse.ArgumentParser()
ap.add_argument("dataset", choices=DATASETS)
ap.add_argument("--bad", type=int, default=2)
ap.add_argument("--good", type=int, default=0)
ap.add_argument("--steps", type=int, default=200)
ap.add_argument("--every", type=int, default=20)
ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
a = ap.parse_args()
cfg, FITTER, scorer = build()
FITTER.__class__ = TrimmedFitter  # build()'s fitter, its net and trunk shared with the scorer, with the weighted loss
ef.corrupt = weighted_corrupt
names = a.variants.split(",")
cfgs = {k: cfg.model_copy(update={"loss": cfg.loss.model_copy(update={"hidden_only": VARIANTS[k][0] is not None
                                                                       or VARIANTS[k][1]})}) for k in names}
root, cats = DATASETS[a.dataset]
steps = list(range(0, a.steps + 1, a.every))
maps = {k: {st: [] for st in steps} for k in names}
smaps, masks = [], []
t_all = time.time()
for cat in cats:
    for s in subset(root, cat, a.bad, a.good):
        x = tensor(FITTER, s.image)
        h, w = s.image.shape[:2]
        s_raw = knn_map(scorer, x, h, w)
        valid = torch.zeros_like(s_raw, dtype=torch.bool)
        valid[..., :h, :w] = True
        smaps.append(norm(scorer, s_raw, h, w))
        masks.append(s.mask)
        for k in names:
            t0 = time.time()
            rule, hidden = VARIANTS[k]
            FITTER.cfg, FITTER.use_hidden = cfgs[k], hidden
            FITTER.trust = None if rule is None else rule(s_raw, valid)
            FITTER.reset()
            for i, step in enumerate(steps):
                if i:
                    FITTER.fit(x, steps=step - steps[i - 1])
                l2, perc = recon_maps(scorer, x)
                maps[k][step].append(norm(scorer, l2, h, w) + norm(scorer, perc, h, w))
            auc = [metrics([maps[k][st][-1]], [s.mask])[0] for st in steps]
            print(f"{cat} {s.path.parent.name}/{s.path.name} {k:15s} {time.time() - t0:.0f}s auc by step "
                  + " ".join(f"{v:.3f}" for v in auc), flush=True)

print(f"\n{a.dataset}: {len(masks)} images, total {time.time() - t_all:.0f}s; pooled pixel AUROC / AUPRC"
      f"\nS alone %.3f / %.3f" % metrics(smaps, masks))
last = steps[-1]
cols = [st for st in dict.fromkeys((60, 100, last)) if st in steps]
print(f"{'variant':15s} " + " ".join(f"{f'step {st}':>13s}" for st in cols) + "  best fixed step"
      f"      S+0.25x@60    S+0.5x@60   S+0.25x@best   S+0.5x@best")
for k in names:
    pooled = {st: metrics(maps[k][st], masks) for st in steps}
    best = max(steps[1:], key=lambda st: pooled[st][0])
    comb = [metrics([sm + wt * rm for sm, rm in zip(smaps, maps[k][st])], masks)
            for st in (60, best) for wt in (0.25, 0.5)]
    top = [metrics([np.maximum(sm, rm) for sm, rm in zip(smaps, maps[k][st])], masks) for st in (60, best)]
    print(f"{k:15s} " + " ".join("%.3f / %.3f" % pooled[st] for st in cols)
          + f"  {best:3d}: %.3f / %.3f" % pooled[best] + "  " + "  ".join("%.3f / %.3f" % c for c in comb)
          + "  max(S, map)@60, @best: " + "  ".join("%.3f / %.3f" % c for c in top))
print("pooled AUROC by step: " + " ".join(f"{st}" for st in steps))
for k in names:
    print(f"{k:15s} " + " ".join(f"{metrics(maps[k][st], masks)[0]:.3f}" for st in steps))
