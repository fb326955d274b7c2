"""xent.linear_cross_entropy(_with_grad) against the materialised float64 reference, PyTorch's
autograd, across thread counts, and the BLAS thread guard."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import xent
from xent import _blas, _kernels, _linear
from xent import reference as ref
from xent._threads import available_cpus

ROWS, TILE = _linear.tiling()

# Shapes that end mid-block and mid-tile, a single row and class, and a batch of (2, 3) rows.
SHAPES = [((5,), 7, 11), ((ROWS + 3,), 19, 2 * TILE + 5), ((1,), 1, 1), ((2, 3), 4, 9)]
OPTIONS = [
    {},
    {"bias": True},
    {"label_smoothing": 0.2, "bias": True},
    {"softcap": 3.0},
    {"softcap": 2.0, "label_smoothing": 1.0, "reduction": "sum"},
    {"reduction": "none", "bias": True, "softcap": 5.0},
    {"reduction": "sum", "ignore_index": 2},
]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-13)}


def _problem(batch, width, vocab, dtype, seed=0, scale=0.5, bias=False):
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((*batch, width)).astype(dtype)
    weight = (rng.standard_normal((vocab, width)) * scale).astype(dtype)
    target = rng.integers(0, vocab, batch)
    target.reshape(-1)[0] = -100  # an ignored row
    b = rng.standard_normal(vocab).astype(dtype) if bias else None
    return hidden, weight, target, b


def _kwargs(options, b):
    kw = {k: v for k, v in options.items() if k != "bias"}
    if options.get("bias"):
        kw["bias"] = b
    return kw


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_against_reference(shape, options, dtype):
    batch, width, vocab = shape
    hidden, weight, target, b = _problem(batch, width, vocab, dtype, bias=True)
    kw = _kwargs(options, b)
    target.reshape(-1)[0] = kw.get("ignore_index", -100)
    saved = [a.copy() for a in (hidden, weight, target, b)]
    expected = ref.linear_cross_entropy(hidden, weight, target, **kw)
    loss = xent.linear_cross_entropy(hidden, weight, target, **kw)
    assert np.asarray(loss).dtype == dtype
    np.testing.assert_allclose(loss, expected, **TOL[dtype])

    got = xent.linear_cross_entropy_with_grad(hidden, weight, target, **kw)
    grads = ref.linear_cross_entropy_grad(hidden, weight, target, **kw)
    np.testing.assert_array_equal(got[0], loss)  # the same loss, bit for bit
    assert len(got) == len(grads) + 1 == (4 if "bias" in kw else 3)
    for name, g, e in zip(("hidden", "weight", "bias"), got[1:], grads):
        assert g.dtype == dtype and g.shape == e.shape, name
        # Gradients of a mean are small: compare in units of the largest entry.
        np.testing.assert_allclose(
            g, e, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["rtol"] * np.abs(e).max(), err_msg=name
        )
    for before, after in zip(saved, (hidden, weight, target, b)):
        np.testing.assert_array_equal(before, after)  # inputs untouched


@pytest.mark.parametrize("slope", [30.0, -30.0, 0.0])
def test_few_rows_cut_along_the_vocabulary(slope):
    """Few rows: the vocabulary is cut into stretches merged in order (largest logits in the
    last, the first, or no stretch in particular), with the gradient's accumulators too."""
    vocab = 9 * TILE + 7
    assert _linear.vocab_chunks(40, vocab) == 10
    hidden, weight, target, _ = _problem((40,), 12, vocab, np.float64, seed=6)
    bias = np.linspace(0, slope, vocab)
    for kw in ({"bias": bias}, {"bias": bias, "softcap": 20.0, "label_smoothing": 0.3}):
        np.testing.assert_allclose(
            xent.linear_cross_entropy(hidden, weight, target, reduction="none", **kw),
            ref.linear_cross_entropy(hidden, weight, target, reduction="none", **kw),
            rtol=1e-12,
        )
        got = xent.linear_cross_entropy_with_grad(hidden, weight, target, **kw)
        for g, e in zip(got[1:], ref.linear_cross_entropy_grad(hidden, weight, target, **kw)):
            np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12 * np.abs(e).max())


def test_grad_output_weights_rows():
    hidden, weight, target, _ = _problem((40,), 8, 30, np.float64, seed=1)
    g = np.random.default_rng(2).standard_normal(40)
    got = xent.linear_cross_entropy_with_grad(
        hidden, weight, target, reduction="none", grad_output=g
    )
    grads = ref.linear_cross_entropy_grad(hidden, weight, target, reduction="none", grad_output=g)
    for a, e in zip(got[1:], grads):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-15)
    got = xent.linear_cross_entropy_with_grad(hidden, weight, target, grad_output=2.5)
    for a, e in zip(
        got[1:], ref.linear_cross_entropy_grad(hidden, weight, target, grad_output=2.5)
    ):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-15)


