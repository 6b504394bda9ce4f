"""Offline memory experiments on real-dev (docs/ablations.md section 15): the memory's features of
real-stream-dev's 200 frames and real-dev's test images, at the frame's scale (1x) and enlarged 2x, cached
in the working directory; a bank of random rows; distance; evaluation (pixel AUROC / AUPRC, image AUROC
of the top 0.1 %). Run from this folder: `python fine.py`, `python spacing.py`, `python spacing_weight.py`."""
import sys, pickle, time
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F, cv2
ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT.parent / 'shared' / 'datasets'
sys.path.insert(0, str(ROOT))
from edge.vgg import VGG19Features
from edge.fitter import image_to_tensor
from edge.filters import gaussian_blur, gaussian_kernel
from edge.config import MemoryConfig
from edge.memory import memory_features
from tools.eval.dataset import load_category, list_categories
from tools.eval.metrics import image_auroc, pixel_auprc, pixel_auroc
torch.set_num_threads(2)
vgg = VGG19Features(None, ("relu3_1", "relu4_1")).eval()
cfg = MemoryConfig()
K = gaussian_kernel(4.0)
def feats(img, up):
    x = image_to_tensor(img, torch.device('cpu'), 64)
    h, w = x.shape[-2:]
    xi = F.interpolate(x, scale_factor=up, mode='bilinear', align_corners=False) if up > 1 else x
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        a = vgg(xi)
        f = memory_features(a, (h * up, w * up), cfg)[0].half()
    return f, (h, w)
cache = Path('fine_cache.pkl')
if cache.exists():
    S, R = pickle.load(open(cache, 'rb'))
else:
    S, R = {1: [], 2: []}, {}
    t = time.time()
    for p in sorted(DATA / 'real-stream-dev'.glob('*.png')):
        img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        for up in (1, 2):
            S[up].append(feats(img, up)[0])
    print('stream', time.time() - t, flush=True)
    root = DATA / 'real-dev'
    for c in list_categories(root):
        for s in load_category(root, c):
            e = dict(cat=c, mask=s.mask, label=s.label, size=s.image.shape[:2])
            for up in (1, 2):
                e[up], e['hw'] = feats(s.image, up)
            R[str(s.path)] = e
    print('test', time.time() - t, flush=True)
    pickle.dump((S, R), open(cache, 'wb'))
def upmap(d, e):
    h, w = e['hw']
    m = F.interpolate(torch.as_tensor(d)[None, None].float(), size=(h, w), mode='bilinear', align_corners=False)
    m = gaussian_blur(m, K)[0, 0]
    H, W = e['size']
    return m[:H, :W].numpy()
def bank(up, per_frame, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for f in S[up]:
        r = f.float().flatten(1).T
        rows.append(r[torch.randperm(len(r), generator=g)[:per_frame]])
    return torch.cat(rows)
def memdist(f, B, k=3):
    c, gh, gw = f.shape
    return torch.cdist(f.float().flatten(1).T, B).topk(k, largest=False).values.mean(1).reshape(gh, gw).numpy()
def evaluate(mapfn, label=''):
    cats = {}
    for k, e in R.items(): cats.setdefault(e['cat'], []).append(k)
    res = {}
    for c, ks in cats.items():
        maps = [mapfn(k) for k in ks]
        sc = [float(np.sort(m.ravel())[-max(1, int(0.001 * m.size)):].mean()) for m in maps]
        masks = [R[k]['mask'] for k in ks]
        res[c] = dict(pixel_auroc=pixel_auroc(maps, masks), pixel_auprc=pixel_auprc(maps, masks),
                      image_auroc=image_auroc(sc, [R[k]['label'] for k in ks]))
    mean = {m: np.mean([r[m] for r in res.values()]) for m in ('pixel_auroc', 'pixel_auprc', 'image_auroc')}
    print(f"{label:44s} AUROC {mean['pixel_auroc']:.3f} AUPRC {mean['pixel_auprc']:.3f} img {mean['image_auroc']:.3f} | " +
          ' '.join(f"{c[4:]}:{r['pixel_auroc']:.2f}/{r['pixel_auprc']:.2f}/{r['image_auroc']:.2f}" for c, r in res.items()), flush=True)
