"""The per-camera memory of normal appearance and the per-camera score calibration (issue: the stream as
its own reference)."""
from __future__ import annotations

import copy
import importlib.util
import io
import math
from unittest import mock

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import edge.memory
from edge.calibration import ScoreCalibrator
from edge.config import CalibrationConfig, ConfigError, MemoryConfig, SSDNetConfig, parse_config
from edge.detector import Detector
from edge.fitter import image_to_tensor
from edge.memory import FeatureMemory, farthest_points, memory_distance, memory_features
from edge.scorers import OnnxRuntimeScorer, build_scorer
from edge.sizes import feature_dim, footprint_mb
from edge.synthetic import draw_defect, texture
from tools.bench import fill_bank

FIT_FREE = {"score": {"pixel_weight": 0, "perceptual_weight": 0}, "memory": {"min_frames": 4},
            "calibration": {"min_frames": 4}}
# the frame's own self-similarity at section 37's finer scale (the input enlarged 2x, 4 px cells): the tests that
# need the frame alone to miss a large patch, rank a thin scratch low, or find one at once (docs/ablations.md
# section 38: the default's 8 px cells find part of the patch and less of a scratch)
FINE = {"score": {**FIT_FREE["score"], "knn_upscale": 2, "knn_cell": 4, "knn_radius": 8}}


def _detector(**extra) -> Detector:
    return Detector(parse_config(SSDNetConfig, {**FIT_FREE, **extra}), "cpu")


def uniform_patch_stream() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Eight normal brick frames, and one with a large uniform patch (a quarter of the frame) drawn in, and its mask
    (also docs/ablation_runs/history/large_patch.py's)."""
    rng = np.random.default_rng(0)
    normal = [texture("brick", 128, rng) for _ in range(8)]
    bad = texture("brick", 128, rng)
    mask = np.zeros((128, 128), bool)
    mask[28:100, 28:100] = True
    bad[mask] = int(bad.mean())
    return normal, bad, mask


@pytest.fixture(scope="module")
def stream():
    return uniform_patch_stream()


def test_a_large_uniform_patch_the_frame_itself_misses_is_found_with_normal_frames_in_memory(stream):
    normal, bad, mask = stream
    own = _detector(**FINE, memory={"size_mb": 0})
    with_memory = _detector(**FINE, memory={"min_frames": 4, "fill_frames": 4})  # full weight once 4 frames are in
    added = []
    for frame in normal:
        own.process(frame)
        added.append(with_memory.process(frame).memory_added)
    # most normal frames go in (one whose score stands 3 above the camera's first few may wait: calibrating on 4)
    assert sum(n > 0 for n in added) >= 6 and with_memory.memory.ready
    alone = own.process(bad)
    assert roc_auc_score(mask.ravel(), alone.anomaly_map.ravel()) < 0.5  # similar to itself: looks normal
    first = with_memory.process(bad)
    assert first.calibrated > alone.calibrated  # the memory puts the frame further above the camera's normal
    for remembered in (first, *(with_memory.process(bad) for _ in range(2))):
        # found, and it stays found: none of its cells become "normal" (the calibration, not the memory, takes
        # the repeated frame's score in, so its calibrated score falls with each repetition)
        assert roc_auc_score(mask.ravel(), remembered.anomaly_map.ravel()) > 0.8 and remembered.memory_added == 0


def test_the_memory_stays_within_its_bound_over_a_long_stream():
    cfg = MemoryConfig(size_mb=0.05, per_frame=50)
    memory = FeatureMemory(cfg, seed=1)
    row_bytes = feature_dim(cfg) * 2 + 4  # fp16 features and an fp32 spacing
    assert memory.nbytes <= cfg.size_mb * 2**20 and len(memory.bank) == int(cfg.size_mb * 2**20 // row_bytes)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        feats = torch.randn(1, feature_dim(cfg), 8, 8, generator=g)
        memory.add(feats, torch.rand(8, 8, generator=g) > 0.3)
    assert memory.count == len(memory.bank) and memory.frames == 200 and memory.nbytes <= cfg.size_mb * 2**20
    newest = feats[0].permute(1, 2, 0).reshape(-1, feature_dim(cfg))
    last = memory.bank[(memory.next - 1) % len(memory.bank)].float()
    assert torch.isclose(newest, last, atol=1e-2).all(dim=1).any()  # the ring holds the newest rows


def test_once_ready_a_frame_s_cells_wait_delay_frames_before_any_frame_is_compared_with_them():
    """With `delay_frames` 3 a run of up to 3 alike frames cannot vouch for each other once the camera has a
    memory (before, rows go in at once); the waiting rows travel with a checkpoint."""
    cfg = MemoryConfig(size_mb=0.05, per_frame=4, candidates=4, delay_frames=3, min_frames=2, k=1)
    memory, g = FeatureMemory(cfg, seed=1), torch.Generator().manual_seed(0)
    frames = [torch.randn(1, feature_dim(cfg), 4, 4, generator=g) for _ in range(8)]
    every = torch.ones(4, 4, dtype=torch.bool)
    for feats in frames[:2]:  # not ready yet: straight in
        assert memory.add(feats, every) == 4
    memory.observe_levels((1.0, 0.1), (1.0, 0.1))
    assert memory.ready and memory.count == 8
    for i, feats in enumerate(frames[2:6]):
        assert memory.add(feats, every) == 4
        assert memory.count == (12 if i == 3 else 8) and memory.frames == (3 if i == 3 else 2)
    third = frames[2][0].permute(1, 2, 0).reshape(-1, feature_dim(cfg))
    assert (torch.cdist(memory.bank[8:12].float(), third).min(1).values < 1e-2).all()  # the oldest waiting frame's
    restarted = FeatureMemory(cfg, seed=1)
    restarted.load_state_dict(memory.state_dict())
    for feats in frames[6:]:
        for m in (memory, restarted):
            m.add(feats, every)
    assert restarted.count == memory.count == 20 and torch.equal(restarted.bank, memory.bank)
    assert torch.equal(restarted.spacing, memory.spacing) and restarted.typical_spacing > 0
    queue = cfg.delay_frames * cfg.per_frame * (feature_dim(cfg) * 2 + 4)
    forged = memory.state_dict()
    forged["pending"] = [torch.zeros(4, 5, dtype=torch.float16)]
    with pytest.raises(ValueError, match="width"):  # a queue of another width is refused like a bank
        FeatureMemory(cfg).load_state_dict(forged)
    bank = memory.bank.numel() * 2 + memory.spacing.numel() * 4
    assert len(memory.pending) == 3 and memory.nbytes == bank + queue <= footprint_mb(cfg) * 2**20


def test_the_farthest_selection_keeps_a_frame_s_rare_appearance_that_random_cells_miss():
    """A frame of 63 cells of one look and 1 of another, 8 cells kept: picked as the farthest of all 64
    candidates they cover both looks (every cell of the frame has a kept row nearby); 8 random cells
    (candidates = per_frame) keep the rare one 1 time in 8."""
    cfg = MemoryConfig(size_mb=0.05, per_frame=8, k=1)
    dim = feature_dim(cfg)
    g = torch.Generator().manual_seed(0)
    common, rare = torch.randn(dim, generator=g), torch.randn(dim, generator=g)
    noise = 0.1 / math.sqrt(dim) * torch.randn(64, dim, generator=g)  # norm ~0.1, whatever the width
    cells = torch.stack([common] * 63 + [rare]) + noise
    feats = cells.T.reshape(1, dim, 8, 8)
    worst = {}
    for candidates in (64, 8):
        memory = FeatureMemory(cfg.model_copy(update={"candidates": candidates}), seed=3)
        assert memory.add(feats, torch.ones(8, 8, dtype=torch.bool)) == 8
        worst[candidates] = float(memory_distance(feats, memory.bank.float(), torch.tensor([8.0]), 1)[0].max())
    assert worst[64] < 0.5 < worst[8]  # the two looks are ~sqrt(2 dim) apart


def test_farthest_points_start_from_the_bank_and_never_repeat():
    rows = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.1, 0.0], [0.0, 9.0]])
    # the bank already holds the rows near the origin: the first pick is the farthest from it, then the
    # farthest from the bank and from that pick
    picked = farthest_points(rows, 3, start=torch.tensor([0.0, 0.1, 5.0, 5.1, 9.0]))
    assert picked.tolist()[:2] == [4, 3] and picked[2] in (0, 1, 2)
    assert len(set(farthest_points(rows, 5).tolist())) == 5


