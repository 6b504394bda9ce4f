"""Local intensity statistics (edge.local_stats): the self-similarity's extra features and the
`local_stats` baseline's map."""
import numpy as np
import pytest
import torch

from edge.local_stats import local_moments, local_stats_map, stats_features


def stained(colour: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """A noise texture with a soft brightness (or colour) shift in a disc: texture intact, mean moved."""
    rng = np.random.default_rng(0)
    x = np.repeat(rng.uniform(0.3, 0.7, (1, 96, 96)).astype(np.float32), 3, axis=0)
    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 60) ** 2 + (xx - 30) ** 2 < 12 ** 2
    if colour:
        x[0][disc] += 0.1  # redder, same texture
    else:
        x[:, disc] += 0.1
    return torch.from_numpy(x)[None], disc


@pytest.mark.parametrize("colour", [False, True])
def test_a_soft_shift_of_brightness_or_colour_stands_out(colour):
    x, disc = stained(colour)
    m = local_stats_map(x)[0, 0].numpy()
    assert m[60, 30] > 3 * np.median(m[~disc])
    f = stats_features(x, 4, 4.0)[0]  # (5, 24, 24) z-scores on 4 px cells
    assert f.shape == (5, 24, 24)
    norms = f.norm(dim=0)
    assert float(norms[15, 7]) > 2 * float(norms.median())  # the disc's centre cell vs a typical one


def test_moments_are_the_local_mean_and_std_and_gray_images_have_no_colour():
    x, _ = stained()
    m = local_moments(x, 4.0)[0]
    assert float(m[2:].abs().max()) < 1e-6  # R = G = B: no colour offsets
    assert float(m[0, 20, 70]) == pytest.approx(0.5, abs=0.02)  # uniform(0.3, 0.7) noise
    assert float(m[1, 20, 70]) == pytest.approx(0.4 / 12 ** 0.5, rel=0.15)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(local_moments(x, 4.0)[0], m)  # the variance needs fp32: autocast is off inside
