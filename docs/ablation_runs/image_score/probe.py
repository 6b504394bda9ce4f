"""Section 22, offline: image scores read from the maps dump.py saved (real-dev after 200 warm-up frames, default
config): per-category image AUROC of the score as shipped (mean of the top 0.1 % of the border-corrected blend) and of
other readouts of the same maps: other quantiles and their averages, a border margin left out, a fixed pixel count,
the memory distance or the self-similarity alone, and robust z-scores against the camera's own warm-up frames
(history.py's JSON) combined. Usage (repository root):
python docs/ablation_runs/image_score/probe.py HISTORY.json A.pt [B.pt ...]   (output: probe.log)"""
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).parent))
import maps_io  # noqa: E402

history = [h for h in json.load(open(sys.argv[1])) if h['memory']]  # warm-up frames scored with the memory
data = maps_io.load(sys.argv[2:])


def top(m, q):
    v = np.asarray(m, dtype=np.float64).ravel()
    k = max(1, round((1 - q) * v.size))
    return np.partition(v, v.size - k)[-k:].mean()


def top_px(m, k):
    v = np.asarray(m, dtype=np.float64).ravel()
    k = min(k, v.size)
    return np.partition(v, v.size - k)[-k:].mean()


def blend(r):
    return r['blend'].astype(np.float64)


STAT = {'score': lambda r: top(blend(r), .999), 'mean': lambda r: blend(r).mean(),
        'top9': lambda r: top(blend(r), .9), 'top99': lambda r: top(blend(r), .99)}


def robust(key):
    v = np.array([h[key] for h in history])
    med = np.median(v)
    return med, max(1.4826 * np.median(np.abs(v - med)), 0.02 * abs(med))


Z = {k: robust(k) for k in STAT}


def z(r, k):
    return (STAT[k](r) - Z[k][0]) / Z[k][1]


READOUTS = {
    'shipped score': lambda r: r['score'],
    'top 0.1 % (recomputed)': lambda r: top(blend(r), .999),
    'top 1 %': lambda r: top(blend(r), .99),
    'top 10 %': lambda r: top(blend(r), .9),
    'mean': lambda r: blend(r).mean(),
    'avg top 0.1, 1 %': lambda r: np.mean([top(blend(r), q) for q in (.999, .99)]),
    'avg top 0.1, 10, 50 %': lambda r: np.mean([top(blend(r), q) for q in (.999, .9, .5)]),
    'avg top 0.1..50 %, log': lambda r: np.mean([top(blend(r), 1 - 10 ** e) for e in np.linspace(-3, -0.3, 10)]),
    'top 0.1 % + mean': lambda r: top(blend(r), .999) + blend(r).mean(),
    'top 0.1 %, margin 8 px': lambda r: top(blend(r)[8:-8, 8:-8], .999),
    'top 0.1 %, margin 16 px': lambda r: top(blend(r)[16:-16, 16:-16], .999),
    'top 32 px': lambda r: top_px(blend(r), 32),
    'top 65 px': lambda r: top_px(blend(r), 65),
    'top 1024 px': lambda r: top_px(blend(r), 1024),
    'memory map M, top 0.1 %': lambda r: top(r['M'], .999),
    'memory map M, top 1 %': lambda r: top(r['M'], .99),
    'own S, top 0.1 % (no border corr.)': lambda r: top(r['S'], .999),
    'max(z top 0.1 %, z mean)': lambda r: max(z(r, 'score'), z(r, 'mean')),
    'max(z top 0.1 %, z top 10 %)': lambda r: max(z(r, 'score'), z(r, 'top9')),
    'max of 4 z (0.1, 1, 10 %, mean)': lambda r: max(z(r, k) for k in STAT),
    'mean of 4 z': lambda r: np.mean([z(r, k) for k in STAT]),
}
print(f'{len(history)} warm-up frames with the memory for the z-scores')
print('readout'.ljust(36), ' '.join(c.replace('mtd_', '')[:8].rjust(8) for c in data), '    mean')
for name, f in READOUTS.items():
    aucs = [roc_auc_score([int(r['label']) for r in rs], [f(r) for r in rs]) for rs in data.values()]
    print(name.ljust(36), ' '.join(f'{a:8.3f}' for a in aucs), f'{np.mean(aucs):8.3f}')