@pytest.mark.parametrize("search_rows", [4096, 7, 2])  # the bank in one piece; in pieces; pieces shorter than k
def test_memory_distance_is_the_mean_distance_to_the_k_nearest_valid_rows(search_rows, monkeypatch):
    monkeypatch.setattr(edge.memory, "SEARCH_ROWS", search_rows)
    g = torch.Generator().manual_seed(0)
    bank, q = torch.randn(50, 6, generator=g), torch.randn(1, 6, 3, 4, generator=g)
    d, nearest = memory_distance(q, bank, torch.tensor([30.0]), 3)
    ref = torch.cdist(q[0].reshape(6, -1).T, bank[:30]).topk(3, largest=False)
    assert torch.allclose(d, ref.values.mean(1).reshape(1, 1, 3, 4), atol=1e-4)
    assert torch.equal(nearest.permute(0, 2, 3, 1).reshape(12, 3).sort(1).values, ref.indices.sort(1).values)


def test_a_row_s_spacing_is_the_bank_s_distance_where_it_went_in_and_old_checkpoints_count_as_typical():
    cfg = MemoryConfig(size_mb=0.05, per_frame=4, per_frame_share=1.0, candidates=4, delay_frames=0, min_frames=1, k=2)
    memory, g = FeatureMemory(cfg, seed=1), torch.Generator().manual_seed(0)
    first, second = (torch.randn(1, feature_dim(cfg), 2, 2, generator=g) for _ in range(2))
    every = torch.ones(2, 2, dtype=torch.bool)
    memory.add(first, every)  # an empty bank: the k nearest of the rows picked with it
    rows = first[0].flatten(1).T
    own = torch.cdist(rows, rows).fill_diagonal_(float("inf")).topk(2, largest=False).values.mean(1)
    assert torch.allclose(memory.spacing[:4].sort().values, own.sort().values, rtol=1e-2)
    distance = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    memory.add(second, every, distance)
    assert sorted(memory.spacing[4:8].tolist()) == [1.0, 2.0, 3.0, 4.0]
    assert memory.typical_spacing == float(memory.spacing[:8].median()) and memory.state_tensor()[1] > 0
    old = memory.state_dict()
    del old["spacing"], old["pending_spacing"]
    old["levels"] = [[0.5, 0.7], [0.5, 0.9], [0.5, 0.8]]
    restarted = FeatureMemory(cfg)
    restarted.load_state_dict(old)  # a checkpoint from before the spacing: every row typically spaced
    assert restarted.count == 8 and torch.allclose(restarted.spacing[:8], torch.full((8,), 0.8))
    # no spreads saved: S alone, no floor
    assert restarted.ready and restarted.state_tensor()[2:].tolist() == [1, 0, 0, 0, -math.inf, 0]  # no history
    restarted.observe_levels((0.5, 0.1), (0.8, 0.2))
    assert restarted.scale == 0.5**2 and restarted.state_tensor()[3] > 0  # (S std / M std) squared
    old["levels"] = [[0.5, 0.7, 0.1]]
    with pytest.raises(ValueError, match="levels"):
        FeatureMemory(cfg).load_state_dict(old)


def test_the_memory_enters_the_map_with_inverse_variance_weights_at_the_self_similarity_s_level_and_spread():
    """The feature-distance map is a x S + b x M + c: M counts weight x (typical variance of S / of M) as much as
    S, and the map keeps S's typical level and spread; `scale_by` 'spread' (the stds' ratio) and 'level' (the
    means') give (S + weight x scale x M) / (1 + weight) at S's level, as before."""
    # the self-similarity's spacing term off, so S is the same map at every a (it is tested in tests/test_knn.py)
    cfg = parse_config(SSDNetConfig, {"model": {"base_channels": 4}, "fit": {"scales": [2]},
                                      "score": {"amp": False, "knn_spacing_weight": 0.0},
                                      "memory": {"size_mb": 0.5, "min_frames": 1, "k": 1, "weight_by_fill": False}})
    memory = FeatureMemory(cfg.memory)
    memory.add(torch.randn(1, feature_dim(cfg.memory), 2, 2), torch.ones(2, 2, dtype=torch.bool))
    for s_std, m_std in ((0.1, 0.05), (0.12, 0.04), (0.1, 0.02)):  # median spreads 0.1 and 0.04
        memory.observe_levels((0.5, s_std), (0.3, m_std))
    w = cfg.memory.weight
    a, b, c = memory.state_tensor()[2:5].double().tolist()
    assert memory.scale == pytest.approx(2.5**2) and b / a == pytest.approx(w * 2.5**2)
    assert a * 0.5 + b * 0.3 + c == pytest.approx(0.5)  # M's typical level lands on S's: the map keeps S's
    assert math.hypot(a * 0.1, b * 0.04) == pytest.approx(0.1)  # and its typical spread
    for scale_by, scale in (("spread", 2.5), ("level", 0.5 / 0.3)):
        other = FeatureMemory(cfg.memory.model_copy(update={"scale_by": scale_by}))
        other.load_state_dict(memory.state_dict())
        assert other.scale == pytest.approx(scale)
        assert other.blend == pytest.approx((1 / (1 + w), w * scale / (1 + w), w * (0.5 - scale * 0.3) / (1 + w)))
    scorer = build_scorer(cfg, backend="torch", device="cpu").module
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=g)
    bank = torch.randn(200, feature_dim(cfg.memory), generator=g).half()
    spacing = torch.rand(200, generator=g)
    def amap(a: float, b: float, c: float) -> torch.Tensor:
        return scorer(x, bank, torch.tensor([120.0, 0.4, a, b, c, 0.0, -math.inf]), spacing)[0]
    acts = scorer.vgg(x, scorer.memory.layers)
    m = scorer.memory_map(x, acts, bank, torch.tensor([120.0, 0.4, 1.0, 0.0, 0.0]), spacing)[0]
    assert torch.allclose(amap(0.5, 2.0, 0.1), 0.5 * amap(1.0, 0.0, 0.0) + 2.0 * m + 0.1, atol=1e-4)


