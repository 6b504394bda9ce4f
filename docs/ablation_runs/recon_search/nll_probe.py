"""The reconstruction's error in units of the spread the net itself predicts (issue 13; a probe).

On a busy texture an inpainted block is uncertain everywhere, so its L2 error is high everywhere and a defect does
not stand out (section 41's `l2var` divided by the input's local variance instead, a fixed guess: it lost). Here the
U-Net gets a second 1x1 head, a per-pixel log-variance from the same decoder features, and is fitted with SSDnet's
corruptions on the Gaussian negative log-likelihood (+ the same perceptual term) instead of L2; the map is the
hidden pixels' NLL, (x - rec)^2 / var + log var, composited over the scorer's masked passes at every grid scale.

Per image, cold fits of --steps steps of the shipped net (configs/ssdnet-fit.yaml's fit: L2 + perceptual) and of
the two-headed one, the same corruptions, patches, seed and optimiser; maps smoothed and std-normalised per image as
the scorer does; pixel AUROC / AUPRC over the images pooled (the same subsets as sections 41 and 42).

    python docs/ablation_runs/recon_search/nll_probe.py textures --bad 2 --steps 60
"""
import argparse
import math
import time

import torch
from torch import nn

from common import DATASETS, build, metrics, norm, recon_maps, subset, tensor
from edge.corrupt import corrupt
from edge.patches import from_patches, to_patches
from edge.scoring import mask_groups
from edge.vgg import cosine_similarity

ap = argparse.ArgumentParser()
ap.add_argument("dataset", choices=DATASETS)
ap.add_argument("--bad", type=int, default=2)
ap.add_argument("--steps", type=int, default=60)
a = ap.parse_args()
cfg, fitter, scorer = build()
root, cats = DATASETS[a.dataset]


class TwoHeads(nn.Module):
    """The shipped U-Net (its weights, its identity start) plus a log-variance head on its last decoder features."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet
        self.logvar = nn.Conv2d(unet.head.in_channels, 1, 1)
        nn.init.zeros_(self.logvar.weight)
        nn.init.constant_(self.logvar.bias, math.log(1e-3))  # an error of ~0.03 grey, before it learns

    def forward(self, x):
        u, skips, h = self.unet, [], x
        for i, enc in enumerate(u.enc):
            h = enc(h if i == 0 else u.pool(h))
            skips.append(h)
        for up, dec, skip in zip(u.up, u.dec, reversed(skips[:-1]), strict=True):
            h = dec(torch.cat([up(h), skip], dim=1))
        return x + u.head(h), self.logvar(h).clamp(-12, 4)


def perceptual(out, clean):
    with torch.no_grad():
        target = fitter.vgg(clean, cfg.loss.vgg_layers)
    feats = fitter.vgg(out, cfg.loss.vgg_layers)
    cos = [cosine_similarity(feats[k], target[k]).mean() for k in cfg.loss.vgg_layers]
    return cfg.loss.perceptual_weight * (1 - sum(cos) / len(cos))


def fit_two_heads(net, x, steps):
    opt = torch.optim.Adam(net.parameters(), lr=cfg.fit.lr)
    grids = [to_patches(x, s) for s in cfg.fit.scales]
    net.train()
    for _ in range(steps):
        loss = torch.zeros(())
        for p in grids:
            k = max(1, math.ceil(cfg.fit.patch_fraction * p.shape[0]))
            clean = p[torch.randperm(p.shape[0], generator=fitter.generator)[:k]]
            out, logvar = net(corrupt(clean, cfg.corruption, fitter.generator)[0])
            nll = 0.5 * (((out - clean) ** 2) * torch.exp(-logvar) + logvar).mean()
            loss = loss + cfg.loss.pixel_weight * nll + perceptual(out, clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.fit.grad_clip)
        opt.step()
    net.eval()


@torch.no_grad()
def nll_maps(net, x):
    """Multi-scale maps of the masked passes: the hidden pixels' NLL, their z^2 alone, and their log-variance."""
    out = {k: torch.zeros_like(x[:, :1]) for k in ("nll", "z2", "logvar")}
    for s in scorer.scales:
        p = to_patches(x, s)
        hide = mask_groups(p.shape[-2], p.shape[-1], scorer.cfg.mask_block, scorer.cfg.masks)  # (M,1,h,w)
        mean = p.mean(dim=(2, 3), keepdim=True)
        inp = torch.where(hide.unsqueeze(1), mean.unsqueeze(0), p.unsqueeze(0))
        rec, logvar = net(inp.flatten(0, 1))
        hid = hide.unsqueeze(1).float()
        rec = (rec.view(inp.shape) * hid).sum(0)
        logvar = (logvar.view(*inp.shape[:2], 1, *inp.shape[-2:]) * hid).sum(0)
        z2 = ((p - rec) ** 2).sum(1, keepdim=True) * torch.exp(-logvar)
        for key, m in (("nll", z2 + 3 * logvar), ("z2", z2), ("logvar", logvar)):
            out[key] += from_patches(m, s) / len(scorer.scales)
    return out


res = {}
t_all = time.time()
for cat in cats:
    for s in subset(root, cat, a.bad, 0):
        x = tensor(fitter, s.image)
        h, w = s.image.shape[:2]
        fitter.reset()
        fitter.fit(x, a.steps)
        l2, perc = recon_maps(scorer, x)
        maps = {"shipped l2": l2, "shipped perc": perc}
        fitter.reset()  # the same start and seed for the two-headed fit
        net = TwoHeads(fitter.model)
        fit_two_heads(net, x, a.steps)
        l2h, perch = recon_maps(scorer, x)  # the mean head through the shipped maps
        maps.update({"nll-fit l2": l2h, "nll-fit perc": perch})
        maps.update({f"nll-fit {k}": m for k, m in nll_maps(net, x).items()})
        for key, m in maps.items():
            res.setdefault(key, ([], []))[0].append(norm(scorer, m, h, w))
            res[key][1].append(s.mask)
        print(f"{cat} {s.path.parent.name}/{s.path.name} {time.time() - t_all:.0f}s", flush=True)
n = len(res["shipped l2"][0])
combos = {"shipped l2+perc": ("shipped l2", "shipped perc"), "nll-fit l2+perc": ("nll-fit l2", "nll-fit perc"),
          "nll-fit nll+perc": ("nll-fit nll", "nll-fit perc"), "nll-fit z2+perc": ("nll-fit z2", "nll-fit perc")}
for key, (one, two) in combos.items():
    res[key] = ([res[one][0][i] + res[two][0][i] for i in range(n)], res[one][1])
for key, (ms, ks) in res.items():
    auc, ap_ = metrics(ms, ks)
    print(f"{a.dataset} {key:18s} {auc:.3f} / {ap_:.3f}")
print(f"total {time.time() - t_all:.0f}s")
