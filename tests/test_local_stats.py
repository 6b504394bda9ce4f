"""Local intensity statistics (edge.local_stats): the self-similarity's extra features and the
`local_stats` baseline's map."""
import numpy as np
import pytest
import torch

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.local_stats import local_moments, local_stats_map, stats_features
from edge.synthetic import texture


def stained(colour: bool = False, shift: float = 0.1) -> tuple[torch.Tensor, np.ndarray]:
    """A noise texture with a soft brightness (or colour) shift in a disc: texture intact, mean moved."""
    rng = np.random.default_rng(0)
    x = np.repeat(rng.uniform(0.3, 0.7, (1, 96, 96)).astype(np.float32), 3, axis=0)
    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 60) ** 2 + (xx - 30) ** 2 < 12 ** 2
    if colour:
        x[0][disc] += shift  # redder, same texture
    else:
        x[:, disc] += shift
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


def test_a_colour_shift_below_a_grey_level_is_noise_not_a_stain():
    """A grey product seen by a colour camera: the colour offsets hardly vary, so z-scored by their own spread a
    codec's or sensor's sub-level colour ghost would be a defect. Below one grey level the spread is floored."""
    x, disc = stained(colour=True, shift=1 / 255)
    m = local_stats_map(x)[0, 0].numpy()
    assert m[60, 30] < 5 * np.median(m[~disc])  # was 3000x (0.1 of colour: 45x)
    f = stats_features(x, 4, 4.0)[0]
    assert float(f[2:, 15, 7].abs().max()) < 2  # the disc's centre cell: within 2 std on every colour offset (was 5.7)


def test_a_frame_with_a_sub_level_tint_scores_as_the_clean_frame_and_a_visible_stain_still_stands_out():
    img = texture("brick", 128, np.random.default_rng(0))  # R = G = B
    yy, xx = np.mgrid[:128, :128]
    disc = (yy - 64) ** 2 + (xx - 64) ** 2 < 10 ** 2
    cfg = SSDNetConfig.model_validate({"memory": {"size_mb": 0}})
    maps = {}
    for level in (0, 1, 30):  # grey levels added to the red channel inside the disc
        tinted = img.astype(int)
        tinted[..., 0][disc] += level
        maps[level] = Detector(cfg, "cpu").process(np.clip(tinted, 0, 255).astype(np.uint8)).anomaly_map
    clean = maps[0][disc].mean()
    assert maps[1][disc].mean() < 1.1 * clean  # was 4x: the invisible tint scored as a stain
    assert maps[30][disc].mean() > 3 * clean and maps[30][disc].mean() > np.quantile(maps[30][~disc], 0.99)


def test_moments_are_the_local_mean_and_std_and_gray_images_have_no_colour():
    x, _ = stained()
    m = local_moments(x, 4.0)[0]
    assert float(m[2:].abs().max()) < 1e-6  # R = G = B: no colour offsets
    assert float(m[0, 20, 70]) == pytest.approx(0.5, abs=0.02)  # uniform(0.3, 0.7) noise
    assert float(m[1, 20, 70]) == pytest.approx(0.4 / 12 ** 0.5, rel=0.15)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(local_moments(x, 4.0)[0], m)  # the variance needs fp32: autocast is off inside