def test_large_logits_and_float32_accuracy():
    """Logits of scale 30 (a confident model) stay within 1e-5 of the float64 reference."""
    hidden, weight, target, _ = _problem((300,), 64, 3000, np.float32, seed=3, scale=4.0)
    expected = ref.linear_cross_entropy(hidden, weight, target, reduction="none")
    got = xent.linear_cross_entropy(hidden, weight, target, reduction="none")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Confident rows (softmax near 1 at the target): grad_hidden = acc / sum - W_t cancels;
    # its error stays at float32's rounding of W_t, as PyTorch's (p_t - 1) W_t does.
    labels = np.argmax(hidden.astype(np.float64) @ weight.T.astype(np.float64), axis=1)
    _, gh, gw = xent.linear_cross_entropy_with_grad(hidden, weight, labels, reduction="sum")
    eh, ew = ref.linear_cross_entropy_grad(hidden, weight, labels, reduction="sum")
    np.testing.assert_allclose(gh, eh, rtol=0, atol=1e-5 * np.abs(weight).max())
    np.testing.assert_allclose(gw, ew, rtol=0, atol=1e-5 * np.abs(hidden).max())


def test_layouts_are_read_in_place_or_copied_right():
    rng = np.random.default_rng(4)
    big = rng.standard_normal((60, 24)).astype(np.float32)
    hidden = big[::2, :16]  # strided rows
    weight = np.asfortranarray(rng.standard_normal((50, 16)).astype(np.float32))
    target = rng.integers(0, 50, 30).astype(np.uint8)
    expected = ref.linear_cross_entropy(hidden, weight, target)
    np.testing.assert_allclose(
        xent.linear_cross_entropy(hidden, weight, target), expected, rtol=2e-5
    )
    mixed = xent.linear_cross_entropy(hidden, weight.astype(np.float64), target)
    assert mixed.dtype == np.float64
    np.testing.assert_allclose(mixed, expected, rtol=1e-6)
    half = xent.linear_cross_entropy(hidden.astype(np.float16), weight.astype(np.float16), target)
    assert half.dtype == np.float16
    np.testing.assert_allclose(
        half,
        ref.linear_cross_entropy(hidden.astype(np.float16), weight.astype(np.float16), target),
        rtol=1e-3,
    )
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = xent.linear_cross_entropy(
        hidden.astype(ml_dtypes.bfloat16), weight.astype(ml_dtypes.bfloat16), target
    )
    assert bf16.dtype == ml_dtypes.bfloat16
    np.testing.assert_allclose(
        float(bf16),
        ref.linear_cross_entropy(
            hidden.astype(ml_dtypes.bfloat16).astype(np.float64),
            weight.astype(ml_dtypes.bfloat16).astype(np.float64),
            target,
        ),
        rtol=1e-2,
    )


def test_empty_batch_and_no_features():
    weight = np.ones((5, 3), dtype=np.float32)
    assert np.isnan(
        xent.linear_cross_entropy(np.zeros((0, 3), np.float32), weight, np.zeros(0, np.int64))
    )
    loss, gh, gw = xent.linear_cross_entropy_with_grad(
        np.zeros((0, 3), np.float32), weight, np.zeros(0, np.int64), reduction="sum"
    )
    assert loss == 0 and gh.shape == (0, 3) and not gw.any()
    bias = np.arange(5.0)
    target = np.array([1, 4])
    loss = xent.linear_cross_entropy(np.zeros((2, 0)), np.zeros((5, 0)), target, bias=bias)
    np.testing.assert_allclose(loss, ref.cross_entropy(np.tile(bias, (2, 1)), target))


def test_all_rows_ignored_gives_nan_and_zero_gradient():
    hidden, weight, _, _ = _problem((4,), 3, 6, np.float64)
    target = np.full(4, -100)
    loss, gh, gw = xent.linear_cross_entropy_with_grad(hidden, weight, target)
    assert np.isnan(loss) and not gh.any() and not gw.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_bits_on_one_and_two_threads(dtype):
    if not _kernels.has_openmp():
        pytest.skip("serial build")
    hidden, weight, target, b = _problem((3 * ROWS + 17,), 33, 3 * TILE + 9, dtype, bias=True)
    for kw in ({}, {"bias": b, "softcap": 4.0, "label_smoothing": 0.1}):
        one = xent.linear_cross_entropy_with_grad(hidden, weight, target, num_threads=1, **kw)
        two = xent.linear_cross_entropy_with_grad(hidden, weight, target, num_threads=2, **kw)
        three = xent.linear_cross_entropy_with_grad(hidden, weight, target, num_threads=3, **kw)
        for a, c, d in zip(one, two, three):
            assert np.array_equal(a, c) and np.array_equal(a, d)
        loss = xent.linear_cross_entropy(hidden, weight, target, num_threads=2, **kw)
        assert np.array_equal(loss, one[0])


