"""The border profile (edge.border): a camera's maps run hot near the frame's border; its normal frames teach
it by how much, and the correction puts the border on the interior's footing without hiding a border defect."""
import copy

import numpy as np
import pytest
import torch

from edge.border import BANDS, SCORE_INSET, BorderProfile, band_index, band_stats
from edge.config import BorderConfig, SSDNetConfig
from edge.detector import Detector, first_frame_score, top_mean
from edge.fitter import image_to_tensor
from edge.memory import FeatureMemory
from edge.scorers import build_scorer
from edge.synthetic import sample, texture


def hot_border_map(rng: np.random.Generator, h: int = 96, w: int = 128) -> np.ndarray:
    """Noise around 1.0 whose level and spread grow towards the border (within 16 px), as padding makes them."""
    near = np.clip(1 - band_index(h, w).astype(float) / 6, 0, 1)  # 1 on the border, 0 from band 6 (16 px) in
    return (1.0 + 0.3 * near + (0.1 + 0.2 * near) * rng.standard_normal((h, w))).astype(np.float32)


def test_band_index_counts_pixels_from_the_nearest_border():
    index = band_index(60, 80)
    assert index[0, 30] == index[59, 30] == index[20, 0] == index[20, 79] == 0  # on each border
    assert index[1, 30] == 1 and index[3, 30] == 2 and index[20, 30] == 6  # 20 px in: band 16-24
    assert index[30, 40] == len(BANDS) - 1  # 29 px from every border: the interior
    assert np.isnan(band_stats(np.zeros((30, 30), np.float32))).all()  # no pixel 24 px from every border
    assert np.isnan(band_stats(np.zeros((90, 90), np.float32))).all()  # an interior of 18 %: no reference
    small = np.random.default_rng(0).random((90, 90)).astype(np.float32)
    profile = BorderProfile(BorderConfig(min_frames=1))
    profile.observe(small)
    assert not profile.ready and np.array_equal(profile.apply(small), small)  # nothing learnt, nothing corrected


def test_normal_frames_put_the_border_on_the_interior_s_footing_and_a_border_defect_still_stands_out():
    rng = np.random.default_rng(0)
    profile = BorderProfile(BorderConfig(min_frames=5))
    first = hot_border_map(rng)
    assert profile.apply(first) is first  # not ready: unchanged
    for _ in range(5):
        profile.observe(hot_border_map(rng))
    assert profile.ready
    normal = hot_border_map(rng)
    before, after = band_stats(normal), band_stats(profile.apply(normal))
    assert before[0, 1] > before[-1, 1] + 0.5  # the border's 99th percentile, well above the interior's
    assert after[:, 1] == pytest.approx(after[-1, 1], abs=0.08)  # now every band's is the interior's
    assert after[:, 0] == pytest.approx(after[-1, 0], abs=0.05)
    assert np.argmax(normal) in np.flatnonzero(band_index(*normal.shape) < 4)  # the raw maximum lies on the border
    defect = normal.copy()
    defect[40:46, :4] += 1.0  # a defect on the left border: above what is normal there
    corrected = profile.apply(defect)
    assert corrected[40:46, :4].mean() > np.percentile(profile.apply(normal), 99.9)
    restored = BorderProfile(profile.cfg)
    restored.load_state_dict(profile.state_dict())
    assert np.array_equal(restored.apply(normal), profile.apply(normal))


def test_the_detector_learns_the_border_from_normal_frames_and_scores_the_corrected_map():
    cfg = SSDNetConfig.model_validate({"border": {"min_frames": 3}, "memory": {"size_mb": 0}})
    det = Detector(cfg)
    rng = np.random.default_rng(3)
    frames = [sample("grass", 128, rng, 0.0)[0] for _ in range(4)]
    for frame in frames[:3]:
        det.process(frame)
    assert det.border.ready  # three normal frames (calibrating ones count)
    learnt = BorderProfile(cfg.border)
    learnt.load_state_dict(det.border.state_dict())
    d = det.process(frames[3])
    assert d.score == pytest.approx(top_mean(d.anomaly_map, cfg.score.image_score_quantile), rel=1e-5)
    off = Detector(SSDNetConfig.model_validate({"border": {"enabled": False}, "memory": {"size_mb": 0}}))
    raw = [off.process(frame) for frame in frames[:4]][-1]
    assert not np.allclose(raw.anomaly_map, d.anomaly_map)  # the same frame, the border corrected:
    assert np.allclose(d.anomaly_map, learnt.apply(raw.anomaly_map), atol=1e-6)  # by the profile of the frames before
    det.reset()
    assert not det.border.frames


