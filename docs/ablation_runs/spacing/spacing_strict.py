"""Offline: the spacing when a category's own defective test images are also in the bank (100 random rows each, all
cells, no admission rule: a harsher proxy of section 9's strict case), as is and capped at the bank's median (only
denser-than-typical regions count). Rows of the clean bank: write-time spacing against the frames before them."""
from common import *
B = bank(1, 100)
g = torch.Generator().manual_seed(1)
# write-time spacing: each frame's rows against the rows of the frames before it
wt = torch.empty(len(B))
for i in range(0, len(B), 100):
    wt[i:i + 100] = torch.cdist(B[i:i + 100], B[:max(i, 100)]).topk(4, largest=False).values[:, 1 if i == 0 else 0:][:, :3].mean(1)
cats = {}
for k, e in R.items(): cats.setdefault(e['cat'], []).append(k)
def run(banks, label, fn):
    maps = {}
    for c, ks in cats.items():
        Bc, sc = banks[c]
        med = sc.median()
        for k in ks:
            f = R[k][1].float(); _, gh, gw = f.shape
            d, idx = torch.cdist(f.flatten(1).T, Bc).topk(3, largest=False)
            maps[k] = fn(d.mean(1), sc[idx].mean(1), sc, idx, med).reshape(gh, gw).numpy()
    evaluate(lambda k: upmap(maps[k], R[k]), label)
clean = {c: (B, wt) for c in cats}
strict = {}
for c, ks in cats.items():
    rows, sp = [B], [wt]
    for k in ks:
        if R[k]['label'] == 1:  # the category's defective test images, 100 random rows each, as admitted
            r = R[k][1].float().flatten(1).T
            r = r[torch.randperm(len(r), generator=g)[:100]]
            bank_now = torch.cat(rows)
            rows.append(r); sp.append(torch.cdist(r, bank_now).topk(3, largest=False).values.mean(1))
    strict[c] = (torch.cat(rows), torch.cat(sp))
variants = {
    'd': lambda d, s, sc, idx, med: d,
    'd - (s - median)': lambda d, s, sc, idx, med: d - (s - med),
    'd - (min(s, median) - median)': lambda d, s, sc, idx, med: d - (sc.clamp(max=med)[idx].mean(1) - med),
}
for name, fn in variants.items():
    run(clean, f'clean  {name}', fn)
    run(strict, f'strict {name}', fn)
