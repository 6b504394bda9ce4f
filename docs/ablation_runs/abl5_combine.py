"""Combine the raw maps saved by abl5.py into scoring variants; print per-category pixel AUROC /
AUPRC (pooled over a category's images) and the mean, and write them as JSON.
  python docs/ablation_runs/abl5_combine.py /tmp/abl5 docs/ablation_runs/abl5.json"""
import glob
import json
import os
import sys
from collections import defaultdict

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def z(m: np.ndarray) -> np.ndarray:
    return (m - m.mean()) / (m.std() + 1e-8)


VARIANTS = {
    "default (m8+c, L2P)": lambda d: z(d["l2_m8"]) + z(d["p_m8"]) + z(d["l2_c"]) + z(d["p_c"]),
    "m16+c L2P": lambda d: z(d["l2_m16"]) + z(d["p_m16"]) + z(d["l2_c"]) + z(d["p_c"]),
    "m32+c L2P": lambda d: z(d["l2_m32"]) + z(d["p_m32"]) + z(d["l2_c"]) + z(d["p_c"]),
    "m32 L2P": lambda d: z(d["l2_m32"]) + z(d["p_m32"]),
    "m8+m16+m32+c L2P": lambda d: sum(z(d[f"{m}_m{b}"]) for m in ("l2", "p") for b in (8, 16, 32)) / 3 + z(d["l2_c"]) + z(d["p_c"]),
    "pn1_c": lambda d: z(d["pn1_c"]),
    "pn2_c": lambda d: z(d["pn2_c"]),
    "knn_rc": lambda d: z(d["knn_rc"]),
    "knn_rm": lambda d: z(d["knn_rm"]),
    "knn_in (baseline)": lambda d: z(d["knn_in"]),
    "default + knn_rc": lambda d: (z(d["l2_m8"]) + z(d["p_m8"]) + z(d["l2_c"]) + z(d["p_c"])) / 4 + z(d["knn_rc"]),
    "default + knn_rm": lambda d: (z(d["l2_m8"]) + z(d["p_m8"]) + z(d["l2_c"]) + z(d["p_c"])) / 4 + z(d["knn_rm"]),
    "m32+c + knn_rc": lambda d: (z(d["l2_m32"]) + z(d["p_m32"]) + z(d["l2_c"]) + z(d["p_c"])) / 4 + z(d["knn_rc"]),
    "knn_rc + knn_rm": lambda d: z(d["knn_rc"]) + z(d["knn_rm"]),
    "default + pn2_c": lambda d: (z(d["l2_m8"]) + z(d["p_m8"]) + z(d["l2_c"]) + z(d["p_c"])) / 4 + z(d["pn2_c"]),
    "default + knn_in": lambda d: (z(d["l2_m8"]) + z(d["p_m8"]) + z(d["l2_c"]) + z(d["p_c"])) / 4 + z(d["knn_in"]),
    "0.5 default + knn_rc": lambda d: (z(d["l2_m8"]) + z(d["p_m8"]) + z(d["l2_c"]) + z(d["p_c"])) / 8 + z(d["knn_rc"]),
    "0.5 default + knn_in": lambda d: (z(d["l2_m8"]) + z(d["p_m8"]) + z(d["l2_c"]) + z(d["p_c"])) / 8 + z(d["knn_in"]),
    "0.25 default + knn_in": lambda d: (z(d["l2_m8"]) + z(d["p_m8"]) + z(d["l2_c"]) + z(d["p_c"])) / 16 + z(d["knn_in"]),
    "knn_in + knn_rc": lambda d: z(d["knn_in"]) + z(d["knn_rc"]),
    "0.5 P_c + knn_in": lambda d: z(d["p_c"]) / 2 + z(d["knn_in"]),
    "0.5 L2_c + knn_in": lambda d: z(d["l2_c"]) / 2 + z(d["knn_in"]),
    "0.5 m8 L2P + knn_in": lambda d: (z(d["l2_m8"]) + z(d["p_m8"])) / 4 + z(d["knn_in"]),
    "0.5 c L2P + knn_in": lambda d: (z(d["l2_c"]) + z(d["p_c"])) / 4 + z(d["knn_in"]),
}


def main(folder: str, out: str) -> None:
    per_cat = defaultdict(list)
    for path in sorted(glob.glob(os.path.join(folder, "*.npz"))):
        per_cat[os.path.basename(path).split("__")[0]].append(dict(np.load(path)))
    res = {}
    for cat, items in per_cat.items():
        y = np.concatenate([d["mask"].ravel() > 0 for d in items])
        res[cat] = {}
        for name, f in VARIANTS.items():
            s = np.concatenate([f(d).ravel() for d in items])
            res[cat][name] = (round(roc_auc_score(y, s), 4), round(average_precision_score(y, s), 4))
    print(f"{'variant':24s} " + " ".join(f"{c[:7]:>7s}" for c in res) + "   mean AUROC / AUPRC  wins vs knn_in")
    for name in VARIANTS:
        a = [res[c][name][0] for c in res]
        p = [res[c][name][1] for c in res]
        wins = sum(res[c][name][0] > res[c]["knn_in (baseline)"][0] for c in res)
        print(f"{name:24s} " + " ".join(f"{v:7.3f}" for v in a) + f"   {np.mean(a):.3f} / {np.mean(p):.3f}  {wins}/{len(res)}")
    json.dump(res, open(out, "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
