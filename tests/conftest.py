"""Fixtures shared by the tests."""

import pytest

from xent import _dispatch


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