@pytest.mark.parametrize("fitted", [False, True], ids=["self-similarity", "beside-reconstruction-maps"])
def test_with_a_memory_the_score_reads_the_corrected_blend_and_not_the_floor(fitted: bool):
    """The image score is the top of the border-corrected blend of S and M (the scorer's `score_map`); the floor
    under the reported map stays out of it (docs/ablations.md section 21). So it is with the fitted reconstruction
    maps weighted into the map, too (section 30: their image score went uncorrected)."""
    recon = {"pixel_weight": 0.1, "perceptual_weight": 0.1} if fitted else {}
    cfg = SSDNetConfig.model_validate({"border": {"min_frames": 3}, "memory": {
        "min_frames": 2, "delay_frames": 0, "own_floor": 1.0, "admit_z": 1e9, "admit_cell_ratio": 1e9,
        "weight_by_fill": False},  # the full weight at once: at 4-5 of 50 frames the ramp leaves M under 0.5 % of it
        "score": {"knn_spacing_weight": 0.0, **recon},  # the map's S is then the blend's (section 28's term apart)
        "fit": {"steps": 2}})
    assert cfg.score.uses_unet == fitted
    det = Detector(cfg)
    rng = np.random.default_rng(4)
    for _ in range(4):
        det.process(sample("grass", 128, rng, 0.0)[0])
    assert det.border.ready and det.memory.floor[0] == 1.0
    profile = copy.deepcopy(det.border)  # the correction this frame gets (it learns from the frame afterwards)
    d = det.process(sample("grass", 128, rng, 0.0)[0])
    blend = profile.apply(det.backend.score_map[0, 0].numpy())
    if not fitted:  # the reconstruction maps move the reported map off the blend's units
        assert (d.anomaly_map >= blend - 1e-5).all() and (d.anomaly_map > blend + 1e-3).any()  # the floor binds
    assert d.score == pytest.approx(top_mean(blend, cfg.score.image_score_quantile), rel=1e-5)
    assert d.score < top_mean(d.anomaly_map, cfg.score.image_score_quantile)


def test_until_the_profile_is_ready_the_image_score_reads_the_map_from_8_px_inside_the_border():
    rng = np.random.default_rng(5)
    profile, amap = BorderProfile(BorderConfig(min_frames=2)), hot_border_map(rng)
    inside = amap[SCORE_INSET:-SCORE_INSET, SCORE_INSET:-SCORE_INSET]
    assert np.array_equal(profile.scored(amap), inside) and profile.inset(*amap.shape) == SCORE_INSET
    assert top_mean(profile.scored(amap), 0.999) < top_mean(amap, 0.999) - 0.3  # the hot border is left out
    small = hot_border_map(rng, 64, 64)  # too small to ever have a profile (no interior 24 px in): scored whole
    assert profile.scored(small).shape == small.shape and profile.inset(64, 64) == profile.inset(64, 1000) == 0
    assert profile.inset(96, 96) == SCORE_INSET
    for _ in range(2):
        profile.observe(hot_border_map(rng))
    assert profile.ready and profile.scored(amap).shape == amap.shape  # corrected, the border counts again


@pytest.mark.parametrize("settings, height, read", [
    ({}, 120, {"map": "score_map", "inset": SCORE_INSET}),  # the default: the blend, 8 px in
    ({}, 64, {"map": "score_map", "inset": 0}),  # a frame too small to ever have a profile: whole
    ({"memory": {"size_mb": 0}}, 120, {"map": "anomaly_map", "inset": SCORE_INSET}),  # the score is the map's top
    ({"border": {"enabled": False}}, 120, {"map": None, "inset": 0}),  # the scorer's own score, its padding too
])
def test_first_frame_score_reads_the_scorer_s_outputs_as_the_detector_does(settings, height, read):
    """What `ssdnet export` writes into the sidecar for a program of its own (docs/export.md): the scorer's outputs on
    a frame with an empty memory, read that way, are the image score of a camera's first frame."""
    cfg = SSDNetConfig.model_validate({"model": {"base_channels": 4}, "fit": {"scales": [1, 2]},
                                       "score": {"amp": False}, **settings})
    frame, width = texture("brick", 128, np.random.default_rng(3))[:height], 128
    assert first_frame_score(cfg, height, width) == {**read, "quantile": cfg.score.image_score_quantile}
    scorer = build_scorer(cfg, device="cpu", backend="torch")
    if cfg.uses_memory:
        scorer.use_memory(FeatureMemory(cfg.memory, history_dim=scorer.module.knn_dim))
    amap, score = scorer.score(image_to_tensor(frame, torch.device("cpu"), 16), (height, width))
    if read["map"] is None:
        want = float(score[0])
    else:
        k = read["inset"]
        out = (scorer.score_map if read["map"] == "score_map" else amap)[0, 0, :height, :width].numpy()
        want = top_mean(out[k:height - k, k:width - k], cfg.score.image_score_quantile)
    assert Detector(cfg, "cpu").process(frame).score == pytest.approx(want, rel=1e-5)


def brick_crops(count: int, seed: int = 0) -> list[np.ndarray]:
    """Normal 320 x 240 crops of scikit-image's brick at random places: a product moving under a camera."""
    from skimage import data
    brick, rng = data.brick(), np.random.default_rng(seed)
    crops = []
    for _ in range(count):
        x, y = rng.integers(0, brick.shape[1] - 320), rng.integers(0, brick.shape[0] - 240)
        crops.append(np.repeat(brick[y:y + 240, x:x + 320, None], 3, axis=2))
    return crops


def test_a_camera_s_first_frames_raise_no_event_from_the_border_s_heat():
    """Before its border profile is ready (16 normal frames) a camera's calibration took its own statistics from the
    10th frame on scores that lay on the hot border; 2 of these normal frames were events at 3 (docs/ablations.md
    section 66). The map is still shown as it is."""
    det = Detector(SSDNetConfig())
    calibrated = []
    for frame in brick_crops(18):
        d = det.process(frame)
        calibrated.append(d.calibrated)
        if not det.border.ready:  # the top of the scorer's own map, cropped to the frame, 8 px in
            own = det.backend.score_map[0, 0, 8:240 - 8, 8:320 - 8].float().numpy()
            assert d.score == pytest.approx(top_mean(own, 0.999), rel=1e-4)
    assert max(calibrated[10:]) < 3.0, calibrated
