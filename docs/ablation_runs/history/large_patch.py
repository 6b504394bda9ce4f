"""What the history option does to the fixtures of tests/test_memory.py (docs/ablations.md sections 34, 35): the brick
stream of its first test (8 normal frames, then one with a uniform patch over a quarter of it, seen three times; a
large defect that only the memory finds) and the three scratched brick streams of its history test (5 normal frames,
then a scratch). Pixel AUROC of each sighting without the history, and with `memory: {history_frames: 8}` (the
scratches: 4) at each `history_margin` given.
Usage (repository root): python docs/ablation_runs/history/large_patch.py [MARGIN ...] (default 0; output:
large_patch_margins.log with 0 0.25 0.5 1, section 35; large_patch.log is section 34's, the patch alone, printed on
another machine, whose numbers this one does not reprint: section 35)"""
import sys
from pathlib import Path

from sklearn.metrics import roc_auc_score

from edge.config import SSDNetConfig, parse_config
from edge.detector import Detector

sys.path.insert(0, str(Path(__file__).parents[3] / "tests"))
from test_memory import FIT_FREE, _scratched_streams, uniform_patch_stream  # noqa: E402


def detector(memory: dict) -> Detector:
    return Detector(parse_config(SSDNetConfig, {**FIT_FREE, "memory": {"min_frames": 4, **memory}}), "cpu")


def sightings(history: int, margin: float = 0.0) -> str:
    """The patch's three sightings and each scratched stream's defect, with `history` frames (the scratches: at most
    4) and `margin`."""
    det = detector({"fill_frames": 4, "history_frames": history, "history_margin": margin})
    for frame in normal:
        det.process(frame)
    patch = [roc_auc_score(mask.ravel(), det.process(bad).anomaly_map.ravel()) for _ in range(3)]
    scratches = []
    for frames, scratched, where in streams:
        det = detector({"history_frames": min(history, 4), "history_cells": 256, "history_margin": margin})
        for frame in frames:
            det.process(frame)
        scratches.append(roc_auc_score(where.ravel(), det.process(scratched).anomaly_map.ravel()))
    return " / ".join(f"{a:.3f}" for a in patch) + " | scratches " + " / ".join(f"{a:.3f}" for a in scratches)


normal, bad, mask = uniform_patch_stream()
streams = _scratched_streams()
print("history_frames 0: patch " + sightings(0), flush=True)
for margin in [float(m) for m in sys.argv[1:]] or [0.0]:
    print(f"history_frames 8, history_margin {margin:g}: patch " + sightings(8, margin), flush=True)
