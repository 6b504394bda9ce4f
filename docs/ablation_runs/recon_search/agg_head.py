"""(2) A learned aggregation head, trained per image on synthetic defects pasted into the image itself.

Per image (cold mode): fit the shipped U-Net 60 steps on it (Fitter.fit, default fit config), take the
per-pixel stack [S, L2, perc] (each smoothed, std-normalised per image). Make --copies copies of the
image with 2 pasted defects each (a cut-paste of another region of the same image, flipped/rotated,
under an irregular blob; and either a drawn scratch/stain/hole (edge.synthetic.draw_defect) or a
colour-shifted blob keeping part of the texture); labels = the pasted masks. Stack the copies' maps
with the same net (no refit), fit a logistic regression (balanced) per pixel on the stack plus a
sigma-8 smoothed copy of each map, apply it to the real image's stack.

Compared (pixel AUROC / AUPRC pooled per category, mean over categories), each in two units:
'std' (the per-image standardised maps, as map_units: std; head outputs z-scored per image) and 'knn' (z-scored map rescaled by the raw self-similarity map's
mean and std, what the shipped map_units: knn does):
  S           the fit-free default (self-similarity alone)
  fixed       S + 0.1 L2 + 0.1 perc (configs/ssdnet-fit.yaml)
  recon       L2 + perc (the reconstruction-only config)
  head_S      head on [S, smooth S]
  head_all    head on [S, L2, perc, smoothed]

    python docs/ablation_runs/recon_search/agg_head.py textures --bad 3 --good 1
"""
import argparse
import pickle
import time

import numpy as np
from scipy import ndimage
from sklearn.linear_model import LogisticRegression

from common import DATASETS, build, knn_map, metrics, norm, recon_maps, subset, tensor
from edge.synthetic import _blob, draw_defect

ap = argparse.ArgumentParser()
ap.add_argument("dataset", choices=DATASETS)
ap.add_argument("--bad", type=int, default=3)
ap.add_argument("--good", type=int, default=1)
ap.add_argument("--steps", type=int, default=60)
ap.add_argument("--copies", type=int, default=3)
ap.add_argument("--save", default="/tmp/agg_head")
a = ap.parse_args()
cfg, fitter, scorer = build()
root, cats = DATASETS[a.dataset]


def blob_mask(shape, rng):
    m = ndimage.binary_fill_holes(_blob(shape, rng, rng.uniform(0.005, 0.04) * shape[0] * shape[1]) > 0)
    return m if m.sum() > 20 else blob_mask(shape, rng)


def cut_paste(img, rng):
    """A region from elsewhere in the same image (flipped / rotated by 90s) under an irregular mask."""
    h, w = img.shape[:2]
    m = blob_mask((h, w), rng)
    src = np.rot90(img, rng.integers(4)) if h == w else img[::-1] if rng.random() < 0.5 else img[:, ::-1]
    src = np.roll(src, (rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)), axis=(0, 1))
    out = img.copy()
    out[m] = src[m]
    return out, m


def colour_blob(img, rng):
    m = blob_mask(img.shape[:2], rng)
    gray = np.ptp(img.astype(np.int16), axis=2).max() == 0
    tint = np.ones(3) if gray else rng.dirichlet((2, 2, 2)) * 3  # a grey shift on a grey image
    shift = rng.uniform(15, 50) * rng.choice((-1, 1)) * tint
    keep = rng.uniform(0.3, 1.0)
    f = img.astype(np.float32)
    mean = f[m].mean(0)
    f[m] = keep * f[m] + (1 - keep) * mean + shift
    return np.clip(np.rint(f), 0, 255).astype(np.uint8), m


def synth(img, rng):
    out, m1 = cut_paste(img, rng)
    if rng.random() < 0.5:
        out, m2 = draw_defect(out, rng)
    else:
        out, m2 = colour_blob(out, rng)
    return out, m1 | m2


