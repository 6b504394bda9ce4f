"""Cross-frame self-similarity, step 1 (docs/ablations.md section 13): for each category of a
`docs/ablation_runs/line_stats/cache.py` cache, the 5 nearest distances of every frame's cells to every
other frame's cells, and to its own outside 8 cells (the default's self-similarity features, local
statistics included). Usage (repository root): python docs/ablation_runs/cross_frame/pairs.py CACHE.pkl OUT.pkl
(run once per cache half, a.pkl and b.pkl, side by side); score.py reads the output."""
import sys, pickle, numpy as np, torch
sys.path.insert(0, '.')
from edge.local_stats import stats_features
torch.set_num_threads(1)
R = pickle.load(open(sys.argv[1], 'rb'))
cats = {}
for k, e in R.items():
    cats.setdefault(e['cat'], []).append(k)
out = {}
def feats(e):
    x = e['x'][None].float()
    g = torch.cat([e['g'].float()[None], 0.2 * stats_features(x, 4, 4.0)], 1)
    return g[0].reshape(g.shape[1], -1).T.contiguous()  # cells x C
def near_mask(gh, gw, r=8):
    ys = torch.arange(gh); xs = torch.arange(gw)
    by = (ys[:, None] - ys[None]).abs() <= r; bx = (xs[:, None] - xs[None]).abs() <= r
    return (by[:, None, :, None] & bx[None, :, None, :]).reshape(gh * gw, gh * gw)
for c, ks in cats.items():
    F_ = [feats(R[k]) for k in ks]
    n = len(ks)
    gh, gw = R[ks[0]]['g'].shape[-2:]
    top = np.zeros((n, n, F_[0].shape[0], 5), np.float32)
    for i in range(n):
        qi = F_[i]; sqi = (qi * qi).sum(1)
        for j in range(n):
            qj = F_[j]; sqj = (qj * qj).sum(1)
            cl = 2 * qi @ qj.T - sqj[None]
            if i == j:
                cl.masked_fill_(near_mask(gh, gw), float('-inf'))
            t = cl.topk(5, dim=1).values
            top[i, j] = (sqi[:, None] - t).clamp_min(0).sqrt().numpy()
    out[c] = dict(keys=ks, top=top, grid=(gh, gw))
    print(c, flush=True)
pickle.dump(out, open(sys.argv[2], 'wb'))
