"""Section 11: image-score variants (quantile, map, border) on dump_maps.py's pickles. Usage: python image_score.py real_a.pkl real_b.pkl"""
import sys, pickle, numpy as np
from sklearn.metrics import roc_auc_score
D = {}
for f in sys.argv[1:3]:
    D.update(pickle.load(open(f, 'rb')))
D = {c: D[c] for c in sorted(D)}
def topq(m, q): return float(np.sort(m.ravel())[-max(1, int(round((1 - q) * m.size))):].mean())
def ev(fn, label):
    res = {c: roc_auc_score([r['label'] for r in rows], [fn(r) for r in rows]) for c, rows in D.items()}
    print(f"{label:34s} img {np.mean(list(res.values())):.3f} | " + ' '.join(f"{c[4:9]}:{v:.2f}" for c, v in res.items()))
for key in ('amap', 'M', 'S'):
    for q in (0.99, 0.995, 0.999, 0.9999, 1.0):
        ev(lambda r: topq(r[key].astype(np.float32), q), f'{key} q{q}')
for b in (4, 8, 16):
    ev(lambda r: topq(r['amap'].astype(np.float32)[b:-b, b:-b], 0.999), f'amap q0.999 border{b}')
    ev(lambda r: topq(r['M'].astype(np.float32)[b:-b, b:-b], 0.999), f'M q0.999 border{b}')
ev(lambda r: topq(r['amap'].astype(np.float32), 0.999) - np.median(r['amap']), 'amap q0.999 - median')
ev(lambda r: topq(r['amap'].astype(np.float32), 0.999) / np.median(r['amap']), 'amap q0.999 / median')
