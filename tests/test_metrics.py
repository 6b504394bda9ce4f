import math

import numpy as np
import pytest

from tools.eval import metrics


def _masks(n: int = 4, size: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    masks = []
    for _ in range(n):
        m = np.zeros((size, size), dtype=np.uint8)
        y, x = rng.integers(0, size - 8, 2)
        m[y : y + 6, x : x + 4] = 255
        m[2, 2] = 255  # a second, one-pixel region
        masks.append(m)
    return masks


def test_perfect_map_scores_one_everywhere():
    masks = _masks()
    maps = [(m > 0).astype(np.float32) + 0.01 * np.random.default_rng(i).random(m.shape) for i, m in enumerate(masks)]
    out = metrics.summarize(maps, masks, scores=[0.1, 0.9, 0.2, 0.8], labels=[0, 1, 0, 1])
    assert out.keys() == {"pixel_auroc", "pixel_auprc", "aupro", "pixel_f1_max", "image_auroc"}
    for name, value in out.items():
        assert value == pytest.approx(1.0), name


def test_inverted_map_has_zero_auroc_and_aupro():
    masks = _masks()
    maps = [-(m > 0).astype(np.float32) for m in masks]
    assert metrics.pixel_auroc(maps, masks) == 0.0
    assert metrics.aupro(maps, masks) == 0.0
    assert metrics.image_auroc([0.9, 0.1], [0, 1]) == 0.0


def test_random_map_is_near_chance():
    rng = np.random.default_rng(1)
    masks = [rng.random((64, 64)) < 0.2 for _ in range(4)]
    maps = [rng.random((64, 64)) for _ in range(4)]
    assert metrics.pixel_auroc(maps, masks) == pytest.approx(0.5, abs=0.02)
    assert metrics.pixel_auprc(maps, masks) == pytest.approx(0.2, abs=0.02)
    # random PRO(FPR) ~ FPR, so the normalised area up to 0.3 is ~0.15
    assert metrics.aupro(maps, masks) == pytest.approx(0.15, abs=0.02)


def test_hand_computed_case():
    # regions: A = {0} (1 px), B = {2, 3} (2 px); 5 normal pixels
    mask = np.array([[1, 0, 1, 1, 0, 0, 0, 0]], dtype=bool)
    score = np.array([[0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.4, 0.5]])
    # PRO reaches 0.5 + 0.25 before the first false positive, and 1.0 only at FPR 0.8
    assert metrics.aupro([score], [mask], max_fpr=0.3) == pytest.approx(0.75)
    assert metrics.aupro([score], [mask], max_fpr=1.0) == pytest.approx(0.75 * 0.8 + 1.0 * 0.2)
    # the top two pixels: precision 1, recall 2/3
    assert metrics.pixel_f1_max([score], [mask]) == pytest.approx(0.8)
    assert metrics.pixel_auroc([score], [mask]) == pytest.approx(11 / 15)


def test_aupro_interpolates_at_max_fpr():
    # a constant map jumps straight from (0, 0) to (1, 1): area up to 0.3 is 0.3^2 / 2
    mask = np.zeros((8, 8), dtype=bool)
    mask[:2] = True
    assert metrics.aupro([np.zeros((8, 8))], [mask], max_fpr=0.3) == pytest.approx(0.15)


def test_undefined_cases_are_nan():
    empty = [np.zeros((8, 8), dtype=bool)]
    full = [np.ones((8, 8), dtype=bool)]
    m = [np.random.default_rng(0).random((8, 8))]
    for fn in (metrics.pixel_auroc, metrics.pixel_auprc, metrics.pixel_f1_max, metrics.aupro):
        assert math.isnan(fn(m, empty)), fn.__name__
    assert math.isnan(metrics.pixel_auroc(m, full))
    assert math.isnan(metrics.aupro(m, full))
    assert math.isnan(metrics.image_auroc([0.1, 0.2], [1, 1]))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        metrics.pixel_auroc([np.zeros((4, 4))], [np.zeros((4, 5), dtype=bool)])
    with pytest.raises(ValueError, match="masks"):
        metrics.pixel_auroc([np.zeros((4, 4))], [])
