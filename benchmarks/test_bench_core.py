"""xent against the numpy reference (and PyTorch, where installed), one group per shape.

Each benchmarked call's result is asserted against the others in its group.
"""

import numpy as np
import pytest

import xent
from xent.bench import reference_mean  # a block of rows at a time

SHAPES = [
    pytest.param((4096, 1000), id="4096x1000"),
    pytest.param((65536, 1000), id="65536x1000", marks=pytest.mark.slow),
    pytest.param((8192, 32000), id="8192x32000", marks=pytest.mark.slow),
    pytest.param((1 << 20, 10), id="1Mx10", marks=pytest.mark.slow),
]


def make(shape, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
    labels = rng.integers(0, shape[1], shape[0])
    return logits, labels


@pytest.fixture(scope="module", params=SHAPES)
def case(request):
    logits, labels = make(request.param)
    return request.param, logits, labels, reference_mean(logits, labels)


def _group(benchmark, shape, threads=None):
    benchmark.group = f"cross_entropy float32 {shape[0]}x{shape[1]}"
    benchmark.extra_info["elements"] = shape[0] * shape[1]
    if threads:
        benchmark.extra_info["threads"] = threads


@pytest.mark.parametrize("threads", [1, 2])
def test_xent(benchmark, case, threads):
    shape, logits, labels, expected = case
    _group(benchmark, shape, threads)
    loss = benchmark(xent.cross_entropy, logits, labels, num_threads=threads)
    assert loss == pytest.approx(expected, rel=1e-6)


def test_reference(benchmark, case):
    shape, logits, labels, expected = case
    _group(benchmark, shape)
    loss = benchmark.pedantic(reference_mean, args=(logits, labels), rounds=3, iterations=1)
    assert loss == expected


def test_torch(benchmark, case):
    torch = pytest.importorskip("torch")
    shape, logits, labels, expected = case
    _group(benchmark, shape, torch.get_num_threads())
    x, t = torch.from_numpy(logits), torch.from_numpy(labels)
    loss = benchmark(torch.nn.functional.cross_entropy, x, t)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
