"""Section 5: self-similarity with local intensity statistics (mean, std, colour offsets; z-scored per
image) appended to the unit-norm VGG19 cell features at weight w, input enlarged 1x or 2x, statistics
window sigma 4 or 8 px; all 168 dev images, fit-free. Run each half of the categories in its own
process, then summarise:
  python docs/ablation_runs/abl8_knn_stats.py 0 & python docs/ablation_runs/abl8_knn_stats.py 1; wait
  python docs/ablation_runs/abl8_knn_stats.py summary   (writes abl8_knn_stats.json)"""
import sys, json, numpy as np, torch, torch.nn.functional as F, cv2
from collections import defaultdict
from sklearn.metrics import average_precision_score, roc_auc_score
from tools.eval.dataset import list_categories, load_category
from edge.vgg import VGG19Features
from edge.knn import grid_features, knn_distance
from edge.local_stats import stats_features
torch.set_num_threads(1)
ROOT = "../shared/datasets/textures-dev"
OUT = "docs/ablation_runs"
vgg = VGG19Features(layers=("relu1_2", "relu2_2", "relu3_1"))

def smooth(m): return cv2.GaussianBlur(m.astype(np.float32), (0, 0), 4.0, borderType=cv2.BORDER_REFLECT)

@torch.inference_mode()
def variants(img):
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    out = {}
    for up in (1, 2):
        xu = F.interpolate(x, scale_factor=up, mode="bilinear", align_corners=False) if up > 1 else x
        g = grid_features(vgg(xu), (256 * up, 256 * up), 4 * up)
        for sig in (4.0, 8.0):
            st = stats_features(x, 4, sig)
            for w in (0.0, 0.1, 0.2, 0.3, 0.5) if sig == 4.0 else (0.2, 0.3):
                d = knn_distance(torch.cat([g, w * st], 1) if w else g, 5, 4)
                out[f"up{up} s{sig:g} w{w}"] = smooth(F.interpolate(d, size=(256, 256), mode="bilinear", align_corners=False)[0, 0].numpy())
    return out

def summary() -> None:
    res = {}
    for half in (0, 1):
        for n, cats in json.load(open(f"{OUT}/abl8_half{half}.json")).items():
            res.setdefault(n, {}).update(cats)
    json.dump(res, open(f"{OUT}/abl8_knn_stats.json", "w"), indent=1)
    types = ("foreign_texture", "scratch", "stain", "hole")
    print(f"{'variant':16s} AUROC  AUPRC  " + " ".join(t[:7] for t in types))
    for n, cats in res.items():
        m = lambda k: np.mean([c[k] for c in cats.values()])
        print(f"{n:16s} {m('auroc'):.3f}  {m('auprc'):.3f}  " + " ".join(f"{m(t):7.3f}" for t in types))


if sys.argv[1] == "summary":
    summary()
    sys.exit()
res = defaultdict(dict)
for cat in list_categories(ROOT)[int(sys.argv[1])::2]:
    samples = load_category(ROOT, cat)
    maps = [variants(s.image) for s in samples]
    y = np.concatenate([s.mask.ravel() for s in samples])
    types = [s.defect_type for s in samples]
    for n in maps[0]:
        s = np.concatenate([m[n].ravel() for m in maps])
        r = {"auroc": roc_auc_score(y, s), "auprc": average_precision_score(y, s)}
        for t in ("foreign_texture", "scratch", "stain", "hole"):
            sel = [i for i, tt in enumerate(types) if tt in ("good", t)]
            r[t] = roc_auc_score(np.concatenate([samples[i].mask.ravel() for i in sel]), np.concatenate([maps[i][n].ravel() for i in sel]))
        res[n][cat] = r
    print(cat, flush=True)
json.dump(res, open(f"{OUT}/abl8_half{sys.argv[1]}.json", "w"))
