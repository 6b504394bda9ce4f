"""Cache deeper VGG features at 8 px cells (1x input) for memory experiments."""
import sys, pickle
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F, cv2
sys.path.insert(0, '/work/research')
from edge.vgg import VGG19Features
from edge.fitter import image_to_tensor
from edge.dataset import load_category, list_categories
torch.set_num_threads(1)
L = ("relu2_2", "relu3_1", "relu3_4", "relu4_1", "relu4_4")
vgg = VGG19Features(None, L).eval()
def f(img):
    x = image_to_tensor(img, torch.device('cpu'), 64)
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        a = vgg(x)
    h, w = x.shape[-2:]
    out = {}
    for k, v in a.items():
        s = h // v.shape[-2]; kk = 8 // s
        p = F.avg_pool2d(v.float(), kk, kk) if kk > 1 else v.float()
        out[k] = p[0].numpy().astype(np.float16)
    return out, (h, w)
which = sys.argv[1]; out = {}
if which == 'stream':
    for p in sorted(Path('/work/shared/datasets/real-stream-dev').glob('*.png')):
        img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        a, hw = f(img); out[p.name] = dict(a=a, hw=hw, size=img.shape[:2])
else:
    root = Path('/work/shared/datasets') / which
    for c in list_categories(root):
        for s in load_category(root, c):
            a, hw = f(s.image)
            out[str(s.path)] = dict(a=a, hw=hw, size=s.image.shape[:2], mask=s.mask, label=s.label, cat=c, type=s.defect_type)
pickle.dump(out, open(f'feats2_{which}.pkl', 'wb'))
