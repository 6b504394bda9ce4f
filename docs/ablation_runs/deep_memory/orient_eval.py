"""Section 21, offline: the memory distance (a random bank of 20k warm-up cells, 3-NN) with the gradient statistics
of `orient.py`'s cache appended at weight w. Usage: python docs/ablation_runs/deep_memory/orient_eval.py CACHE.pkl
(output: orient_eval.log)."""
import sys, pickle, numpy as np, torch, torch.nn.functional as F
from sklearn.metrics import roc_auc_score
W, T = pickle.load(open(sys.argv[1], 'rb'))
rng = np.random.default_rng(0)
allS = torch.cat([s.flatten(1).T for f, s, *_ in W]); mu, sd = allS.mean(0), allS.std(0)
def rows(f, s, chans, w):
    r = f.flatten(1).T
    if w > 0:
        z = ((s.flatten(1).T - mu) / sd)[:, chans] / np.sqrt(len(chans))
        r = torch.cat([r, w * z], 1)
    return r
def run(chans, w, label):
    allr = torch.cat([rows(f, s, chans, w) for f, s, *_ in W])
    B = allr[rng.choice(len(allr), 20000, replace=False)]
    out = []
    P, A, I = [], [], []
    for c, rs in T.items():
        ys, ss, lab, sc = [], [], [], []
        for f, s, (h, wd), cell, bad, m in rs:
            d = torch.cdist(rows(f, s, chans, w), B).topk(3, largest=False).values.mean(1).reshape(1, 1, *f.shape[-2:])
            d = F.interpolate(d, scale_factor=cell, mode='bilinear', align_corners=False)[0, 0, :h, :wd].numpy()
            ys.append((m > 127).ravel() if m is not None else np.zeros(h * wd, bool)); ss.append(d.ravel())
            lab.append(bad); sc.append(np.sort(d.ravel())[-max(1, int(0.001 * d.size)):].mean())
        p = roc_auc_score(np.concatenate(ys), np.concatenate(ss)); a = 0; i = roc_auc_score(lab, sc)
        P.append(p); I.append(i); out.append(f'{c[4:]}:{p:.3f}/{i:.2f}')
    print(f'{label:28s} AUROC {np.mean(P):.3f} img {np.mean(I):.3f} | ' + ' '.join(out), flush=True)
run([], 0, 'vgg only')
for chans, name in [([0, 1], 'log Ex, Ey'), ([0, 1, 2], 'Ex, Ey, var'), ([0, 1, 2, 3], 'Ex Ey var mean')]:
    for w in (0.25, 0.5, 1.0):
        run(chans, w, f'+{w} {name}')
