"""Section 21, offline: caches real-dev's and its 200 warm-up frames' memory features (relu3_1 + relu4_1, agg 3,
8 px cells) and local gradient-energy statistics for `orient_eval.py`. Usage from the repository root:
python docs/ablation_runs/deep_memory/orient.py CACHE.pkl (then orient_eval.py CACHE.pkl)."""
import sys, numpy as np, torch, torch.nn.functional as F, cv2, pickle
sys.path.insert(0, '.')
from pathlib import Path
from sklearn.metrics import roc_auc_score
from edge.config import MemoryConfig
from edge.vgg import VGG19Features
from edge.memory import memory_features
from edge.fitter import image_to_tensor
from edge.filters import gaussian_blur, gaussian_kernel
torch.set_num_threads(2)
cfg = MemoryConfig(layers=['relu3_1', 'relu4_1'])  # the memory's layers before section 21
vgg = VGG19Features(layers=tuple(cfg.layers)).eval()
root = Path('../shared/datasets/real-dev'); warm = Path('../shared/datasets/real-stream-dev')
def grads(x, cell, sigma):
    g = x.mean(1, keepdim=True)
    k = gaussian_kernel(sigma)
    gx = g[..., :, 2:] - g[..., :, :-2]; gx = F.pad(gx, (1, 1, 0, 0), mode='replicate')
    gy = g[..., 2:, :] - g[..., :-2, :]; gy = F.pad(gy, (0, 0, 1, 1), mode='replicate')
    m = gaussian_blur(g, k); v = (gaussian_blur(g * g, k) - m * m).clamp_min(0)
    ex, ey = gaussian_blur(gx * gx, k), gaussian_blur(gy * gy, k)
    st = torch.cat([torch.log(ex + 1e-5), torch.log(ey + 1e-5), torch.log(v + 1e-5), m], 1)
    return F.avg_pool2d(st, cell, cell, ceil_mode=True)
@torch.no_grad()
def feats(path):
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    x = image_to_tensor(img, torch.device('cpu'), 8)
    acts = vgg(x, tuple(cfg.layers))
    f = memory_features(acts, tuple(x.shape[-2:]), cfg)[0]
    gh, gw = f.shape[-2:]
    cell = x.shape[-2] // gh
    s = grads(x, cell, 4.0)[0][:, :gh, :gw]
    return f, s, (h, w), cell
W = [feats(p) for p in sorted(warm.glob('*.png'))]
T = {}
for c in sorted(d.name for d in root.iterdir() if d.is_dir()):
    rows = []
    for sub in sorted((root / c / 'test').iterdir()):
        for p in sorted(sub.glob('*.png')):
            m = cv2.imread(str(root / c / 'ground_truth' / sub.name / (p.stem + '_mask.png')), 0) if sub.name != 'good' else None
            f, s, hw, cell = feats(p)
            rows.append((f, s, hw, cell, sub.name != 'good', m))
    T[c] = rows
pickle.dump((W, T), open(sys.argv[1], 'wb'))
