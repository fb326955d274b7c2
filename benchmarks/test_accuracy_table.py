"""benchmarks/accuracy_table.py runs, and its numbers for xent are the tests' bounds where
those hold on its rows (logsumexp and BCE with logits: 4 ulp in float64; every function a flat
1e-6 relative in float32)."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parent))
import accuracy_table  # noqa: E402


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_table_measures_xent_within_its_bounds(dtype):
    errors = accuracy_table.measure(dtype, 60, seed=1)
    if dtype == "float64":  # ulp
        functions, unit, bound = ("logsumexp", "BCE with logits"), 0, 4.0
    else:  # relative
        functions, unit, bound = accuracy_table.FUNCTIONS, 1, 1e-6
    for function in functions:
        per_band = errors[function]["xent"]
        measured = [e[unit] for band in per_band.values() for e in band]
        assert len(measured) >= 20, function
        assert max(measured) <= bound, (function, max(measured))
    # the peers' numbers are measured on the same results
    torch_bce = [e for band in errors["BCE with logits"]["torch"].values() for e in band]
    xent_bce = [e for band in errors["BCE with logits"]["xent"].values() for e in band]
    assert len(torch_bce) == len(xent_bce)


def test_table_prints_every_dtype(capsys):
    accuracy_table.main(["--rows", "8", "--dtypes", "float64,bfloat16"])
    out = capsys.readouterr().out
    assert "## float64: worst / median ulp" in out
    assert "## bfloat16: worst relative error (worst ulp of bfloat16)" in out
    assert np.isfinite(float(out.strip().splitlines()[-1].strip("( s)")))
