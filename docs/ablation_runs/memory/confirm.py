"""Offline split test of a confirmation rule: per category, the 200 stream frames with every 10th replaced by
one of the category's even-indexed defective images; test on its odd-indexed defective and all good images.
Bank as the product: cell rule 1.25 x typical, 256 random candidates, 128 farthest. P:C (P 0: as the product):
a frame's picked cells wait, are committed once a later frame has a cell within C x the typical memory
distance of them, and are dropped after P frames. No frame-level rule (the product refuses frames far above
the camera's normal or with a large novel region), so losses are larger than streamed.
Run in the folder of feats2.py's caches and feats_real-dev.pkl, as mem_coreset.py:
    python PATH/TO/docs/ablation_runs/memory/confirm.py 0:0 5:1.0 5:1.25 5:1.5   (output: confirm.log)"""
import sys, numpy as np, torch, torch.nn.functional as F
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from mem2 import R, S, R1, feat, upmap
from sklearn.metrics import roc_auc_score, average_precision_score
layers, agg, CAP, PER, CAND, K = ("relu3_1", "relu4_1"), 3, 10922, 128, 256, 3
FS = [feat(e, layers, agg).flatten(1).T for e in S.values()]
FR = {k: feat(e, layers, agg) for k, e in R.items()}
cats = {}
for k, e in R.items(): cats.setdefault(e['cat'], []).append(k)

def fill(frames, P, C, seed=0):
    g = torch.Generator().manual_seed(seed)
    bank = torch.zeros(CAP, 768); count = nxt = 0; levels = []
    pend, age = torch.zeros(0, 768), torch.zeros(0, dtype=torch.long)
    def write(rows):
        nonlocal nxt, count
        slots = (nxt + torch.arange(len(rows))) % CAP
        bank[slots] = rows; nxt = int((nxt + len(rows)) % CAP); count = min(CAP, count + len(rows))
    for f in frames:
        typ = float(np.median(levels[-100:])) if levels else 0.0
        if P and len(pend):
            if typ > 0:
                ok = torch.cdist(pend, f).min(1).values <= C * typ
                write(pend[ok]); pend, age = pend[~ok], age[~ok] + 1
                keep = age < P; pend, age = pend[keep], age[keep]
            else:
                write(pend); pend, age = pend[:0], age[:0]
        if count >= K:
            d = torch.cdist(f, bank[:count]); dk = d.topk(K, largest=False).values.mean(1)
            ok = dk <= 1.25 * typ if levels else torch.ones(len(f), dtype=torch.bool)
            levels.append(float(dk.mean()))
        else:
            ok = torch.ones(len(f), dtype=torch.bool); d = None
        idx = torch.nonzero(ok)[:, 0]
        idx = idx[torch.randperm(len(idx), generator=g)[:CAND]]
        if d is None or len(idx) <= PER:
            pick = idx[:PER]
        else:
            md = d[idx].min(1).values.clone(); ff = f[idx]; chosen = []
            for _ in range(PER):
                j = int(md.argmax()); chosen.append(j)
                md = torch.minimum(md, (ff - ff[j]).norm(dim=1)); md[j] = -1
            pick = idx[torch.tensor(chosen)]
        if P and typ > 0:
            pend = torch.cat([pend, f[pick]]); age = torch.cat([age, torch.zeros(len(pick), dtype=torch.long)])
        else:
            write(f[pick])
    return bank[:count]

def smap(k, shape):
    s = torch.as_tensor(R1[k]['d'])[None, None]
    return F.interpolate(s, size=shape, mode='bilinear', align_corners=False)[0, 0].numpy()

def run(P, C, defective):
    res = {}
    for c, ks in cats.items():
        bad = [k for k in ks if R[k]['label'] == 1]
        even, odd = bad[0::2], bad[1::2]
        frames = list(FS)
        if defective:
            for i, k in enumerate(range(9, 200, 10)):
                e = even[i % len(even)]; frames[k] = FR[e].flatten(1).T
        B = fill(frames, P, C)
        test = odd + [k for k in ks if R[k]['label'] == 0]
        maps = []
        for k in test:
            f = FR[k]; cc, gh, gw = f.shape
            m = torch.cdist(f.flatten(1).T, B).topk(K, largest=False).values.mean(1).reshape(gh, gw).numpy()
            maps.append(upmap((smap(k, m.shape) + 3 * m) / 4, R[k]))
        mm = np.concatenate([x.ravel() for x in maps]); t = np.concatenate([R[k]['mask'].ravel() for k in test])
        res[c] = (roc_auc_score(t, mm), average_precision_score(t, mm))
    m = np.mean(list(res.values()), 0)
    print(f"P{P} C{C} {'defective' if defective else 'clean    '} AUROC {m[0]:.3f} AUPRC {m[1]:.3f} | "
          + ' '.join(f"{c[4:]}:{r[0]:.2f}/{r[1]:.2f}" for c, r in res.items()), flush=True)

for spec in sys.argv[1:]:
    P, C = spec.split(':')
    for d in (False, True):
        run(int(P), float(C), d)
