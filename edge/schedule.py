"""Frame-deadline scheduler: how many warm fit steps the next frame gets.

A frame costs  overhead + steps * step + score  (overhead: tensor conversion, weight hand-over, ...).
The scheduler keeps the recent per-step, scoring and overhead times and, for each, estimates the
cost a frame should plan for as the largest of the latest sample, an EWMA and a high quantile
(default p95) of a sliding window: a slow-down (another process taking the core) lowers the very
next frame's steps, the quantile remembers occasional slow steps, and the EWMA smooths. Then

    steps = floor((budget * headroom - overhead - score) / step), clamped to [min_steps, max_steps]

Budgets: `frame_budget_ms` bounds the whole frame (fit + score + overhead), `fit_budget_ms` bounds
the fit alone; either or both. The Detector builds one scheduler per source from `fit.frame_budget_ms`
and `fit.budget_ms` (the line config's older `node.frame_budget_ms` / `node.budget_ms` map onto them).
Before any step has been measured it plans `min_steps`, so the first frames measure the cost.

When even `min_steps` does not fit the frame budget, the frame still gets `min_steps` (a frame
is never left unfitted), `unmet` is counted and a warning is logged (at most once per
`log_interval_s`). Frames whose measured time exceeded the frame budget are counted in `over`.

Everything takes its times as arguments, so tests drive it with fake step-time sequences; the
Detector feeds it the times it measures.
"""
from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


class RecentTimes:
    """EWMA plus a sliding window of recent durations (ms); `estimate` is the largest of the latest
    sample, the EWMA and the window's `quantile`."""

    def __init__(self, window: int = 32, alpha: float = 0.2, quantile: float = 0.95):
        if not 0 < alpha <= 1 or not 0 < quantile <= 1 or window < 1:
            raise ValueError("need 0 < alpha <= 1, 0 < quantile <= 1, window >= 1")
        self.alpha, self.quantile = alpha, quantile
        self.values: deque[float] = deque(maxlen=window)
        self.ewma: float | None = None

    def add(self, ms: float) -> None:
        if not math.isfinite(ms) or ms < 0:
            return
        self.values.append(ms)
        self.ewma = ms if self.ewma is None else self.alpha * ms + (1 - self.alpha) * self.ewma

    def __len__(self) -> int:
        return len(self.values)

    def quantile_value(self) -> float | None:
        if not self.values:
            return None
        v = sorted(self.values)
        # nearest-rank quantile: deterministic and never below the quantile of the samples
        return v[min(len(v) - 1, max(0, math.ceil(self.quantile * len(v)) - 1))]

    def estimate(self, default: float = 0.0) -> float:
        if self.ewma is None:
            return default
        return max(self.ewma, self.quantile_value(), self.values[-1])


@dataclass
class Plan:
    steps: int
    expected_ms: float | None  # planned frame time; None before anything was measured
    met: bool                  # False: even min_steps is expected to exceed a budget


@dataclass
class StepScheduler:
    """Chooses warm fit steps per frame from measured step, scoring and overhead times."""

    frame_budget_ms: float | None = None
    fit_budget_ms: float | None = None
    min_steps: int = 1
    max_steps: int = 5
    headroom: float = 0.95        # plan for this fraction of the budget
    window: int = 32
    alpha: float = 0.2
    quantile: float = 0.95
    log_interval_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    step: RecentTimes = field(init=False)
    score: RecentTimes = field(init=False)
    overhead: RecentTimes = field(init=False)
    frames: int = field(default=0, init=False)
    unmet: int = field(default=0, init=False)    # frames planned that could not meet a budget with min_steps
    over: int = field(default=0, init=False)     # frames whose measured time exceeded frame_budget_ms
    last_plan: Plan | None = field(default=None, init=False)
    _last_log: float = field(default=-math.inf, init=False)
    _suppressed: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.min_steps < 0 or self.max_steps < self.min_steps:
            raise ValueError(f"need 0 <= min_steps <= max_steps, got {self.min_steps}, {self.max_steps}")
        for b in (self.frame_budget_ms, self.fit_budget_ms):
            if b is not None and not b > 0:
                raise ValueError(f"budgets must be positive, got {b}")
        self.step, self.score, self.overhead = (RecentTimes(self.window, self.alpha, self.quantile) for _ in range(3))

    @property
    def active(self) -> bool:
        return self.frame_budget_ms is not None or self.fit_budget_ms is not None

    def plan(self, max_steps: int | None = None) -> Plan:
        """Steps for the next frame (at most `max_steps`, default the scheduler's)."""
        cap = self.max_steps if max_steps is None else max_steps
        floor_steps = min(self.min_steps, cap)
        if not self.active:
            p = Plan(cap, None, True)
        elif not len(self.step):
            p = Plan(floor_steps, None, True)  # nothing measured yet: the cheapest frame measures the costs
        else:
            step = max(self.step.estimate(), 1e-6)
            fixed = self.overhead.estimate() + self.score.estimate()
            n = cap
            if self.frame_budget_ms is not None:
                n = min(n, math.floor((self.frame_budget_ms * self.headroom - fixed) / step))
            if self.fit_budget_ms is not None:
                n = min(n, math.floor(self.fit_budget_ms * self.headroom / step))
            met = n >= floor_steps
            n = max(floor_steps, n)
            p = Plan(n, fixed + n * step, met)
            if not met:
                self._unmet(p, step, fixed)
        self.last_plan = p
        return p

    def _unmet(self, p: Plan, step: float, fixed: float) -> None:
        self.unmet += 1
        now = self.clock()
        if now - self._last_log < self.log_interval_s:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more frames since the last warning)" if self._suppressed else ""
        budgets = ", ".join(f"{name} {b:.1f} ms" for name, b in (("frame budget", self.frame_budget_ms),
                                                                  ("fit budget", self.fit_budget_ms)) if b is not None)
        log.warning("%s cannot be met even with %d fit step(s): expect %.1f ms per frame "
                    "(step %.1f ms, scoring + overhead %.1f ms); %d frame(s) so far%s",
                    budgets, p.steps, p.expected_ms, step, fixed, self.unmet, more)
        self._last_log, self._suppressed = now, 0

    # ------------------------------------------------------------ measurements

    def observe_fit(self, steps: int, fit_ms: float) -> None:
        """A fit of `steps` steps took `fit_ms`: one sample of the mean step time."""
        if steps > 0:
            self.step.add(fit_ms / steps)

    def observe_frame(self, total_ms: float, fit_ms: float, score_ms: float, *, warm: bool = True) -> None:
        """A frame's measured times; `warm=False` for a cold fit, which is not held against the budget."""
        self.score.add(score_ms)
        self.overhead.add(max(0.0, total_ms - fit_ms - score_ms))
        if warm:
            self.frames += 1
            if self.frame_budget_ms is not None and total_ms > self.frame_budget_ms:
                self.over += 1

    def stats(self) -> dict:
        return {"frames": self.frames, "unmet": self.unmet, "over_budget": self.over,
                "step_ms": round(self.step.estimate(), 3), "score_ms": round(self.score.estimate(), 3),
                "overhead_ms": round(self.overhead.estimate(), 3),
                "last_steps": self.last_plan.steps if self.last_plan else None}
