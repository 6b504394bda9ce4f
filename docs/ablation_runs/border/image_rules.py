"""Section 20, offline: image AUROC per category of image-score rules over the default's streamed maps of real-dev
after 200 warm-up frames (`docs/ablation_runs/memory/dump_maps.py`'s pickles; 'score (detector)' is the streamed
score itself). Usage: python docs/ablation_runs/border/image_rules.py real_a.pkl real_b.pkl (output: image_rules.log)"""
import pickle, sys, numpy as np, cv2
from sklearn.metrics import roc_auc_score
res = {}
for f in sys.argv[1:]:
    res.update(pickle.load(open(f, 'rb')))
def top_mean(a, q):
    k = max(1, round((1 - q) * a.size)); return np.partition(a.ravel(), a.size - k)[-k:].mean()
rules = {
    'top0.1% (default)': lambda r, a: top_mean(a, 0.999),
    'top1%': lambda r, a: top_mean(a, 0.99),
    'top0.01%': lambda r, a: top_mean(a, 0.9999),
    'max blur s4': lambda r, a: cv2.GaussianBlur(a, (0, 0), 4).max(),
    'max blur s8': lambda r, a: cv2.GaussianBlur(a, (0, 0), 8).max(),
    'top0.1% - median': lambda r, a: top_mean(a, 0.999) - np.median(a),
    'top0.1% / p50': lambda r, a: top_mean(a, 0.999) / np.median(a),
    'top0.1% + top10%': lambda r, a: top_mean(a, 0.999) + top_mean(a, 0.9),
    'mean': lambda r, a: a.mean(),
    'score (detector)': lambda r, a: r['score'],
    'M top0.1%': lambda r, a: top_mean(r['M'].astype(np.float32), 0.999),
    'S top0.1%': lambda r, a: top_mean(r['S'].astype(np.float32), 0.999),
}
table = {}
for name, fn in rules.items():
    row = []
    for cat, rows in res.items():
        y = [r['label'] for r in rows]; s = [fn(r, r['amap'].astype(np.float32)) for r in rows]
        row.append(roc_auc_score(y, s))
    table[name] = row
print(f"{'rule':22s}" + ''.join(f"{c[4:]:>10s}" for c in res) + f"{'mean':>8s}")
for name, row in table.items():
    print(f"{name:22s}" + ''.join(f"{v:10.3f}" for v in row) + f"{np.mean(row):8.3f}")