def test_follows_the_selected_isa(isa):
    hidden, weight, target, _ = _problem((70,), 9, 700, np.float32)
    np.testing.assert_allclose(
        xent.linear_cross_entropy(hidden, weight, target),
        ref.linear_cross_entropy(hidden, weight, target),
        rtol=2e-5,
    )
    assert _linear.current_isa() == isa


# ---- PyTorch's autograd as the outside oracle ---------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_against_pytorch_autograd(options, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    hidden, weight, target, b = _problem((ROWS + 9,), 16, TILE + 3, dtype, seed=5, bias=True)
    kw = _kwargs(options, b)
    target[0] = kw.get("ignore_index", -100)
    th = torch.tensor(hidden, requires_grad=True)
    tw = torch.tensor(weight, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    logits = th @ tw.T + (tb if "bias" in kw else 0)
    if "softcap" in kw:
        logits = kw["softcap"] * torch.tanh(logits / kw["softcap"])
    loss = F.cross_entropy(
        logits,
        torch.tensor(target),
        reduction=kw.get("reduction", "mean"),
        ignore_index=kw.get("ignore_index", -100),
        label_smoothing=kw.get("label_smoothing", 0.0),
    )
    loss.sum().backward()
    got = xent.linear_cross_entropy_with_grad(hidden, weight, target, **kw)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[0], loss.detach().numpy(), **tol)
    expected = [th.grad, tw.grad] + ([tb.grad] if "bias" in kw else [])
    for g, e in zip(got[1:], expected):
        e = e.numpy()
        np.testing.assert_allclose(g, e, rtol=tol["rtol"], atol=tol["rtol"] * np.abs(e).max())


# ---- bad input ----------------------------------------------------------------------------------


