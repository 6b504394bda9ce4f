"""Cross-frame self-similarity, step 2: score variants from pairs.py's distances (stream order: a frame's
history is the earlier frames of its category; `all...` uses every other frame, as a batch method would).
Usage: python docs/ablation_runs/cross_frame/score.py a.pkl,b.pkl pa.pkl,pb.pkl self joint:5,r min,r,b0.5 ...
(caches, then pairs; a variant is kind[:k][,lF: last F frames][,r: rescaled to the own map's median][,bW: blend]).
Output: score.log."""
import sys, pickle, numpy as np
from pathlib import Path
sys.path[:0] = ['.', str(Path(__file__).parent)]
from common import report, upmap
R = {}; P = {}
for f in sys.argv[1].split(','):
    R.update(pickle.load(open(f, 'rb')))
for f in sys.argv[2].split(','):
    P.update(pickle.load(open(f, 'rb')))

def cell_scores(top, i, variant):
    """variant: kind[:k][,lastF][,r][,bW]  kind in self/joint/min/all (all = every other frame)."""
    parts = variant.split(',')
    kind, *a = parts[0].split(':')
    opts = dict((p[0], p[1:]) for p in parts[1:])
    n = top.shape[0]
    own = top[i, i].mean(1)
    hist = [j for j in range(n) if j != i] if kind.startswith('all') else list(range(i))
    if 'l' in opts:
        hist = hist[-int(opts['l']):]
    kind = kind.replace('all', '') or 'joint'
    if kind == 'self' or not hist:
        return own
    if kind == 'joint':
        k = int(a[0]) if a else 5
        pool = np.concatenate([top[i, i]] + [top[i, j] for j in hist], 1)
        cs = np.sort(pool, 1)[:, :k].mean(1)
    elif kind == 'min':
        cs = np.stack([own] + [top[i, j].mean(1) for j in hist], 1).min(1)
    elif kind == 'hist':  # history only, no own
        k = int(a[0]) if a else 5
        pool = np.concatenate([top[i, j] for j in hist], 1)
        cs = np.sort(pool, 1)[:, :k].mean(1)
    if 'r' in opts:
        cs = cs * np.median(own) / np.median(cs)
    if 'b' in opts:
        w = float(opts['b']); cs = (1 - w) * own + w * cs
    return cs

def evaluate(variant):
    maps = {k: upmap(cell_scores(p['top'], i, variant), p['grid'], R[k]['x'].shape[-2:], R[k]['size'])
            for p in P.values() for i, k in enumerate(p['keys'])}
    report(f"{variant:14s}", maps, R, {c: p['keys'] for c, p in P.items()})

for v in sys.argv[3:]:
    evaluate(v)
