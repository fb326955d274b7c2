"""Fixtures shared by the tests."""

import numpy as np
import pytest

from xent import _dispatch

from support import FLOAT_DTYPES, seed_of


@pytest.fixture(params=_dispatch.ISAS)
def isa(request):
    """Run the test with one kernel variant, then restore the one selected before."""
    if not _dispatch.isa_supported(request.param):
        pytest.skip(f"{request.param} is not supported on this CPU/build")
    previous = _dispatch.current_isa()
    _dispatch.set_isa(request.param)
    try:
        yield request.param
    finally:
        _dispatch.set_isa(previous)


@pytest.fixture
def rng(request):
    """A NumPy random Generator seeded from the test's name and parameters (its node name,
    e.g. ``test_x[float32-(9, 6)]``): each parameter combination draws its own data, the same
    on every run and in every process, so a failure is reproduced by re-running that test."""
    return np.random.default_rng(seed_of(request.node.name))


@pytest.fixture(params=FLOAT_DTYPES, ids=str)
def dtype(request):
    """The floating dtypes the kernels compute in, float32 and float64: a test taking
    ``dtype`` runs once with each. A test needing other dtypes parametrizes ``dtype`` itself
    (``@pytest.mark.parametrize("dtype", ...)`` overrides this fixture)."""
    return request.param
