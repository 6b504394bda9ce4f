"""The self-similarity's grid features (local statistics appended) of real-dev's test images or of the 200
warm-up frames. Usage: python docs/ablation_runs/cross_frame/cache_real.py OUT.pkl CAT1,CAT2,...|warm DATASETS
(DATASETS: the folder holding real-dev and real-stream-dev)."""
import sys, pickle, torch, torch.nn.functional as F
sys.path.insert(0, '.')
from pathlib import Path
import cv2
from edge.config import SSDNetConfig
from edge.vgg import build_vgg
from edge.knn import grid_features
from edge.fitter import image_to_tensor
from edge.local_stats import stats_features
from tools.eval.dataset import load_category
torch.set_num_threads(1)
cfg = SSDNetConfig(); sc = cfg.score
vgg = build_vgg(cfg).eval()
def feats(img):
    x = image_to_tensor(img, torch.device('cpu'), 64)
    h, w = x.shape[-2:]
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        a = vgg(F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False), tuple(sc.vgg_layers))
    g = grid_features({k: a[k] for k in sc.vgg_layers}, (2 * h, 2 * w), 8)
    g = torch.cat([g, 0.2 * stats_features(x, 4, 4.0)], 1)
    return g[0].half(), (h, w)
which = sys.argv[2]
out = {}
if which == 'warm':
    for p in sorted(Path(sys.argv[3], 'real-stream-dev').glob('*.png')):
        img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        g, hw = feats(img); out[p.name] = dict(g=g, size=img.shape[:2], pad=hw)
else:
    for c in which.split(','):
        for s in load_category(Path(sys.argv[3], 'real-dev'), c):
            g, hw = feats(s.image)
            out[str(s.path)] = dict(g=g, size=s.image.shape[:2], pad=hw, cat=c, mask=s.mask, label=s.label, type=s.defect_type)
print(len(out))
pickle.dump(out, open(sys.argv[1], 'wb'))
