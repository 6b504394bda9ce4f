import numpy as np
import pytest

from edge import synthetic


@pytest.mark.parametrize("name", synthetic.TEXTURES)
@pytest.mark.parametrize("size", [64, 256, 600])
def test_texture_shape_and_dtype(name, size):
    image = synthetic.texture(name, size, np.random.default_rng(0))
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert image.std() > 5  # a real texture, not a flat pad


@pytest.mark.parametrize("size", [512, 600])
def test_crops_as_large_as_the_source_differ(size):
    """A 512 px crop of the 512 px source was the whole source every time: a synthetic camera showed one frame over
    and over, which a camera takes for a stopped line (edge.frames.change) and learns nothing from."""
    from edge.frames import change, grey

    rng = np.random.default_rng(0)
    a, b = (grey(synthetic.texture("brick", size, rng)) for _ in range(2))
    assert change(b, a) > 0.3


@pytest.mark.parametrize("name", synthetic.TEXTURES)
@pytest.mark.parametrize("kind", synthetic.DEFECTS)
def test_defect_mask_and_untouched_background(name, kind):
    for seed in range(3):
        rng = np.random.default_rng(seed)
        clean = synthetic.texture(name, 256, rng)
        image, mask = synthetic.draw_defect(clean, rng, kind)
        assert image.shape == clean.shape and image.dtype == np.uint8
        assert mask.shape == (256, 256) and mask.dtype == bool
        assert 0.003 <= mask.mean() <= 0.05
        np.testing.assert_array_equal(image[~mask], clean[~mask])
        change = np.abs(image[mask].astype(int) - clean[mask].astype(int)).mean()
        assert change >= 40


def test_sample_is_deterministic_under_a_seed():
    a = synthetic.sample("grass", 128, np.random.default_rng(7))
    b = synthetic.sample("grass", 128, np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = synthetic.sample("grass", 128, np.random.default_rng(8))
    assert not np.array_equal(a[0], c[0])


def test_sample_without_defect_has_empty_mask():
    image, mask = synthetic.sample("brick", 64, np.random.default_rng(0), defect_prob=0.0)
    assert image.shape == (64, 64, 3) and not mask.any()


def test_bad_arguments_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown texture"):
        synthetic.texture("marble", 64, rng)
    with pytest.raises(ValueError, match="unknown defect"):
        synthetic.draw_defect(synthetic.texture("brick", 64, rng), rng, "dent")
    with pytest.raises(ValueError, match="HxWx3"):
        synthetic.draw_defect(np.zeros((64, 64), dtype=np.uint8), rng)
