"""edge.schedule: the frame-deadline scheduler, driven by fake step-time sequences and a fake clock."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.schedule import RecentTimes, StepScheduler


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def simulate(s: StepScheduler, step_times, score_ms: float = 10.0, overhead_ms: float = 2.0) -> list[tuple[int, float]]:
    """Feed frames whose k-th step takes step_times[frame][k] (cycled); returns (steps, frame ms) per frame."""
    out = []
    for times in step_times:
        steps = s.plan().steps
        fit = float(sum(times[k % len(times)] for k in range(steps)))
        total = overhead_ms + fit + score_ms
        s.observe_fit(steps, fit)
        s.observe_frame(total, fit, score_ms)
        out.append((steps, total))
    return out


def test_recent_times_estimate_is_max_of_ewma_and_quantile():
    r = RecentTimes(window=10, alpha=0.5, quantile=0.9)
    assert r.estimate(default=3.0) == 3.0
    for v in (10, 10, 10, 10, 10, 10, 10, 10, 10, 50):
        r.add(v)
    assert r.quantile_value() == 10  # nearest rank: 9th of 10
    assert r.ewma == pytest.approx(30.0)
    assert r.estimate() == pytest.approx(50.0)  # the latest sample
    r.add(10)
    assert r.estimate() == pytest.approx(20.0)  # the EWMA
    r.add(float("nan"))
    r.add(-1)
    assert len(r) == 10 and r.values[-1] == 10


def test_no_budget_plans_max_steps():
    s = StepScheduler(max_steps=5)
    assert s.plan().steps == 5
    assert s.plan(max_steps=3).steps == 3


def test_first_frame_measures_with_min_steps():
    s = StepScheduler(frame_budget_ms=100, max_steps=8)
    p = s.plan()
    assert (p.steps, p.expected_ms, p.met) == (1, None, True)


def test_steps_follow_measured_step_time():
    s = StepScheduler(frame_budget_ms=100, max_steps=20, headroom=1.0)
    runs = simulate(s, [[10.0]] * 10)
    # (100 - 10 score - 2 overhead) / 10 ms per step = 8 steps once measured
    assert [n for n, _ in runs][1:] == [8] * 9
    assert all(total <= 100 for _, total in runs)
    assert s.unmet == 0 and s.over == 0


def test_capped_by_max_steps_and_fit_budget():
    s = StepScheduler(frame_budget_ms=1000, max_steps=5, headroom=1.0)
    simulate(s, [[1.0]] * 3)
    assert s.plan().steps == 5
    s.fit_budget_ms = 3.5
    assert s.plan().steps == 3


def test_slowdown_is_tracked_at_once_and_p95_stays_under_budget():
    """Step time jumps from 5 to 15 ms (another process takes the core): the next plan drops at once."""
    s = StepScheduler(frame_budget_ms=80, max_steps=20, headroom=0.95)
    rng = np.random.default_rng(0)
    seq = [list(5 + rng.uniform(0, 1, 3)) for _ in range(30)] + [list(15 + rng.uniform(0, 2, 3)) for _ in range(30)]
    runs = simulate(s, seq)
    steps = [n for n, _ in runs]
    assert steps[25] >= 11 and steps[31] <= 4
    totals = np.array([t for _, t in runs[1:]])
    assert np.percentile(totals, 95) <= 80
    assert s.over <= 0.05 * len(totals) + 1  # the frame during which the slow-down began may overrun


def test_occasional_slow_step_is_absorbed_by_the_quantile():
    s = StepScheduler(frame_budget_ms=60, max_steps=50, quantile=0.95, window=40)
    seq = [[4.0, 4.0, 4.0, 12.0 if i % 10 == 5 else 4.0] for i in range(100)]
    runs = simulate(s, seq)
    totals = np.array([t for _, t in runs])
    assert np.percentile(totals, 95) <= 60


def test_unmet_budget_is_counted_and_logged_throttled(caplog):
    clock = FakeClock()
    s = StepScheduler(frame_budget_ms=20, max_steps=5, clock=clock, log_interval_s=10)
    with caplog.at_level(logging.WARNING, logger="edge.schedule"):
        runs = simulate(s, [[30.0]] * 4)
        clock.t = 11
        simulate(s, [[30.0]])
    assert [n for n, _ in runs] == [1, 1, 1, 1]  # never below min_steps
    assert s.unmet == 4 and s.over == 5
    assert s.last_plan is not None and not s.last_plan.met
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "frame budget 20.0 ms cannot be met even with 1 fit step" in warnings[0]
    assert "2 more frames since the last warning" in warnings[1]
    assert s.stats()["unmet"] == 4


def test_cold_frames_are_not_held_against_the_budget():
    s = StepScheduler(frame_budget_ms=10, max_steps=5)
    s.observe_fit(60, 600.0)
    s.observe_frame(620.0, 600.0, 15.0, warm=False)
    assert s.over == 0 and s.frames == 0


def test_zero_warm_steps_plans_zero():
    s = StepScheduler(frame_budget_ms=10, min_steps=0, max_steps=0)
    s.observe_fit(3, 30.0)
    assert s.plan().steps == 0 and s.unmet == 0


def test_invalid_settings():
    with pytest.raises(ValueError):
        StepScheduler(min_steps=3, max_steps=2)
    with pytest.raises(ValueError):
        StepScheduler(frame_budget_ms=0)


def test_detector_uses_the_scheduler(textures):
    """The Detector's one scheduler is configured from fit.frame_budget_ms: an impossible frame budget gives
    1 warm step and budget_met False; without a budget every warm frame gets fit.warm_steps."""
    base = {"fit": {"steps": 2, "warm_steps": 3, "scales": [1, 2]}, "model": {"base_channels": 4},
            "loss": {"perceptual_weight": 0.0}, "score": {"masks": 0, "pixel_weight": 0.1}, "device": "cpu"}
    img, later = textures["brick"][:64, :64], textures["brick"][64:, 64:]  # a moving line: no frame is still
    budgeted = SSDNetConfig.model_validate({**base, "fit": {**base["fit"], "frame_budget_ms": 1e-3}})
    d = Detector(budgeted)
    assert d.scheduler.frame_budget_ms == 1e-3 and d.scheduler.fit_budget_ms is None
    first = d.process(img)
    assert first.fit_steps == 2 and first.budget_met
    warm = d.process(later)
    assert warm.fit_steps == 1 and not warm.budget_met and d.scheduler.unmet == 1
    free = Detector(SSDNetConfig.model_validate(base))
    free.process(img)
    warm = free.process(later)
    assert warm.fit_steps == 3 and warm.budget_met and free.scheduler.unmet == 0
