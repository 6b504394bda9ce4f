"""Shared fixtures: small real textures (scikit-image's, via edge.synthetic)."""
from __future__ import annotations

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
