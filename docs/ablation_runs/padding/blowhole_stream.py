"""Stream real-dev's blowhole camera as `ssdnet eval --mode stream --warmup ../shared/datasets/real-stream-dev
--warmup-frames 200` does (default config, seed 0) and save each test frame's map, mask, label and score
(docs/ablations.md section 30). Usage (repository root), once per code version (PYTHONPATH at its checkout):
python docs/ablation_runs/padding/blowhole_stream.py mtd_blowhole OUT.npz; then blowhole_frames.py."""
import sys, numpy as np, torch
from pathlib import Path
from edge.config import SSDNetConfig
from edge.detector import Detector
from tools.eval.dataset import load_category
from tools.eval.evaluate import warm_up, warmup_paths
torch.set_num_threads(1)
cat, out = sys.argv[1], sys.argv[2]
det = Detector(SSDNetConfig())
st = warm_up(det, warmup_paths(Path('../shared/datasets/real-stream-dev'), cat, 200), lambda: None)
det.reset(); det.restore(st)
res = {}
for i, s in enumerate(load_category(Path('../shared/datasets/real-dev'), cat)):
    d = det.process(s.image)
    res[f'amap{i}'] = d.anomaly_map; res[f'mask{i}'] = s.mask if s.mask is not None else np.zeros(s.image.shape[:2], bool)
    res[f'label{i}'] = s.label; res[f'score{i}'] = d.score
np.savez_compressed(out, **res)
print('done', out)
