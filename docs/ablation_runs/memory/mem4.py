"""real-dev: deep memory + local stats variants."""
import sys, pickle, numpy as np, torch, torch.nn.functional as F, cv2
sys.path.insert(0, '/work/research/scratch'); sys.path.insert(0, '/work/research')
from mem2 import R, S, feat, upmap, memdist, evaluate
from edge.local_stats import local_moments
from edge.fitter import image_to_tensor
from pathlib import Path
def stats(path, sigma=8.0):
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    x = image_to_tensor(img, torch.device('cpu'), 64)
    m = local_moments(x, sigma)[:, :2]
    return F.avg_pool2d(m, 8, 8)[0]
Rst = {k: stats(k) for k in R}
Sst = {k: stats(Path('/work/shared/datasets/real-stream-dev') / k) for k in S}
layers, agg = ("relu3_1", "relu4_1"), 3
rng = np.random.default_rng(0)
keys = list(S)
def run(fn, label):
    allf = torch.cat([fn(S[k], Sst[k]).flatten(1).T for k in keys])
    B = allf[rng.choice(len(allf), 20000, replace=False)]
    cache = {}
    for k, e in R.items():
        f = fn(e, Rst[k]); c, gh, gw = f.shape
        cache[k] = torch.cdist(f.flatten(1).T, B).topk(3, largest=False).values.mean(1).reshape(gh, gw).numpy()
    evaluate(lambda k: upmap(cache[k], R[k]), label)
base = lambda e, st: feat(e, layers, agg)
run(base, 'mem (relu3_1+relu4_1 agg3)')
for w in (0.5, 1.0, 2.0):
    run(lambda e, st: torch.cat([feat(e, layers, agg), w * st]), f'  + {w} * raw (mean, std)')
    run(lambda e, st: torch.cat([feat(e, layers, agg), w * (st / st[0].mean().clamp_min(1e-3))]), f'  + {w} * (mean, std)/frame mean')
