"""The reconstruction maps of a net trained long on a camera's normal stream: an upper bound for issue 13's
"the stream teaches the model" (section 68).

The shipped net and loss (configs/ssdnet-fit.yaml's fit) start untrained and take one step per frame of
real-stream-dev's 200 normal tiles, in order, round after round (the node's warm fit gives each frame 3 steps at most
within its budget; here up to --steps in all, far past a 200-frame warm-up's ~600). At each checkpoint the net
scores --bad defective frames per category of real-dev (masked passes at every grid scale, as the scorer) and the maps
are compared with the masks:
  l2     the shipped multi-scale L2 map
  perc   the shipped perceptual map (relu1_2, relu2_2, relu3_1)
  deep   the perceptual map on relu3_1 + relu4_1
  gms    1 - gradient magnitude similarity over a 4-level pyramid (gms_probe.py)
  l2+perc the shipped pair (each std-normalised, summed)
  S+w*m  S plus w times a map above (S, the default's own-frame self-similarity on the same frames)
each smoothed and std-normalised per image as the scorer does; pixel AUROC / AUPRC pooled, and the mean per-image
AUROC.

--loss hidden (section 69) takes the fit's L2 and perceptual loss on the hidden (masked) pixels only, as section 6's
research switch `fit.loss_region: hidden` did (research.patch): the L2 is the mean over the masked blocks' pixels of
the channel-mean squared error, each VGG layer's cosine similarity is weighted by the share of masked pixels under
each feature location (the mask average-pooled to the layer's size): `loss.hidden_only` (edge.fitter). The corruption
is the shipped one, draw for draw; only the loss's region changes. --start random (with --loss either) gives the
net's 1x1 head PyTorch's default random init instead of zeros, so the untrained net is not the identity (section 6's
"Deep-Image-Prior start", research.patch's `model.identity_start: false`; the input-to-output residual stays).

    python docs/ablation_runs/recon_search/stream_trained.py --bad 4 --steps 2000 --every 250,500,1000,2000
    python docs/ablation_runs/recon_search/stream_trained.py --bad 4 --steps 2000 --every 100,250,500,1000,1500,2000 --loss hidden
"""
import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from common import DATASETS, build, knn_map, metrics, msgms, norm, subset, tensor
from edge.vgg import cosine_similarity

ap = argparse.ArgumentParser()
ap.add_argument("--bad", type=int, default=4)
ap.add_argument("--steps", type=int, default=2000)
ap.add_argument("--every", default="250,500,1000,2000")
ap.add_argument("--stream", default="/work/shared/datasets/real-stream-dev")
ap.add_argument("--fit", default="{}", help="JSON overrides of the fit's config sections, e.g. '{\"lr\": 0.0005}'")
ap.add_argument("--loss", choices=("all", "hidden"), default="all",
                help="the fit's loss on every pixel (shipped) or on the hidden (masked) pixels only (section 69)")
ap.add_argument("--start", choices=("identity", "random"), default="identity",
                help="the net's head zero (shipped: the untrained net is the identity) or randomly initialised")
ap.add_argument("--lowpass", type=int, default=2,
                help="the `lo` map: the L2 of the frame and its reconstruction each box-blurred over 2K+1 px (section 70)")
ap.add_argument("--aggregate", action="store_true",
                help="also the deep map aggregated with S other than by a sum (section 73): its part above 1 std, "
                     "gated by S's sigmoid, the product of the two's positive parts, the larger of the two")
ap.add_argument("--seed", type=int, default=0,
                help="other than 0: the net's initial weights and the fit's draws (patches, corruptions) from this seed")
a = ap.parse_args()
cfg, fitter, scorer = build()
for k, v in json.loads(a.fit).items():
    setattr(cfg.fit, k, v)


fitter.cfg = cfg.model_copy(update={"loss": cfg.loss.model_copy(update={"hidden_only": a.loss == "hidden"})})
if a.seed:  # the net drawn afresh as UNet.__init__ draws it (default inits, the head zeroed), the fit's generator too
    torch.manual_seed(a.seed)
    for mod in fitter.model.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            mod.reset_parameters()
    torch.nn.init.zeros_(fitter.model.head.weight)
    torch.nn.init.zeros_(fitter.model.head.bias)
    fitter.generator.manual_seed(a.seed)
