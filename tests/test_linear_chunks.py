"""The linear head's three-gemm gradient cut into several chunks of rows, its accuracy on
confident rows (the ties/rest log-sum-exp state), its exactly rounded mean, and Ctrl-C."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import xent
from xent import _kernels, _linear
from xent import reference as ref

ROWS, TILE = _linear.tiling()
UNIT = _linear.chunk_unit()  # the gradient's chunks are multiples of it


@pytest.fixture
def small_chunks():
    """Chunks of chunk_unit() rows whatever the vocabulary: small problems take several."""
    previous = _linear.set_chunk_bytes(1)
    try:
        yield
    finally:
        _linear.set_chunk_bytes(previous)


def _problem(n, width, vocab, dtype, seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((n, width)).astype(dtype)
    weight = (rng.standard_normal((vocab, width)) * 0.5).astype(dtype)
    bias = rng.standard_normal(vocab).astype(dtype)
    target = rng.integers(0, vocab, n)
    target[::7] = -100
    return hidden, weight, target, bias


def test_chunk_rows_depend_on_the_shapes_only():
    assert _linear.chunk_rows(10**6, 32000, 4) == 1024
    assert _linear.chunk_rows(10**6, 128256, 4) == UNIT == 256  # never fewer than a unit
    assert _linear.chunk_rows(300, 32000, 4) == 2 * UNIT  # no more than the rows, rounded up
    assert _linear.chunk_rows(10**6, 32000, 8) == 512


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"bias": True, "softcap": 3.0, "label_smoothing": 0.1},
        {"z_loss": 1e-3, "reduction": "sum"},
    ],
    ids=str,
)
def test_several_chunks_against_the_reference(small_chunks, options, dtype):
    n = 3 * UNIT + 41  # four chunks, the last one short
    hidden, weight, target, bias = _problem(n, 13, 2 * TILE + 3, dtype)
    kw = dict(options)
    if kw.pop("bias", False):
        kw["bias"] = bias
    assert _linear.chunk_rows(n, weight.shape[0], hidden.itemsize) == UNIT
    got = xent.linear_cross_entropy_with_grad(hidden, weight, target, **kw)
    expected = ref.linear_cross_entropy_grad(hidden, weight, target, **kw)
    rtol = 1e-11 if dtype == np.float64 else 3e-5
    np.testing.assert_allclose(
        got[0], ref.linear_cross_entropy(hidden, weight, target, **kw), rtol=rtol
    )
    assert len(got) == len(expected) + 1
    for g, e in zip(got[1:], expected):
        # gradients of a mean are small: compared in units of the largest entry
        np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol * np.abs(e).max())
    one = xent.linear_cross_entropy_with_grad(hidden, weight, target, num_threads=1, **kw)
    three = xent.linear_cross_entropy_with_grad(hidden, weight, target, num_threads=3, **kw)
    for a, b, c in zip(got, one, three):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    # the loss of the gradient's pass has the forward's bits
    assert np.array_equal(got[0], xent.linear_cross_entropy(hidden, weight, target, **kw))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_confident_rows_keep_their_digits(dtype):
    # Logits z_it = 0 for the target t, z_ij = -gap_i - k_j for the others (H = 1: hidden_i =
    # gap_i, weight_j = -1, bias_j = -k_j; all exact): the loss is log1p(exp(-gap_i) S), S =
    # sum_j exp(-k_j), 1e-6 to 1e-26 here, which log(1 + rest) would round to 0.
    rng = np.random.default_rng(3)
    n, vocab, t = 40, 3 * TILE + 5, TILE + 7
    gap = rng.integers(20, 60, n).astype(np.float64)
    k = rng.integers(0, 8, vocab).astype(np.float64)
    hidden = gap[:, None].astype(dtype)
    weight = np.full((vocab, 1), -1, dtype=dtype)
    weight[t] = 0
    bias = (-k).astype(dtype)
    bias[t] = 0
    target = np.full(n, t)
    others = np.exp(-k)
    others[t] = 0
    exact = np.log1p(np.exp(-gap) * others.sum())
    assert exact.max() < 1e-6 and exact.min() > 1e-27
    tol = 1e-13 if dtype == np.float64 else 1e-6
    got = xent.linear_cross_entropy(hidden, weight, target, bias=bias, reduction="none")
    np.testing.assert_allclose(got, exact, rtol=tol, atol=0)
    loss = xent.linear_cross_entropy_with_grad(
        hidden, weight, target, bias=bias, reduction="none"
    ).loss
    np.testing.assert_allclose(loss, exact, rtol=tol, atol=0)
    # on main, before the ties/rest state, these rows gave 0 or a handful of digits
    lse = xent.linear_cross_entropy(hidden, weight, target, bias=bias, return_lse=True)[1]
    np.testing.assert_allclose(lse, exact, rtol=tol, atol=0)


def test_mean_is_the_exactly_rounded_sum():
    hidden, weight, target, _ = _problem(3 * UNIT + 5, 9, 700, np.float64, seed=5)
    rows = xent.linear_cross_entropy(hidden, weight, target, reduction="none")
    valid = target != -100
    exact = _kernels.exact_sum(np.ascontiguousarray(rows[valid]))
    means = {xent.linear_cross_entropy(hidden, weight, target, num_threads=t) for t in (1, 2, 3)}
    assert means == {np.float64(exact / np.count_nonzero(valid))}


CTRL_C = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import xent
    from xent import _blas
    fn = getattr(xent, sys.argv[1])
    rng = np.random.default_rng(0)
    # one call: 0.5 TFLOP, several seconds on two cores (each call ran to its end before)
    hidden = rng.standard_normal((8192, 1024), dtype=np.float32)
    weight = rng.standard_normal((32000, 1024), dtype=np.float32)
    target = rng.integers(0, 32000, 8192)
    before = _blas.blas_threads()
    print("start", flush=True)
    start = time.perf_counter()
    try:
        for _ in range(1000):  # far longer than the test waits
            fn(hidden, weight, target)
    except KeyboardInterrupt:
        print(f"interrupted {time.perf_counter() - start:.3f}", flush=True)
    assert _blas.blas_threads() == before, (before, _blas.blas_threads())
    # sane after: a small call still gives the reference's number
    h, w, t = hidden[:8, :4].astype(np.float64), weight[:50, :4].astype(np.float64), target[:8] % 50
    got = xent.linear_cross_entropy(h, w, t)
    assert abs(got - xent.reference.linear_cross_entropy(h, w, t)) < 1e-12
    print("sane", flush=True)
    """
)


@pytest.mark.parametrize("name", ["linear_cross_entropy", "linear_cross_entropy_with_grad"])
def test_ctrl_c_stops_a_long_call(name, tmp_path):
    with subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-c", CTRL_C, name],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    ) as proc:
        try:
            assert proc.stdout.readline().strip() == "start"
            time.sleep(1.0)  # well inside a call
            sent = time.perf_counter()
            proc.send_signal(signal.SIGINT)
            line = proc.stdout.readline()
            waited = time.perf_counter() - sent
            # stdout's own reads: communicate() would miss what its buffer already holds
            rest = proc.stdout.readline()
            errors = proc.stderr.read()
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert line.startswith("interrupted"), (line, errors)
    # within about a second (two on a loaded machine); before, the call ran to its end
    assert waited < 2.0, waited
    assert rest.strip() == "sane" and proc.returncode == 0, (rest, errors, proc.returncode)
