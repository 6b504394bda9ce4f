"""A DRAEM-style segmentation head trained online, label-free, on anomalies pasted from the frame itself (issue 13,
docs/ablations.md section 71; research only, CPU, one thread).

Each training step pastes a synthetic anomaly into the frame (`paste`): a mask from thresholded smoothed random noise
(isotropic or elongated at a random angle, 0.3-5 % of the frame, one blob or two), filled with the same frame's
pixels from another random place, flipped / rotated, under a random gain and offset, blended at opacity 0.3-1.
`edge.synthetic`'s drawn defects (scratches, stains, holes) are NOT used: textures-dev's defects were drawn by a
similar generator, so training on them would tune to the dev set.

One step trains (a) the shipped U-Net, from the shipped start, to give the clean frame back from the pasted and
SSDnet-corrupted frame (the shipped corruption, patches and loss: `recon_loss`; `--loss hidden` takes it on the
hidden pixels only, as `loss.hidden_only`), and (b) a small head (4 conv 3x3, 32 channels, dilations 1-2-4-1, a
17 px receptive field; `--head-norm`: inputs standardised per frame, GroupNorm after each conv, where DRAEM has
BatchNorm) on [frame, clean reconstruction, squared error, 1 - cosine of VGG19 relu1_2 / relu2_2 / relu3_1
upsampled], the reconstruction detached (DRAEM), with a class-balanced BCE on the pasted mask. At scoring the head
sees the frame as it is and the net's clean (unmasked) reconstruction (`head`), and, as a variant it was not trained
on, the scorer's masked passes (`headm`). Each map smoothed and std-normalised per frame (`norm`), against S (the
default's own-frame self-similarity).

real: one step per frame of real-stream-dev's 200 normal tiles in order, repeated to --steps; checkpoints score the
20 real-dev frames of stream_trained.py (4 bad per category). textures: per test frame a cold fit on that frame alone
(SSDnet's zero-shot setting), scored at each checkpoint.

    python seg_head.py real --bad 4 --steps 600 --every 200,400,600 --head-norm    # seg_head_real.txt
    python seg_head.py textures --bad 2 --steps 100 --every 50,100 --head-norm     # seg_head_textures.txt
    python seg_head.py real --bad 4 --steps 1000 --every 200,600,1000              # plain head; stopped at step 200
"""
import argparse
import copy
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from common import DATASETS, build, knn_map, metrics, norm, subset, tensor
from sklearn.metrics import roc_auc_score
from torch import nn

from edge.corrupt import corrupt
from edge.device import autocast
from edge.fitter import _weighted_mean
from edge.patches import to_patches
from edge.vgg import cosine_similarity

LAYERS = ("relu1_2", "relu2_2", "relu3_1")
ap = argparse.ArgumentParser()
ap.add_argument("dataset", choices=("real", "textures"))
ap.add_argument("--bad", type=int, default=4)
ap.add_argument("--good", type=int, default=0)
ap.add_argument("--steps", type=int, default=1000)
ap.add_argument("--every", default="200,600,1000")
ap.add_argument("--loss", choices=("all", "hidden"), default="all")
ap.add_argument("--head-lr", type=float, default=1e-3)
ap.add_argument("--head-norm", action="store_true",
                help="the head's inputs standardised per frame and channel, GroupNorm after each conv")
ap.add_argument("--stream", default="/work/shared/datasets/real-stream-dev")
a = ap.parse_args()
cfg, fitter, scorer = build()
fitter.cfg = cfg.model_copy(update={"loss": cfg.loss.model_copy(update={"hidden_only": a.loss == "hidden"})})
rng = np.random.default_rng(0)


def blob(h, w, area):
    """One blob of ~`area` pixels: the component around the peak of smoothed (maybe elongated, rotated) noise."""
    s = rng.choice([3.0, 6.0, 12.0])
    sx, sy = (s, s) if rng.random() < 0.5 else (s * rng.uniform(2, 6), s)  # half of them elongated
    n = max(h, w) * 2
    field = cv2.GaussianBlur(rng.standard_normal((n, n)).astype(np.float32), (0, 0), sigmaX=sx, sigmaY=sy)
    rot = cv2.getRotationMatrix2D((n / 2, n / 2), rng.uniform(0, 180), 1.0)
    y0, x0 = rng.integers(0, n - h), rng.integers(0, n - w)
    field = cv2.warpAffine(field, rot, (n, n))[y0:y0 + h, x0:x0 + w]
    peak = np.unravel_index(field.argmax(), field.shape)
    lo, hi = float(field.min()), float(field.max())
    for _ in range(12):  # bisect the threshold so the peak's component has ~area pixels
        t = (lo + hi) / 2
        _, lab = cv2.connectedComponents((field > t).astype(np.uint8))
        comp = lab == lab[peak]
        lo, hi = (t, hi) if comp.sum() > area else (lo, t)
    return comp


