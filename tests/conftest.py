"""Fixtures shared by the tests."""

import pytest

from xent import _kernels

#: Every kernel variant a build carries; each CPU runs the ones it supports.
ISAS = ["avx512", "avx2", "baseline"]


@pytest.fixture(params=ISAS)
def isa(request):
    """Run the test with one kernel variant, then restore the one selected before."""
    if not _kernels.isa_supported(request.param):
        pytest.skip(f"{request.param} is not supported on this CPU/build")
    previous = _kernels.current_isa()
    _kernels.set_isa(request.param)
    try:
        yield request.param
    finally:
        _kernels.set_isa(previous)
