"""The anomaly map's units (score.map_units), and what reads the map whatever its units: regions,
overlays, and the detector that skips fitting when no map uses the U-Net."""
import numpy as np
import pytest
import torch

from edge.config import ScoreConfig, SSDNetConfig
from edge.detector import Detector
from edge.scoring import AnomalyScorer
from edge.synthetic import draw_defect, texture
from edge.unet import UNet
from edge.vgg import VGG19Features
from pipeline.regions import find_regions


def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    clean = texture("brick", 96, rng)
    return [clean, draw_defect(clean, rng, "hole")[0]]


def maps(units: str, vgg: VGG19Features, **score) -> list[torch.Tensor]:
    cfg = ScoreConfig(map_units=units, knn_upscale=1, pixel_weight=0.5, **score)
    torch.manual_seed(0)
    scorer = AnomalyScorer(UNet(4).eval(), cfg, (2,), vgg).eval()
    with torch.inference_mode():
        return [scorer(torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255)[0][0, 0] for f in frames()]


def test_knn_units_are_the_same_map_per_frame_but_keep_frames_comparable():
    vgg = VGG19Features(layers=("relu2_2", "relu3_1"))
    std, knn = maps("std", vgg, vgg_layers=("relu2_2", "relu3_1")), maps("knn", vgg, vgg_layers=("relu2_2", "relu3_1"))
    for s, k in zip(std, knn, strict=True):
        assert np.corrcoef(s.flatten(), k.flatten())[0, 1] > 0.9999  # an affine map of the same picture
    assert abs(float(std[0].mean()) - float(std[1].mean())) < 1e-4  # standardised: every frame centred on 0
    assert float(knn[1].max()) > float(knn[0].max())  # in feature distance, the defect frame's peak is higher
    knn_only = AnomalyScorer(UNet(4).eval(), ScoreConfig(knn_upscale=1, pixel_weight=0.0, perceptual_weight=0.0,
                                                         vgg_layers=("relu2_2", "relu3_1")), (2,), vgg).eval()
    x = torch.from_numpy(frames()[1]).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():  # self-similarity only: the map is the raw self-similarity map, less its spacing
        d = knn_only.knn_map(x)[0]
        assert torch.allclose(knn_only(x)[0], d[:, :1] - knn_only.cfg.knn_spacing_weight * d[:, 1:], atol=1e-4)


def test_regions_do_not_depend_on_the_maps_units():
    rng = np.random.default_rng(0)
    amap = rng.normal(size=(64, 64)).astype(np.float32)
    amap[10:20, 30:45] += 6
    a, b = find_regions(amap, 3.0, min_area=4), find_regions(0.5 + 0.05 * amap, 3.0, min_area=4)
    assert [r.bbox for r in a] == [r.bbox for r in b] and a[0].bbox == (30, 10, 15, 10)
    assert b[0].peak == pytest.approx(0.5 + 0.05 * a[0].peak, rel=1e-5)  # peaks stay in the map's units


def test_the_detector_fits_nothing_when_no_map_uses_the_unet():
    cfg = SSDNetConfig.model_validate({"model": {"base_channels": 4}, "fit": {"scales": [2], "steps": 2},
                                       "score": {"pixel_weight": 0.0, "perceptual_weight": 0.0, "knn_upscale": 1}})
    det = Detector(cfg, "cpu")
    before = det.state_dict()["weights"]
    for f in frames():
        d = det.process(f)
        assert d.fit_steps == 0 and np.isfinite(d.anomaly_map).all()
    assert all(torch.equal(before[k], v) for k, v in det.state_dict()["weights"].items())
    fitting = Detector(cfg.model_copy(update={"score": cfg.score.model_copy(update={"pixel_weight": 0.1})}), "cpu")
    assert fitting.process(frames()[0]).fit_steps == 2  # a U-Net map: the cold fit runs
