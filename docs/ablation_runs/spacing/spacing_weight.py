"""Offline: memory distance minus alpha x the bank's local density; density from write-time distances too."""
from common import *
from spacing import knn_in_bank
B = bank(1, 100)
dens = knn_in_bank(B)
# write-time density: each frame's rows against the bank of the frames before it (as a stream fills it)
per = 100; wt = torch.empty(len(B))
for i in range(0, len(B), per):
    if i == 0: wt[:per] = float('nan'); continue
    wt[i:i + per] = torch.cdist(B[i:i + per], B[:i]).topk(min(3, i), largest=False).values.mean(1)
wt[:per] = dens[:per]
print('write-time density median', float(wt.median()), 'final', float(dens.median()), flush=True)
maps = {}
for key, e in R.items():
    f = e[1].float(); c, gh, gw = f.shape
    d, idx = torch.cdist(f.flatten(1).T, B).topk(3, largest=False)
    maps[key] = (d.mean(1).reshape(gh, gw), dens[idx].mean(1).reshape(gh, gw), wt[idx].mean(1).reshape(gh, gw))
for a in (0.25, 0.5, 0.75, 1.0):
    evaluate(lambda k: upmap((maps[k][0] - a * maps[k][1]).numpy(), R[k]), f'mem - {a} x density')
for a in (0.5, 1.0):
    evaluate(lambda k: upmap((maps[k][0] - a * maps[k][2]).numpy(), R[k]), f'mem - {a} x write-time density')
