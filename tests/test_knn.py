"""VGG-feature self-similarity (edge.knn): the map the scorer adds with score.knn_weight."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from edge.config import ScoreConfig, SSDNetConfig
from edge.detector import Detector
from edge.fitter import Fitter
from edge.knn import cell_size, grid_features, knn_distance, knn_distance_and_spacing
from edge.scoring import AnomalyScorer
from edge.synthetic import draw_defect, texture
from edge.unet import UNet
from edge.vgg import VGG19Features
from tools.eval.baselines import vgg_knn


def periodic_features(gh: int = 12, gw: int = 12, c: int = 8, period: int = 3) -> torch.Tensor:
    """Unit-norm features that repeat every `period` cells: every location has exact twins far away."""
    torch.manual_seed(0)
    tile = F.normalize(torch.randn(1, c, period, period), dim=1)
    return tile.repeat(1, 1, gh // period, gw // period)


def test_a_location_unlike_the_rest_scores_highest():
    f = periodic_features()
    f[0, :, 6, 6] = F.normalize(torch.randn(f.shape[1]), dim=0)
    d = knn_distance(f, k=3, radius=1)[0, 0]
    assert d.argmax() == 6 * 12 + 6
    assert d[0, 0] < 1e-3 < d[6, 6]  # a regular location has exact twins outside its neighbourhood


def test_twins_inside_the_excluded_neighbourhood_do_not_count():
    torch.manual_seed(1)
    f = F.normalize(torch.randn(1, 16, 10, 10), dim=1)
    f[0, :, 4, 5] = f[0, :, 4, 4]  # an exact twin next door
    assert knn_distance(f, k=1, radius=0)[0, 0, 4, 4] < 1e-3  # only itself excluded: the twin counts
    assert knn_distance(f, k=1, radius=1)[0, 0, 4, 4] > 0.5  # the twin is inside the neighbourhood
    assert knn_distance(periodic_features(period=3), k=1, radius=2).max() < 1e-3  # twins 3 cells away count


def test_small_grids_shrink_the_radius_and_tiny_ones_are_an_error():
    f = periodic_features(6, 6, period=3)
    # radius 3 would exclude the whole 6x6 grid; it shrinks to 2, where the 3 twins 3 cells away count
    assert knn_distance(f, k=3, radius=3).max() < 1e-3
    with pytest.raises(ValueError, match="too small"):
        knn_distance(periodic_features(2, 2, period=1), k=5, radius=0)


def test_the_padding_is_never_a_neighbour():
    """A reflect-padded frame mirrors its last rows and columns: a defect near the bottom-right border finds its own
    mirror image there unless the padding's cells are kept out (`frame`: the frame's cells)."""
    f = periodic_features(12, 12, period=3)
    f[0, :, 7, 7] = F.normalize(torch.randn(f.shape[1]), dim=0)  # a unique look 2 cells from a 9x9 frame's border
    f = torch.cat([f[..., :9, :9], f[..., 5:8, :9].flip(2)], 2)  # reflect-pad rows 9-11 (row 9 mirrors row 7)
    f = torch.cat([f, f[..., 5:8].flip(3)], 3)  # and columns 9-11
    assert torch.equal(f[0, :, 9, 9], f[0, :, 7, 7])  # its mirror, 2 cells away: outside a radius of 1
    mirrored = knn_distance_and_spacing(f, k=1, radius=1)[0, 0]
    framed = knn_distance_and_spacing(f, k=1, radius=1, frame=(9, 9))[0, 0]
    assert mirrored[7, 7] < 1e-3 < framed[7, 7]  # kept out, the defect stands out again
    assert framed[:9, :9].argmax() == 7 * 9 + 7  # the highest of the frame's cells
    assert torch.allclose(knn_distance_and_spacing(f, 1, 1, frame=(12, 12)), knn_distance_and_spacing(f, 1, 1))
    with pytest.raises(ValueError, match="too small"):
        knn_distance_and_spacing(f, k=5, radius=0, frame=(2, 2))


@pytest.mark.parametrize("frame", [(9, 9), (12, 12), (2, 3), (5, 12)])
def test_the_frame_s_size_as_tensors_gives_what_its_numbers_give(frame):
    """An exported graph's frame is an input (tensors): the same masks, and the same radius shrunk to what a small
    frame leaves (radius 4 outside a 2x3 frame's cells: 0). The far cells' count needs numbers."""
    noise = torch.randn(1, 8, 12, 12, generator=torch.Generator().manual_seed(0))
    f = periodic_features(12, 12, period=3) + 0.1 * noise
    as_tensors = tuple(torch.tensor(side) for side in frame)
    assert torch.equal(knn_distance_and_spacing(f, 5, 4, as_tensors), knn_distance_and_spacing(f, 5, 4, frame))
    with pytest.raises(ValueError, match="as numbers"):
        knn_distance_and_spacing(f, 5, 4, as_tensors, far_share=0.1, far_weight=1.0)


def test_cell_size_bounds_the_number_of_cells():
    assert cell_size(256, 256, 4, 4096) == 4
    cell = cell_size(1088, 1920, 4, 4096)
    assert cell == 32 and (1088 // cell) * (1920 // cell) <= 4096
    assert cell_size(256, 256, 8, 4096) == 8  # never finer than the coarsest layer


def test_grid_features_pool_each_layer_onto_the_cells_with_unit_norm():
    acts = {"a": torch.rand(2, 4, 32, 32), "b": torch.rand(2, 6, 16, 16)}  # strides 2 and 4 of a 64 px image
    g = grid_features(acts, (64, 64), cell=8)
    assert g.shape == (2, 10, 8, 8)
    assert torch.allclose(g.norm(dim=1), torch.ones(2, 8, 8), atol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        grid_features({"c": torch.rand(1, 3, 8, 8)}, (64, 64), cell=4)  # stride 8 > cell 4
    bf16 = grid_features({k: v.to(torch.bfloat16) for k, v in acts.items()}, (64, 64), cell=8)
    assert bf16.dtype == torch.float32  # bf16 activations are pooled before the cast, then fp32
    torch.testing.assert_close(bf16, g, rtol=0, atol=1e-2)


def test_scorer_self_similarity_map_finds_a_defect_and_matches_the_baseline():
    rng = np.random.default_rng(3)
    clean = texture("brick", 128, rng)
    image, mask = draw_defect(clean, rng, "hole")
    cfg = ScoreConfig(pixel_weight=0.0, perceptual_weight=0.0, knn_weight=1.0, vgg_layers=("relu2_2", "relu3_1"),
                      knn_upscale=1, knn_cell=4, knn_stats_weight=0.0, knn_radius=4,
                      knn_spacing_weight=0.0)  # the baseline's map: the input as it is
    scorer = AnomalyScorer(UNet(4).eval(), cfg, (2,), VGG19Features(layers=cfg.vgg_layers)).eval()
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        amap, score = scorer(x)
    amap = amap[0, 0].numpy()
    assert roc_auc_score(mask.ravel(), amap.ravel()) > 0.9
    assert np.corrcoef(amap.ravel(), vgg_knn(image).ravel())[0, 1] > 0.98  # same map as the baseline
    # image score (score.image_score 'knn'): raw feature distances, so frames compare with each other
    with torch.inference_mode():
        _, clean_score = scorer(torch.from_numpy(clean).permute(2, 0, 1)[None].float() / 255)
    assert 0 < float(clean_score[0]) < float(score[0]) < 2


def test_image_score_from_the_self_similarity_map_needs_that_map():
    with pytest.raises(ValidationError, match="image_score: map"):
        ScoreConfig(knn_weight=0.0)
    with pytest.raises(ValidationError, match="map_units: std"):  # the map's units are the kNN's too
        ScoreConfig(knn_weight=0.0, image_score="map")
    assert ScoreConfig(knn_weight=0.0, pixel_weight=0.1, image_score="map", map_units="std").image_score == "map"
    with pytest.raises(ValidationError, match="every map weight is 0"):
        ScoreConfig(knn_weight=0.0, pixel_weight=0.0, perceptual_weight=0.0, image_score="map", map_units="std")


def test_scorer_and_fitter_use_their_own_layers_of_a_shared_vgg_trunk():
    cfg = SSDNetConfig.model_validate({"model": {"base_channels": 4}, "fit": {"scales": [2], "steps": 1},
                                       "loss": {"vgg_layers": ["relu1_2"]}, "score": {"vgg_layers": ["relu2_2"]}})
    det = Detector(cfg, "cpu")
    trunk = {"relu1_2", "relu2_2", *cfg.memory.layers}  # loss, maps and the camera's memory share one trunk
    assert set(det.scorer.vgg(torch.rand(1, 3, 64, 64))) == trunk
    assert set(det.scorer._features(torch.rand(1, 3, 64, 64))) == {"relu2_2"}
    image = torch.rand(1, 3, 64, 64)
    shared = Fitter(cfg, "cpu", VGG19Features(layers=("relu1_2", "relu2_2"))).fit(image, 1)
    own = Fitter(cfg, "cpu", VGG19Features(layers=("relu1_2",))).fit(image, 1)
    assert shared.loss == pytest.approx(own.loss, rel=1e-6)  # the loss reads relu1_2 only


def test_the_perceptual_map_compares_its_own_layers_and_follows_the_self_similarity_s_until_set():
    x = torch.rand(1, 3, 64, 64)
    base = {"knn_weight": 0.0, "pixel_weight": 0.0, "perceptual_weight": 1.0, "map_units": "std",
            "image_score": "map", "smooth_sigma": 0.0, "vgg_layers": ["relu1_2"]}
    maps = {}
    for name, extra in (("own", {"perceptual_layers": ["relu3_1", "relu4_1"]}), ("followed", {}),
                        ("deep_knn", {"vgg_layers": ["relu3_1", "relu4_1"]})):
        cfg = SSDNetConfig.model_validate({"model": {"base_channels": 4}, "fit": {"scales": [2]},
                                           "memory": {"size_mb": 0}, "score": {**base, **extra}})
        det = Detector(cfg, "cpu")
        seen, features = [], det.scorer._features

        def spy(*args, features=features, seen=seen, **kwargs):
            out = features(*args, **kwargs)
            seen.append(set(out))
            return out
        det.scorer._features = spy
        with torch.inference_mode():
            (_, perc), = det.scorer.raw_maps(x)
        maps[name] = perc
        assert {frozenset(s) for s in seen} == {frozenset(cfg.score.perceptual_vgg_layers)}
        assert set(cfg.score.perceptual_vgg_layers) <= set(det.scorer.vgg(x))  # the trunk reaches them
    assert torch.equal(maps["own"], maps["deep_knn"])  # the same layers compared, whichever field names them
    assert not torch.allclose(maps["own"], maps["followed"])  # and other layers give another map
    with pytest.raises(ValidationError, match="unknown VGG19 layer"):
        ScoreConfig(perceptual_layers=("relu9_9",))


def test_enlarged_self_similarity_input_finds_a_defect_and_is_bounded_for_big_frames():
    rng = np.random.default_rng(3)
    image, mask = draw_defect(texture("brick", 128, rng), rng, "hole")
    cfg = ScoreConfig(pixel_weight=0.0, perceptual_weight=0.0, knn_weight=1.0, knn_stats_weight=0.0, knn_upscale=2)
    scorer = AnomalyScorer(UNet(4).eval(), cfg, (2,), VGG19Features(layers=cfg.vgg_layers)).eval()
    assert scorer.knn_upscale(128, 128) == 2
    assert scorer.knn_upscale(1080, 1920) == 1  # 2x would be 8.3 Mpx > knn_max_pixels (1 Mpx)
    three = AnomalyScorer(UNet(4), cfg.model_copy(update={"knn_upscale": 3}), (2,), scorer.vgg)
    assert three.knn_upscale(400, 400) == 2
    calls = []
    scorer.vgg.register_forward_hook(lambda _m, args, _out: calls.append(tuple(args[0].shape[-2:])))
    with torch.inference_mode():
        amap, score = scorer(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    assert calls == [(256, 256)]  # only the enlarged input went through VGG19 (no other map needs it)
    assert amap.shape[-2:] == (128, 128)
    assert roc_auc_score(mask.ravel(), amap[0, 0].numpy().ravel()) > 0.9
    assert 0 < float(score[0]) < 2


def test_distances_are_euclidean_for_features_of_any_norm():
    torch.manual_seed(2)
    f = torch.randn(1, 6, 7, 7) * torch.rand(1, 1, 7, 7) * 3  # mixed norms, as with statistics appended
    d = knn_distance(f, k=3, radius=1)[0, 0]
    q = f[0].reshape(6, -1).t()
    full = torch.cdist(q, q)
    ys, xs = torch.meshgrid(torch.arange(7), torch.arange(7), indexing="ij")
    near = (((ys.flatten()[:, None] - ys.flatten()[None]).abs() <= 1)
            & ((xs.flatten()[:, None] - xs.flatten()[None]).abs() <= 1))
    top = full.masked_fill(near, float("inf")).topk(3, dim=1, largest=False)
    expect = top.values.mean(1)
    assert torch.allclose(d, expect.reshape(7, 7), atol=1e-4)
    # the second channel: the mean distance of the k nearest cells themselves, less its mean over the frame
    both = knn_distance_and_spacing(f, k=3, radius=1)[0]
    assert torch.equal(both[0], d)
    spacing = expect[top.indices].mean(1)
    assert torch.allclose(both[1], (spacing - spacing.mean()).reshape(7, 7), atol=1e-4)


def test_spacing_puts_a_subtle_defect_above_a_rare_look_the_texture_repeats():
    """A look the texture shows in two far places has neighbours as far from theirs as it is from them;
    a subtle defect's nearest cells are the common texture, near each other."""
    f = periodic_features(16, 16, period=2)
    torch.manual_seed(4)
    f[0, :, 2, 2] = f[0, :, 13, 13] = F.normalize(torch.randn(f.shape[1]), dim=0)  # the same rare look, twice
    f[0, :, 8, 2] = F.normalize(f[0, :, 8, 8] + 0.5 * F.normalize(torch.randn(f.shape[1]), dim=0), dim=0)
    d, wider = knn_distance_and_spacing(f, k=3, radius=2)[0]
    assert d[2, 2] > d[8, 2]  # the plain distance puts the rare normal look above the defect
    shown = d - 0.75 * wider
    assert shown[2, 2] < shown[8, 2] and shown[8, 2] == shown.max()  # less the spacing term, the defect is first
    assert abs(float(shown.mean() - d.mean())) < 1e-6  # and the frame keeps its mean level


def test_a_long_defect_that_finds_itself_along_its_length_stands_out_with_the_far_term():
    """A straight line of alike cells longer than the excluded radius: each of its cells has k look-alikes on the
    line, so the plain distance misses it; its cells have far fewer look-alikes than `far_share` of the frame's."""
    torch.manual_seed(6)
    f = F.normalize(periodic_features(24, 24, period=2) + 0.05 * torch.randn(1, 8, 24, 24), dim=1)  # a noisy texture
    line = F.normalize(f[0, :, 12, 0] + 0.8 * F.normalize(torch.randn(f.shape[1]), dim=0), dim=0)
    f[0, :, 12, 2:22] = line[:, None] + 0.01 * torch.randn(f.shape[1], 20)  # 20 cells, radius 2: >= 12 on-line twins
    on = torch.zeros(24, 24, dtype=torch.bool)
    on[12, 2:22] = True

    def auroc(d: torch.Tensor) -> float:
        return roc_auc_score(on.flatten().numpy(), d.flatten().numpy())

    plain = knn_distance_and_spacing(f, k=5, radius=2)[0, 0]
    far = knn_distance_and_spacing(f, k=5, radius=2, far_share=0.06, far_weight=1.0)[0, 0]  # 35 look-alikes
    assert auroc(plain) < 0.6 < 0.99 < auroc(far)
    # where a cell has that many look-alikes (the texture's), the term adds next to nothing
    added = far - plain
    assert added[~on].max() < 0.1 * added[on].min() and added.min() >= 0
    assert torch.equal(knn_distance_and_spacing(f, k=5, radius=2, far_share=0.06)[0, 0], plain)  # weight 0: off


def test_the_map_shows_the_spacing_term_and_the_image_score_reads_the_plain_distance_with_a_memory():
    rng = np.random.default_rng(5)
    image, _ = draw_defect(texture("gravel", 96, rng), rng, "scratch")
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    cfg = SSDNetConfig.model_validate({"model": {"base_channels": 4}, "fit": {"scales": [2]}})
    det = Detector(cfg, "cpu")
    bank, spacing, scorer = det.memory.bank, det.memory.spacing, det.scorer
    with torch.inference_mode():
        both = scorer.knn_map(x)[0]
        plain, wider = both[:, :1], both[:, 1:]
        acts = scorer.vgg(x, cfg.memory.layers)
        for a in (1.0, 0.5):  # the memory out of the map (1, 0, 0), then in it with a = 0.5
            state = torch.tensor([0.0 if a == 1 else 8.0, 0.1, a, 1 - a, 0.0, 0.0, -math.inf])
            amap, score, _, _, score_map = scorer(x, bank, state, spacing)
            mem = scorer.memory_map(x, acts, bank, state, spacing)[0]
            torch.testing.assert_close(score_map, a * plain + (1 - a) * mem)
            shown = a * (plain - cfg.score.knn_spacing_weight * a * a * wider) + (1 - a) * mem
            # the map (in knn units) ranks the pixels as the blend of the spaced own map does
            assert np.corrcoef(amap.flatten().numpy(), shown.flatten().numpy())[0, 1] > 0.999
        assert not torch.allclose(amap, score_map)


def test_the_history_search_keeps_the_frame_s_level_and_without_rows_is_the_frame_alone():
    """The camera's earlier cells as more candidates (edge.memory's history): an empty history changes nothing, and
    a filled one changes the ranking inside the frame, not its level (rescaled to the frame-alone mean)."""
    torch.manual_seed(0)
    f = F.normalize(torch.randn(1, 16, 8, 8), dim=1)
    rows = F.normalize(torch.randn(32, 16), dim=1)
    own = torch.rand(32)
    empty = knn_distance_and_spacing(f, 3, 1, history=(rows, own, torch.tensor(0.0)))[0]
    assert empty.shape == (4, 8, 8) and torch.allclose(empty[2:], empty[:2])
    rows[:4] = f[0, :, 2, 2] + 0.01 * torch.randn(4, 16)  # four earlier cells like one of the frame's
    full = knn_distance_and_spacing(f, 3, 1, history=(rows, own, torch.tensor(32.0)))[0]
    assert torch.allclose(full[:2], empty[:2])  # the frame-alone verdict is unchanged
    assert full[2].mean() == pytest.approx(float(full[0].mean()), rel=1e-5)  # its level kept
    assert not torch.allclose(full[2], full[0])
    # the cell with close earlier twins ranks lowest in its frame, which it did not alone
    assert full[2].argmin() == 2 * 8 + 2 != full[0].argmin()
    half = knn_distance_and_spacing(f, 3, 1, history=(rows, own, torch.tensor(4.0)))[0]  # only the valid rows
    assert half[2].argmin() == 2 * 8 + 2


def test_the_self_similarity_cell_is_knn_cell_input_pixels_and_a_power_of_two():
    vgg = VGG19Features(layers=ScoreConfig().vgg_layers)
    default = AnomalyScorer(UNet(4), ScoreConfig(), (2,), vgg)
    assert default.knn_cell(256, 256) == (1, 8) and default.knn_cells_shape(256, 256)[1:] == (32, 32)
    fine = AnomalyScorer(UNet(4), ScoreConfig(knn_upscale=2, knn_cell=4), (2,), vgg)
    assert fine.knn_cell(256, 256) == (2, 8) and fine.knn_cells_shape(256, 256)[1:] == (64, 64)  # 4 input px
    assert default.knn_cell(2048, 2048)[1] == 32  # doubled until the grid has at most knn_max_cells
    with pytest.raises(ValueError, match="power of two"):
        ScoreConfig(knn_cell=6)
