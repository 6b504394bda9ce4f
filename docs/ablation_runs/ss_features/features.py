"""The self-similarity's features, varied where they are made (docs/ablations.md section 31): the input's enlargement,
how a cell pools each VGG19 layer (avg, max, avg+std), the local statistics' window. Each spec F:POOL:SIGMA:W[:CELL[:NEAR]]
is enlargement F, pooling POOL, statistics window SIGMA px (`4+12`: the statistics of both windows, each at the
default's weight; section 36), spacing term W, cells of CELL input px (4; section 36's 2, section 38's 8 and 16), the
excluded neighbourhood NEAR px each way (32); `2:avg:4:0.75` is section 37's default, fp32.
Usage (repository root): python docs/ablation_runs/ss_features/features.py ../shared/datasets/textures-dev
2:avg:4:0.75 2:max:4:0.75 2:avg+std:4:0.75 2:avg:2:0.75 3:avg:4:0.75 (output: features.log; the maps go to $MAPS, features_maps.pkl by default, for per_image.py);
section 36: ... 2:avg:4+8:0.75 2:avg:4+16:0.75 2:avg:12:0.75 (features_sigma.log); on four categories (a folder of
links to bark, grass, gravel, rough_canvas): ... 2:avg:4:0.75 2:avg:4:0.75:2 (features_cell2.log)."""
import os, sys, math, pickle, torch, torch.nn.functional as F
sys.path[:0] = ['.', 'docs/ablation_runs/cross_frame']
from pathlib import Path
from common import report
from edge.config import SSDNetConfig
from edge.vgg import build_vgg
from edge.filters import gaussian_blur, gaussian_kernel
from edge.knn import knn_distance_and_spacing
from edge.local_stats import stats_features
from edge.fitter import image_to_tensor
from tools.eval.dataset import load_category
torch.set_num_threads(2)
cfg = SSDNetConfig(); vgg = build_vgg(cfg).eval()
K4 = gaussian_kernel(4.0)
root = Path(sys.argv[1]); specs = sys.argv[2:]
LAYERS = ('relu1_2', 'relu2_2', 'relu3_1')


def grid(acts, size, cell, pool):
    feats = []
    for a in acts.values():
        k = cell // (size[0] // a.shape[-2])
        a = a.float()
        parts = []
        for p in pool.split('+'):
            if p == 'avg':
                parts.append(F.avg_pool2d(a, k, k, ceil_mode=True))
            elif p == 'max':
                parts.append(F.max_pool2d(a, k, k, ceil_mode=True))
            elif p == 'std':
                m = F.avg_pool2d(a, k, k, ceil_mode=True)
                parts.append((F.avg_pool2d(a * a, k, k, ceil_mode=True) - m * m).clamp_min(0).sqrt())
        for q in parts:
            feats.append(F.normalize(q, dim=1))
    return torch.cat(feats, 1) / math.sqrt(len(feats))


R, maps = {}, {s: {} for s in specs}
cats = {}
for c in sorted(p.name for p in root.iterdir() if p.is_dir()):
    for s in load_category(root, c):
        x = image_to_tensor(s.image, torch.device('cpu'), 64)
        h, w = x.shape[-2:]
        key = str(s.path)
        R[key] = dict(mask=s.mask, label=s.label, cat=c, type=s.defect_type, size=s.image.shape[:2])
        cats.setdefault(c, []).append(key)
        acts = {}
        for spec in specs:
            f, pool, sig, sw, *rest = spec.split(':'); f = int(f); sw = float(sw)
            cell = int(rest[0]) if rest else 4
            near = int(rest[1]) if len(rest) > 1 else 32
            if f not in acts:
                with torch.inference_mode():
                    acts[f] = vgg(F.interpolate(x, scale_factor=f, mode='bilinear', align_corners=False), LAYERS)
            with torch.inference_mode():
                g = grid(acts[f], (f * h, f * w), cell * f, pool)
                g = torch.cat([g] + [0.2 * stats_features(x, cell, float(s)) for s in sig.split('+')], 1)
                d = knn_distance_and_spacing(g, 5, near // cell)[0]
                d = d[:1] - sw * d[1:]
                m = F.interpolate(d[None], size=(h, w), mode='bilinear', align_corners=False)
                H, W = R[key]['size']
                maps[spec][key] = gaussian_blur(m, K4)[0, 0, :H, :W].numpy()
    print(c, flush=True)
pickle.dump((R, cats, maps), open(os.environ.get('MAPS', 'features_maps.pkl'), 'wb'))
for spec in specs:
    report(f"{spec:22s}", maps[spec], R, cats)
