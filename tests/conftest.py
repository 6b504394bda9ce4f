"""Shared fixtures: small real textures (scikit-image's, via edge.synthetic)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import edge.device
import edge.fitter
import edge.scorers.factory
import edge.scorers.torch_scorer
from edge.synthetic import TEXTURES, texture

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def textures() -> dict[str, np.ndarray]:
    """One 128x128 crop of each bundled texture, uint8 HxWx3 RGB."""
    rng = np.random.default_rng(0)
    return {name: texture(name, 128, rng) for name in TEXTURES}


def _native(monkeypatch: pytest.MonkeyPatch, native: bool) -> None:
    for module in (edge.device, edge.fitter, edge.scorers.factory, edge.scorers.torch_scorer):
        monkeypatch.setattr(module, "native_mixed_precision", lambda device_type: device_type != "cpu" or native)


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mixed precision as on a CPU with native bf16, whatever this one has (emulated bf16 is slow, not wrong)."""
    _native(monkeypatch, True)


@pytest.fixture
def emulated_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU without native bf16, whatever this one has."""
    _native(monkeypatch, False)
