"""Self-similarity variants on line_stats/cache.py's grid features (textures-dev): a cell's kNN distance less
A x the mean kNN distance of its own k nearest cells ('sub'; centred on its frame mean, 'subc', or median, 'subm':
`score.knn_spacing_weight` is 'subc'), A x the smallest of them, centred ('minc', section 29), divided by it ('div'),
or coarser local statistics (sigma 12) appended at weight W ('stats12').
Usage (repository root): python docs/ablation_runs/line_stats/cache.py ../shared/datasets/textures-dev tex.pkl
bark,brick,... (all 14; on a CPU without native bf16 drop its autocast, or it takes an hour), then
python docs/ablation_runs/knn_spacing/variants.py tex.pkl none:0 sub:0.5 sub:1 div:1 sub:0.75 stats12:0.1 stats12:0.2
subc:0.75 subm:0.75 minc:0.6 minc:0.75 minc:0.9; real-dev the same way (its five mtd_* categories, real.pkl)
(`none:0` reproduces the streamed default, 0.841 / 0.368 (0.730)). Output: variants.log."""
import sys, pickle, torch, torch.nn.functional as F
from pathlib import Path
sys.path[:0] = ['.', str(Path(__file__).parents[1] / 'cross_frame')]
from common import near_mask, report
from edge.filters import gaussian_blur, gaussian_kernel
from edge.local_stats import stats_features
torch.set_num_threads(1)
R = pickle.load(open(sys.argv[1], 'rb'))
K4 = gaussian_kernel(4.0)


def knn(f, k=5, r=8):
    c, gh, gw = f.shape
    q = f.reshape(c, -1).T.float()
    sq = (q * q).sum(1)
    cl = (2 * q @ q.T - sq[None]).masked_fill_(near_mask(gh, gw, r), float('-inf'))
    t, idx = cl.topk(k, dim=1)
    return (sq[:, None] - t).clamp_min(0).sqrt().mean(1), idx


def amap(e, kind, a):
    x = e['x'][None].float()
    g = [e['g'].float(), 0.2 * stats_features(x, 4, 4.0)[0]]
    if kind == 'stats12':
        g.append(a * stats_features(x, 4, 12.0)[0])
    f = torch.cat(g, 0)
    d, idx = knn(f)
    if kind == 'sub':
        d = d - a * d[idx].mean(1)
    elif kind in ('subc', 'subm'):
        s = d[idx].mean(1)
        d = d - a * (s - (s.mean() if kind == 'subc' else s.median()))
    elif kind == 'minc':
        s = d[idx].min(1).values
        d = d - a * (s - s.mean())
    elif kind == 'div':
        d = d / d[idx].mean(1).clamp_min(1e-6)
    gh, gw = f.shape[1:]
    h, w = e['x'].shape[-2:]
    m = gaussian_blur(F.interpolate(d.reshape(1, 1, gh, gw), size=(h, w), mode='bilinear', align_corners=False), K4)
    H, W = e['size']
    return m[0, 0, :H, :W].numpy()


cats = {}
for k, e in R.items():
    cats.setdefault(e['cat'], []).append(k)
for spec in sys.argv[2:]:
    kind, a = spec.split(':')
    report(f"{kind:8s} {a:5s}", {k: amap(e, kind, float(a)) for k, e in R.items()}, R, cats)
