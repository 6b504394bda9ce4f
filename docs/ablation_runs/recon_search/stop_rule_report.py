"""Tables of stop_rule.py's curves: reconstruction-only pixel AUROC / AUPRC at the step each rule picks.

    python docs/ablation_runs/recon_search/stop_rule_report.py /tmp/stop_rule_textures.pkl [...]
"""
import pickle
import sys

import numpy as np

from common import metrics


def first_flat(err, tol=0.01):
    """Index of the first checkpoint after which the held-out error improves by less than tol (relative)."""
    for i in range(len(err) - 1):
        if err[i + 1] > (1 - tol) * err[i]:
            return i
    return len(err) - 1


def report(rows):
    steps = [c["step"] for c in rows[0]["curve"]]
    cats = sorted({r["cat"] for r in rows})
    k0 = 1  # rules choose among checkpoints >= the first after step 0 (the untrained identity start)
    pick = {}
    for r in rows:
        l2 = np.array([c["hold_l2"] for c in r["curve"]])
        pc = np.array([c["hold_perc"] for c in r["curve"]])
        auc = [metrics([c["map"].astype(np.float32)], [r["mask"]])[0] for c in r["curve"]]
        r["auc"] = auc
        pick.setdefault("step 0 (untrained)", []).append(0)
        pick.setdefault("fixed 60", []).append(steps.index(60))
        pick.setdefault(f"fixed {steps[-1]}", []).append(len(steps) - 1)
        pick.setdefault("rule: min held-out L2", []).append(k0 + int(np.argmin(l2[k0:])))
        pick.setdefault("rule: L2 stops improving >1%", []).append(k0 + first_flat(l2[k0:]))
        pick.setdefault("rule: min held-out L2/L2_0 + perc/perc_0", []).append(k0 + int(np.argmin((l2 / l2[0] + pc / pc[0])[k0:])))
        pick.setdefault("oracle: best step per image", []).append(k0 + int(np.argmax(auc[k0:])))

    def score(idx):
        per_cat = []
        for cat in cats:
            sel = [(r, i) for r, i in zip(rows, idx) if r["cat"] == cat]
            per_cat.append(metrics([r["curve"][i]["map"].astype(np.float32) for r, i in sel], [r["mask"] for r, _ in sel]))
        m = np.mean(per_cat, 0)
        return m[0], m[1], np.mean([r["auc"][i] for r, i in zip(rows, idx)])

    fixed = [score([k] * len(rows)) for k in range(len(steps))]
    best = int(np.argmax([f[0] for f in fixed[k0:]])) + k0
    pick[f"oracle: best fixed step ({steps[best]})"] = [best] * len(rows)
    out = [f"{len(rows)} images, {len(cats)} categories; checkpoints {steps}",
           "pooled-per-category AUROC by fixed step: " + " ".join(f"{s}:{f[0]:.3f}" for s, f in zip(steps, fixed)),
           "held-out L2 (mean over images, rel. to step 0): " + " ".join(
               f"{s}:{np.mean([r['curve'][i]['hold_l2'] / r['curve'][0]['hold_l2'] for r in rows]):.3f}" for i, s in enumerate(steps)),
           f"{'choice':45s} pixAUROC pixAUPRC per-image-AUROC  steps picked (mean, range)"]
    for name, idx in pick.items():
        a, p, i = score(idx)
        st = [steps[j] for j in idx]
        out.append(f"{name:45s} {a:.3f}    {p:.3f}    {i:.3f}            {np.mean(st):.0f} ({min(st)}-{max(st)})")
    return "\n".join(out)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(f"== {path}")
        print(report(pickle.load(open(path, "rb"))))
