"""Self-similarity variants on cache.py's grid features: extra local statistics for thin lines (Hessian
eigenvalues, structure-tensor orientation, 8 oriented line filters) appended to the default's features.
Usage (repository root): python docs/ablation_runs/line_stats/variants.py a.pkl,b.pkl none:0 lines:0.3 ...
(EXTRA:WEIGHT; `none:0` reproduces the default's streamed textures-dev numbers). Output: variants.log."""
import sys, pickle, torch, torch.nn.functional as F
from pathlib import Path
sys.path[:0] = ['.', str(Path(__file__).parents[1] / 'cross_frame')]
from common import report
from edge.filters import gaussian_blur, gaussian_kernel
from edge.knn import knn_distance
from edge.local_stats import stats_features, _z
torch.set_num_threads(1)
R = {}
for f in sys.argv[1].split(','):
    R.update(pickle.load(open(f, 'rb')))
K4 = gaussian_kernel(4.0)

def blur(m, s):
    return gaussian_blur(m, gaussian_kernel(s))

def shape_stats(x, sh=1.5, si=2.0):
    """(1,3,H,W) -> (1,4,H,W): Hessian eigenvalues (sigma sh) and structure-tensor orientation (sigma si)."""
    g = blur(x.float().mean(1, keepdim=True), sh)
    p = F.pad(g, (1, 1, 1, 1), mode='replicate')
    ixx = p[..., 1:-1, 2:] - 2 * g + p[..., 1:-1, :-2]
    iyy = p[..., 2:, 1:-1] - 2 * g + p[..., :-2, 1:-1]
    ixy = (p[..., 2:, 2:] - p[..., 2:, :-2] - p[..., :-2, 2:] + p[..., :-2, :-2]) / 4
    tr, d = (ixx + iyy) / 2, (((ixx - iyy) / 2) ** 2 + ixy ** 2).sqrt()
    l1, l2 = tr + d, tr - d
    ix = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    iy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    jxx, jyy, jxy = blur(ix * ix, si), blur(iy * iy, si), blur(ix * iy, si)
    e = jxx + jyy + 1e-8
    return torch.cat([l1, l2, (jxx - jyy) / e, 2 * jxy / e], 1)

def line_kernels(su=1.5, sv=6.0, n=8):
    r = int(3 * sv)
    y, x = torch.meshgrid(torch.arange(-r, r + 1.), torch.arange(-r, r + 1.), indexing='ij')
    ks = []
    for t in torch.arange(n) * torch.pi / n:
        u, v = x * torch.cos(t) + y * torch.sin(t), -x * torch.sin(t) + y * torch.cos(t)
        k = (u ** 2 / su ** 4 - 1 / su ** 2) * torch.exp(-u ** 2 / (2 * su ** 2) - v ** 2 / (2 * sv ** 2))
        k = k - k.mean()
        ks.append(k / k.abs().sum())
    return torch.stack(ks)[:, None]
LK = line_kernels()

def lines(x):
    g = x.float().mean(1, keepdim=True)
    r = LK.shape[-1] // 2
    return F.conv2d(F.pad(g, (r, r, r, r), mode='reflect'), LK)

def feats(e, extra, w, stats_w=0.2):
    x = e['x'][None].float()
    g = [e['g'].float()[None], stats_w * stats_features(x, 4, 4.0)]
    if extra == 'hess':
        g.append(w * _z(F.avg_pool2d(shape_stats(x)[:, :2], 4, 4)))
    elif extra == 'orient':
        g.append(w * _z(F.avg_pool2d(shape_stats(x)[:, 2:], 4, 4)))
    elif extra == 'both':
        g.append(w * _z(F.avg_pool2d(shape_stats(x), 4, 4)))
    elif extra == 'hessabs':
        g.append(w * _z(F.avg_pool2d(shape_stats(x)[:, :2].abs(), 4, 4)))
    elif extra == 'hessmax':
        g.append(w * _z(F.max_pool2d(shape_stats(x)[:, :2].abs(), 4, 4)))
    elif extra == 'lines':
        g.append(w * _z(F.avg_pool2d(lines(x), 4, 4)) / 8 ** 0.5)
    elif extra == 'linesmax':
        l = lines(x).abs()
        g.append(w * _z(F.max_pool2d(l.max(1, keepdim=True).values, 4, 4)))
    elif extra == 'linesabs':
        g.append(w * _z(F.avg_pool2d(lines(x).abs(), 4, 4)) / 8 ** 0.5)
    return torch.cat(g, 1)

def amap(e, extra, w):
    d = knn_distance(feats(e, extra, w), 5, 8)
    h, w_ = e['x'].shape[-2:]
    m = gaussian_blur(F.interpolate(d, size=(h, w_), mode='bilinear', align_corners=False), K4)[0, 0]
    H, W = e['size']
    return m[:H, :W].numpy()

def evaluate(extra, w):
    cats = {}
    for k, e in R.items():
        cats.setdefault(e['cat'], []).append(k)
    report(f"{extra:8s} w{w:<4}", {k: amap(e, extra, w) for k, e in R.items()}, R, cats)

for spec in sys.argv[2:]:
    extra, w = spec.split(':')
    evaluate(extra, float(w))