def test_a_defect_that_reached_the_memory_is_still_flagged_by_the_frame_s_own_verdict():
    """Defects in the stream: a scratched frame let whole into the memory (every admission rule opened) makes its
    own scratch look normal to the memory; the floor (`own_floor`, at its default) keeps the frame's own verdict."""
    rng = np.random.default_rng(0)
    normal = [texture("brick", 128, rng) for _ in range(6)]
    bad, mask = draw_defect(texture("brick", 128, rng), rng, "scratch")
    admit_all = {"min_frames": 4, "delay_frames": 0, "admit_z": 1e9, "admit_cell_ratio": 1e9, "admit_max_novel": 1.0,
                 "admit_own_mad": None,
                 "per_frame": 4096, "per_frame_share": 1.0, "candidates": 4096, "fill_frames": 6}  # full weight
    auroc = {}
    default = MemoryConfig().own_floor
    for floor in (None, default):
        det = _detector(**FINE, memory={**admit_all, "own_floor": floor})
        for frame in normal:
            det.process(frame)
        first = det.process(bad)
        assert first.memory_added > 0 and det.memory.floor[0] == (floor or 0.0)
        auroc[floor] = [roc_auc_score(mask.ravel(), d.anomaly_map.ravel()) for d in (first, det.process(bad))]
    assert min(auroc[None][0], auroc[default][0]) > 0.97  # found while the memory does not hold it
    assert auroc[None][1] < 0.8 < 0.97 < auroc[default][1]  # once it does: lost without the floor, kept with it


@pytest.mark.parametrize("power,fill_frames,cells", [(1.0, 50, 16), (1.5, 50, 16), (1.5, 4, 16), (1.5, 4, 3)])
def test_a_sparse_bank_counts_for_less_until_it_is_full(power, fill_frames, cells):
    """`weight_by_fill`: the memory's weight is `weight` x fill ** `fill_power`, fill = its frames / `fill_frames`
    or its rows / its capacity (81 rows), the larger, then `weight`: frames that give fewer rows than `per_frame`
    (3 normal cells here) fill it as fast."""
    cfg = MemoryConfig(size_mb=0.05, min_frames=1, k=1, per_frame=8, candidates=8, fill_power=power,
                       fill_frames=fill_frames)
    full, flat = FeatureMemory(cfg), FeatureMemory(cfg.model_copy(update={"weight_by_fill": False}))
    g = torch.Generator().manual_seed(0)
    normal = torch.arange(16).reshape(4, 4) < cells
    ratios = []
    while (full.frames < fill_frames and full.count < len(full.bank)) or len(ratios) < 8:
        feats = torch.randn(1, feature_dim(cfg), 4, 4, generator=g)
        for memory in (full, flat):
            assert memory.add(feats, normal) == min(8, cells)
            memory.observe_levels((0.5, 0.1), (0.3, 0.04))
        (a, b, _), (a0, b0, _) = full.blend, flat.blend
        fill = min(1.0, max(full.frames / fill_frames, full.count / len(full.bank)))
        assert b / a == pytest.approx(fill ** power * b0 / a0)  # the weight grows with the fill
        ratios.append(b / a)
    assert ratios[0] < ratios[-1] == pytest.approx(flat.blend[1] / flat.blend[0])  # full: the configured weight


def test_a_frame_gives_at_most_its_share_of_cells():
    """`per_frame_share`: of a 4x4 grid (16 cells) at most ceil(share x 16) go in, fewer if `per_frame` says so."""
    every = torch.ones(4, 4, dtype=torch.bool)
    feats = torch.randn(1, feature_dim(MemoryConfig()), 4, 4, generator=torch.Generator().manual_seed(0))
    for share, per_frame, written in ((0.5, 16, 8), (0.3, 16, 5), (1.0, 16, 16), (0.5, 6, 6)):
        cfg = MemoryConfig(size_mb=0.05, per_frame=per_frame, per_frame_share=share, candidates=16)
        assert FeatureMemory(cfg).add(feats, every) == written


@pytest.mark.parametrize("side", [128, 130, 160])
def test_a_frame_of_any_size_gives_at_most_its_share_of_its_own_cells(side):
    """The share was taken of the grid padded to a multiple of 64 px: a 130 px frame (17 x 17 cells) gave 256 of its
    289 cells, 89 % where `per_frame_share` says 50 % (an outside audit)."""
    cells = (-(-side // MemoryConfig().cell)) ** 2
    added = _detector().process(texture("brick", side, np.random.default_rng(0))).memory_added
    assert 0 < added <= math.ceil(0.5 * cells), (added, cells)


def test_a_memory_too_small_for_its_k_rows_is_a_config_error():
    """A bank of fewer rows than `memory.k` passed validation, and then every frame raised."""
    with pytest.raises(ConfigError, match=r"memory.size_mb 0.0005 holds 1 bank row\(s\), fewer than memory.k = 3"):
        parse_config(SSDNetConfig, {"memory": {"size_mb": 0.0005}})
    assert parse_config(SSDNetConfig, {"memory": {"size_mb": 0}}).uses_memory is False


def test_the_projection_keeps_distances_and_fits_more_rows_in_the_same_megabytes():
    """`dims`: rows are the layers' features times a fixed random matrix; pairwise distances of unit features move
    by 20 % at most (3 % on average), the same projection comes back every time, and 16 MB hold 8x the rows of
    1280-wide ones."""
    plain, projected = MemoryConfig(dims=None), MemoryConfig()
    assert feature_dim(plain) == 1280 and feature_dim(projected) == 160
    assert len(FeatureMemory(projected).bank) > 7.8 * len(FeatureMemory(plain).bank)
    g = torch.Generator().manual_seed(0)
    acts = {name: torch.randn(1, c, 8, 8, generator=g) for name, c in (("relu3_1", 256), ("relu4_1", 512))}
    acts["relu5_1"] = torch.randn(1, 512, 4, 4, generator=g)
    full, small = (memory_features(acts, (64, 64), c)[0].flatten(1).T for c in (plain, projected))
    assert small.shape == (64, 160) and torch.equal(small, memory_features(acts, (64, 64), projected)[0].flatten(1).T)
    ratio = torch.pdist(small) / torch.pdist(full)
    assert 0.8 < float(ratio.min()) and float(ratio.max()) < 1.2 and abs(float(ratio.mean()) - 1) < 0.03


def test_the_floor_keeps_the_map_above_a_share_of_the_self_similarity_s_excess():
    """The feature-distance map is max(a S + b M + c, p S + q), p = own_floor and q = (1 - p) x S's typical level
    once the memory is in the map; no floor (0, -inf) before, or with own_floor null."""
    # the self-similarity's spacing term off: S is then the same map in the blend, the floor and the image score
    # (the term is tested in tests/test_knn.py)
    cfg = parse_config(SSDNetConfig, {"model": {"base_channels": 4}, "fit": {"scales": [2]},
                                      "score": {"amp": False, "knn_spacing_weight": 0.0},
                                      "memory": {"size_mb": 0.5, "min_frames": 1, "k": 1}})
    memory = FeatureMemory(cfg.memory)
    assert memory.floor == (0.0, -math.inf)  # the memory is not in the map yet
    memory.add(torch.randn(1, feature_dim(cfg.memory), 2, 2), torch.ones(2, 2, dtype=torch.bool))
    memory.observe_levels((0.5, 0.1), (0.3, 0.04))
    f = cfg.memory.own_floor
    assert memory.floor == pytest.approx((f, (1 - f) * 0.5))
    assert FeatureMemory(cfg.memory.model_copy(update={"own_floor": None})).floor == (0.0, -math.inf)
    scorer = build_scorer(cfg, backend="torch", device="cpu").module
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=g)
    bank = torch.randn(200, feature_dim(cfg.memory), generator=g).half()
    spacing = torch.rand(200, generator=g)
    def amap(*blend: float) -> torch.Tensor:
        return scorer(x, bank, torch.tensor([120.0, 0.4, *blend]), spacing)[0]
    s, m = amap(1.0, 0.0, 0.0, 0.0, -math.inf), amap(0.0, 1.0, 0.0, 0.0, -math.inf)
    c = float(0.7 * s.mean() - 2.0 * m.mean())  # the blend at S's level, as `blend` puts it
    q = float(0.5 * s.mean())
    blended, floored = amap(0.3, 2.0, c, 0.0, -math.inf), amap(0.3, 2.0, c, 0.5, q)
    assert torch.allclose(floored, torch.maximum(blended, 0.5 * s + q), atol=1e-4)
    assert (floored > blended + 1e-3).any() and (floored == blended).any()  # it binds somewhere, not everywhere
    # the image score reads the blend, not the floor (docs/ablations.md section 21; here a floor above the blend
    # everywhere), and the scorer returns that map fifth
    high = float(blended.max())
    floored, score, _, _, score_map = scorer(x, bank, torch.tensor([120.0, 0.4, 0.3, 2.0, c, 0.5, high]), spacing)
    top = round(0.001 * x.shape[-2] * x.shape[-1])
    assert torch.allclose(score_map, blended, atol=1e-4) and (floored > blended).all()
    assert score.item() == pytest.approx(blended.flatten().topk(top).values.mean().item(), abs=1e-4)


def test_the_memory_map_discounts_the_distance_where_the_bank_is_sparser_than_typical():
    """Where the nearest rows went in far from the bank (a rare normal look), a cell's distance counts less:
    the map is d - spacing_weight x (their mean spacing - the typical one); nothing while the bank is empty."""
    cfg = parse_config(SSDNetConfig, {"model": {"base_channels": 4}, "fit": {"scales": [2]}, "score": {"amp": False},
                                      "memory": {"size_mb": 0.5, "spacing_weight": 0.5}})
    scorer = build_scorer(cfg, backend="torch", device="cpu").module
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=g)
    acts = scorer.vgg(x, scorer.memory.layers)
    bank = torch.randn(200, feature_dim(cfg.memory), generator=g).half()
    spacing = torch.rand(200, generator=g)
    state = torch.tensor([120.0, 0.4, 1.0, 0.0, 0.0])
    m, d, feats = scorer.memory_map(x, acts, bank, state, spacing)
    _, nearest = memory_distance(feats, bank, state[0], cfg.memory.k)
    want = d - 0.5 * (spacing[nearest].mean(1, keepdim=True) - 0.4)
    want = scorer._smooth(torch.nn.functional.interpolate(want, size=(64, 64), mode="bilinear", align_corners=False))
    assert torch.allclose(m, want, atol=1e-5) and not torch.allclose(m, scorer._smooth(
        torch.nn.functional.interpolate(d, size=(64, 64), mode="bilinear", align_corners=False)), atol=1e-3)
    empty, _, _ = scorer.memory_map(x, acts, bank, torch.tensor([0.0, 0.4, 1.0, 0.0, 0.0]), spacing)
    assert torch.equal(empty, torch.zeros_like(empty))


