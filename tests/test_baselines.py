import numpy as np
import pytest

from edge import synthetic
from edge.config import SSDNetConfig
from tools.eval import baselines, metrics
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


def test_vgg_knn_scores_a_frame_over_max_pixels_scaled_down(defected, monkeypatch):
    """VGG19 ran on the whole frame whatever its size (a 4K frame: 71 s and 8 GB on a CPU), while the detector scores
    a frame over ssdnet.max_pixels scaled down; the map comes back at the frame's size and still finds the defect."""
    image, mask = defected
    vgg, seen = baselines._vgg(), []
    monkeypatch.setattr(baselines, "_vgg", lambda: lambda x: seen.append(tuple(x.shape[-2:])) or vgg(x))
    out = baselines.vgg_knn(image, max_pixels=128 * 128)
    assert seen == [(128, 128)] and out.shape == image.shape[:2] and np.isfinite(out).all()
    assert metrics.pixel_auroc([out], [mask]) > 0.7
    assert baselines.MAX_PIXELS == SSDNetConfig().max_pixels  # the default: the detector's
