"""What the history option costs a large defect that only the memory finds (docs/ablations.md section 34): the brick
stream of tests/test_memory.py's first test (8 normal frames, then one with a uniform patch over a quarter of it,
seen three times), pixel AUROC of each sighting without and with `memory: {history_frames: 8}`.
Usage (repository root): python docs/ablation_runs/history/large_patch.py (output: large_patch.log)"""
import sys
from pathlib import Path

from sklearn.metrics import roc_auc_score

from edge.config import SSDNetConfig, parse_config
from edge.detector import Detector

sys.path.insert(0, str(Path(__file__).parents[3] / "tests"))
from test_memory import uniform_patch_stream  # noqa: E402

normal, bad, mask = uniform_patch_stream()
for frames in (0, 8):
    cfg = {"score": {"pixel_weight": 0, "perceptual_weight": 0}, "calibration": {"min_frames": 4},
           "memory": {"min_frames": 4, "fill_frames": 4, "history_frames": frames}}
    det = Detector(parse_config(SSDNetConfig, cfg), "cpu")
    for frame in normal:
        det.process(frame)
    aurocs = [roc_auc_score(mask.ravel(), det.process(bad).anomaly_map.ravel()) for _ in range(3)]
    print(f"history_frames {frames}: " + " / ".join(f"{a:.3f}" for a in aurocs))
