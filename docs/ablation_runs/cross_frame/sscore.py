"""Scores stream.py's outputs: the own map (the default) and the cross-frame one.
Usage: python docs/ablation_runs/cross_frame/sscore.py a.pkl,b.pkl OUTa.pkl,OUTb.pkl [...]  (caches, then outputs)."""
import sys, pickle
from pathlib import Path
sys.path[:0] = ['.', str(Path(__file__).parent)]
from common import report, upmap
R = {}
for f in sys.argv[1].split(','):
    R.update(pickle.load(open(f, 'rb')))
for spec in sys.argv[2:]:
    P = {}
    for f in spec.split(','):
        P.update(pickle.load(open(f, 'rb')))
    for field in ('own', 'cs'):
        maps = {k: upmap(r[field], p['grid'], R[k]['x'].shape[-2:], R[k]['size']) for p in P.values()
                for k, r in p['res'].items()}
        report(f"{spec.split('/')[-1][:18]:18s} {field:4s}", maps, R, {c: list(p['res']) for c, p in P.items()})
