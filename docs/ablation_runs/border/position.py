"""Section 20, offline: a camera's typical map by position (a generalisation of the border profile): each map cut
into G x G cells of normalised coordinates (frames vary in size), per cell the median over normal frames of its
median (and 99th percentile); 'shift' subtracts each cell's typical excess over the frames' overall level,
'gain' also maps its 99th percentile onto the overall one (as edge.border does per band). The profile comes from
the last 100 warm-up frames' maps (`dump_warm.py`'s pickles) or, on `dump_maps.py`'s pickles, from the other
good test frames (leave one out). Usage, from the repository root:
    python docs/ablation_runs/border/position.py G warm warm_a.pkl warm_b.pkl   (output: position.log)"""
import pickle, sys, numpy as np, cv2
from sklearn.metrics import roc_auc_score, average_precision_score
G = int(sys.argv[1]); mode = sys.argv[2]; files = sys.argv[3:]
res = {}
for f in files:
    res.update(pickle.load(open(f, 'rb')))
def top_mean(a, q=0.999):
    k = max(1, round((1 - q) * a.size)); return np.partition(a.ravel(), a.size - k)[-k:].mean()
def grid(a, stat):
    h, w = a.shape
    ys = np.linspace(0, h, G + 1).astype(int); xs = np.linspace(0, w, G + 1).astype(int)
    out = np.empty((G, G))
    for i in range(G):
        for j in range(G):
            c = a[ys[i]:ys[i+1], xs[j]:xs[j+1]]
            out[i, j] = np.percentile(c, stat) if c.size else np.nan
    return out
def correct(a, prof, kind):
    med, top = prof
    h, w = a.shape
    ref_med, ref_top = np.median(med), np.median(top)
    M = cv2.resize(med.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    if kind == 'shift':
        return a - (M - ref_med)
    T = cv2.resize(top.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    gain = (ref_top - ref_med) / np.maximum(T - M, 1e-6)
    return (a - M) * gain + ref_med
tot = {k: [] for k in ('base', 'shift', 'gain')}
for cat, v in res.items():
    rows = v['rows'] if isinstance(v, dict) else v
    warm = [w[0].astype(np.float32) for w in v['warm'][-100:]] if isinstance(v, dict) else None
    stats = {}
    def profile(maps):
        return (np.median([grid(m, 50) for m in maps], 0), np.median([grid(m, 99) for m in maps], 0))
    pw = profile(warm) if warm is not None else None
    good = [i for i, r in enumerate(rows) if r['label'] == 0]
    for kind in ('base', 'shift', 'gain'):
        ys, ss, px, pm = [], [], [], []
        for i, r in enumerate(rows):
            a = r['amap'].astype(np.float32)
            if kind != 'base':
                p = pw if pw is not None else profile([rows[j]['amap'].astype(np.float32) for j in good if j != i])
                a = correct(a, p, kind)
            ys.append(r['label']); ss.append(top_mean(a))
            px.append(a.ravel()); pm.append((r['mask'] > 0).ravel() if r['label'] else np.zeros(a.size, bool))
        px, pm = np.concatenate(px), np.concatenate(pm)
        m = (roc_auc_score(pm, px), average_precision_score(pm, px), roc_auc_score(ys, ss))
        tot[kind].append(m)
        print(f"{cat:14s} {kind:6s} {m[0]:.3f} / {m[1]:.3f} ({m[2]:.3f})")
for kind, ms in tot.items():
    m = np.mean(ms, 0); print(f"MEAN {kind:6s} {m[0]:.3f} / {m[1]:.3f} ({m[2]:.3f})")
