"""Section 20: stream the split's crack warm-up (every tenth frame one of mtd_crack's even-indexed defective images,
`docs/ablation_runs/memory/warm10_split.py SHARED OUT`) through a default Detector and print, per defective
warm-up frame, its crack cells (the memory's 8 px cells holding mask pixels, one cell dilated), how many of them
the memory's cell rule calls normal (within `admit_cell_ratio` of the typical distance) and the lowest of their
distances / the typical one. Usage, from the repository root:
    python docs/ablation_runs/warmup_crack/crack_cells.py SHARED_DATASETS SPLIT_OUT   (output: crack_cells.log)"""
import sys, torch, numpy as np, cv2
sys.path.insert(0, '.')
from pathlib import Path
from edge.config import SSDNetConfig
from edge.detector import Detector
from edge import memory as memmod
from tools.eval.dataset import load_category
torch.set_num_threads(1)
cfg = SSDNetConfig()
det = Detector(cfg)
shared, split = Path(sys.argv[1]), Path(sys.argv[2])
gt = shared / 'real-dev/mtd_crack/ground_truth/crack'
bad = sorted((shared / 'real-dev/mtd_crack/test/crack').glob('*.png'))[0::2]
cur = {}
orig_add = memmod.FeatureMemory.add
def add(self, feats, normal, distance=None):
    if cur.get('mask') is not None:
        gh, gw = normal.shape
        m = cur['mask']; c = cur['cell']
        mp = np.zeros((gh * c, gw * c), np.uint8); mp[:m.shape[0], :m.shape[1]] = m
        mc = mp.reshape(gh, c, gw, c).max((1, 3)) > 0
        mc = cv2.dilate(mc.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        typ = self.typical[1]
        d = distance.float().numpy() / typ if typ > 0 else np.zeros(mc.shape)
        nm = normal.numpy() & mc
        cur['stats'] = (mc.sum(), nm.sum(), np.round(np.sort(d[nm])[:8], 2), typ)
    return orig_add(self, feats, normal, distance)
memmod.FeatureMemory.add = add
frames = sorted((split / 'warmup/mtd_crack').glob('*.png'))
for i, p in enumerate(frames):
    img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
    cur.clear()
    if i % 10 == 5:
        src = bad[(i // 10) % len(bad)]
        cur['mask'] = cv2.imread(str(gt / f'{src.stem}_mask.png'), 0) > 127
        cur['cell'] = 8
    d = det.process(img)
    if i % 10 == 5:
        s = cur.get('stats')
        print(f"frame {i:3d} img {src.stem} calibrated {d.calibrated:5.2f} added {d.memory_added:3d} | crack cells {s[0] if s else '-'} eligible {s[1] if s else '-'} lowest ratios {s[2] if s else '-'}", flush=True)
