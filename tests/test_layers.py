"""The package's structure: modules meet at public seams, nothing depends on call order, files
open in one place, and xent.reference has the public API's names and return shapes."""

import ast
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import xent
import xent.info
import xent.linear
from xent import reference

PACKAGE = pathlib.Path(xent.__file__).parent


def test_no_module_imports_a_siblings_private_name():
    """``from ._api import _float_array`` ties two modules' insides together: shared helpers
    are imported by names without a leading underscore (from xent._validation)."""
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                offences += [
                    f"{path.relative_to(PACKAGE)}:{node.lineno}: {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.endswith("__")
                ]
    assert offences == []


def test_bfloat16_is_supported_whatever_ran_before(tmp_path):
    """In a fresh interpreter, before any bfloat16 call, the dtype table and check mode's
    tolerances already know bfloat16; a bfloat16 call changes neither table."""
    code = (
        "import numpy as np, ml_dtypes\n"
        "from xent import _check, _dtypes, _validation\n"
        "bf = np.dtype(ml_dtypes.bfloat16)\n"
        "table, tolerances = dict(_dtypes.COMPUTE_DTYPE), dict(_check.TOLERANCES)\n"
        "print(_validation.compute_dtype(bf), _check.TOLERANCES[bf])\n"
        "import xent\n"
        "xent.cross_entropy(np.zeros((2, 3), bf), np.zeros(2, int))\n"
        "assert dict(_dtypes.COMPUTE_DTYPE) == table and dict(_check.TOLERANCES) == tolerances\n"
    )
    out = subprocess.run(
        # from a temporary directory: the installed xent, not a source tree in the cwd
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert out.split() == ["float32", "(0.016,", "0.016)"]


def test_evaluate_refuses_a_truncated_npy_file_by_name(tmp_path):
    """xent.evaluate opens files as ``xent eval`` does: a .npy file shorter than its header
    says is refused, naming the argument and the file, before a kernel reads past its end."""
    path = tmp_path / "logits.npy"
    np.save(path, np.zeros((100, 7), np.float32))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match=r"logits: .*logits\.npy: truncated"):
        xent.evaluate(str(path), np.zeros(100, np.int64))


def test_evaluate_module_keeps_its_old_name():
    """xent.evaluate is the function; ``import xent.evaluate`` still reaches the module."""
    import xent.evaluate  # noqa: F401
    from xent.evaluate import EvaluationReport

    assert callable(xent.evaluate) and xent.evaluate.__module__ == "xent._evaluation"
    assert EvaluationReport is xent.EvaluationReport


def test_reference_mirrors_the_public_names_and_return_shapes():
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    loss, grad = reference.cross_entropy_with_grad(x, t, label_smoothing=0.1)
    assert loss == reference.cross_entropy(x, t, label_smoothing=0.1)
    assert np.array_equal(grad, reference.cross_entropy_grad(x, t, label_smoothing=0.1))
    got_loss, got_grad = xent.cross_entropy_with_grad(x, t, label_smoothing=0.1)
    assert got_loss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(got_grad, grad, rtol=1e-10, atol=1e-14)
    for name in xent.info.__all__:
        if callable(getattr(xent.info, name)):
            assert callable(getattr(reference.info, name)), name
    p = rng.dirichlet(np.ones(5), 6)
    q = rng.dirichlet(np.ones(5), 6)
    np.testing.assert_allclose(
        xent.info.cross_entropy(p, q), reference.info.cross_entropy(p, q), rtol=1e-12
    )


@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_gradients_by_name(with_bias):
    """The tuple unpacks as before (a fourth entry only with a bias); its names read the same
    way with or without a bias."""
    rng = np.random.default_rng(1)
    h, w = rng.standard_normal((8, 4)), rng.standard_normal((11, 4))
    t, b = rng.integers(0, 11, 8), (rng.standard_normal(11) if with_bias else None)
    got = xent.linear_cross_entropy_with_grad(h, w, t, bias=b)
    expected = reference.linear_cross_entropy_with_grad(h, w, t, bias=b)
    assert len(got) == len(expected) == (4 if with_bias else 3)
    assert got.loss == pytest.approx(expected[0], rel=1e-12)
    np.testing.assert_allclose(got.grad_hidden, expected[1], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got.grad_weight, expected[2], rtol=1e-10, atol=1e-14)
    if with_bias:
        np.testing.assert_allclose(got.grad_bias, expected[3], rtol=1e-10, atol=1e-14)
    else:
        assert got.grad_bias is None
