"""Issue 13: the grids' patches zoomed to one size (the 2x2 grid's) before the U-Net, a reading of SSDnet's "global
to local": a cold fit of 60 steps per image, reconstruction maps alone (L2 + perceptual, each standardised), pixel
AUROC / AUPRC per defective image. VARIANT: base | zoom (the default's 8 px blocks on the zoomed patches) | zoomB
(blocks of B px on every patch, zoomed or not: training and scoring). docs/ablations.md section 40.
Usage (repository root): python docs/ablation_runs/recon_search/zoom.py VARIANT OUT.json IMG...
(zoom.log: the per-image lines of `zoom` and `base` on the same images, and their means)"""
import json
import sys
import time

import cv2
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score

sys.path.insert(0, '.')
from edge import fitter as fitmod  # noqa: E402
from edge import patches, scoring  # noqa: E402
from edge.config import SSDNetConfig  # noqa: E402
from edge.fitter import Fitter, image_to_tensor  # noqa: E402
from edge.scoring import AnomalyScorer  # noqa: E402
from edge.vgg import build_vgg  # noqa: E402

torch.set_num_threads(1)
variant, out_path, images = sys.argv[1], sys.argv[2], sys.argv[3:]
block = int(variant[4:]) if variant.startswith('zoom') and len(variant) > 4 else 8
cfg = SSDNetConfig.model_validate({
    'corruption': {'mask_block': block, 'shuffle_block': block},
    'score': {'knn_weight': 0, 'pixel_weight': 1, 'perceptual_weight': 1, 'map_units': 'std', 'image_score': 'map',
              'mask_block': block},
    'memory': {'size_mb': 0}})
orig_to, orig_from = patches.to_patches, patches.from_patches
side = {}


def to_zoomed(x, s):
    p = orig_to(x, s)
    side[s] = p.shape[-2:]
    top = min(cfg.fit.scales)
    size = (x.shape[-2] // top, x.shape[-1] // top)
    return p if s == top else F.interpolate(p, size=size, mode='bilinear', align_corners=False)


def from_zoomed(p, s):
    if tuple(p.shape[-2:]) != tuple(side[s]):
        p = F.interpolate(p, size=tuple(side[s]), mode='area')
    return orig_from(p, s)


if variant.startswith('zoom'):
    fitmod.to_patches = scoring.to_patches = to_zoomed
    scoring.from_patches = from_zoomed
vgg = build_vgg(cfg)
fitter = Fitter(cfg, 'cpu', vgg)
scorer = AnomalyScorer(fitter.model, cfg.score, cfg.fit.scales, vgg).eval()
res = {}
for path in images:
    img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    mask = cv2.imread(path.replace('/test/', '/ground_truth/').replace('.png', '_mask.png'), 0) > 127
    h, w = mask.shape
    t0 = time.time()
    x = image_to_tensor(img, fitter.device, fitter.multiple)
    fitter.reset()
    fitter.fit(x, 60)
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        (l2, perc), = scorer.raw_maps(x)
    m = (scorer._normalise(l2) + scorer._normalise(perc))[0, 0, :h, :w].float().numpy()
    res[path] = (roc_auc_score(mask.ravel(), m.ravel()), average_precision_score(mask.ravel(), m.ravel()))
    print(f'{variant} {path.split("datasets/")[-1]} {res[path][0]:.3f} / {res[path][1]:.3f} {time.time() - t0:.0f} s',
          flush=True)
json.dump(res, open(out_path, 'w'), indent=1)
