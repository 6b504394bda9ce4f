"""Oriented line integrals of the self-similarity map (not of its features, section 12): a thin defect's cells are
each a little above the texture, and a mean along the line would add them up (docs/ablations.md section 30; not kept).
8 orientations of a Gaussian line (sigma L px along, W px across), the largest response; `line` alone, `max` or
`mean` with the default's isotropic sigma-4 smoothing; `iso` is the default.
Usage (repository root): python docs/ablation_runs/line_stats/cache.py ../shared/datasets/textures-dev tex.pkl
<all 14 categories>, then python docs/ablation_runs/line_map/line_map.py tex.pkl iso line:8:1.5:line
line:8:1.5:max line:12:2:line line:12:2:mean (output: line_map.log)."""
import sys, math, pickle, torch, torch.nn.functional as F
sys.path[:0] = ['.', 'docs/ablation_runs/cross_frame']
from common import report
from edge.filters import gaussian_blur, gaussian_kernel
from edge.knn import knn_distance_and_spacing
from edge.local_stats import stats_features
torch.set_num_threads(1)
R = pickle.load(open(sys.argv[1], 'rb'))
K4 = gaussian_kernel(4.0)


def kernels(length, width, n=8):
    r = int(math.ceil(max(length, width) * 2.5))
    y, x = torch.meshgrid(torch.arange(-r, r + 1.), torch.arange(-r, r + 1.), indexing='ij')
    ks = []
    for i in range(n):
        t = math.pi * i / n
        along, perp = x * math.cos(t) + y * math.sin(t), -x * math.sin(t) + y * math.cos(t)
        k = torch.exp(-perp ** 2 / (2 * width ** 2) - along ** 2 / (2 * length ** 2))
        ks.append(k / k.sum())
    return torch.stack(ks)[:, None], r


D = {}
for key, e in R.items():
    x = e['x'][None].float()
    f = torch.cat([e['g'].float(), 0.2 * stats_features(x, 4, 4.0)[0]], 0)
    d = knn_distance_and_spacing(f[None], 5, 8)[0]  # the default's self-similarity, less 0.75 x its spacing term
    d = d[0] - 0.75 * d[1]
    gh, gw = f.shape[1:]
    h, w = e['x'].shape[-2:]
    D[key] = F.interpolate(d.reshape(1, 1, gh, gw), size=(h, w), mode='bilinear', align_corners=False)

cats = {}
for k, e in R.items():
    cats.setdefault(e['cat'], []).append(k)
for spec in sys.argv[2:]:
    parts = spec.split(':')
    maps = {}
    if parts[0] != 'iso':
        ks, r = kernels(float(parts[1]), float(parts[2]))
    for key, m in D.items():
        H, W = R[key]['size']
        iso = gaussian_blur(m, K4)
        if parts[0] == 'iso':
            out = iso
        else:
            line = F.conv2d(F.pad(m, (r, r, r, r), mode='replicate'), ks).amax(1, keepdim=True)
            mode = parts[3]
            out = line if mode == 'line' else torch.maximum(iso, line) if mode == 'max' else (iso + line) / 2
        maps[key] = out[0, 0, :H, :W].numpy()
    report(f"{spec:18s}", maps, R, cats)
