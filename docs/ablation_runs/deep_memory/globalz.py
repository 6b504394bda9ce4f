"""Section 21, offline: a 'distance from the frame's median look' map of local gradient statistics, alone and added
to the streamed default map. Usage: python docs/ablation_runs/deep_memory/globalz.py real_a.pkl real_b.pkl, the
pickles of `docs/ablation_runs/memory/dump_maps.py` (section 20's run: its maps before the floor; globalz.log)."""
import pickle, numpy as np, cv2
from sklearn.metrics import roc_auc_score
import sys
r = {k: v for f in sys.argv[1:] for k, v in pickle.load(open(f, 'rb')).items()}
def stats(path, sigma=4.0):
    g = cv2.imread(path, 0).astype(np.float32) / 255
    b = lambda a: cv2.GaussianBlur(a, (0, 0), sigma)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0) / 8; gy = cv2.Sobel(g, cv2.CV_32F, 0, 1) / 8
    m = b(g); v = np.maximum(b(g * g) - m * m, 0)
    return np.stack([np.log(b(gx * gx) + 1e-6), np.log(b(gy * gy) + 1e-6), np.log(v + 1e-6), m])
def zmap(st, chans):
    out = 0
    for c in chans:
        a = st[c]; med = np.median(a); mad = 1.4826 * np.median(np.abs(a - med)) + 1e-6
        out = out + np.abs(a - med) / mad
    return cv2.GaussianBlur(out / len(chans), (0, 0), 4)
def z(a): return (a - a.mean()) / (a.std() + 1e-8)
for chans, name in [([0, 1], 'Ex Ey'), ([0, 1, 2, 3], 'Ex Ey var mean'), ([2, 3], 'var mean')]:
    for lam in (0, 0.25, 0.5, 1.0):
        res = []
        for c, rows in r.items():
            ys, ss = [], []
            for row in rows:
                a = row['amap'].astype(np.float32); zm = zmap(stats(row['path']), chans)
                s = zm if lam == 0 else a + lam * a.std() * z(zm)  # keep the map's units
                ys.append((row['mask'] > 0).ravel()); ss.append(s.ravel())
            res.append((c, roc_auc_score(np.concatenate(ys), np.concatenate(ss))))
        print(f'{name:16s} lam {lam}: mean {np.mean([v for _, v in res]):.3f} | ' + ' '.join(f'{c[4:]}:{v:.3f}' for c, v in res), flush=True)