if a.start == "random":
    torch.manual_seed(a.seed or cfg.fit.seed)
    fitter.model.head.reset_parameters()  # nn.Conv2d's default init: the untrained net is no longer the identity
fitter._initial = fitter.state_dict()
fitter._new_optimizer()
print(f"# loss {a.loss}, start {a.start}, seed {a.seed}, fit overrides {a.fit}", flush=True)
root, cats = DATASETS["real"]
frames = [tensor(fitter, cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))
          for p in sorted(Path(a.stream).glob("*.png"))]
tests = [(c, s) for c in cats for s in subset(root, c, a.bad, 0)]
checkpoints = {0, *map(int, a.every.split(","))}


@torch.no_grad()
def maps(x):
    out = {k: torch.zeros_like(x[:, :1]) for k in ("l2", "perc", "deep", "gms", "lo")}
    feats = scorer.vgg(x, ["relu1_2", "relu2_2", "relu3_1", "relu4_1"])
    n = len(scorer.scales)
    for s in scorer.scales:
        rec = scorer.reconstruct(x, s, scorer.cfg.masks).float().clamp(0, 1)
        out["l2"] += ((x - rec) ** 2).sum(1, keepdim=True) / n
        rf = scorer.vgg(rec, ["relu1_2", "relu2_2", "relu3_1", "relu4_1"])
        for key, layers in (("perc", ("relu1_2", "relu2_2", "relu3_1")), ("deep", ("relu3_1", "relu4_1"))):
            for name in layers:
                d = 1 - cosine_similarity(rf[name], feats[name]).unsqueeze(1)
                out[key] += F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False) / (len(layers) * n)
        out["gms"] += msgms(x, rec) / n
        lo = lambda t: F.avg_pool2d(t, 2 * a.lowpass + 1, stride=1, padding=a.lowpass, count_include_pad=False)  # noqa: E731
        out["lo"] += ((lo(x) - lo(rec)) ** 2).sum(1, keepdim=True) / n
    return out


S = []  # the self-similarity maps, once (no fit changes them)


def evaluate(step, seconds):
    got, masks = {}, []
    for i, (cat, sample) in enumerate(tests):
        x = tensor(fitter, sample.image)
        h, w = sample.image.shape[:2]
        m = {k: norm(scorer, v, h, w) for k, v in maps(x).items()}
        m["l2+perc"] = m["l2"] + m["perc"]
        if len(S) == i:
            S.append(norm(scorer, knn_map(scorer, x, h, w), h, w))
        m.update({f"S+{w_}*{k}": S[i] + w_ * m[k] for k in ("l2", "perc", "deep", "l2+perc", "lo") for w_ in (0.25, 0.5)})
        if a.aggregate:  # section 73: the deep map counted only where it stands out, or where S already suspects
            r, s_ = m["deep"], S[i]
            for w_ in (0.5, 1.0):
                m[f"S+{w_}*relu(deep-1)"] = s_ + w_ * np.maximum(r - 1, 0)
                m[f"S+{w_}*deep*gate(S)"] = s_ + w_ * r / (1 + np.exp(-2 * (s_ - 1)))
                m[f"S+{w_}*relu(S)*relu(deep)"] = s_ + w_ * np.maximum(s_, 0) * np.maximum(r, 0)
            m["max(S,deep)"] = np.maximum(s_, r)
        m["S"] = S[i]
        for k, v in m.items():
            got.setdefault(k, []).append(v)
        masks.append(sample.mask > 0)
    line = [f"step {step:5d} ({seconds:6.0f} s)"]
    for k, v in got.items():
        auroc, auprc = metrics(v, masks)
        per = np.mean([roc_auc_score(t.ravel(), p.ravel()) for p, t in zip(v, masks) if 0 < t.mean() < 1])
        line.append(f"{k} {auroc:.3f}/{auprc:.3f} (per image {per:.3f})")
    print("  ".join(line), flush=True)


torch.manual_seed(0)
t0 = time.perf_counter()
evaluate(0, 0)
for step in range(1, a.steps + 1):
    fitter.fit(frames[(step - 1) % len(frames)], steps=1)
    if step in checkpoints:
        evaluate(step, time.perf_counter() - t0)
