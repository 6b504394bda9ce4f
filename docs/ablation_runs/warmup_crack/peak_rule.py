"""Section 20, offline: of the memory's 8 px cells that its distance rule admits (cell mean of M <= 1.25 x the
camera's typical, taken as the median of its good frames' mean M), how many a map-peak rule would refuse: the
cell holds, or touches, a pixel of the anomaly map at or above the camera's typical image score + f robust std
(median and 1.4826 x MAD of its good frames' top-0.1 % means); defect cells of defective frames against all cells
of good frames. On `docs/ablation_runs/memory/dump_maps.py`'s pickles (default config, 200 warm-up frames):
    python docs/ablation_runs/warmup_crack/peak_rule.py real_a.pkl real_b.pkl   (output: peak_rule.log)"""
import pickle, sys, numpy as np, cv2
res = {}
for f in sys.argv[1:]:
    res.update(pickle.load(open(f, 'rb')))
def top_mean(a, q=0.999):
    k = max(1, round((1 - q) * a.size)); return np.partition(a.ravel(), a.size - k)[-k:].mean()
def cells(a, c, fill, op):
    h, w = a.shape; gh, gw = -(-h // c), -(-w // c)
    pad = np.full((gh * c, gw * c), fill, np.float32); pad[:h, :w] = a
    return op(pad.reshape(gh, c, gw, c), (1, 3))
for cat, rows in res.items():
    good = [r for r in rows if r['label'] == 0]
    sc = np.array([top_mean(r["amap"].astype(np.float32)) for r in good]); T = np.median(sc); Z = 1.4826 * np.median(np.abs(sc - T))
    typ = np.median([np.mean(r['M'].astype(np.float32)) for r in good])
    for frac in (-1.0, 0.0, 1.0, 2.0):
        stats = {'good': [0, 0, 0], 'bad': [0, 0, 0]}
        for r in rows:
            a = r['amap'].astype(np.float32); M = r['M'].astype(np.float32)
            cmax = cells(a, 8, -np.inf, np.max); cm = cells(M, 8, np.nan, np.nanmean)
            over = cv2.dilate((cmax >= (T + frac * Z)).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            passes = cm <= 1.25 * typ
            if r['label'] == 1:
                m = cells((r['mask'] > 0).astype(np.float32), 8, 0, np.max) > 0
            else:
                m = np.ones_like(passes)
            s = stats['bad' if r['label'] else 'good']
            s[0] += (m & passes).sum(); s[1] += (m & passes & over).sum(); s[2] += m.sum()
        g, b = stats['good'], stats['bad']
        print(f"{cat:14s} f {frac:.2f}: good cells passing the distance rule {g[0]/g[2]:.3f}, of them refused {g[1]/max(g[0],1):.4f} | defect cells passing {b[0]/b[2]:.3f}, of them refused {b[1]/max(b[0],1):.3f}")
