"""Stream real-dev categories as `ssdnet eval --mode stream --warmup DIR --warmup-frames 200` does (default
config) and pickle each test image's maps: the anomaly map, the self-similarity S and the memory distance M.
Usage (from the repository root): python docs/ablation_runs/memory/dump_maps.py DATASET OUT.pkl CAT1,CAT2 [WARMUP_DIR]
(section 11 of docs/ablations.md ran two halves, real_a.pkl and real_b.pkl, side by side)."""
import sys, pickle, torch
sys.path.insert(0, '.')
from pathlib import Path
from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.scoring import AnomalyScorer
from tools.eval.dataset import load_category
from tools.eval.evaluate import warm_up, warmup_paths
torch.set_num_threads(1)
root, out, cats = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split(',')
warm = Path(sys.argv[4]) if len(sys.argv) > 4 else None
cap = {}
orig_knn, orig_mem = AnomalyScorer.knn_map, AnomalyScorer.memory_map
def knn_map(self, *a, **k):
    r = orig_knn(self, *a, **k); cap['S'] = r[0, 0].float().numpy().copy(); return r
def memory_map(self, *a, **k):
    r = orig_mem(self, *a, **k); cap['M'] = r[0][0, 0].float().numpy().copy(); return r
AnomalyScorer.knn_map, AnomalyScorer.memory_map = knn_map, memory_map
cfg = SSDNetConfig()
det = Detector(cfg)
res = {}
for c in cats:
    det.reset()
    if warm is not None:
        st = warm_up(det, warmup_paths(warm, c, 200), lambda: None)
        det.reset(); det.restore(st)
    rows = []
    for s in load_category(root, c):
        cap.clear()
        d = det.process(s.image)
        h, w = s.image.shape[:2]
        rows.append(dict(path=str(s.path), label=s.label, mask=s.mask, amap=d.anomaly_map.astype('float16'),
                         S=cap['S'][:h, :w].astype('float16'), M=cap.get('M')[:h, :w].astype('float16'),
                         score=d.score, calibrated=d.calibrated, added=d.memory_added, scale=det.memory.scale if det.memory.ready else 0.0))
        print(c, len(rows), s.defect_type, f'calibrated {d.calibrated:.2f}', f'cells added {d.memory_added}', flush=True)
    res[c] = rows
pickle.dump(res, open(out, 'wb'))