def test_a_checkpoint_holds_weights_memory_and_calibration(stream):
    normal, bad, _ = stream
    det = _detector()
    for frame in normal[:5]:
        det.process(frame)
    buf = io.BytesIO()
    torch.save(det.state_dict(), buf)
    buf.seek(0)
    restarted = _detector()
    restarted.restore(torch.load(buf, weights_only=True))  # what a restarted node does
    a, b = det.process(bad), restarted.process(bad)
    assert a.memory_rows == b.memory_rows > 0
    assert a.calibrated == pytest.approx(b.calibrated) and np.allclose(a.anomaly_map, b.anomaly_map)
    det.reset()  # and a reset forgets all of it
    assert det.memory.count == 0 and det.calibrator.calibrating and det.model_version == 0
    buf.seek(0)
    wider = _detector(memory={"min_frames": 4, "dims": None})  # a checkpoint of another memory width is refused whole
    with pytest.raises(ValueError, match="does not fit features of width 1280"):
        wider.restore(torch.load(buf, weights_only=True))
    assert wider.memory.count == 0 and wider.calibrator.calibrating and wider.model_version == 0


def test_the_calibrated_score_flags_a_jump_not_a_slow_drift():
    cal = ScoreCalibrator(CalibrationConfig(window=50, min_frames=10))
    rng = np.random.default_rng(0)
    flagged = []
    for t in range(300):  # a camera whose normal score drifts from 0.5 to 0.8 over 300 frames
        raw = 0.5 + 0.001 * t + rng.normal(0, 0.01)
        flagged.append(cal.calibrate(raw) > 3.0)
        cal.observe(raw)
    assert sum(flagged) <= 3  # at most a stray tail frame, not the drift
    assert cal.calibrate(0.8 + 0.1) > 3.0  # a jump of ten noise widths is flagged


def _burst_then(cal: ScoreCalibrator, rng: np.random.Generator) -> ScoreCalibrator:
    """60 normal frames (0.5 +- 0.01), then 100 in which 40 % are defects scoring 0.6-0.9."""
    for _ in range(60):
        cal.observe(0.5 + rng.normal(0, 0.01))
    for _ in range(100):
        cal.observe(rng.uniform(0.6, 0.9) if rng.random() < 0.4 else 0.5 + rng.normal(0, 0.01))
    return cal


def test_a_burst_of_defects_does_not_widen_the_camera_s_normal():
    held, counted = (_burst_then(ScoreCalibrator(CalibrationConfig(hold_out_z=z)), np.random.default_rng(0))
                     for z in (3.0, None))
    assert held.stats()[1] < 0.012 < counted.stats()[1]  # the normal frames' spread is 0.01
    assert held.calibrate(0.54) > 3.0 > counted.calibrate(0.54)  # four noise widths: still an alarm after the burst
    assert held.calibrate(0.52) < 3.0
    restored = ScoreCalibrator(held.cfg)
    restored.load_state_dict(held.state_dict())
    assert restored.stats() == held.stats() and list(restored.recent) == list(held.recent)
    assert 1 in restored.recent  # the burst's defects, held out


def test_a_lasting_shift_becomes_the_camera_s_normal_as_fast_as_without_the_hold_out():
    flagged = {}
    for z in (3.0, None):
        cal, rng = ScoreCalibrator(CalibrationConfig(hold_out_z=z)), np.random.default_rng(0)
        for _ in range(100):
            cal.observe(0.5 + rng.normal(0, 0.01))
        flags = []
        for _ in range(300):  # a new product: the normal score moves from 0.5 to 0.7 and stays
            raw = 0.7 + rng.normal(0, 0.01)
            flags.append(cal.calibrate(raw) > 3.0)
            cal.observe(raw)
        assert not any(flags[150:])  # the calibration has followed
        flagged[z] = sum(flags)
    assert flagged[3.0] <= flagged[None] + 5