def paste(x, h, w):
    """(1, 3, H, W) frame -> the frame with a self-pasted anomaly inside its h x w, and the (1, 1, H, W) mask."""
    area = h * w * math.exp(rng.uniform(math.log(0.003), math.log(0.05)))
    n = 2 if rng.random() < 0.3 else 1
    m = np.zeros(x.shape[-2:], bool)
    for _ in range(n):
        m[:h, :w] |= blob(h, w, area / n)
    src = torch.rot90(x, int(rng.integers(4)), (2, 3))
    src = src.flip(3) if rng.random() < 0.5 else src
    src = src[..., :x.shape[-2], :x.shape[-1]]  # a frame that is not square: its rotation cropped
    src = F.pad(src, (0, x.shape[-1] - src.shape[-1], 0, x.shape[-2] - src.shape[-2]), mode="replicate")
    src = torch.roll(src, (int(rng.integers(h)), int(rng.integers(w))), (2, 3))
    src = src * rng.uniform(0.6, 1.4) + rng.uniform(-0.15, 0.15)  # one gain and offset for all channels: no tint
    mask = torch.from_numpy(m)[None, None].float()
    alpha = rng.uniform(0.3, 1.0) * mask
    return x * (1 - alpha) + src.clamp(0, 1) * alpha, mask


def recon_loss(xa, x):
    """The shipped fit's loss (edge.fitter): the pasted frame's patches corrupted, the clean frame's the target."""
    c, loss = fitter.cfg, torch.zeros(())
    with autocast(fitter.device, fitter.amp):
        for s in c.fit.scales:
            pa, pc = to_patches(xa, s), to_patches(x, s)
            k = max(1, math.ceil(c.fit.patch_fraction * pa.shape[0]))
            idx = torch.randperm(pa.shape[0], generator=fitter.generator)[:k]
            inp, hidden = corrupt(pa[idx], c.corruption, fitter.generator)
            out, clean = fitter.model(inp.contiguous(memory_format=fitter.fmt)), pc[idx]
            weight = hidden.float() if c.loss.hidden_only else None
            part = c.loss.pixel_weight * _weighted_mean(((out.float() - clean) ** 2).mean(1),
                                                        None if weight is None else weight[:, 0])
            with torch.no_grad():
                target = fitter.vgg(clean, c.loss.vgg_layers)
            feats = fitter.vgg(out, c.loss.vgg_layers)
            cos = [_weighted_mean(sim := cosine_similarity(feats[k], target[k]).float(),
                                  None if weight is None else F.adaptive_avg_pool2d(weight, sim.shape[-2:])[:, 0])
                   for k in c.loss.vgg_layers]
            loss = loss + part + c.loss.perceptual_weight * (1 - sum(cos) / len(cos))
    return loss


@torch.no_grad()
def head_input(x, masks=0):
    """[frame, reconstruction (mean over the grid scales; `masks` > 0: the scorer's masked passes), squared error,
    1 - cosine of VGG19 relu1_2 / relu2_2 / relu3_1] (1, 10, H, W)."""
    with autocast(x.device, scorer.cfg.amp):
        rec = sum(scorer.reconstruct(x, s, masks).float() for s in scorer.scales).clamp(0, 1) / len(scorer.scales)
        fx, fr = scorer.vgg(x, LAYERS), scorer.vgg(rec, LAYERS)
        cos = [F.interpolate(1 - cosine_similarity(fr[k], fx[k]).unsqueeze(1).float(), size=x.shape[-2:],
                             mode="bilinear", align_corners=False) for k in LAYERS]
    return torch.cat([x, rec, ((x - rec) ** 2).sum(1, keepdim=True), *cos], 1)


def new_head():
    torch.manual_seed(0)
    layers, c = [], 10
    for d in (1, 2, 4, 1):
        layers += [nn.Conv2d(c, 32, 3, padding=d, dilation=d)] + ([nn.GroupNorm(8, 32)] if a.head_norm else [])
        layers.append(nn.ReLU())
        c = 32
    head = nn.Sequential(*([nn.InstanceNorm2d(10)] if a.head_norm else []), *layers, nn.Conv2d(32, 1, 1))
    return head, torch.optim.Adam(head.parameters(), lr=a.head_lr)


