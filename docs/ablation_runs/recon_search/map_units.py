"""The reconstruction maps alone in the frame's own units or in the camera's (issue 13; a probe).

Issue 13's reconstruction-maps-only config scores each frame's L2 and perceptual maps in the frame's own standard
deviations (`map_units: std`): a good frame's noise is stretched to the level of a defective frame's peak, and the
eval pools each category's frames. Here the same maps of a camera's stream (the shipped fit: 60 cold steps on its
first frame, then 3 warm steps a frame after scoring it) are put in three units before the category's frames are
pooled: the frame's own (mean and std: the scorer's `normalise: std`), the camera's (the frame's mean, the median std
of the camera's frames so far, this one included), and raw (no normalisation). Pixel AUROC / AUPRC, the mean over
the categories (as `ssdnet eval`).

    cd docs/ablation_runs/recon_search && python map_units.py textures   # ~13 min (real: ~10 min)
"""
import argparse
import time

import numpy as np
import torch
from common import DATASETS, build, metrics, recon_maps, tensor

from edge.unet import UNet
from tools.eval.dataset import load_category

ap = argparse.ArgumentParser()
ap.add_argument("dataset", choices=DATASETS)
ap.add_argument("--cold", type=int, default=60)
ap.add_argument("--warm", type=int, default=3)
ap.add_argument("--max-frames", type=int, default=12)
ap.add_argument("--drop-skips", type=int, default=0, help="the U-Net's top N skips given zeros (section 80)")
a = ap.parse_args()


def forward(self, x):
    """UNet.forward with its `a.drop_skips` finest skips zeroed: the decoder rebuilds them from coarser features."""
    skips, h = [], x
    for i, enc in enumerate(self.enc):
        h = enc(h if i == 0 else self.pool(h))
        skips.append(h)
    for j, (up, dec, skip) in enumerate(zip(self.up, self.dec, reversed(skips[:-1]), strict=True)):
        keep = j < len(self.up) - a.drop_skips
        h = dec(torch.cat([up(h), skip if keep else torch.zeros_like(skip)], dim=1))
    return x + self.head(h)


if a.drop_skips:
    UNet.forward = forward
cfg, fitter, scorer = build()
root, cats = DATASETS[a.dataset]
UNITS = ("frame", "camera", "raw")
out = {u: [] for u in UNITS}
t_all = time.time()
for cat in cats:
    frames = load_category(root, cat)
    frames = [frames[i] for i in np.linspace(0, len(frames) - 1, min(a.max_frames, len(frames))).round().astype(int)]
    fitter.reset()
    maps, masks, stds = {u: [] for u in UNITS}, [], {"l2": [], "perc": []}
    for i, s in enumerate(frames):
        x = tensor(fitter, s.image)
        h, w = s.image.shape[:2]
        if i == 0:
            fitter.fit(x, steps=a.cold)
        l2, perc = recon_maps(scorer, x)
        smooth = {"l2": scorer._smooth(l2)[0, 0, :h, :w].numpy(), "perc": scorer._smooth(perc)[0, 0, :h, :w].numpy()}
        frame_u, camera_u = 0, 0
        for k, m in smooth.items():
            stds[k].append(m.std())
            frame_u = frame_u + (m - m.mean()) / (m.std() + 1e-8)
            camera_u = camera_u + (m - m.mean()) / (np.median(stds[k]) + 1e-8)
        maps["frame"].append(frame_u)
        maps["camera"].append(camera_u)
        maps["raw"].append(smooth["l2"] + smooth["perc"])
        masks.append(s.mask)
        fitter.fit(x, steps=a.warm)
    for u in UNITS:
        out[u].append(metrics(maps[u], masks))
    print(cat, " ".join(f"{u} %.3f / %.3f" % out[u][-1] for u in UNITS), f"{time.time() - t_all:.0f}s", flush=True)
print(f"\n{a.dataset}: mean over {len(cats)} categories, pixel AUROC / AUPRC")
for u in UNITS:
    print(f"{u:8s} %.3f / %.3f" % tuple(np.mean(out[u], axis=0)))
