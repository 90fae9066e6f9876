"""Shared fixtures: small acquisitions and problems built from closed-form pieces."""

import numpy as np
import pytest
import torch

from ptycho_app.simulation import default_acquisition, reference_object


@pytest.fixture(scope="session")
def small_acquisition():
    """16x16 frames, 2x upsampling (32x32 object), 5x5 LEDs: fast and well overlapped."""
    return default_acquisition(frame_size=16, upsample=2, leds_per_side=5)


@pytest.fixture(scope="session")
def small_object(small_acquisition):
    return reference_object(small_acquisition.grid_size)


def random_factors(n, r, batch, dtype, seed=0):
    """Random ``U (B, n, r)`` and non-negative ``d (B, r)``."""
    generator = torch.Generator().manual_seed(seed)
    U = torch.randn(batch, n, r, dtype=dtype, generator=generator)
    real = torch.empty((), dtype=dtype).real.dtype
    d = torch.rand(batch, r, dtype=real, generator=generator) + 0.1
    return U, d


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny problems: one intra-op thread is as fast alone and does not collapse when
    other processes load the cores (OpenMP's waiting threads then cost 10-50x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
