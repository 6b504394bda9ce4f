"""True Deep Image Prior on a fixed random-noise input (issue 13; a probe).

Earlier "DIP start" tries fed the net the (corrupted) frame, which lets it copy. Here, as in Ulyanov et al., the net's
input is a FIXED noise tensor z ~ U(0, 0.1) of shape (1, 32, H, W) (perturbed each step by N(0, --reg-noise^2), DIP's
denoising recipe), and the net is fitted, per frame and from scratch, to output the frame (L2 loss, Adam). A net fits
repeating structure before unique structure, so early in the fit |f(z) - x|^2 should be high on defects. At each
--record step the per-pixel error (squared error summed over channels) of the unperturbed-z output, and of DIP's
exponential average of the outputs (--ema, DIP's "out_avg"), is smoothed and std-normalised per image like the other
probes' maps (common.norm). Pooled pixel AUROC / AUPRC of each map alone, of the self-similarity S (the default's
own-frame map) and of S + w x map, w in (0.1, 0.25, 0.5). Same images as step_average.py (--bad 2).

The net is the shipped SSDnet U-Net (edge.unet.UNet: 3 down / 3 up, skips, base 32 channels) built with 32 input
channels, its identity residual removed, a random-init (not zero) 1x1 head to 3 channels, a sigmoid output and, as in
DIP's nets, a BatchNorm after every convolution (batch of one: per-pass statistics; the shipped net has no
normalisation, and without it the fit from noise fails: at lr 1e-2 the sigmoid saturates (output 1.0, loss flat from
step 10), at lr 1e-3 the output stays a flat grey (std 0.005-0.01, loss flat over 200 steps) on bark/000).
One setting for both sets, no tuning per category.

    cd docs/ablation_runs/recon_search && nice -n 10 python dip_noise.py textures  # then: real
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from common import DATASETS, build, knn_map, metrics, norm, subset, tensor
from edge.unet import UNet

ap = argparse.ArgumentParser()
ap.add_argument("dataset", choices=DATASETS)
ap.add_argument("--bad", type=int, default=2)
ap.add_argument("--good", type=int, default=0)
ap.add_argument("--record", default="50,100,200,300", help="steps at which the error map is taken")
ap.add_argument("--lr", type=float, default=1e-2)
ap.add_argument("--z-channels", type=int, default=32)
ap.add_argument("--reg-noise", type=float, default=1 / 30, help="std of the per-step perturbation of z (0: none)")
ap.add_argument("--ema", type=float, default=0.99, help="DIP's exponential average of the outputs")
ap.add_argument("--no-bn", action="store_true", help="the shipped net's blocks, no normalisation")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--limit", type=int, default=0, help="only the first N images (timing)")
a = ap.parse_args()
record = sorted(int(s) for s in a.record.split(","))


class NoiseUNet(UNet):
    """The shipped U-Net, DIP-style: noise channels in, no input-to-output residual, random head, sigmoid, BN."""

    def __init__(self, base_channels, in_channels, bn=True):
        super().__init__(base_channels, in_channels)
        self.head = nn.Conv2d(base_channels, 3, 1)  # default (random) init
        if bn:
            for blocks in (self.enc, self.dec):
                for i, seq in enumerate(blocks):
                    layers = []
                    for m in seq:
                        layers.append(m)
                        if isinstance(m, nn.Conv2d):
                            layers.append(nn.BatchNorm2d(m.out_channels))
                    blocks[i] = nn.Sequential(*layers)

    def forward(self, z):
        skips, h = [], z
        for i, enc in enumerate(self.enc):
            h = enc(h if i == 0 else self.pool(h))
            skips.append(h)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1]), strict=True):
            h = dec(torch.cat([up(h), skip], dim=1))
        return torch.sigmoid(self.head(h))


def err(out, x):
    return ((out - x) ** 2).sum(1, keepdim=True)


cfg, fitter, scorer = build()  # one thread; the scorer for S and the maps' smoothing
root, cats = DATASETS[a.dataset]
keys = [f"{kind} {st}" for st in record for kind in ("raw", "ema")]
maps = {k: [] for k in keys + ["S"]}
masks, times = [], []
t_all = time.time()
n_img = 0
for cat in cats:
    for s in subset(root, cat, a.bad, a.good):
        if a.limit and n_img >= a.limit:
            break
        n_img += 1
        t0 = time.time()
        x = tensor(fitter, s.image)
        h, w = s.image.shape[:2]
        g = torch.Generator().manual_seed(a.seed)
        torch.manual_seed(a.seed)
        net = NoiseUNet(cfg.model.base_channels, a.z_channels, bn=not a.no_bn)
        z = torch.rand((1, a.z_channels, *x.shape[-2:]), generator=g) * 0.1
        opt = torch.optim.Adam(net.parameters(), lr=a.lr)
        avg = None
        per = {}
        for step in range(1, record[-1] + 1):
            zin = z + a.reg_noise * torch.randn(z.shape, generator=g) if a.reg_noise > 0 else z
            out = net(zin)
            loss = F.mse_loss(out, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if a.reg_noise > 0 or step in record:  # DIP averages the outputs of the perturbed inputs
                o = out.detach()
                avg = o if avg is None else a.ema * avg + (1 - a.ema) * o
            if step in record:
                with torch.no_grad():
                    clean = net(z)  # the output of the fixed z after `step` updates
                per[f"raw {step}"] = norm(scorer, err(clean, x), h, w)
                per[f"ema {step}"] = norm(scorer, err(avg, x), h, w)
        for k in keys:
            maps[k].append(per[k])
        maps["S"].append(norm(scorer, knn_map(scorer, x, h, w), h, w))
        masks.append(s.mask)
        times.append(time.time() - t0)
        auc = " ".join(f"{st}:{metrics([per[f'raw {st}']], [s.mask])[0]:.3f}/{metrics([per[f'ema {st}']], [s.mask])[0]:.3f}"
                       for st in record)
        print(f"{cat} {s.path.parent.name}/{s.path.name} {times[-1]:.0f}s loss {loss.item():.4f} "
              f"auc raw/ema by step {auc}  S {metrics([maps['S'][-1]], [s.mask])[0]:.3f}", flush=True)

print(f"\n{a.dataset}: {len(masks)} images, total {time.time() - t_all:.0f}s, {np.mean(times):.0f}s per image; "
      f"lr {a.lr} z U(0,0.1) x{a.z_channels} reg-noise {a.reg_noise:.4f} ema {a.ema} bn {not a.no_bn}")
print("pooled pixel AUROC / AUPRC (mean per-image AUROC)")


def row(name, m):
    auc, ap_ = metrics(m, masks)
    mean = np.mean([metrics([mi], [mk])[0] for mi, mk in zip(m, masks)])
    print(f"{name:24s} {auc:.3f} / {ap_:.3f}  ({mean:.3f})")


row("S", maps["S"])
for k in keys:
    row(f"DIP {k}", maps[k])
for k in keys:
    for wt in (0.1, 0.25, 0.5):
        row(f"S + {wt} x {k}", [sm + wt * rm for sm, rm in zip(maps["S"], maps[k])])
