import numpy as np
import pytest

from edge import synthetic
from tools.eval import metrics
from tools.eval.baselines import BASELINES


@pytest.fixture(scope="module", params=[("brick", "hole"), ("gravel", "stain")], ids=lambda p: "-".join(p))
def defected(request) -> tuple[np.ndarray, np.ndarray]:
    """A 256x256 texture crop with one strong defect (mean change >= 40 grey levels)."""
    name, kind = request.param
    rng = np.random.default_rng(0)
    return synthetic.draw_defect(synthetic.texture(name, 256, rng), rng, kind)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_maps_are_finite_float32(name, defected):
    image, _ = defected
    out = BASELINES[name](image)
    assert out.shape == image.shape[:2] and out.dtype == np.float32
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_flat_and_non_square_images(name):
    flat = np.full((64, 96, 3), 128, dtype=np.uint8)
    out = BASELINES[name](flat)
    assert out.shape == (64, 96) and np.isfinite(out).all()


@pytest.mark.parametrize("name", ["local_stats", "vgg_knn"])
def test_defect_ranks_above_background(name, defected):
    image, mask = defected
    assert metrics.pixel_auroc([BASELINES[name](image)], [mask]) > 0.7


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="HxWx3"):
        BASELINES["local_stats"](np.zeros((8, 8), dtype=np.uint8))