@pytest.mark.parametrize("new_level", [0.3, 0.7])
def test_after_a_changeover_either_way_the_calibration_is_the_new_product_s(new_level):
    """A camera at 0.5 +- 0.01 for 150 frames, then a product at `new_level` +- 0.01 with a defect (+0.06, six noise
    widths) every fifth frame: the move is seen within window // 8 + 1 frames and the statistics start afresh, so
    once they are calibrated again the new product's normal frames are not flagged and its defects are; a window
    that mixed the two levels kept the old median for half of it (a move down: blind to every defect) or spread
    two levels wide (up)."""
    cal, rng = ScoreCalibrator(CalibrationConfig()), np.random.default_rng(0)
    for _ in range(150):
        cal.observe(0.5 + rng.normal(0, 0.01))
    moved, flags = [], []
    for t in range(120):
        defect = t % 5 == 4
        raw = new_level + rng.normal(0, 0.01) + (0.06 if defect else 0.0)
        flags.append((defect, cal.calibrate(raw) > 3.0))
        if cal.observe(raw):
            moved.append(t)
    after = flags[cal.cfg.window // 8 + cal.cfg.min_frames + 2:]
    assert sum(f for d, f in after if d) >= 0.9 * sum(d for d, _ in after)  # the defects are flagged
    assert sum(f for d, f in after if not d) <= 2  # the normal frames are not
    assert len(moved) == 1 and moved[0] <= cal.cfg.window // 8 + 1
    restored = ScoreCalibrator(cal.cfg)
    restored.load_state_dict(cal.state_dict())
    assert restored.stats() == cal.stats() and list(restored.recent) == list(cal.recent)


@pytest.mark.parametrize("share", [0.5, None])
def test_once_the_memory_counts_the_calibration_reads_the_scores_made_with_it(share):
    """real-dev's 50 warm-up frames, drawn: 16 scored by the frame alone (0.77 +- 0.06), then the memory enters the
    score, its weight growing with its fill (the blend's b (frames / 50) ** 2.5), and the normal score falls to 0.60
    +- 0.02; then defects at 0.70 (five noise widths). Calibrated from every score, the frame-alone ones keep the
    median and the spread up and the defects pass threshold 3 only rarely; from those made while the memory counted
    at least half as much as now, each one does, and no normal frame."""
    cal, rng = ScoreCalibrator(CalibrationConfig(memory_share=share)), np.random.default_rng(0)
    for _ in range(16):
        cal.observe(0.77 + rng.normal(0, 0.06), 0.0)
    for frames in range(17, 51):
        cal.observe(0.6 + rng.normal(0, 0.02), (frames / 50) ** 2.5)
    normal = [cal.calibrate(0.6 + rng.normal(0, 0.02), 1.0) for _ in range(20)]
    defects = [cal.calibrate(0.70 + rng.normal(0, 0.01), 1.0) for _ in range(20)]
    if share is None:
        assert sum(d > 3.0 for d in defects) <= 2
        return
    assert all(d > 3.0 for d in defects) and not any(n > 3.0 for n in normal)
    assert cal.stats(0.0) != cal.stats(1.0)  # a camera without its memory in the score reads every score
    restored = ScoreCalibrator(cal.cfg)
    restored.load_state_dict(cal.state_dict())
    assert restored.stats(1.0) == cal.stats(1.0)
    old = ScoreCalibrator(cal.cfg)  # a checkpoint from before the weights: its scores count as weight 0's, so once
    old.load_state_dict({"scores": list(cal.scores), "recent": list(cal.recent)})  # the memory counts, the last 32
    last = ScoreCalibrator(CalibrationConfig(memory_share=None))
    last.load_state_dict({"scores": list(cal.scores)[-cal.cfg.memory_scores:]})
    assert old.stats(0.0) == cal.stats(0.0) and old.stats(1.0) == last.stats() != old.stats(0.0)


def test_the_first_frames_are_calibrating_against_the_prior():
    cfg = CalibrationConfig(min_frames=5, prior_median=0.6, prior_scale=0.05)
    cal = ScoreCalibrator(cfg)
    assert cal.calibrating and cal.calibrate(0.6) == pytest.approx(0.0) and cal.calibrate(0.8) == pytest.approx(4.0)
    for raw in (0.3, 0.31, 0.29, 0.3, 0.32):
        cal.observe(raw)
    assert not cal.calibrating and cal.calibrate(0.3) < 0.5


@pytest.mark.parametrize("layers, history, exporter", [
    (None, 0, "torchscript"), (["relu4_1", "relu5_1"], 0, "torchscript"), (None, 2, "torchscript"),  # relu5_1: coarser
    pytest.param(None, 2, "dynamo", marks=pytest.mark.skipif(importlib.util.find_spec("onnxscript") is None,
                                                             reason="the dynamo exporter needs onnxscript"))])
def test_the_exported_scorer_takes_the_memory_as_inputs_and_matches_torch(layers, history, exporter, monkeypatch):
    """ONNX Runtime gets the bank, its state and spacing (and the history) as graph inputs, never a copy in the graph:
    same map, score, memory features and maps (and self-similarity cells) as the torch scorer, before and after the
    memory changes and with the bank full; both search the filled rows alone (the graph's bank axis is dynamic, its
    count of pieces the allocation's, with either exporter), in pieces of at most SEARCH_ROWS rows."""
    monkeypatch.setattr(edge.memory, "SEARCH_ROWS", 512)
    memory = {"size_mb": 0.5, "min_frames": 1, "spacing_weight": 0.5, "history_frames": history, "history_cells": 32,
              **({"layers": layers} if layers else {})}
    cfg = parse_config(SSDNetConfig, {"model": {"base_channels": 4}, "fit": {"scales": [2]},
                                      "score": {"pixel_weight": 0.5, "perceptual_weight": 0.5, "amp": False},
                                      "memory": memory})
    torch_s = build_scorer(cfg, backend="torch", device="cpu")
    ort_s = OnnxRuntimeScorer(copy.deepcopy(torch_s.module), exporter=exporter)
    memory = FeatureMemory(cfg.memory, history_dim=torch_s.module.knn_dim)
    for s in (torch_s, ort_s):
        s.use_memory(memory)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=g)
    for step in range(3):
        if step == 2:  # a full bank: every row searched, the graph's last piece shorter than the others
            fill_bank(memory)
        outs = [(*s.score(x), s.features, s.memory_maps, s.score_map) for s in (torch_s, ort_s)]
        for a, b in zip(*outs, strict=True):
            assert torch.allclose(a, b, atol=2e-3, rtol=1e-3)
        assert (torch_s.knn_cells is None) == (ort_s.knn_cells is None) == (history == 0)
        searched = [len(s.memory_inputs(x.device)[0]) for s in (torch_s, ort_s)]
        pieces = edge.memory.search_pieces(len(memory.bank))
        assert pieces == 4 and len(memory.bank) % pieces  # the bank's pieces: three equal, a shorter last one
        assert searched[0] == searched[1] >= max(memory.count, pieces * cfg.memory.k)  # k rows in every piece
        if step < 2:  # a young bank: its filled rows rounded up to whole pieces, not the allocation
            assert searched[0] % pieces == 0 and searched[0] - pieces < max(memory.count, pieces * cfg.memory.k)
        assert (searched[0] == len(memory.bank)) == (step == 2)
        if history:
            assert torch.allclose(torch_s.knn_cells, ort_s.knn_cells, atol=2e-3, rtol=1e-3)
            cells = torch_s.knn_cells
            memory.add_history(cells[:1, :-1] + 0.1 * torch.randn(cells[:1, :-1].shape, generator=g), cells[0, -1],
                               torch.ones(cells.shape[-2:], dtype=torch.bool))
        memory.add(torch.randn(1, feature_dim(cfg.memory), 8, 8, generator=g), torch.ones(8, 8, dtype=torch.bool))
        memory.observe_levels((0.4, 0.05), (0.3, 0.1))  # a blend with an offset: c != 0
        assert step == 0 or memory.ready  # later rounds score with the memory in the map
    assert ort_s.info()["backend"] == "onnxruntime"


