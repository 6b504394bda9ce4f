"""The fitted U-Net's own features in the self-similarity (docs/ablations.md section 37): the encoder's activations
of SSDnet's U-Net, fitted as the product fits it (the default's fit: SSDnet's corruptions and loss), pooled on the
self-similarity's 4 px cells and appended to the default's features (VGG19 relu1_2 + relu2_2 + relu3_1 of the 2x
frame, the local statistics at 0.2) at weight W; k 5, radius 8 cells, spacing term 0.75, as the default. Specs:
`-` the default's features alone; `N:W` a cold fit of N steps on each frame (N 0: the untrained net, its random
encoder); `stream:W` as a camera fits in the node with `configs/ssdnet-fit.yaml`: a cold fit (`fit.steps`) on its
first frame, then `fit.warm_steps` steps on each frame from the previous weights, each fit before its frame's
features.
With WARMUP=DIR WARMUP_FRAMES=N, a `stream` camera first fits on DIR's first N images in sorted order (the cold fit
on the first, warm steps on the rest), as `ssdnet eval --warmup` streams them (real-stream-dev has no per-category
folders).
Usage (repository root): [WARMUP=DIR WARMUP_FRAMES=N] python docs/ablation_runs/unet_features/unet_feats.py DATASET
SPEC... (the fit in bf16 where the CPU has it natively, as the product's; the rest fp32)."""
import math
import os
import sys
import time
from pathlib import Path

import cv2
import torch
import torch.nn.functional as F

sys.path[:0] = ['.', 'docs/ablation_runs/cross_frame']
from common import report  # noqa: E402

from edge.config import SSDNetConfig  # noqa: E402
from edge.filters import gaussian_blur, gaussian_kernel  # noqa: E402
from edge.fitter import Fitter, image_to_tensor  # noqa: E402
from edge.knn import knn_distance_and_spacing  # noqa: E402
from edge.local_stats import stats_features  # noqa: E402
from edge.vgg import build_vgg  # noqa: E402
from tools.eval.dataset import load_category  # noqa: E402

torch.set_num_threads(2)
cfg = SSDNetConfig()
vgg = build_vgg(cfg).eval()
fitter = Fitter(cfg, 'cpu')
K4 = gaussian_kernel(4.0)
LAYERS = ('relu1_2', 'relu2_2', 'relu3_1')
root, specs = Path(sys.argv[1]), sys.argv[2:]


def cells(acts: list[torch.Tensor], cell_rows: int) -> torch.Tensor:
    """Each activation map average-pooled (or, coarser than a cell, repeated) onto cell_rows x ... cells, L2-normalised
    per location, concatenated with equal weight."""
    out = []
    for a in acts:
        a = a.float()
        k = a.shape[-2] // cell_rows
        a = F.avg_pool2d(a, k, k) if k >= 1 else F.interpolate(a, scale_factor=cell_rows // a.shape[-2], mode='nearest')
        out.append(F.normalize(a, dim=1))
    return torch.cat(out, 1) / math.sqrt(len(out))


def encoder(x: torch.Tensor) -> list[torch.Tensor]:
    """The U-Net's four encoder levels (strides 1, 2, 4, 8)."""
    net, h, acts = fitter.model, x, []
    with torch.inference_mode():
        for i, enc in enumerate(net.enc):
            h = enc(h if i == 0 else net.pool(h))
            acts.append(h)
    return acts


R, maps, cats = {}, {s: {} for s in specs}, {}
warmup = sorted(Path(os.environ['WARMUP']).glob('*.png'))[:int(os.environ['WARMUP_FRAMES'])] if 'WARMUP' in os.environ \
    else []


def warmed() -> dict[str, torch.Tensor]:
    """A camera's weights after its warm-up frames (the untrained net's without any)."""
    fitter.reset()
    for i, path in enumerate(warmup):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        fitter.fit(image_to_tensor(image, torch.device('cpu'), 64), cfg.fit.warm_steps if i else cfg.fit.steps)
    return fitter.state_dict()


for c in sorted(p.name for p in root.iterdir() if p.is_dir()):
    t0 = time.perf_counter()
    camera = warmed() if any(spec.startswith('stream') for spec in specs) else None  # the streamed camera's weights
    for s in load_category(root, c):
        x = image_to_tensor(s.image, torch.device('cpu'), 64)
        h, w = x.shape[-2:]
        key = str(s.path)
        R[key] = dict(mask=s.mask, label=s.label, cat=c, type=s.defect_type, size=s.image.shape[:2])
        cats.setdefault(c, []).append(key)
        with torch.inference_mode():
            base = cells(list(vgg(F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False),
                                  LAYERS).values()), h // 4)
            base = torch.cat([base, 0.2 * stats_features(x, 4, 4.0)], 1)
        fitted = {}
        for spec in specs:
            g = base
            if spec != '-':
                fit, weight = spec.split(':')[0], float(spec.split(':')[1])
                if fit not in fitted:
                    if fit == 'stream':
                        first = key == cats[c][0] and not warmup
                        if first:
                            fitter.reset()
                        else:
                            fitter.load_state_dict(camera)
                        fitter.fit(x, cfg.fit.steps if first else cfg.fit.warm_steps)
                        camera = fitter.state_dict()
                    else:
                        fitter.reset()
                        if int(fit):
                            fitter.fit(x, int(fit))
                    fitted[fit] = cells(encoder(x.contiguous(memory_format=fitter.fmt)), h // 4)
                g = torch.cat([base, weight * fitted[fit]], 1)
            H, W = R[key]['size']
            with torch.inference_mode():  # the padding's cells are no neighbours (section 30)
                d = knn_distance_and_spacing(g, 5, 8, frame=(-(-H // 4), -(-W // 4)))[0]
                m = F.interpolate((d[:1] - 0.75 * d[1:])[None], size=(h, w), mode='bilinear', align_corners=False)
            maps[spec][key] = gaussian_blur(m, K4)[0, 0, :H, :W].numpy()
    print(c, f'{time.perf_counter() - t0:.0f} s', flush=True)
for spec in specs:
    report(f'{spec:10s}', maps[spec], R, cats)
