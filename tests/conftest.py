"""Shared fixtures: small real textures (scikit-image's, via edge.synthetic)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edge.synthetic import TEXTURES, texture

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def textures() -> dict[str, np.ndarray]:
    """One 128x128 crop of each bundled texture, uint8 HxWx3 RGB."""
    rng = np.random.default_rng(0)
    return {name: texture(name, 128, rng) for name in TEXTURES}