@pytest.mark.parametrize("exporter", ["torchscript", pytest.param("dynamo", marks=pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None, reason="the dynamo exporter needs onnxscript, not installed"))])
def test_the_exported_default_scorer_takes_a_batch(exporter):
    """The default scorer's graph (self-similarity with the history, memory full) keeps the batch axis its sidecar
    calls dynamic (`ssdnet export`, a TensorRT profile's `--max-batch`): two frames scored together give each frame's
    map and score alone, on torch and on ONNX Runtime, with either exporter (the dynamo one needs onnxscript, a test
    dependency)."""
    cfg = parse_config(SSDNetConfig, {"model": {"base_channels": 4}, "score": {"amp": False},
                                      "memory": {"size_mb": 0.5, "min_frames": 1, "history_frames": 2,
                                                 "history_cells": 32}})
    torch_s = build_scorer(cfg, backend="torch", device="cpu")
    ort_s = OnnxRuntimeScorer(copy.deepcopy(torch_s.module), exporter=exporter)
    memory = FeatureMemory(cfg.memory, history_dim=torch_s.module.knn_dim)
    g = torch.Generator().manual_seed(1)
    memory.add(torch.randn(1, feature_dim(cfg.memory), 8, 8, generator=g), torch.ones(8, 8, dtype=torch.bool))
    fill_bank(memory)
    memory.observe_levels((0.4, 0.05), (0.3, 0.1))
    memory.add_history(torch.randn(1, torch_s.module.knn_dim, 16, 16, generator=g), torch.rand(16, 16, generator=g),
                       torch.ones(16, 16, dtype=torch.bool))
    assert memory.ready and memory.blend[1] > 0 and memory.history_count == 32  # the memory and history in the map
    for s in (torch_s, ort_s):
        s.use_memory(memory)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(np.stack([texture(t, 128, rng) for t in ("brick", "gravel")])).permute(0, 3, 1, 2) / 255.0
    alone = [torch_s.score(x[i:i + 1]) for i in range(2)]
    for s in (torch_s, ort_s):
        amap, score = s.score(x)
        assert amap.shape == (2, 1, 128, 128) and score.shape == (2,)
        for i, (m, v) in enumerate(alone):
            assert torch.allclose(amap[i:i + 1], m, atol=2e-3, rtol=1e-3) and abs(float(score[i] - v[0])) < 2e-3
    assert not torch.allclose(alone[0][0], alone[1][0], atol=0.1)  # two frames, two maps: the rows are not one


def _scratched_streams(size: int = 96) -> list[tuple[list[np.ndarray], np.ndarray, np.ndarray]]:
    """Three brick streams (seeds 0-2): five normal frames, then one with a drawn scratch, and its mask."""
    out = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        normal = [texture("brick", size, rng) for _ in range(5)]
        out.append((normal, *draw_defect(texture("brick", size, rng), rng, "scratch")))
    return out


def test_the_history_raises_defects_the_frame_alone_ranks_low():
    """The camera's earlier frames, searched beside the frame's own cells (memory.history_frames), show where a
    thin scratch differs from the texture: the stream whose scratch the frame alone ranks lowest gains most (0.88 ->
    0.92 pixel AUROC when written), and none loses (docs/ablations.md sections 34, 35)."""
    aurocs = {}
    for frames in (0, 4):
        for i, (normal, bad, mask) in enumerate(_scratched_streams()):
            det = _detector(**FINE, memory={"min_frames": 4, "history_frames": frames, "history_cells": 256})
            for frame in normal:
                det.process(frame)
            assert det.memory.history_count == min(frames, len(normal)) * 256
            aurocs[frames, i] = roc_auc_score(mask.ravel(), det.process(bad).anomaly_map.ravel())
    lowest = min(range(3), key=lambda i: aurocs[0, i])
    assert aurocs[4, lowest] > aurocs[0, lowest] + 0.02, aurocs
    assert all(aurocs[4, i] > aurocs[0, i] - 0.01 for i in range(3)), aurocs


@pytest.mark.parametrize("margin", [0.0, MemoryConfig().history_margin])
def test_a_defect_the_history_holds_keeps_its_own_verdict(margin):
    """The map takes the with-history verdict only where it stands above the frame-alone one (by `history_margin`
    std of it): a history full of the same defect (a run of alike defects) can raise the map, never lower it, and
    with a margin no verdict passes the map is the frame-alone one."""
    rng = np.random.default_rng(1)
    bad = texture("gravel", 96, rng)
    mask = np.zeros((96, 96), bool)
    mask[36:60, 30:54] = True
    bad[mask] = 255  # a plain defect the frame alone finds
    scorers = [build_scorer(parse_config(SSDNetConfig, {**FIT_FREE, "memory": {
        "history_frames": 2, "history_cells": 1024, "history_margin": m}}), backend="torch", device="cpu")
        for m in (margin, 1e6)]
    memory = FeatureMemory(scorers[0].module.memory, history_dim=scorers[0].module.knn_dim)
    for scorer in scorers:
        scorer.use_memory(memory)
    x = torch.from_numpy(bad).permute(2, 0, 1)[None].float() / 255
    alone = scorers[0].score(x)[0]
    cells = scorers[0].knn_cells
    memory.add_history(cells[:1, :-1], cells[0, -1], torch.ones(cells.shape[-2:], dtype=torch.bool))
    with_itself, past_any = (scorer.score(x)[0] for scorer in scorers)  # the defect's exact twins in the history
    assert memory.history_count == cells.shape[-2] * cells.shape[-1]
    assert (with_itself >= alone - 1e-4).all() and not torch.allclose(with_itself, alone)
    assert roc_auc_score(mask.ravel(), with_itself[0, 0].numpy().ravel()) > 0.95
    assert torch.allclose(past_any, alone, atol=1e-6)


def test_the_history_is_a_bounded_ring_that_a_checkpoint_keeps():
    cfg = MemoryConfig(history_frames=2, history_cells=16)
    memory = FeatureMemory(cfg, history_dim=5)
    valid = torch.zeros(6, 6, dtype=torch.bool)
    valid[:4, :5] = True  # the frame's cells; the rest is padding
    for i in range(3):
        cells = torch.full((1, 5, 6, 6), float(i))
        cells[0, 1] = torch.arange(36.0).reshape(6, 6)  # where each cell lies
        assert memory.add_history(cells, torch.full((6, 6), float(i)), valid) == 16
    assert memory.history_count == 32 == len(memory.history) and memory.state_tensor()[7] == 32
    assert sorted(set(memory.history[:, 0].tolist())) == [1.0, 2.0]  # the oldest frame's cells are overwritten
    assert set(memory.history[:, 1].long().tolist()) <= set(torch.nonzero(valid.reshape(-1))[:, 0].tolist())
    assert torch.equal(memory.history_own, memory.history[:, 0].float())  # each row's own distance with it
    assert memory.nbytes >= 32 * (5 * 2 + 4)
    assert footprint_mb(cfg, 5) - footprint_mb(cfg) == pytest.approx(32 * (5 * 2 + 4) / 2**20)
    restarted = FeatureMemory(cfg, history_dim=5)
    restarted.load_state_dict(memory.state_dict())
    assert torch.equal(restarted.history, memory.history) and restarted.history_next == memory.history_next
    other = FeatureMemory(cfg, history_dim=7)  # another width: the history starts empty, the bank is kept
    other.load_state_dict(memory.state_dict())
    assert other.history_count == 0
    memory.reset()
    assert memory.history_count == 0 and memory.state_tensor()[7] == 0


