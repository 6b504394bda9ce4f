"""Section 20: as docs/ablation_runs/memory/dump_maps.py (default config, 200 warm-up frames), keeping also every
warm-up frame's map as the detector returned it (for position.py). Usage, from the repository root:
    python docs/ablation_runs/border/dump_warm.py DATASET OUT.pkl CAT1,CAT2 WARMUP_DIR"""
import sys, pickle, torch
sys.path.insert(0, '.')
from pathlib import Path
from edge.config import SSDNetConfig
from edge.detector import Detector
from tools.eval.dataset import load_category
from tools.eval.evaluate import warm_up, warmup_paths
torch.set_num_threads(1)
root, out, cats, warm = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split(','), Path(sys.argv[4])
cfg = SSDNetConfig()
det = Detector(cfg)
orig = Detector.process
cap = []
def process(self, image):
    d = orig(self, image); cap.append((d.anomaly_map.astype('float16'), d.score, d.calibrated)); return d
Detector.process = process
res = {}
for c in cats:
    det.reset(); cap.clear()
    st = warm_up(det, warmup_paths(warm, c, 200), lambda: None)
    det.reset(); det.restore(st)
    warm_maps = list(cap); cap.clear()
    rows = []
    for s in load_category(root, c):
        d = det.process(s.image)
        rows.append(dict(path=str(s.path), label=s.label, mask=s.mask, amap=d.anomaly_map.astype('float16'), score=d.score))
    res[c] = dict(warm=warm_maps, rows=rows)
    print(c, 'done', flush=True)
pickle.dump(res, open(out, 'wb'))