def stack(image):
    """[S, L2, perc] normalised, plus the raw S map's mean and std (for the 'knn' units); seconds of S and recon."""
    x = tensor(fitter, image)
    h, w = image.shape[:2]
    t0 = time.time()
    s_raw = knn_map(scorer, x, h, w)
    t1 = time.time()
    l2, perc = recon_maps(scorer, x)
    t2 = time.time()
    sm = scorer._smooth(s_raw)[0, 0, :h, :w]
    maps = np.stack([norm(scorer, s_raw, h, w), norm(scorer, l2, h, w), norm(scorer, perc, h, w)])
    return maps, (float(sm.mean()), float(sm.std())), (t1 - t0, t2 - t1)


def features(maps):
    return np.concatenate([maps, np.stack([ndimage.gaussian_filter(m, 8) for m in maps])]).reshape(2 * len(maps), -1).T


def head(train_maps, train_masks, test_maps, rng):
    X = np.concatenate([features(m) for m in train_maps])
    y = np.concatenate([m.ravel() for m in train_masks])
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    idx = np.concatenate([rng.choice(pos, min(len(pos), 20000), replace=False), rng.choice(neg, 20000, replace=False)])
    lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=500).fit(X[idx], y[idx])
    return lr.decision_function(features(test_maps)).reshape(test_maps.shape[1:]), lr.coef_[0]


rows = []
t_all = time.time()
for cat in cats:
    for s in subset(root, cat, a.bad, a.good):
        rng = np.random.default_rng(0)
        t = {}
        t0 = time.time()
        fitter.reset()
        fitter.fit(tensor(fitter, s.image), a.steps)
        t["fit"] = time.time() - t0
        maps, units, (t["S"], t["recon"]) = stack(s.image)
        t0 = time.time()
        copies = [synth(s.image, rng) for _ in range(a.copies)]
        cmaps = [stack(c)[0] for c, _ in copies]
        t["copies"] = time.time() - t0
        t0 = time.time()
        hs, coef_s = head([m[:1] for m in cmaps], [m for _, m in copies], maps[:1], rng)
        ha, coef_a = head(cmaps, [m for _, m in copies], maps, rng)
        t["heads"] = time.time() - t0
        z = lambda m: (m - m.mean()) / (m.std() + 1e-8)
        out = {"S": maps[0], "fixed": maps[0] + 0.1 * maps[1] + 0.1 * maps[2], "recon": maps[1] + maps[2],
               "head_S": z(hs), "head_all": z(ha)}
        rows.append(dict(cat=cat, path=str(s.path), mask=s.mask, label=s.label, units=units, times=t,
                         coef_all=coef_a, maps={k: v.astype(np.float16) for k, v in out.items()}))
        msg = " ".join(f"{k}:{metrics([v], [s.mask])[0]:.3f}" for k, v in out.items()) if s.label else "good"
        print(f"{cat} {s.path.parent.name}/{s.path.name} {msg} | " + " ".join(f"{k} {v:.1f}s" for k, v in t.items())
              + " | coef " + " ".join(f"{c:+.2f}" for c in coef_a), flush=True)
pickle.dump(rows, open(f"{a.save}_{a.dataset}.pkl", "wb"))

lines = [f"{a.dataset}: {len(rows)} images ({a.bad} defective + {a.good} good per category), total {time.time()-t_all:.0f}s"]
for unit in ("std", "knn"):
    res = {}
    for k in rows[0]["maps"]:
        per_cat = []
        for cat in cats:
            rr = [r for r in rows if r["cat"] == cat]
            mp = [r["maps"][k].astype(np.float32) * (r["units"][1] if unit == "knn" else 1) + (r["units"][0] if unit == "knn" else 0)
                  for r in rr]
            per_cat.append(metrics(mp, [r["mask"] for r in rr]))
        res[k] = np.mean(per_cat, axis=0)
    lines.append(f"  units {unit}: " + "  ".join(f"{k} {v[0]:.3f}/{v[1]:.3f}" for k, v in res.items()))
mt = {k: np.mean([r["times"][k] for r in rows]) for k in rows[0]["times"]}
lines.append("  seconds per image: " + " ".join(f"{k} {v:.1f}" for k, v in mt.items()))
lines.append("  mean head_all coef [S L2 perc, smoothed S L2 perc]: " + " ".join(f"{c:+.2f}" for c in np.mean([r["coef_all"] for r in rows], 0)))
print("\n".join(lines))
