"""Shared helpers of the probes here (stop_rule.py, agg_head.py, gms_probe.py, stream_trained.py; research only,
CPU, one thread).

The net, VGG19 trunk and scorer are the shipped ones (edge.fitter.Fitter, edge.scoring.AnomalyScorer,
defaults = configs/ssdnet-fit.yaml's fit). Maps: S = self-similarity (knn_map), L2 and perceptual from
the 4 masked passes per scale (as raw_maps), each smoothed then std-normalised per image.
"""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from edge.config import SSDNetConfig, parse_config  # noqa: E402
from edge.device import autocast  # noqa: E402
from edge.fitter import Fitter, image_to_tensor  # noqa: E402
from edge.scoring import AnomalyScorer  # noqa: E402
from edge.vgg import build_vgg, cosine_similarity  # noqa: E402
from tools.eval.dataset import load_category  # noqa: E402

TEX = ("/work/shared/datasets/textures-dev", ("bark", "brick", "canvas", "gravel", "wood"))
REAL = ("/work/shared/datasets/real-dev", ("mtd_blowhole", "mtd_break", "mtd_crack", "mtd_fray", "mtd_uneven"))
DATASETS = {"textures": TEX, "real": REAL}
# all three maps on (their weights are not used here: each map is taken separately)
CFG = {"score": {"knn_weight": 1, "pixel_weight": 1, "perceptual_weight": 1, "map_units": "std", "image_score": "map"}}


def subset(root, cat, n_bad, n_good):
    """n_bad defective images evenly spread over the (type-sorted) defective list, then n_good good ones."""
    s = load_category(root, cat)
    bad, good = [x for x in s if x.label], [x for x in s if not x.label]
    pick = lambda lst, n: [lst[i] for i in np.linspace(0, len(lst) - 1, n).round().astype(int)] if n else []
    return pick(bad, n_bad) + pick(good, n_good)


def build():
    torch.set_num_threads(1)
    cfg = parse_config(SSDNetConfig, CFG)
    vgg = build_vgg(cfg)
    fitter = Fitter(cfg, "cpu", vgg)
    scorer = AnomalyScorer(fitter.model, cfg.score, cfg.fit.scales, vgg).eval()
    return cfg, fitter, scorer


def tensor(fitter, image):
    return image_to_tensor(image, fitter.device, fitter.multiple)


@torch.no_grad()
def recon_maps(scorer, x):
    """Unsmoothed multi-scale L2 and perceptual maps of the masked passes (edge.scoring.raw_maps)."""
    with autocast(x.device, scorer.cfg.amp):
        feats = scorer._features(x)
        l2, perc = torch.zeros_like(x[:, :1]), torch.zeros_like(x[:, :1])
        n = len(scorer.scales)
        for s in scorer.scales:
            rec = scorer.reconstruct(x, s, scorer.cfg.masks).float()
            l2 += ((x - rec) ** 2).sum(1, keepdim=True) / n
            for name, f in scorer._features(rec).items():
                d = 1 - cosine_similarity(f, feats[name]).unsqueeze(1)
                perc += F.interpolate(d.float(), size=x.shape[-2:], mode="bilinear", align_corners=False) / (len(feats) * n)
    return l2, perc


@torch.no_grad()
def knn_map(scorer, x, h, w):
    """The default's own-frame self-similarity map S of the frame's h x w: its distance less the spacing term."""
    with autocast(x.device, scorer.cfg.amp):
        knn = scorer.knn_map(x, frame=(h, w))[0].float()
    return knn[:, :1] - scorer.cfg.knn_spacing_weight * knn[:, 1:2]


def norm(scorer, m, h, w):
    """Smooth, std-normalise over the valid h x w region (as the scorer), crop -> numpy float32."""
    m = scorer._smooth(m)[0, 0, :h, :w]
    return ((m - m.mean()) / (m.std() + 1e-8)).numpy().astype(np.float32)


PREWITT = torch.tensor([[1., 0., -1.], [1., 0., -1.], [1., 0., -1.]]) / 3


def grad_mag(g):
    k = torch.stack([PREWITT, PREWITT.t()])[:, None]
    d = F.conv2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), k)
    return d.pow(2).sum(1, keepdim=True).sqrt()


def msgms(x, rec, levels=4, c=0.0026):
    gx, gr = x.mean(1, keepdim=True), rec.mean(1, keepdim=True)
    out = torch.zeros_like(gx)
    for k in range(levels):
        a_, b_ = (F.avg_pool2d(gx, 2 ** k), F.avg_pool2d(gr, 2 ** k)) if k else (gx, gr)
        ma, mb = grad_mag(a_), grad_mag(b_)
        sim = (2 * ma * mb + c) / (ma ** 2 + mb ** 2 + c)
        out += F.interpolate(1 - sim, size=gx.shape[-2:], mode="bilinear", align_corners=False) / levels
    return out


def metrics(maps, masks):
    t = np.concatenate([m.ravel() for m in masks])
    p = np.concatenate([m.ravel() for m in maps])
    return roc_auc_score(t, p), average_precision_score(t, p)
