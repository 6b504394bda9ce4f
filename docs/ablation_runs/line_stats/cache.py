"""Cache the self-similarity's VGG grid features (default config) of a dataset's categories.
Usage (repository root): python docs/ablation_runs/line_stats/cache.py ../shared/datasets/textures-dev OUT.pkl CAT1,CAT2,... [fp32]
(CATS `-`: a flat folder of unlabelled normal frames, such as real-stream-dev, in sorted order, as category `warm`)
(docs/ablations.md section 12 ran two halves of the 14 categories side by side, a.pkl and b.pkl, under bf16 autocast;
section 33 all 14, and real-dev's 5, in fp32)."""
import sys, pickle, torch, torch.nn.functional as F
sys.path.insert(0, '.')
from pathlib import Path
from edge.config import SSDNetConfig
from edge.vgg import build_vgg
from edge.knn import grid_features
from edge.fitter import image_to_tensor
import numpy as np
from tools.eval.dataset import Sample, load_category
from tools.eval.evaluate import warmup_paths
from edge.images import read_rgb
torch.set_num_threads(1)
cfg = SSDNetConfig(); sc = cfg.score
vgg = build_vgg(cfg).eval()
root = Path(sys.argv[1]); cats = sys.argv[3].split(',')


def frames(c):
    if c != '-':
        return load_category(root, c)
    return [Sample(p, 'warm', 'good', im, np.zeros(im.shape[:2], bool), 0)
            for p in warmup_paths(root, '', None) for im in [read_rgb(p)]]


out = {}
for c in cats:
    for s in frames(c):
        x = image_to_tensor(s.image, torch.device('cpu'), 64)
        h, w = x.shape[-2:]
        with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=sys.argv[4:] != ['fp32']):
            a = vgg(F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False), tuple(sc.vgg_layers))
        g = grid_features({k: a[k] for k in sc.vgg_layers}, (2 * h, 2 * w), 8)
        out[str(s.path)] = dict(g=g[0].half(), x=x[0].half(), mask=s.mask, label=s.label, cat=c, type=s.defect_type,
                                size=s.image.shape[:2])
    print(c, flush=True)
pickle.dump(out, open(sys.argv[2], 'wb'))