def test_errors_name_the_argument():
    h = np.zeros((3, 4), np.float32)
    w = np.zeros((5, 4), np.float32)
    t = np.array([0, 1, 2])
    with pytest.raises(ValueError, match="weight must be 2-d"):
        xent.linear_cross_entropy(h, w[0], t)
    with pytest.raises(ValueError, match="last axis of hidden"):
        xent.linear_cross_entropy(h[:, :3], w, t)
    with pytest.raises(ValueError, match="vocabulary"):
        xent.linear_cross_entropy(h, w[:0], t)
    with pytest.raises(ValueError, match="target has shape"):
        xent.linear_cross_entropy(h, w, t[:2])
    with pytest.raises(TypeError, match="integer"):
        xent.linear_cross_entropy(h, w, t.astype(np.float32))
    with pytest.raises(IndexError, match=r"target\[1\] = 5"):
        xent.linear_cross_entropy(h, w, np.array([0, 5, 1]))
    with pytest.raises(IndexError, match=r"target\[2\] = -1"):
        xent.linear_cross_entropy_with_grad(h, w, np.array([0, 1, -1]))
    with pytest.raises(ValueError, match="bias has shape"):
        xent.linear_cross_entropy(h, w, t, bias=np.zeros(4))
    with pytest.raises(TypeError, match="hidden must be"):
        xent.linear_cross_entropy(h.astype(np.int32), w, t)
    with pytest.raises(ValueError, match="softcap"):
        xent.linear_cross_entropy(h, w, t, softcap=0.0)
    with pytest.raises(TypeError, match="softcap"):
        xent.linear_cross_entropy(h, w, t, softcap="30")
    with pytest.raises(ValueError, match="reduction"):
        xent.linear_cross_entropy(h, w, t, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        xent.linear_cross_entropy(h, w, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="num_threads"):
        xent.linear_cross_entropy(h, w, t, num_threads=0)
    with pytest.raises(ValueError, match="grad_output"):
        xent.linear_cross_entropy_with_grad(h, w, t, reduction="none", grad_output=[1.0])


# ---- BLAS threads -------------------------------------------------------------------------------


def test_blas_thread_count_restored():
    before = _blas.blas_threads()
    hidden, weight, target, _ = _problem((10,), 4, 9, np.float32)
    with _blas.single_threaded():
        assert all(n == 1 for n in _blas.blas_threads())
        with _blas.single_threaded():  # nested (another Python thread's call)
            assert all(n == 1 for n in _blas.blas_threads())
        assert all(n == 1 for n in _blas.blas_threads())
    xent.linear_cross_entropy_with_grad(hidden, weight, target)
    assert _blas.blas_threads() == before


# Run in a fresh interpreter: per-thread CPU time from /proc shows which threads worked.
_CPU_PER_THREAD = textwrap.dedent("""
    import os, sys, time, numpy as np, scipy.linalg.blas, xent
    def ticks():
        out = {}
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[tid] = int(fields[11]) + int(fields[12])  # utime + stime
        return out
    def busy(run):
        before = ticks(); run(); after = ticks()
        gained = {t: after[t] - before.get(t, 0) for t in after}
        top = max(gained.values())
        return sum(1 for g in gained.values() if g > 0.2 * top)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1500, 1500), dtype=np.float32)
    h = rng.standard_normal((2048, 512), dtype=np.float32)
    w = rng.standard_normal((8000, 512), dtype=np.float32) * 0.05
    y = rng.integers(0, 8000, 2048)
    scipy_busy = busy(lambda: [scipy.linalg.blas.sgemm(1.0, a, a) for _ in range(15)])
    time.sleep(1)  # OpenBLAS's threads spin a while after their last job before they sleep
    one = busy(lambda: [xent.linear_cross_entropy(h, w, y, num_threads=1) for _ in range(3)])
    two = busy(lambda: [xent.linear_cross_entropy(h, w, y, num_threads=2) for _ in range(3)])
    print(scipy_busy, one, two)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_blas_starts_no_threads_inside_xents(tmp_path):
    """Only xent's own threads work during a call, though scipy's BLAS runs threads of its own.

    Control: a plain scipy gemm keeps more than one thread busy (so the measure sees BLAS
    threads). Then a call on 1 thread keeps exactly one busy, a call on 2 at most two.
    """
    if available_cpus() < 2 or not _kernels.has_openmp():
        pytest.skip("needs two CPUs and OpenMP")
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
    out = subprocess.run(
        [sys.executable, "-c", _CPU_PER_THREAD],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
        cwd=tmp_path,
    ).stdout
    scipy_busy, one, two = map(int, out.split())
    print("threads busy: scipy gemm", scipy_busy, "xent on 1", one, "xent on 2", two)
    if scipy_busy < 2:
        pytest.skip("scipy's BLAS ran on one thread here: nothing to guard against")
    assert one == 1
    assert two <= 2


# ---- xent bench's linear section -----------------------------------------------------------------


def test_bench_linear_section(tmp_path, capsys):
    import json

    from xent import bench_linear, cli

    path = tmp_path / "report.json"
    assert (
        cli.main(
            [
                "bench",
                "--linear-only",
                "--linear-shape",
                "300x32x1000",
                "--repeat",
                "1",
                "--json",
                str(path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Fused linear cross-entropy, N x H x V = 300 x 32 x 1000 float32" in out
    report = json.loads(path.read_text())
    assert report["cases"] == [] and report["grad"] is None
    (linear,) = report["linear"]
    assert all(linear["agree"].values()) and linear["reference_max_abs_difference"] < 1e-5
    hidden, weight, target = bench_linear.make_linear_data(
        bench_linear.LinearCase(300, 32, 1000), seed=0
    )
    assert linear["results"]["xent"] == pytest.approx(
        bench_linear.reference_mean(hidden, weight, target), rel=1e-5
    )
    assert {"xent", "numpy+xent"} <= set(linear["medians"])


def test_bench_linear_shapes():
    from xent import bench_linear, cli

    parser = cli.build_parser()
    args = parser.parse_args(["bench", "--quick"])
    assert bench_linear.select_linear_cases(args) == [bench_linear.LinearCase(256, 1024, 32000)]
    args = parser.parse_args(["bench", "--shape", "10x3"])
    assert bench_linear.select_linear_cases(args) == []
    args = parser.parse_args(["bench", "--shape", "10x3", "--linear-large"])
    assert bench_linear.select_linear_cases(args)[-1] == bench_linear.LinearCase(8192, 2048, 128256)
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--linear-shape", "10x3"])


def test_blas_guard_falls_back_to_threadpoolctl(monkeypatch):
    """Where no OpenBLAS is found by its symbols (MKL, Accelerate), threadpoolctl limits BLAS."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(_blas, "_controls", [])

    def blas_counts():
        return [
            i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"
        ]

    before = blas_counts()
    with _blas.single_threaded():
        assert blas_counts() and all(n == 1 for n in blas_counts())
    assert blas_counts() == before
