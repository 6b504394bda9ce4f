"""Section 5, first pass: fit-free self-similarity variants on all 168 dev images (pooled pixel AUROC
/ AUPRC per category, mean printed). Variants: VGG layers, 3x3 neighbourhood averaging of the cell
features (agg3), k / radius, the input enlarged 2x before VGG19 (up2), and the local-statistics
baseline map added to the kNN map (map-level sum of standardised maps).
  python docs/ablation_runs/abl8_explore.py   (about 25 min on one core; JSON: abl8_explore.json)"""
import sys, json, numpy as np, torch, torch.nn.functional as F, cv2
from collections import defaultdict
from sklearn.metrics import average_precision_score, roc_auc_score
from tools.eval.dataset import list_categories, load_category
from edge.vgg import VGG19Features
from edge.knn import grid_features, knn_distance
from tools.eval.baselines import local_stats
torch.set_num_threads(1)
ROOT = "../shared/datasets/textures-dev"
ALL = ("relu1_2", "relu2_2", "relu3_1", "relu3_4", "relu4_1")
vgg = VGG19Features(layers=ALL)

def z(m): return (m - m.mean()) / (m.std() + 1e-8)

def knn_map(acts, layers, size, cell, k=5, radius=4, agg=1, up=1):
    a = {n: acts[n] for n in layers}
    g = grid_features(a, size, cell)
    if agg > 1:
        g = F.normalize(F.avg_pool2d(g, agg, 1, agg // 2, count_include_pad=False), dim=1)
    d = knn_distance(g, k, radius)
    m = F.interpolate(d, size=size, mode="bilinear", align_corners=False)
    if up > 1:
        m = F.avg_pool2d(m, up)
    m = m[0, 0].numpy()
    return m

def smooth(m, s=4.0): return cv2.GaussianBlur(m.astype(np.float32), (0, 0), s, borderType=cv2.BORDER_REFLECT)

@torch.inference_mode()
def variants(img):
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    out = {}
    a1 = vgg(x)
    out["base r22+r31"] = knn_map(a1, ("relu2_2", "relu3_1"), (256, 256), 4)
    out["r12+r22+r31"] = knn_map(a1, ("relu1_2", "relu2_2", "relu3_1"), (256, 256), 4)
    out["agg3"] = knn_map(a1, ("relu2_2", "relu3_1"), (256, 256), 4, agg=3)
    out["r31+r41 c8"] = knn_map(a1, ("relu3_1", "relu4_1"), (256, 256), 8, radius=2)
    out["k10 r8"] = knn_map(a1, ("relu2_2", "relu3_1"), (256, 256), 4, k=10, radius=8)
    x2 = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    a2 = vgg(x2)
    out["up2 r22+r31 c8"] = knn_map(a2, ("relu2_2", "relu3_1"), (512, 512), 8, up=2)
    out["up2 r31+r34+r41 c8"] = knn_map(a2, ("relu3_1", "relu3_4", "relu4_1"), (512, 512), 8, up=2)
    out["up2 r22+r31 c8 agg3"] = knn_map(a2, ("relu2_2", "relu3_1"), (512, 512), 8, up=2, agg=3)
    out["local"] = local_stats(img)
    return {k: smooth(v) for k, v in out.items()}

res = defaultdict(dict)
store = defaultdict(list)
for cat in list_categories(ROOT):
    samples = load_category(ROOT, cat)
    maps = [variants(s.image) for s in samples]
    y = np.concatenate([s.mask.ravel() for s in samples])
    names = list(maps[0]) + ["base+0.5local", "up2+0.5local", "up2+base"]
    for m in maps:
        m["base+0.5local"] = z(m["base r22+r31"]) + 0.5 * z(m["local"])
        m["up2+0.5local"] = z(m["up2 r22+r31 c8"]) + 0.5 * z(m["local"])
        m["up2+base"] = z(m["up2 r22+r31 c8"]) + z(m["base r22+r31"])
    for n in names:
        s = np.concatenate([m[n].ravel() for m in maps])
        res[n][cat] = (roc_auc_score(y, s), average_precision_score(y, s))
    print(cat, " ".join(f"{n}:{res[n][cat][0]:.3f}" for n in names), flush=True)
print()
for n in res:
    a = np.mean([v[0] for v in res[n].values()]); p = np.mean([v[1] for v in res[n].values()])
    print(f"{n:28s} {a:.3f} / {p:.3f}")
json.dump(res, open("docs/ablation_runs/abl8_explore.json", "w"), indent=1)
