"""Section 82: the self-similarity of the fitted U-Net's masked reconstruction (a blind-spot denoiser of the frame:
each pixel predicted from its surroundings, never from itself) instead of, or beside, the frame's own.

    python docs/ablation_runs/denoised_ss/probe.py DATASET [--part i/n] [--input-noise SIGMA]

Each category streams through a Detector of configs/ssdnet-fit.yaml (a cold fit on its first frame, 3 warm steps on
each later one, as the node runs it); after each frame's fit the masked passes (`score.masks` 4, each scale of
`fit.scales`, averaged over the scales) rebuild it, and the frame-alone self-similarity map (edge.knn, the default's:
plain distance less 0.75 x the spacing term, smoothed, in its raw units) is computed on the frame and on its
reconstruction. Prints per category the pooled pixel AUROC of S(frame), S(reconstruction) and their sum, and the
means. `--input-noise`: Gaussian noise of that sigma (grey levels) added to every frame first, as `ssdnet eval`'s.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from edge.config import load_config
from edge.detector import Detector
from edge.fitter import image_to_tensor
from tools.eval.dataset import list_categories, load_category

p = argparse.ArgumentParser()
p.add_argument("dataset")
p.add_argument("--part", default="0/1")
p.add_argument("--input-noise", type=float, default=0.0)
a = p.parse_args()
torch.set_num_threads(1)
i, n = (int(v) for v in a.part.split("/"))
cfg = load_config("configs/ssdnet-fit.yaml")
det = Detector(cfg, "cpu")
rng = np.random.default_rng(0)
spacing = cfg.score.knn_spacing_weight


def s_map(x: torch.Tensor, h: int, w: int) -> np.ndarray:
    m, _ = det.scorer.knn_map(x, frame=(h, w))
    return (m[0, 0] - spacing * m[0, 1])[:h, :w].numpy()


for category in list_categories(a.dataset)[i::n]:
    det.reset()
    maps = {"S(frame)": [], "S(rec)": [], "sum": []}
    masks = []
    for s in load_category(a.dataset, category):
        image = s.image
        if a.input_noise:
            image = np.clip(image + rng.normal(0, a.input_noise, image.shape), 0, 255).astype(np.uint8)
        det.process(image)
        h, w = image.shape[:2]
        x = image_to_tensor(image, det.device, det.fitter.multiple)
        with torch.no_grad():
            rec = sum(det.scorer.reconstruct(x, sc, cfg.score.masks) for sc in cfg.fit.scales) / len(cfg.fit.scales)
            own, rebuilt = s_map(x, h, w), s_map(rec.clamp(0, 1), h, w)
        maps["S(frame)"].append(own)
        maps["S(rec)"].append(rebuilt)
        maps["sum"].append(own + rebuilt)
        masks.append(s.mask)
    y = np.concatenate([m.ravel() for m in masks])
    print(category, " ".join(f"{k} {roc_auc_score(y, np.concatenate([m.ravel() for m in v])):.3f}"
                             for k, v in maps.items()), flush=True)
