"""docs/ablations.md section 77: a calibrated camera (14 moving 128 px brick crops) whose line stops on one of 10
other products; 2 still frames of it under 1 grey level of noise, then a 14 x 14 px spot (grey 60) appears on it.
Prints each product's calibrated score, its still frames' and the spot's (an event at 3).
Run from the repository root: python docs/ablation_runs/stopped_product/seasoned.py"""
import copy
import sys

import numpy as np

sys.path.insert(0, "tests")
from edge.config import SSDNetConfig  # noqa: E402
from edge.detector import Detector  # noqa: E402
from test_border import brick_crops  # noqa: E402
from test_still import noisy  # noqa: E402

rng = np.random.default_rng(0)
crops = [c[:128, :128] for c in brick_crops(24, seed=2)]
seasoned = Detector(SSDNetConfig(), "cpu")
for crop in crops[:14]:
    seasoned.process(crop)
state, flagged = copy.deepcopy(seasoned.state_dict()), 0
for k in range(14, 24):
    det = Detector(SSDNetConfig(), "cpu")
    det.restore(copy.deepcopy(state))
    product = det.process(crops[k])
    still = [det.process(noisy(crops[k], 1, rng)) for _ in range(2)]
    spot = noisy(crops[k], 1, rng)
    spot[57:71, 57:71] = 60
    d = det.process(spot)
    flagged += d.calibrated >= 3
    print(f"product {k}: z {product.calibrated:.2f}, still {[round(x.calibrated, 2) for x in still]}, "
          f"spot {d.calibrated:.2f} (still: {d.still})")
print(f"spots flagged: {flagged} of 10")
