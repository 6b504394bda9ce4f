"""docs/ablations.md section 77: a camera that starts on a stopped line. Each product (brick crops at three sizes) is
filmed 6 times under 1 grey level of sensor noise, then once more with a dark spot drawn on it (14 x 14 px, 30 grey
levels). Counts: events (calibrated score >= 3) on the first frame, on the 5 frames after it (still frames), and on
the spotted frame. Run from the repository root: python docs/ablation_runs/stopped_product/start_stopped.py"""
import sys

import numpy as np

sys.path.insert(0, "tests")
from edge.config import SSDNetConfig  # noqa: E402
from edge.detector import Detector  # noqa: E402
from test_border import brick_crops  # noqa: E402
from test_still import noisy  # noqa: E402

rng = np.random.default_rng(0)
first = still = spotted = products = still_frames = 0
hot = []
for seed in (0, 1, 2):
    for k, crop in enumerate(brick_crops(8, seed=seed)):
        for side in (96, 128, None):
            scene = crop if side is None else crop[:side, :side]
            det = Detector(SSDNetConfig(), "cpu")
            ds = [det.process(noisy(scene, 1, rng)) for _ in range(6)]
            spot = noisy(scene, 1, rng)
            cy, cx = scene.shape[0] // 2, scene.shape[1] // 2
            spot[cy - 7:cy + 7, cx - 7:cx + 7] = 30
            d = det.process(spot)
            products += 1
            still_frames += sum(x.still for x in ds[1:])
            first += ds[0].calibrated >= 3
            still += sum(x.calibrated >= 3 for x in ds[1:])
            spotted += d.calibrated >= 3
            if ds[0].calibrated >= 3 or max(x.calibrated for x in ds[1:]) >= 3:
                hot.append(f"seed {seed} crop {k} {scene.shape[1]}x{scene.shape[0]}: "
                           f"{[round(x.calibrated, 2) for x in ds]} spot {d.calibrated:.2f}")
print(f"{products} products: events on the first frame {first}, on the {still_frames} still frames after it {still} "
      f"(of {5 * products} frames), on the spotted frame {spotted}")
print("\n".join(hot))
