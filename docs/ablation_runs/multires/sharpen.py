"""Section 40: the self-similarity sharpened by a pixel-scale residual, offline on section 38's saved maps
(features.py's pickles; the frame as it is on 8 px cells): where the map stands more than 1 robust std above the
frame's median, it is raised by up to a x the frame's median-filter residual (|image - median K|, channels summed,
blurred at sigma 1, in robust units, clipped to 10). Also the residual alone.
Usage (repository root): python docs/ablation_runs/multires/sharpen.py TEX_PICKLE REAL_PICKLE   (output: sharpen.log)"""
import pickle
import sys

import cv2
import numpy as np

sys.path[:0] = ['.', 'docs/ablation_runs/cross_frame']
from common import report  # noqa: E402


def robust(m):
    med = np.median(m)
    return (m - med) / (1.4826 * np.median(np.abs(m - med)) + 1e-8)


def residual(path, k):
    im = cv2.imread(path)
    r = np.abs(im.astype(np.float32) - cv2.medianBlur(im, k).astype(np.float32)).sum(-1)
    return cv2.GaussianBlur(r, (0, 0), 1.0)


for path in sys.argv[1:]:
    R, cats, maps = pickle.load(open(path, 'rb'))
    B = maps['1:avg:4:0.75:8']
    report('the default', B, R, cats)
    for k in (5, 9):
        res = {key: robust(residual(key, k)[:B[key].shape[0], :B[key].shape[1]]) for key in B}
        for a in (0.05, 0.1, 0.2):
            report(f'median {k}, sharpened at a = {a}', {key: B[key] * (1 + a * np.clip(robust(B[key]) - 1, 0, None)
                                                                      * np.clip(res[key], 0, 10) / 10) for key in B},
                   R, cats)
        report(f'the residual alone, median {k}', res, R, cats)