def step(head, opt, x, h, w, t):
    """One joint step on frame x (valid h x w): the U-Net on the pasted frame, then the head on its detached output."""
    xa, mask = paste(x, h, w)
    t0 = time.perf_counter()
    fitter.model.train()
    loss = recon_loss(xa, x)
    fitter.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(fitter.model.parameters(), cfg.fit.grad_clip)
    fitter.optimizer.step()
    fitter.model.eval()
    t1 = time.perf_counter()
    logit = head(head_input(xa))[..., :h, :w]
    m = mask[..., :h, :w]
    bce = F.binary_cross_entropy_with_logits(logit, m, reduction="none")
    hloss = (bce * m).sum() / m.sum().clamp_min(1) / 2 + (bce * (1 - m)).sum() / (1 - m).sum() / 2  # class-balanced
    opt.zero_grad(set_to_none=True)
    hloss.backward()
    opt.step()
    t[0] += t1 - t0
    t[1] += time.perf_counter() - t1
    return float(loss.detach()), float(hloss.detach())


@torch.no_grad()
def head_maps(head, x, h, w):
    return {"head": norm(scorer, head(head_input(x)), h, w),
            "headm": norm(scorer, head(head_input(x, scorer.cfg.masks)), h, w)}


def report(tag, got, masks):
    """Pooled pixel AUROC / AUPRC and the mean per-image AUROC of each map and of S + w * head."""
    for k in ("head", "headm"):
        for w_ in (0.25, 0.5, 1.0):
            got[f"S+{w_}*{k}"] = [s + w_ * m for s, m in zip(got["S"], got[k], strict=True)]
    line = [tag]
    for k, v in got.items():
        auroc, auprc = metrics(v, masks)
        per = np.mean([roc_auc_score(t.ravel(), p.ravel()) for p, t in zip(v, masks, strict=True) if 0 < t.mean() < 1])
        line.append(f"{k} {auroc:.3f}/{auprc:.3f} (per image {per:.3f})")
    print("  ".join(line), flush=True)


def shipped_step_seconds(x, n=10):
    """Seconds per step of the shipped fit on one frame (a copy of the fitter, so the run's net is untouched)."""
    f = copy.deepcopy(fitter)
    f.fit(x, steps=2)
    return f.fit(x, steps=n).seconds / n


root, cats = DATASETS[a.dataset]
tests = [(c, s) for c in cats for s in subset(root, c, a.bad, a.good)]
checkpoints = sorted({0, *map(int, a.every.split(","))})
print(f"# {a.dataset}: loss {a.loss}, head lr {a.head_lr}, head norm {a.head_norm}, {len(tests)} test frames, "
      f"checkpoints {checkpoints}", flush=True)
xs = [(tensor(fitter, s.image), *s.image.shape[:2]) for _, s in tests]
masks = [s.mask > 0 for _, s in tests]
S = [norm(scorer, knn_map(scorer, x, h, w), h, w) for x, h, w in xs]
print(f"# the shipped fit's step on a test frame: {shipped_step_seconds(xs[0][0]):.3f} s", flush=True)
t = [0.0, 0.0]
if a.dataset == "real":
    frames = [tensor(fitter, cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))
              for p in sorted(Path(a.stream).glob("*.png"))]
    sizes = [cv2.imread(str(p)).shape[:2] for p in sorted(Path(a.stream).glob("*.png"))]
    head, opt = new_head()
    recent = []
    for n in range(a.steps + 1):
        if n:
            i = (n - 1) % len(frames)
            recent.append(step(head, opt, frames[i], *sizes[i], t))
        if n in checkpoints:
            got = {"S": S, "head": [], "headm": []}
            for x, h, w in xs:
                for k, v in head_maps(head, x, h, w).items():
                    got[k].append(v)
            ls = np.mean(recent[-50:], 0) if recent else (float("nan"),) * 2
            per = (t[0] / n, t[1] / n) if n else (0, 0)
            report(f"step {n:5d} (losses {ls[0]:.4f} {ls[1]:.4f}; s/step net {per[0]:.3f} head {per[1]:.3f})",
                   got, masks)
else:
    got = {c: {"S": S, "head": [], "headm": []} for c in checkpoints}
    for i, (x, h, w) in enumerate(xs):
        fitter.reset()
        head, opt = new_head()
        for n in range(max(checkpoints) + 1):
            if n:
                step(head, opt, x, h, w, t)
            if n in checkpoints:
                for k, v in head_maps(head, x, h, w).items():
                    got[n][k].append(v)
        print(f"# frame {i + 1}/{len(xs)} {tests[i][0]}: s/step net {t[0] / ((i + 1) * max(checkpoints)):.3f} head "
              f"{t[1] / ((i + 1) * max(checkpoints)):.3f}", flush=True)
    for n in checkpoints:
        report(f"steps {n:4d}", got[n], masks)
