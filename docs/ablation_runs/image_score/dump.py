"""Stream real-dev categories as `ssdnet eval --mode stream --warmup DIR --warmup-frames N` does (default config) and
save (maps_io.py: no pickle), per test image, what an image score could read: the self-similarity S and the memory
map M (smoothed, full size), the memory grid (S pooled, plain memory distance), the border-corrected blend the score
reads now, the anomaly map, the score, the memory state before the frame, the camera's typical levels, label, mask.
Usage (repository root): python docs/ablation_runs/image_score/dump.py DATASET OUT.pt CAT1,CAT2 [WARMUP_DIR [N]]
The warmed state is cached next to OUT.pt, one per warm-up folder (warm-<folder>-<N>.pt)."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, '.')
sys.path.insert(0, str(Path(__file__).parent))
import maps_io  # noqa: E402

from edge.config import SSDNetConfig  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.scoring import AnomalyScorer  # noqa: E402
from tools.eval.dataset import load_category  # noqa: E402
from tools.eval.evaluate import warm_up, warmup_paths  # noqa: E402

torch.set_num_threads(1)
root, out, cats = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split(',')
warm = Path(sys.argv[4]) if len(sys.argv) > 4 else None
frames = int(sys.argv[5]) if len(sys.argv) > 5 else 200
cap = {}
orig_knn, orig_mem = AnomalyScorer.knn_map, AnomalyScorer.memory_map


def knn_map(self, *a, **k):
    r = orig_knn(self, *a, **k)
    cap['S'] = r[0, 0].float().numpy().copy()
    return r


def memory_map(self, *a, **k):
    r = orig_mem(self, *a, **k)
    cap['M'] = r[0][0, 0].float().numpy().copy()
    return r


AnomalyScorer.knn_map, AnomalyScorer.memory_map = knn_map, memory_map
det = Detector(SSDNetConfig())
res = {}
for c in cats:
    det.reset()
    if warm is not None:
        paths = warmup_paths(warm, c, frames)
        cache = Path(out).parent / f'warm-{paths[0].parent.name}-{len(paths)}.pt'  # one per warm-up folder
        if cache.exists():
            st = torch.load(cache, weights_only=True)
        else:
            st = warm_up(det, paths, lambda: None)
            torch.save(st, cache)
        det.reset()
        det.restore(st)
    rows = []
    for s in load_category(root, c):
        cap.clear()
        state = det.memory.state_tensor().numpy().copy()
        levels = (det.memory.typical, det.memory._medians(slice(2, 4))) if det.memory.levels else None
        d = det.process(s.image)
        h, w = s.image.shape[:2]
        grid = det.backend.memory_maps[0].float().numpy().copy()
        sm = det.backend.score_map
        blend = sm[0, 0, :h, :w].float().numpy().copy() if sm is not None else cap['S'][:h, :w]
        if det.border is not None and det.border.ready:
            blend = det.border.apply(blend)
        rows.append(dict(path=str(s.path), label=s.label, defect=s.defect_type, mask=s.mask,
                         amap=d.anomaly_map.astype('float16'), S=cap['S'][:h, :w].astype('float16'),
                         M=cap['M'][:h, :w].astype('float16') if 'M' in cap else None,
                         grid=grid.astype('float16'), blend=blend.astype('float16'), score=d.score,
                         calibrated=d.calibrated, state=state, levels=levels, added=d.memory_added, size=(h, w)))
        print(c, len(rows), s.defect_type, f'score {d.score:.4f}', f'added {d.memory_added}', flush=True)
    res[c] = rows
maps_io.save(res, out)
