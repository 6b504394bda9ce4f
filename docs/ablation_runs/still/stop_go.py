"""docs/ablations.md section 76: a line that moves, stops and moves again, through the default detector with and
without the still-frame rule: events (calibrated score >= 3, as the node's default threshold) per phase, and how often
the camera started afresh (`normal_moved`). Moving frames are other products (brick crops, or real-stream-dev's
tiles in order); the stopped line is the next product filmed again under `sigma` grey levels of sensor noise.
Run from the repository root: python docs/ablation_runs/still/stop_go.py [../shared/datasets [brick|tiles]]"""
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, "tests")
from edge.config import SSDNetConfig  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.images import read_image  # noqa: E402
from test_border import brick_crops  # noqa: E402

root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets")
MOVE, STOP = 40, 80
lines = sys.argv[2:] or ["brick", "tiles"]
products = {}
if "brick" in lines:
    products["brick 128 px"] = [c[:128, :128] for c in brick_crops(2 * MOVE + 1, seed=3)]
if "tiles" in lines:
    products["real-stream-dev"] = [cv2.cvtColor(read_image(p), cv2.COLOR_BGR2RGB)
                                   for p in sorted((root / "real-stream-dev").glob("*.png"))[: 2 * MOVE + 1]]
print("| line | sensor noise | still_change | events moving / stopped / moving again | started afresh | still frames |")
print("|---|---|---|---|---|---|")
for name, frames in products.items():
    for sigma in (1, 4):
        for limit in (None, 0.3):
            rng = np.random.default_rng(0)
            scene = frames[MOVE].astype(np.float32)
            stopped = [np.clip(scene + rng.normal(0, sigma, scene.shape), 0, 255).round().astype(np.uint8)
                       for _ in range(STOP)]
            stream = [("moving", f) for f in frames[:MOVE]] + [("stopped", f) for f in stopped]
            stream += [("again", f) for f in frames[MOVE + 1:]]
            det = Detector(SSDNetConfig(still_change=limit), "cpu")
            events, moved, still = {"moving": 0, "stopped": 0, "again": 0}, 0, 0
            for phase, frame in stream:
                d = det.process(frame)
                events[phase] += d.calibrated >= 3.0
                moved += d.normal_moved
                still += d.still
            print(f"| {name} | {sigma} | {limit} | {events['moving']} / {events['stopped']} / {events['again']} | "
                  f"{moved} | {still} |", flush=True)