def test_a_thin_defect_the_memory_s_cells_call_normal_is_kept_out_by_the_frame_s_own_outlier_rule():
    """A scratch is thin for the memory's 8 px cells (within `admit_cell_ratio` of the typical distance, as a real
    crack is: docs/ablations.md section 39) but an outlier of the frame's own self-similarity: with `admit_own_mad`
    (the default) its cells stay out of the bank, and the frame's other cells still go in. The distance rule is
    opened here (every cell within its ratio), so without the new rule every cell would go in."""
    rng = np.random.default_rng(1)
    normal = [texture("brick", 128, rng) for _ in range(5)]
    bad, mask = draw_defect(texture("brick", 128, rng), rng, "scratch")
    cells = torch.from_numpy(mask.reshape(16, 8, 16, 8).any((1, 3)))  # the memory's 8 px cells the scratch touches
    det = _detector(memory={"min_frames": 4, "admit_z": 1e9, "admit_cell_ratio": 1e9, "admit_max_novel": 1.0})
    assert det.cfg.memory.admit_own_mad == 2.0
    for frame in normal:
        det.process(frame)
    assert det.memory.typical[1] > 0  # the cell rule of a camera with a typical distance decides
    with mock.patch.object(det.memory, "add", wraps=det.memory.add) as add:
        det.process(bad)
    admitted = add.call_args.args[1]
    assert float(admitted[cells].float().mean()) < 0.5 < 0.9 < float(admitted[~cells].float().mean())


def test_a_fixture_in_view_does_not_set_how_much_the_memory_counts():
    """A rail with bright bolts beside a moving product is unique in the frame: its self-similarity is high in every
    frame. The memory's weight is the ratio of the self-similarity's and the memory distance's spreads over a frame's
    cells, so as stds (before docs/ablations.md section 46) the rail set it, and the memory's border artefacts came
    through as a burst of false events once it was searched; clipped at 3 robust stds, the bolts no longer set it."""
    rng, src = np.random.default_rng(0), texture("gravel", 256, np.random.default_rng(1))
    rail = np.full((128, 32, 3), 55, np.uint8)
    for y in (20, 64, 108):
        rail[y - 5:y + 5, 8:24] = 200
    dets = {"product": Detector(SSDNetConfig(), "cpu"), "with the rail": Detector(SSDNetConfig(), "cpu")}
    scores = {name: [] for name in dets}
    for _ in range(24):
        y, x = rng.integers(0, 128, 2)
        product = src[y:y + 128, x:x + 128]
        for name, frame in (("product", product), ("with the rail", np.concatenate([rail, product], axis=1))):
            scores[name].append(dets[name].process(frame).calibrated)
    assert all(det.memory.ready for det in dets.values())
    scale = {name: det.memory.scale for name, det in dets.items()}
    assert scale["with the rail"] < 3 * scale["product"], scale  # 11x as stds, 2.2x clipped (1.1x as MADs)
    assert max(scores["with the rail"][16:]) < 3.0, scores  # node.threshold's default: no false event


def cropper(rng: np.random.Generator):
    """A camera's frames of a 160 px texture: crop(texture) -> a random 128 px crop of it, drawn with `rng`."""
    def crop(src: np.ndarray) -> np.ndarray:
        y, x = rng.integers(0, 32, 2)
        return src[y:y + 128, x:x + 128].copy()
    return crop


def on_brick(cfg: SSDNetConfig, crop, brick: np.ndarray) -> Detector:
    """A camera after 30 frames of brick: its memory ready, its calibration done."""
    det = Detector(cfg, "cpu")
    for _ in range(30):
        det.process(crop(brick))
    assert det.memory.ready and not det.calibrator.calibrating
    return det


