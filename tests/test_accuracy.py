"""Accuracy of the float32 loss of every row against its exact value, up to C = 1M.

The exact loss of the same float32 logits is computed in long double (64-bit mantissa on
x86), through log1p where the target is the row's max. xent's float32 kernels sum exps in
float32 lanes over 4 KiB chunks, keep the max's terms (exactly 1) out of those lanes, and do
everything else in double, so every row is within 1e-6 relative, confident rows included
(the target nearly certain, a loss down to 1e-9).
"""

import numpy as np
import pytest

import xent


def exact_losses(x, target):
    xl = x.astype(np.longdouble)
    rows = np.arange(len(target))
    shift = xl.max(axis=1, keepdims=True)
    terms = np.exp(xl - shift)
    loss = np.log(terms.sum(axis=1)) + shift[:, 0] - xl[rows, target]
    # target the max: log(1 + the rest), without rounding 1 + rest
    top = xl[rows, target] == shift[:, 0]
    terms[rows, target] = 0
    loss[top] = np.log1p(terms[top].sum(axis=1))
    return loss


@pytest.mark.parametrize("classes", [10, 100, 1000, 32000, 1 << 20])
@pytest.mark.parametrize("scale", [1.0, 3.0, 6.0])
def test_float32_rows_within_1e6_relative(isa, classes, scale):
    rows = max(4, (1 << 21) // classes)
    rng = np.random.default_rng(classes)
    x = (rng.standard_normal((rows, classes)) * scale).astype(np.float32)
    target = rng.integers(0, classes, rows)
    exact = exact_losses(x, target)
    got = xent.cross_entropy(x, target, reduction="none").astype(np.longdouble)
    relative = np.abs(got - exact) / np.abs(exact)
    worst = int(relative.argmax())
    assert float(relative[worst]) <= 1e-6, (
        f"row {worst}: loss {float(exact[worst]):.3e}, relative error {float(relative[worst]):.2e}"
    )


@pytest.mark.parametrize("classes", [100, 1000, 70000])
def test_confident_rows_within_1e6_relative(isa, classes):
    """The target is the max by a wide margin: a loss of 1e-3 down to 1e-8."""
    rows = 512
    rng = np.random.default_rng(2)
    x = rng.standard_normal((rows, classes)).astype(np.float32)
    target = rng.integers(0, classes, rows)
    x[np.arange(rows), target] = x.max(axis=1) + np.linspace(5, 15, rows) + np.log(classes)
    exact = exact_losses(x, target)
    assert 1e-9 < exact.min() and exact.max() < 1e-2
    got = xent.cross_entropy(x, target, reduction="none").astype(np.longdouble)
    assert float((np.abs(got - exact) / exact).max()) <= 1e-6
