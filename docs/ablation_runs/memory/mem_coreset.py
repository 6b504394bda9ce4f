"""Memory fill offline (section 12): real-stream-dev's 200 frames stream into a 10922-row ring, 128 cells per
frame, of those within RATIO x the typical memory distance (the product's cell rule; inf = none), chosen at
random (the product before) or by farthest-point selection against the bank (a streaming coreset); then
real-dev's test images are scored against the bank (memory alone and the default's blend with S).
Run in the folder of feats2.py's caches and feats_real-dev.pkl (mem2.py loads them):
    python mem_coreset.py random:1.25 greedy:1.25 random:inf greedy:inf random:1.5 greedy:1.5
(output: mem_coreset.log; the runs `random` and `greedy` there are RATIO 1.25; `KE=1 python mem_coreset.py
greedy:1.25` scores the test images with the nearest row instead of the mean of 3)."""
import sys, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, '/work/research/scratch'); sys.path.insert(0, '/work/research')
from mem2 import R, S, R1, feat, upmap, evaluate
import os
layers, agg, CAP, PER, K = ("relu3_1", "relu4_1"), 3, 10922, 128, 3
KE = int(os.environ.get('KE', K))  # k of the test images' distance
def fill(mode, seed=0, ratio=1.25):
    g = torch.Generator().manual_seed(seed)
    bank = torch.zeros(CAP, 768); count = nxt = 0; levels = []
    for k in S:
        f = feat(S[k], layers, agg).flatten(1).T
        if count >= K:
            d = torch.cdist(f, bank[:count])
            dk = d.topk(K, largest=False).values.mean(1)
            if levels:
                ok = dk <= ratio * float(np.median(levels[-100:]))
            else:
                ok = torch.ones(len(f), dtype=torch.bool)
            levels.append(float(dk.mean()))
        else:
            ok = torch.ones(len(f), dtype=torch.bool); d = None
        idx = torch.nonzero(ok)[:, 0]
        if mode == 'random' or d is None:
            pick = idx[torch.randperm(len(idx), generator=g)[:PER]]
        else:
            md = d[idx].min(1).values.clone()
            ff = f[idx]; chosen = []
            for _ in range(min(PER, len(idx))):
                j = int(md.argmax()); chosen.append(j)
                md = torch.minimum(md, (ff - ff[j]).norm(dim=1)); md[j] = -1
            pick = idx[torch.tensor(chosen)]
        slots = (nxt + torch.arange(len(pick))) % CAP
        bank[slots] = f[pick]; nxt = int((nxt + len(pick)) % CAP); count = min(CAP, count + len(pick))
    return bank[:count]
def smap(k, shape):
    s = torch.as_tensor(R1[k]['d'])[None, None]
    return F.interpolate(s, size=shape, mode='bilinear', align_corners=False)[0, 0].numpy()
for spec in sys.argv[1:]:
    mode, ratio = spec.split(':')
    B = fill(mode, ratio=float(ratio))
    mode = spec + (f' k{KE}' if KE != K else '')
    cache = {}
    for k, e in R.items():
        f = feat(e, layers, agg); c, gh, gw = f.shape
        cache[k] = torch.cdist(f.flatten(1).T, B).topk(KE, largest=False).values.mean(1).reshape(gh, gw).numpy()
    evaluate(lambda k: upmap(cache[k], R[k]), f'{mode}: mem alone')
    evaluate(lambda k: upmap((smap(k, cache[k].shape) + 3 * cache[k]) / 4, R[k]), f'{mode}: (S + 3 M)/4')
