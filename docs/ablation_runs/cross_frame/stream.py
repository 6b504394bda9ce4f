"""Cross-frame self-similarity streamed: each frame's cells against its own (outside 8 cells) and against
the kept cells of earlier frames (the cells within Z robust std of the frame's median, at most N drawn at
random, of the last LAST frames); the 5 nearest of both pooled, rescaled to the own map's median.
Usage: python docs/ablation_runs/cross_frame/stream.py CACHE.pkl OUT.pkl K Z [LAST [N [mean]]]  (Z 'inf': all cells;
'mean': rescaled to the own map's mean instead);
sscore.py scores the output."""
import sys, pickle, torch
from pathlib import Path
sys.path[:0] = ['.', str(Path(__file__).parent)]
from common import near_mask, topk_dist
from edge.local_stats import stats_features
torch.set_num_threads(1)
R = pickle.load(open(sys.argv[1], 'rb'))
K, Z = int(sys.argv[3]), float(sys.argv[4]); LAST = int(sys.argv[5]) if len(sys.argv) > 5 else 99
N = int(sys.argv[6]) if len(sys.argv) > 6 else 10**9
MEAN = 'mean' in sys.argv[7:]  # rescale by the means, not the medians
g = torch.Generator().manual_seed(0)
cats = {}
for k, e in R.items():
    cats.setdefault(e['cat'], []).append(k)
def feats(e):
    x = e['x'][None].float()
    g = torch.cat([e['g'].float()[None], 0.2 * stats_features(x, 4, 4.0)], 1)
    return g[0].reshape(g.shape[1], -1).T.contiguous()
out = {}
for c, ks in cats.items():
    gh, gw = R[ks[0]]['g'].shape[-2:]
    nm = near_mask(gh, gw)
    hist = []; res = {}
    for k in ks:
        q = feats(R[k])
        own = topk_dist(q, q, K, nm)
        if hist:
            ref = torch.cat(hist[-LAST:])
            pool = torch.cat([own, topk_dist(q, ref, K)], 1)
            cs = pool.sort(1).values[:, :K].mean(1)
            cs = cs * own.mean(1).mean() / cs.mean() if MEAN else cs * own.mean(1).median() / cs.median()
        else:
            cs = own.mean(1)
        res[k] = dict(own=own.mean(1).numpy(), cs=cs.numpy())
        med = cs.median(); mad = (cs - med).abs().median()
        keep = cs <= med + Z * 1.4826 * mad
        kept = q[keep]
        hist.append(kept[torch.randperm(kept.shape[0], generator=g)[:N]])
    out[c] = dict(res=res, grid=(gh, gw))
    print(c, flush=True)
pickle.dump(out, open(sys.argv[2], 'wb'))
