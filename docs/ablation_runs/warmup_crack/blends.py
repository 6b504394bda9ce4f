"""Section 20, offline: the self-similarity S and the memory distance M of streamed maps (`dump_maps.py`'s
pickles), each z-scored per camera by its good frames' typical frame mean and std, combined by a linear blend
('lin w4': S + 4 M over its norm, about the product's inverse-variance weights) or with a floor of the frame's
own verdict (max(...)); each then corrected for the border with `edge.border` on the good frames themselves
(optimistic, the same for every rule; the product's own map, first row, was corrected on its warm-up frames).
Pixel AUROC / AUPRC (image AUROC, top 0.1 %) per category and the mean. Usage, from the repository root:
    python docs/ablation_runs/warmup_crack/blends.py real_a.pkl real_b.pkl     (real-dev after 200 frames)
    python docs/ablation_runs/warmup_crack/blends.py split_clean.pkl           (the split, clean warm-up)
    python docs/ablation_runs/warmup_crack/blends.py split_def.pkl             (10 % defective warm-up)
(output: blends.log)"""
import pickle, sys, numpy as np
sys.path.insert(0, '.')
from edge.border import BorderProfile
from edge.config import BorderConfig
from sklearn.metrics import roc_auc_score, average_precision_score
res = {}
for f in sys.argv[1:]:
    res.update(pickle.load(open(f, 'rb')))
def top_mean(a, q=0.999):
    k = max(1, round((1 - q) * a.size)); return np.partition(a.ravel(), a.size - k)[-k:].mean()
L = lambda S, M: (S + 4 * M) / 17 ** 0.5  # the product's inverse-variance blend, in z units (M ~4x S)
rules = {
    'amap (product)': lambda S, M: None,
    'lin w4': L,
    'M only': lambda S, M: M,
    'max(S, M)': lambda S, M: np.maximum(S, M),
    'max(S, M) + M': lambda S, M: np.maximum(S, M) + M,
    'max(lin, S)': lambda S, M: np.maximum(L(S, M), S),
    'max(lin, S - 1)': lambda S, M: np.maximum(L(S, M), S - 1),
    'max(lin, S - 2)': lambda S, M: np.maximum(L(S, M), S - 2),
    'max(lin, S / 2)': lambda S, M: np.maximum(L(S, M), S / 2),
}
tot = {k: [] for k in rules}
for c, rows in res.items():
    good = [r for r in rows if r['label'] == 0]
    st = {}
    for k in ('S', 'M'):
        st[k] = (np.median([r[k].astype(np.float32).mean() for r in good]), np.median([r[k].astype(np.float32).std() for r in good]))
    t = np.concatenate([(r['mask'] > 0).ravel() if r['label'] else np.zeros(r['amap'].size, bool) for r in rows])
    y = [r['label'] for r in rows]
    line = f"{c[4:]:9s}"
    for name, fn in rules.items():
        maps = []
        for r in rows:
            S = (r['S'].astype(np.float32) - st['S'][0]) / st['S'][1]; M = (r['M'].astype(np.float32) - st['M'][0]) / st['M'][1]
            a = fn(S, M); maps.append(r['amap'].astype(np.float32) if a is None else a)
        if name != 'amap (product)':
            bp = BorderProfile(BorderConfig(min_frames=1))
            for m, r in zip(maps, rows):
                if r['label'] == 0: bp.observe(m)
            maps = [bp.apply(m) for m in maps]
        v = np.concatenate([m.ravel() for m in maps])
        m = (roc_auc_score(t, v), average_precision_score(t, v), roc_auc_score(y, [top_mean(a) for a in maps]))
        tot[name].append(m)
        line += f" | {name} {m[0]:.3f}/{m[1]:.3f}({m[2]:.2f})"
    print(line)
for name, ms in tot.items():
    m = np.mean(ms, 0); print(f"MEAN {name:16s} {m[0]:.3f} / {m[1]:.3f} ({m[2]:.3f})")