@pytest.mark.parametrize("move_novel", [0.8, None])
def test_a_product_changeover_starts_the_camera_afresh(move_novel):
    """Brick for 30 frames, then gravel, which scores far above brick's normal (docs/ablations.md sections 47 and 51
    at 128 px): every gravel cell is novel to brick's memory, so the `memory.move_frames`-th gravel frame shows the
    move (without `memory.move_novel`, the calibration's rule sees it within window // 8 + 1 frames, and later), and
    that frame resets the camera, so the gravel frames after it are judged exactly as a camera that never saw brick
    judges them."""
    rng = np.random.default_rng(0)
    brick, gravel = texture("brick", 160, np.random.default_rng(1)), texture("gravel", 160, np.random.default_rng(1))
    crop = cropper(rng)

    cfg = parse_config(SSDNetConfig, {"memory": {"move_novel": move_novel}})
    det = on_brick(cfg, crop, brick)
    seen = 0  # gravel frames until the move
    for _ in range(cfg.calibration.window // 8 + 1):
        seen += 1
        if (d := det.process(crop(gravel))).normal_moved:
            break
    assert d.normal_moved and det.memory.count == 0 and det.calibrator.calibrating
    assert seen == cfg.memory.move_frames if move_novel else seen > cfg.memory.move_frames
    after = [crop(gravel) for _ in range(20)]
    new = Detector(cfg, "cpu")
    assert [det.process(f).calibrated for f in after] == pytest.approx([new.process(f).calibrated for f in after],
                                                                      abs=1e-4)


def test_a_product_back_after_a_move_its_scores_found_resumes_calibrated():
    """Without `memory.move_novel` the calibration's rule finds the changeover, and emptied the calibration before the
    camera kept brick's surface: brick back, it resumed calibrating on the prior, and learnt whatever it showed then as
    normal, defects included (an outside audit). The kept surface now has the calibration it had."""
    rng = np.random.default_rng(0)
    brick, gravel = texture("brick", 160, np.random.default_rng(1)), texture("gravel", 160, np.random.default_rng(1))
    crop = cropper(rng)
    det = on_brick(parse_config(SSDNetConfig, {"memory": {"move_novel": None}}), crop, brick)
    scores = list(det.calibrator.scores)
    for _ in range(det.cfg.calibration.window // 8 + 1):
        if det.process(crop(gravel)).normal_moved:
            break
    assert det.shelf and not det.memory.ready
    d = det.process(crop(brick))
    assert d.normal_recalled and not d.calibrating and d.calibrated < 3.0
    assert list(det.calibrator.scores)[: len(scores)] == scores


def test_a_burst_of_defects_is_no_changeover():
    """Ten frames in a row with a drawn defect each (a bad batch) leave the camera's normal where it was: a defect
    covers a part of the frame, a changeover all of it (section 51), so none of them counts towards a move."""
    rng = np.random.default_rng(0)
    brick = texture("brick", 160, np.random.default_rng(1))
    crop = cropper(rng)

    det = on_brick(SSDNetConfig(), crop, brick)
    flagged = 0
    for _ in range(10):
        d = det.process(draw_defect(crop(brick), rng)[0])
        assert not d.normal_moved and det.novel_run == 0
        flagged += d.calibrated > 3.0
    assert flagged >= 7 and det.memory.count > 0


@pytest.mark.parametrize("surfaces", [2, 0])
def test_a_product_back_after_another_resumes_what_the_camera_knew_of_it(surfaces):
    """Brick, then gravel (the camera moves at its `move_frames`-th frame), then brick again (section 52): the first
    brick frame is novel to gravel's memory and not to brick's kept surface, so brick resumes with that frame, judged
    against brick's memory and calibration, and gravel is kept in its place; then gravel is recalled just the same.
    Without kept surfaces (`recall_surfaces` 0) the brick frame is judged against gravel's memory, novel to it."""
    rng = np.random.default_rng(0)
    brick, gravel = texture("brick", 160, np.random.default_rng(1)), texture("gravel", 160, np.random.default_rng(1))
    crop = cropper(rng)

    det = on_brick(parse_config(SSDNetConfig, {"memory": {"recall_surfaces": surfaces}}), crop, brick)
    moved = [det.process(crop(gravel)).normal_moved for _ in range(30)]
    assert moved.index(True) == det.cfg.memory.move_frames - 1
    assert det.memory.ready and len(det.shelf) == min(surfaces, 1)
    d = det.process(crop(brick))
    assert d.normal_recalled == bool(surfaces) and not d.normal_moved
    if not surfaces:
        assert det.novel_run == 1  # judged against gravel's memory, to which it is novel
        return
    assert not d.calibrating and d.calibrated < 3.0 and det.memory.ready and len(det.shelf) == 1
    later = [det.process(crop(brick)) for _ in range(4)] + [det.process(draw_defect(crop(brick), rng)[0])]
    assert not any(d.normal_recalled or d.normal_moved for d in later)
    assert max(d.calibrated for d in later[:4]) < 3.0 < later[4].calibrated
    d = det.process(crop(gravel))
    assert d.normal_recalled and not d.calibrating and d.calibrated < 3.0 and len(det.shelf) == 1
    det.reset()
    assert not det.shelf


@pytest.mark.parametrize("saved_with_them", [True, False])
def test_a_checkpoint_keeps_the_surfaces_a_camera_moved_away_from(saved_with_them):
    """A camera's checkpoint (what a node with `node.checkpoint_dir` resumes a restarted camera from) holds the
    surfaces it kept, so brick back after gravel and a restart is recognised from its first frame, calibrated, as
    without the restart; a checkpoint from before kept surfaces (no `shelf`) resumes gravel alone, and the brick frame
    is judged against gravel's memory, novel to it."""
    rng = np.random.default_rng(0)
    brick, gravel = texture("brick", 160, np.random.default_rng(1)), texture("gravel", 160, np.random.default_rng(1))
    crop = cropper(rng)
    det = on_brick(SSDNetConfig(), crop, brick)
    for _ in range(det.cfg.memory.move_frames + 20):
        det.process(crop(gravel))
    assert len(det.shelf) == 1 and det.memory.ready
    saved = io.BytesIO()
    torch.save(det.state_dict(), saved)
    saved.seek(0)
    state = torch.load(saved, map_location="cpu", weights_only=True)  # as the node loads a checkpoint
    if not saved_with_them:
        del state["shelf"]
    restarted = Detector(SSDNetConfig(), "cpu")
    restarted.restore(state)
    assert len(restarted.shelf) == int(saved_with_them)
    d = restarted.process(crop(brick))
    assert d.normal_recalled == saved_with_them and not d.normal_moved
    if saved_with_them:
        assert not d.calibrating and d.calibrated < 3.0 and len(restarted.shelf) == 1  # gravel kept in its place
    else:
        assert restarted.novel_run == 1
    other = Detector(parse_config(SSDNetConfig, {"memory": {"dims": 64}}), "cpu")  # a kept bank of another width
    with pytest.raises(ValueError, match="kept surface"):
        other.restore({**other.state_dict(), "shelf": det.state_dict()["shelf"]})
    assert not other.shelf


def test_a_camera_moved_by_a_passing_cover_takes_its_surface_back():
    """Something covers the view for 8 frames (a hand at the lens): the camera moves at its `move_frames`-th; the first
    brick frame after it, to which the new memory cannot vouch yet, shows brick's kept surface, which resumes
    (section 52), and the cover's half-learnt state is not kept."""
    rng = np.random.default_rng(0)
    brick = texture("brick", 160, np.random.default_rng(1))
    crop = cropper(rng)

    det = on_brick(SSDNetConfig(), crop, brick)
    hand = np.clip(rng.normal((200, 150, 130), 6, (8, 128, 128, 3)), 0, 255).astype(np.uint8)
    n = det.cfg.memory.move_frames
    assert [det.process(f).normal_moved for f in hand] == [False] * (n - 1) + [True] + [False] * (8 - n)
    assert not det.memory.ready
    d = det.process(crop(brick))
    assert d.normal_recalled and not d.calibrating and d.calibrated < 3.0 and det.memory.ready and not det.shelf


@pytest.mark.parametrize("mads", [None, 3.0])
def test_a_texture_whose_normal_frames_are_often_novel_keeps_learning_them_and_a_tile_line_keeps_a_defect_out(mads):
    """A frame above the camera's median with more novel cells than `admit_max_novel` adds nothing (a large defect),
    unless the frames the rule let through are often that novel (a stochastic texture the bank covers unevenly):
    refusing those lost the looks they show, and their frames grew more novel still (docs/ablations.md section 63).
    The frames it refuses do not move the bound, so a run of large defects cannot let itself in."""
    rng = np.random.default_rng(0)
    cfg = MemoryConfig(admit_novel_mads=mads)
    grass, tiles = FeatureMemory(cfg), FeatureMemory(cfg)
    for n in range(150):
        grass.observe_novel(float(rng.uniform(0.05, 0.3)))
        tiles.observe_novel(float(rng.uniform(0.0, 0.03)))
        if n < edge.memory.MIN_SHARES - 1:  # too few to say what is normal
            assert grass.novel_bound == cfg.admit_max_novel
    assert tiles.novel_bound == cfg.admit_max_novel and len(grass.shares) == 100  # the last 100 frames'
    assert (grass.novel_bound > 0.3) == (mads is not None)
    restarted = FeatureMemory(cfg)
    restarted.load_state_dict(grass.state_dict())  # a checkpoint keeps them
    assert restarted.novel_bound == grass.novel_bound
    restarted.reset()
    assert restarted.novel_bound == cfg.admit_max_novel

    det = _detector(memory={"min_frames": 4, "admit_novel_mads": mads})  # the detector's rule, frame by frame
    for _ in range(8):  # a moving line: each frame another crop (one frame again and again would be still)
        frame = texture("grass", 96, rng)
        det.process(frame)
    assert det.memory.shares and all(0.0 <= s <= 1.0 for s in det.memory.shares)  # its frames' shares, recorded
    x = image_to_tensor(frame, "cpu", det.fitter.multiple)

    def remember(novel: float) -> int:  # the last frame again, above the camera's median, `novel` of it novel
        return det._remember(x, 96, 96, 1.0, False, torch.tensor(novel))

    det.memory.shares.clear()
    det.memory.shares.extend(rng.uniform(0.0, 0.03, 100))  # a tile line
    assert all(remember(0.3) == 0 for _ in range(60))  # a run of large defects: refused, every one
    assert det.memory.novel_bound == cfg.admit_max_novel
    det.memory.shares.extend(rng.uniform(0.05, 0.3, 100))  # grass
    assert (remember(0.25) > 0) == (mads is not None)  # as novel as its normal frames: learnt
