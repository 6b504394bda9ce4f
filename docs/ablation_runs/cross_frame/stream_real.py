"""real-dev: the cross-frame self-similarity S' streamed (a ring of the last L frames, N random cells of each),
blended with the memory distance M that `docs/ablation_runs/memory/dump_maps.py` recorded (real_a.pkl,
real_b.pkl: the default streamed after 200 warm-up frames) as the scorer blends S and M. Only the last L
warm-up frames are streamed (the ring holds no more). Usage:
python docs/ablation_runs/cross_frame/stream_real.py L N WARM Z K TEST.pkl WARM.pkl real_a.pkl,real_b.pkl"""
import sys, pickle, numpy as np, torch
from pathlib import Path
sys.path[:0] = ['.', str(Path(__file__).parent)]
from common import near_mask, topk_dist, upmap
from sklearn.metrics import roc_auc_score, average_precision_score
torch.set_num_threads(1)
L, N, WARM, Z, K = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
T = pickle.load(open(sys.argv[6], 'rb')); W = pickle.load(open(sys.argv[7], 'rb'))
REC = {}
for f in sys.argv[8].split(','):
    for c, rows in pickle.load(open(f, 'rb')).items():
        for r in rows:
            REC[r['path'].split('real-dev/')[1]] = r
g0 = torch.Generator().manual_seed(0)
def frame(e, hist):
    gh, gw = e['g'].shape[-2:]
    q = e['g'].float().reshape(e['g'].shape[0], -1).T.contiguous()
    own = topk_dist(q, q, K, near_mask(gh, gw))
    if hist:
        pool = torch.cat([own, topk_dist(q, torch.cat(hist[-L:]), K)], 1)
        cs = pool.sort(1).values[:, :K].mean(1); cs = cs * own.mean(1).median() / cs.median()
    else:
        cs = own.mean(1)
    med = cs.median(); mad = (cs - med).abs().median()
    kept = q[cs <= med + Z * 1.4826 * mad]
    hist.append(kept[torch.randperm(kept.shape[0], generator=g0)[:N]])
    return own.mean(1).reshape(gh, gw), cs.reshape(gh, gw)
def up(d, e):
    return upmap(d, d.shape, e['pad'], e['size'])
cats = {}
for k, e in T.items():
    cats.setdefault(e['cat'], []).append(k)
warm = list(W.values())[:WARM]
tot = {}
for c, ks in cats.items():
    hist = []
    for e in warm[-L:]:
        frame(e, hist)
    maps = {}
    for k in ks:
        e = T[k]; own, cs = frame(e, hist)
        r = REC[k.split('real-dev/')[1]]
        So, Sn = up(own, e), up(cs, e)
        M = r['M'].astype(np.float32); sc = r['scale']; w = 3.0 if sc > 0 else 0.0
        maps[k] = dict(rec=r['amap'].astype(np.float32), S=So, Sx=Sn, old=(So + w * sc * M) / (1 + w), new=(Sn + w * sc * M) / (1 + w))
    t = np.concatenate([T[k]['mask'].ravel() > 0 for k in ks]); lab = [T[k]['label'] for k in ks]
    for f in ('rec', 'S', 'Sx', 'old', 'new'):
        mm = np.concatenate([maps[k][f].ravel() for k in ks])
        sc = [float(np.sort(maps[k][f].ravel())[-max(1, int(0.001 * maps[k][f].size)):].mean()) for k in ks]
        tot.setdefault(f, {})[c] = (roc_auc_score(t, mm), average_precision_score(t, mm), roc_auc_score(lab, sc))
for f, res in tot.items():
    m = np.mean(list(res.values()), 0)
    print(f"L{L} N{N} W{WARM} Z{Z} K{K} {f:4s} AUROC {m[0]:.3f} AUPRC {m[1]:.3f} img {m[2]:.3f} | " + ' '.join(f"{c[4:9]}:{r[0]:.2f}" for c, r in res.items()), flush=True)
