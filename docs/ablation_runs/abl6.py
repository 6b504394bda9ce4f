"""Self-similarity parameters (docs/ablations.md section 3): k, exclusion radius and VGG layers of
the kNN map, alone and combined with the reconstruction maps saved by abl5.py (same 70 images).
  python docs/ablation_runs/abl6.py /tmp/abl5 docs/ablation_runs/abl6.json"""
import glob
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
from tools.eval.dataset import load_category  # noqa: E402
from edge.knn import grid_features, knn_distance  # noqa: E402
from edge.vgg import VGG19Features  # noqa: E402
from scipy.ndimage import gaussian_filter  # noqa: E402

torch.set_num_threads(1)
folder, out = sys.argv[1], sys.argv[2]
root = os.environ.get("DATASET", "../shared/datasets/textures-dev")
LAYERS = {"l23": ("relu2_2", "relu3_1"), "l34": ("relu3_1", "relu4_1"), "l234": ("relu2_2", "relu3_1", "relu4_1")}
vgg = VGG19Features(layers=("relu2_2", "relu3_1", "relu4_1"))
VARIANTS = [("l23", 5, 4), ("l23", 3, 4), ("l23", 10, 4), ("l23", 5, 2), ("l23", 5, 8), ("l34", 5, 4), ("l34", 5, 2), ("l234", 5, 4)]
z = lambda m: (m - m.mean()) / (m.std() + 1e-8)  # noqa: E731
res = {}
paths = sorted(glob.glob(os.path.join(folder, "*.npz")))
images = {}
for cat in sorted({os.path.basename(p).split("__")[0] for p in paths}):
    for s in load_category(root, cat):
        if s.path.name == "000.png":
            images[f"{cat}__{s.path.parent.name}"] = s.image
per_cat = {}
for p in paths:
    name = os.path.basename(p)[:-4]
    d = dict(np.load(p))
    x = torch.from_numpy(images[name]).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        acts = vgg(x)
        for layers, k, r in VARIANTS:
            cell = 8 if "relu4_1" in LAYERS[layers] else 4
            g = grid_features({n: acts[n] for n in LAYERS[layers]}, (256, 256), cell)
            m = F.interpolate(knn_distance(g, k, r * 4 // cell), size=(256, 256), mode="bilinear")[0, 0].numpy()
            d[f"{layers}_k{k}_r{r}"] = gaussian_filter(m, 4, mode="reflect")
    per_cat.setdefault(name.split("__")[0], []).append(d)
names = [f"{l}_k{k}_r{r}" for l, k, r in VARIANTS]
combos = {n: (lambda d, n=n: z(d[n])) for n in names}
combos.update({f"0.5 m8 L2P + {n}": (lambda d, n=n: (z(d["l2_m8"]) + z(d["p_m8"])) / 4 + z(d[n])) for n in names})
for cat, items in per_cat.items():
    y = np.concatenate([d["mask"].ravel() > 0 for d in items])
    res[cat] = {}
    for n, f in combos.items():
        s = np.concatenate([f(d).ravel() for d in items])
        res[cat][n] = (round(roc_auc_score(y, s), 4), round(average_precision_score(y, s), 4))
for n in combos:
    print(f"{n:32s} {np.mean([res[c][n][0] for c in res]):.3f} / {np.mean([res[c][n][1] for c in res]):.3f}")
json.dump(res, open(out, "w"), indent=1)
