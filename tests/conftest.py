"""Shared fixtures: small real textures (scikit-image's, via edge.synthetic); signal handlers given back to pytest."""
from __future__ import annotations

import signal

import numpy as np
import pytest
import torch

import edge.device
from edge.synthetic import TEXTURES, texture

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def textures() -> dict[str, np.ndarray]:
    """One 128x128 crop of each bundled texture, uint8 HxWx3 RGB."""
    rng = np.random.default_rng(0)
    return {name: texture(name, 128, rng) for name in TEXTURES}


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mixed precision as on a CPU with native bf16, whatever this one has (emulated bf16 is slow, not wrong)."""
    monkeypatch.setattr(edge.device, "cpu_has_native_bf16", lambda: True)


@pytest.fixture
def emulated_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU without native bf16, whatever this one has."""
    monkeypatch.setattr(edge.device, "cpu_has_native_bf16", lambda: False)


@pytest.fixture
def restore_signals():
    """A sinks stage run in the test's process takes SIGINT and SIGTERM for itself: give them back to pytest."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
