"""Section 11: a shading term (distance of local brightness and contrast to the warm-up frames') added to the
streamed default map, offline on dump_maps.py's pickles. Usage: python shading.py real_a.pkl real_b.pkl STREAM_DIR"""
import sys, pickle, glob, numpy as np, cv2, torch
from sklearn.metrics import roc_auc_score, average_precision_score
from sklearn.neighbors import NearestNeighbors
torch.set_num_threads(1)
D = {}
for f in sys.argv[1:3]:
    D.update(pickle.load(open(f, 'rb')))
D = {c: D[c] for c in sorted(D)}
def moments(img, sig):
    g = img.astype(np.float32).mean(2) / 255
    m = cv2.GaussianBlur(g, (0, 0), sig); s = np.sqrt(np.clip(cv2.GaussianBlur(g * g, (0, 0), sig) - m * m, 0, None))
    return np.stack([m, s], -1)
def evaluate(fn, label):
    res = {}
    for c, rows in D.items():
        maps = [fn(r) for r in rows]
        sc = [float(np.sort(m.ravel())[-max(1, int(0.001 * m.size)):].mean()) for m in maps]
        mm = np.concatenate([m.ravel() for m in maps]); t = np.concatenate([(r['mask'] > 0).ravel() for r in rows])
        res[c] = (roc_auc_score(t, mm), average_precision_score(t, mm), roc_auc_score([r['label'] for r in rows], sc))
    mean = np.mean(list(res.values()), 0)
    print(f"{label:40s} {mean[0]:.3f} {mean[1]:.3f} img {mean[2]:.3f} | " + ' '.join(f"{c[4:9]}:{a:.2f}/{b:.2f}/{i:.2f}" for c, (a, b, i) in res.items()), flush=True)
imgs = {r['path']: cv2.cvtColor(cv2.imread(r['path']), cv2.COLOR_BGR2RGB) for rows in D.values() for r in rows}
stream = [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in sorted(glob.glob(sys.argv[3] + '/*.png'))]
evaluate(lambda r: r['amap'].astype(np.float32), 'default amap (streamed)')
evaluate(lambda r: r['S'].astype(np.float32), 'S')
evaluate(lambda r: r['M'].astype(np.float32), 'M')
for sig in (4, 8, 16):
    for norm in ('abs', 'rel'):
        def f(img):
            m = moments(img, sig)
            if norm == 'rel': m = m / (m[..., :1].mean() + 1e-6)
            return m
        rng = np.random.default_rng(0)
        bank = []
        for im in stream[-85:]:
            x = f(im)[4::8, 4::8].reshape(-1, 2); bank.append(x[rng.choice(len(x), min(128, len(x)), replace=False)])
        bank = np.concatenate(bank); sd = bank.std(0)
        nn = NearestNeighbors(n_neighbors=3).fit(bank / sd)
        typ = np.median(nn.kneighbors(bank[::7] / sd)[0].mean(1))
        cache = {}
        for p, im in imgs.items():
            x = f(im); h, w = x.shape[:2]
            cache[p] = nn.kneighbors((x.reshape(-1, 2) / sd))[0].mean(1).reshape(h, w) / typ
        evaluate(lambda r: cache[r['path']], f'stats {norm} sig{sig} alone')
        for w in (0.1, 0.25, 0.5):
            evaluate(lambda r: r['amap'].astype(np.float32) + w * np.median(r['amap']) * cache[r['path']], f'  amap + {w} med*stats')
