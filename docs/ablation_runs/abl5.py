"""Feature-space scoring ablation (docs/ablations.md section 3): one cold fit per image (default
config), then raw maps of several scoring variants saved to NPZ for offline combination.
Reproduce (two processes, one thread each):
  python docs/ablation_runs/abl5.py bark,brick,canvas,chainmail,cobblestone,grass,gravel /tmp/abl5
  python docs/ablation_runs/abl5.py plaster,reptile_leather,rock,rough_canvas,stone_tiles,wood,woven_tissue /tmp/abl5
  python docs/ablation_runs/abl5_combine.py /tmp/abl5 docs/ablation_runs/abl5.json"""
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from tools.eval.baselines import vgg_knn  # noqa: E402
from edge.config import SSDNetConfig  # noqa: E402
from tools.eval.dataset import load_category  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.fitter import image_to_tensor  # noqa: E402
from edge.scoring import AnomalyScorer  # noqa: E402
from edge.vgg import VGG19Features  # noqa: E402

torch.set_num_threads(1)
root = os.environ.get("DATASET", "../shared/datasets/textures-dev")
cats, out = sys.argv[1].split(","), sys.argv[2]
os.makedirs(out, exist_ok=True)
cfg = SSDNetConfig()
det = Detector(cfg)
LAYERS = ("relu2_2", "relu3_1")
vgg = VGG19Features(layers=LAYERS)
scorers = {b: AnomalyScorer(det.fitter.model, cfg.score.model_copy(update={"mask_block": b, "clean_view": False}), cfg.fit.scales, vgg)
           for b in (8, 16, 32)}
clean = AnomalyScorer(det.fitter.model, cfg.score.model_copy(update={"masks": 0}), cfg.fit.scales, vgg)


def grid_feats(x: torch.Tensor) -> torch.Tensor:
    """(C, gh, gw) unit-norm VGG features on the 1/4 grid, as in the vgg_knn baseline."""
    acts = vgg(x)
    gh, gw = x.shape[-2] // 4, x.shape[-1] // 4
    f = [F.normalize(F.adaptive_avg_pool2d(acts[n], (gh, gw)), dim=1) for n in LAYERS]
    return (torch.cat(f, 1) / len(f) ** 0.5)[0]


def knn_against(q: torch.Tensor, bank: torch.Tensor, k: int = 5, radius: int = 4) -> torch.Tensor:
    """Mean distance of each query location to its k nearest bank locations outside its neighbourhood."""
    c, gh, gw = q.shape
    qq, bb = q.reshape(c, -1).T, bank.reshape(c, -1).T
    yy, xx = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    yy, xx = yy.reshape(-1), xx.reshape(-1)
    d = (2 - 2 * qq @ bb.T).clamp_min(0).sqrt()
    near = ((yy[:, None] - yy[None]).abs() <= radius) & ((xx[:, None] - xx[None]).abs() <= radius)
    return d.masked_fill(near, float("inf")).topk(k, dim=1, largest=False).values.mean(1).reshape(gh, gw)


def nbr_min(q: torch.Tensor, r: torch.Tensor, radius: int) -> torch.Tensor:
    """Min over a (2 radius + 1)^2 window of the distance between q at p and r at p + d."""
    c, gh, gw = q.shape
    rp = F.pad(r[None], (radius,) * 4, mode="replicate")[0]
    best = torch.full((gh, gw), float("inf"))
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            d = (2 - 2 * (q * rp[:, dy:dy + gh, dx:dx + gw]).sum(0)).clamp_min(0).sqrt()
            best = torch.minimum(best, d)
    return best


def up(m: torch.Tensor, size) -> np.ndarray:
    return F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


t0 = time.time()
for c in cats:
    samples = [s for s in load_category(root, c) if s.path.name == "000.png"]
    for s in samples:
        name = f"{c}__{s.path.parent.name}"
        x = image_to_tensor(s.image, det.device, det.fitter.multiple)
        det.reset()
        det.fit(x)
        maps = {}
        with torch.inference_mode():
            for b, sc in scorers.items():
                (l2, p), = sc.raw_maps(x)
                maps[f"l2_m{b}"], maps[f"p_m{b}"] = l2[0, 0].numpy(), p[0, 0].numpy()
            (l2, p), = clean.raw_maps(x)
            maps["l2_c"], maps["p_c"] = l2[0, 0].numpy(), p[0, 0].numpy()
            fq = grid_feats(x)
            size = x.shape[-2:]
            knn_rc, knn_rm, pn1, pn2 = 0, 0, 0, 0
            for sc_ in cfg.fit.scales:
                fr = grid_feats(clean.reconstruct(x, sc_, 0).float())
                fm = grid_feats(scorers[8].reconstruct(x, sc_, 4).float())
                knn_rc = knn_rc + knn_against(fq, fr) / len(cfg.fit.scales)
                knn_rm = knn_rm + knn_against(fq, fm) / len(cfg.fit.scales)
                pn1 = pn1 + nbr_min(fq, fr, 1) / len(cfg.fit.scales)
                pn2 = pn2 + nbr_min(fq, fr, 2) / len(cfg.fit.scales)
            for k, m in {"knn_rc": knn_rc, "knn_rm": knn_rm, "pn1_c": pn1, "pn2_c": pn2}.items():
                maps[k] = clean._smooth(torch.from_numpy(up(m, size))[None, None])[0, 0].numpy()
        h, w = s.image.shape[:2]
        maps = {k: v[:h, :w].astype(np.float32) for k, v in maps.items()}
        maps["knn_in"] = vgg_knn(s.image)
        maps["mask"] = s.mask.astype(np.uint8)
        np.savez_compressed(os.path.join(out, name + ".npz"), **maps)
        print(f"{name:36s} {time.time() - t0:.0f}s", flush=True)
