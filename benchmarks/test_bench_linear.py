"""Fused linear cross-entropy: xent, the float64 reference and PyTorch in one group per shape.

xent.linear_cross_entropy never forms the N x V logits; the peers do (PyTorch's
``F.cross_entropy(h @ W.T, y)`` and ``xent.cross_entropy(h @ W.T, y)`` with numpy's matmul).
Each benchmarked call's result is asserted against the reference. To time them:

    pytest benchmarks/test_bench_linear.py --benchmark-enable -m "slow or not slow"
"""

import numpy as np
import pytest

import xent
from xent.bench import linear as bench_linear
from xent.bench.linear import LinearCase

CASES = [
    pytest.param(LinearCase(512, 256, 8000), id="512x256x8000-float32"),
    pytest.param(LinearCase(512, 256, 8000, "float64"), id="512x256x8000-float64"),
    pytest.param(
        LinearCase(4096, 1024, 32000), id="4096x1024x32000-float32", marks=pytest.mark.slow
    ),
    pytest.param(
        LinearCase(8192, 2048, 128256), id="8192x2048x128256-float32", marks=pytest.mark.slow
    ),
]
RTOL = {"float32": 1e-5, "float64": 1e-10}


@pytest.fixture(scope="module", params=CASES)
def case(request):
    c = request.param
    hidden, weight, target = bench_linear.make_linear_data(c, seed=0)
    return c, hidden, weight, target, bench_linear.reference_mean(hidden, weight, target)


def _group(benchmark, c, threads=None):
    benchmark.group = f"linear_cross_entropy {c.dtype} {c.rows}x{c.hidden}x{c.vocab}"
    benchmark.extra_info["logits_bytes"] = c.logits_bytes
    if threads:
        benchmark.extra_info["threads"] = threads


@pytest.mark.parametrize("threads", [1, 2])
def test_linear_xent(benchmark, case, threads):
    c, hidden, weight, target, expected = case
    _group(benchmark, c, threads)
    loss = benchmark(xent.linear_cross_entropy, hidden, weight, target, num_threads=threads)
    assert float(loss) == pytest.approx(expected, rel=RTOL[c.dtype])


def test_linear_reference(benchmark, case):
    c, hidden, weight, target, expected = case
    if c.logits_bytes > 1 << 30:
        pytest.skip("the float64 reference of these logits is only run once, for the check")
    _group(benchmark, c)
    loss = benchmark.pedantic(
        bench_linear.reference_mean, args=(hidden, weight, target), rounds=1, iterations=1
    )
    assert loss == expected


def test_linear_torch(benchmark, case):
    torch = pytest.importorskip("torch")
    c, hidden, weight, target, expected = case
    th, tw, ty = torch.from_numpy(hidden), torch.from_numpy(weight), torch.from_numpy(target)
    previous = torch.get_num_threads()
    torch.set_num_threads(xent.get_num_threads())
    try:
        _group(benchmark, c)
        loss = benchmark(lambda: float(torch.nn.functional.cross_entropy(th @ tw.T, ty)))
    finally:
        torch.set_num_threads(previous)
    assert loss == pytest.approx(expected, rel=max(RTOL[c.dtype], 1e-5))


def test_linear_numpy_matmul_then_xent(benchmark, case):
    c, hidden, weight, target, expected = case
    if c.logits_bytes > 1 << 30:
        pytest.skip("forms 4 GiB of logits")
    _group(benchmark, c)
    loss = benchmark(lambda: float(xent.cross_entropy(hidden @ weight.T, target)))
    assert loss == pytest.approx(expected, rel=max(RTOL[c.dtype], 1e-5))


@pytest.mark.parametrize(
    "c",
    [
        LinearCase(512, 256, 8000),
        pytest.param(LinearCase(4096, 1024, 32000), marks=pytest.mark.slow),
    ],
    ids=str,
)
def test_linear_grad_xent_and_torch(benchmark, c):
    """Loss and gradients: xent's tiled passes (grouped with torch's forward + backward)."""
    hidden, weight, target = bench_linear.make_linear_data(c, seed=1)
    benchmark.group = f"linear_cross_entropy_with_grad {c.rows}x{c.hidden}x{c.vocab}"
    loss, gh, gw = benchmark(xent.linear_cross_entropy_with_grad, hidden, weight, target)
    rows = slice(0, 64)
    # The gradient of the mean restricted to 64 rows: the other rows' terms drop out of
    # grad_hidden's rows, so compare those rows against the reference's "sum" gradient.
    expected = (
        xent.reference.linear_cross_entropy_grad(
            hidden[rows], weight, target[rows], reduction="sum"
        )[0]
        / c.rows
    )
    np.testing.assert_allclose(gh[rows], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert np.isfinite(gw).all()
    assert float(loss) == pytest.approx(
        bench_linear.reference_mean(hidden, weight, target), rel=1e-5
    )


@pytest.mark.parametrize(
    "c",
    [
        LinearCase(512, 256, 8000),
        pytest.param(LinearCase(4096, 1024, 32000), marks=pytest.mark.slow),
    ],
    ids=str,
)
def test_linear_grad_torch(benchmark, c):
    torch = pytest.importorskip("torch")
    hidden, weight, target = bench_linear.make_linear_data(c, seed=1)
    benchmark.group = f"linear_cross_entropy_with_grad {c.rows}x{c.hidden}x{c.vocab}"
    ty = torch.from_numpy(target)

    def forward_backward():
        th = torch.from_numpy(hidden).requires_grad_(True)
        tw = torch.from_numpy(weight).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(th @ tw.T, ty)
        loss.backward()
        return float(loss.detach())

    loss = benchmark(forward_backward)
    assert loss == pytest.approx(bench_linear.reference_mean(hidden, weight, target), rel=1e-5)
