"""xent against the numpy reference and every installed peer, one group per shape and dtype.

The peers are xent.bench's (PyTorch, SciPy, scikit-learn, JAX), each skipped when it is not
installed. Each benchmarked call's result is asserted against the reference. Ordinary test
runs execute every case once (``--benchmark-disable``); to time them:

    pytest benchmarks --benchmark-enable -m "slow or not slow" --benchmark-group-by=group
"""

import numpy as np
import pytest

import xent
from xent import bench
from xent.bench import reference_mean  # a block of rows at a time

CASES = [
    pytest.param(((4096, 1000), "float32"), id="4096x1000-float32"),
    pytest.param(((4096, 1000), "float64"), id="4096x1000-float64"),
    pytest.param(((16384, 10), "float32"), id="16384x10-float32"),
    pytest.param(((65536, 1000), "float32"), id="65536x1000-float32", marks=pytest.mark.slow),
    pytest.param(((65536, 1000), "float64"), id="65536x1000-float64", marks=pytest.mark.slow),
    pytest.param(((8192, 32000), "float32"), id="8192x32000-float32", marks=pytest.mark.slow),
    pytest.param(((1 << 20, 10), "float32"), id="1Mx10-float32", marks=pytest.mark.slow),
    pytest.param(((64, 1 << 20), "float32"), id="64x1M-float32", marks=pytest.mark.slow),
]
GRAD_CASES = [
    pytest.param((512, 32000), id="512x32000"),
    pytest.param((8192, 32000), id="8192x32000", marks=pytest.mark.slow),
]
RTOL = {"float32": 1e-5, "float64": 1e-10}


@pytest.fixture(scope="module", params=CASES)
def case(request):
    shape, dtype = request.param
    logits, labels = bench.make_data(bench.Case(*shape, dtype), seed=0)
    return shape, dtype, logits, labels, reference_mean(logits, labels)


def _group(benchmark, shape, dtype, threads=None):
    benchmark.group = f"cross_entropy {dtype} {shape[0]}x{shape[1]}"
    benchmark.extra_info["elements"] = shape[0] * shape[1]
    if threads:
        benchmark.extra_info["threads"] = threads


@pytest.mark.parametrize("threads", [1, 2])
def test_xent(benchmark, case, threads):
    shape, dtype, logits, labels, expected = case
    _group(benchmark, shape, dtype, threads)
    loss = benchmark(xent.cross_entropy, logits, labels, num_threads=threads)
    assert float(loss) == pytest.approx(expected, rel=RTOL[dtype])


def test_reference(benchmark, case):
    shape, dtype, logits, labels, expected = case
    _group(benchmark, shape, dtype)
    loss = benchmark.pedantic(reference_mean, args=(logits, labels), rounds=3, iterations=1)
    assert loss == expected


@pytest.mark.parametrize("name, loader", bench.PEER_LOADERS, ids=[n for n, _ in bench.PEER_LOADERS])
def test_peer(benchmark, case, name, loader):
    shape, dtype, logits, labels, expected = case
    try:
        peer = loader(xent.get_num_threads())
    except ImportError:
        pytest.skip(f"{name} is not installed")
    except bench.PeerSkipped as exc:
        pytest.skip(f"{name}: {exc}")
    try:
        try:
            call = peer.prepare(logits, labels)
        except bench.PeerSkipped as exc:
            pytest.skip(f"{name}: {exc}")
        _group(benchmark, shape, dtype)
        loss = benchmark(call)
    finally:
        peer.close()
    # a peer computing in float32 sums in float32: its own rounding, not xent's
    assert float(loss) == pytest.approx(expected, rel=max(RTOL[dtype], 1e-5))


@pytest.mark.parametrize("shape", GRAD_CASES)
def test_grad_xent_against_torch(benchmark, shape):
    """Loss and gradient: xent in one pass, in the same group as torch forward + backward."""
    logits, labels = bench.make_data(bench.Case(*shape, "float32"), seed=1)
    benchmark.group = f"cross_entropy_with_grad float32 {shape[0]}x{shape[1]}"
    loss, grad = benchmark(xent.cross_entropy_with_grad, logits, labels)
    rows = np.arange(0, shape[0], max(1, shape[0] // 64))
    expected = xent.reference.cross_entropy_grad(
        logits[rows], labels[rows], reduction="none", grad_output=np.full(rows.size, 1 / shape[0])
    )
    np.testing.assert_allclose(grad[rows] * shape[0], expected * shape[0], rtol=1e-5, atol=1e-6)
    assert float(loss) == pytest.approx(reference_mean(logits, labels), rel=1e-5)


@pytest.mark.parametrize("shape", GRAD_CASES)
def test_grad_torch(benchmark, shape):
    torch = pytest.importorskip("torch")
    logits, labels = bench.make_data(bench.Case(*shape, "float32"), seed=1)
    benchmark.group = f"cross_entropy_with_grad float32 {shape[0]}x{shape[1]}"
    t = torch.from_numpy(labels)

    def forward_backward():
        x = torch.from_numpy(logits).requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(x, t)
        loss.backward()
        return float(loss.detach()), x.grad

    loss, _ = benchmark(forward_backward)
    assert loss == pytest.approx(reference_mean(logits, labels), rel=1e-5)
