"""xent.dask on a real distributed.LocalCluster of worker processes: the same report as
xent.evaluate in memory, bit for bit, and cross_entropy's mean and sum the same bits as
xent.cross_entropy's for any chunking and thread count."""

import os

import numpy as np
import pytest

import xent
from xent import reference

from support import classifier_outputs

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
xdask = pytest.importorskip("xent.dask")


@pytest.fixture(scope="module")
def client():
    # distributed writes OMP_NUM_THREADS=1 (and more) into this process's environment for its
    # workers: put it back, or every later test would see one thread
    saved = dict(os.environ)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    os.environ.clear()
    os.environ.update(saved)
    try:
        with distributed.Client(cluster) as c:
            yield c
    finally:
        cluster.close()
        os.environ.clear()
        os.environ.update(saved)


def data(n=10000, c=30, seed=0):
    """float32 logits and labels, every 13th row ignored."""
    return classifier_outputs(n, c, seed=seed, scale=1.0, margin=1.0, ignore_every=13)


# irregular row blocks: groups of 4096 rows are split between blocks in many ways
CHUNKS = ((1000, 3500, 5, 4096, 1399),)


def test_evaluate_equals_in_memory_bitwise(client):
    x, t = data()
    w = np.random.default_rng(1).random(30)
    dx = da.from_array(x, chunks=(CHUNKS[0], 30))
    dt = da.from_array(t, chunks=CHUNKS)
    expected = xent.evaluate(x, t, weight=w, topk=(1, 3))
    got = xdask.evaluate(dx, dt, weight=w, topk=(1, 3))
    assert got == expected
    ref = reference.evaluate(x, t, weight=w, topk=(1, 3))
    assert got.loss == pytest.approx(ref["loss"], rel=1e-6)
    assert got.top(3) == ref["top3_accuracy"]
    # other chunkings, a split class axis, numpy labels: still the same bits
    assert xdask.evaluate(da.from_array(x, chunks=(777, 7)), t, weight=w, topk=(1, 3)) == expected
    assert (
        xdask.evaluate(
            da.from_array(x, chunks=(10000, 30)), dt, weight=w, topk=(1, 3), chunk_rows=123
        )
        == expected
    )
    assert len(client.scheduler_info()["workers"]) == 2


def test_evaluate_float16_and_batch_axes(client):
    x, t = data(6000, 12, seed=2)
    x16 = x.astype(np.float16)
    got = xdask.evaluate(
        da.from_array(x16.reshape(2, 3000, 12), chunks=(1, 1000, 12)),
        da.from_array(t.reshape(2, 3000), chunks=(1, 700)),
    )
    assert got == xent.evaluate(x16, t)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "options", [{}, {"label_smoothing": 0.1}, {"weight": np.linspace(0.5, 2, 30)}]
)
def test_cross_entropy_equals_one_machine(client, reduction, options):
    x, t = data(seed=3)
    x = x.astype(np.float64)
    got = xdask.cross_entropy(
        da.from_array(x, chunks=(CHUNKS[0], 30)), t, reduction=reduction, **options
    )
    assert got.dtype == np.float64
    assert got == xent.cross_entropy(x, t, reduction=reduction, **options)  # the same bits
    assert got == pytest.approx(
        reference.cross_entropy(x, t, reduction=reduction, **options), rel=1e-12
    )


def test_cross_entropy_probabilities_and_none(client):
    x, _ = data(seed=4)
    p = xent.softmax(np.random.default_rng(5).standard_normal(x.shape).astype(np.float32))
    dx = da.from_array(x, chunks=(CHUNKS[0], 30))
    dp = da.from_array(p, chunks=(2000, 30))
    got = xdask.cross_entropy(dx, dp)
    assert got.dtype == np.float32
    assert got == pytest.approx(float(xent.cross_entropy(x, p)), rel=1e-6)
    rows = xdask.cross_entropy(dx, dp, reduction="none").compute()
    np.testing.assert_array_equal(rows, xent.cross_entropy(x, p, reduction="none"))


def test_errors(client):
    x, t = data(1000, 5)
    with pytest.raises(TypeError, match="dask.array"):
        xdask.evaluate(x, t)
    with pytest.raises(ValueError, match="labels has 999 rows"):
        xdask.evaluate(da.from_array(x), t[:-1])
    with pytest.raises(TypeError, match="integer class indices"):
        xdask.evaluate(da.from_array(x), t.astype(float))
    bad = t.copy()
    bad[555] = 5
    with pytest.raises(IndexError, match=r"labels\[555\] = 5"):
        xdask.evaluate(da.from_array(x, chunks=(200, 5)), bad)
    with pytest.raises(IndexError, match="row block starting at row 400"):
        xdask.cross_entropy(da.from_array(x, chunks=(200, 5)), bad)
    with pytest.raises(ValueError, match="reduction"):
        xdask.cross_entropy(da.from_array(x), t, reduction="avg")


def test_cross_entropy_none_with_class_targets_over_several_blocks():
    """reduction="none" with a class per row, the rows cut into blocks: each block's losses
    are its own rows' (a 1-d target used to be lined up with the logits' class axis)."""
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((10, 3))
    target = rng.integers(0, 3, 10)
    x = da.from_array(logits, chunks=(4, 3))
    for t in (da.from_array(target, chunks=4), target):
        got = xdask.cross_entropy(x, t, reduction="none", label_smoothing=0.1).compute()
        want = xent.cross_entropy(logits, target, reduction="none", label_smoothing=0.1)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize(
    "options", [{}, {"label_smoothing": 0.1, "weight": np.linspace(0.5, 2, 30)}]
)
def test_cross_entropy_same_bits_for_any_chunking(dtype, options):
    """Exact sums of the blocks: every chunking and thread count gives one value, bit for
    bit, and it is xent.cross_entropy's on the whole array, in every dtype (the blocks ship
    the kernel's exact sums of the float64 row values, unrounded). Rows of losses from
    1e-15 to 1e2 (sums that lose bits when grouped differently in plain float64)."""
    x, t = data(n=6007, seed=9)
    x = (x * np.geomspace(0.05, 40, x.shape[0])[:, None]).astype(dtype)
    soft = xent.softmax(np.random.default_rng(2).standard_normal(x.shape)).astype(dtype)
    chunkings = [x.shape[0], 1, 97, 1000, 3003, (1, 6000, 6), (4096, 1911)]
    for reduction in ("mean", "sum"):
        values = set()
        for chunks in chunkings:
            if chunks == 1:  # one row per block: a shorter array, its own comparison
                few = da.from_array(x[:40], chunks=(1, 30))
                want_few = xent.cross_entropy(x[:40], t[:40], reduction=reduction, **options)
                got_few = xdask.cross_entropy(few, t[:40], reduction=reduction, **options)
                assert got_few.tobytes() == want_few.tobytes()
                continue
            dx = da.from_array(x, chunks=(chunks, 30))
            with dask.config.set(scheduler="threads"):
                for threads in (1, 2):
                    got = xdask.cross_entropy(
                        dx, t, reduction=reduction, num_threads=threads, **options
                    )
                    assert got.dtype == dtype
                    values.add(got.tobytes())
        assert len(values) == 1, f"{reduction}: {len(values)} different results"
        want = xent.cross_entropy(x, t, reduction=reduction, **options)
        assert values == {want.tobytes()}
    # probability targets: the denominator is the row count
    got = {
        xdask.cross_entropy(
            da.from_array(x, chunks=(c, 30)), da.from_array(soft, chunks=(c, 30))
        ).tobytes()
        for c in (6007, 500, 1234)
    }
    assert got == {xent.cross_entropy(x, soft).tobytes()}


def test_exact_parts_any_grouping():
    """The parts a block ships (the kernels' accumulator, unrounded) sum, in any grouping and
    order, to the exact total rounded once (the accumulator on all the values at once),
    across 600 orders of magnitude, with subnormals, zeros and cancellation."""
    from xent import _kernels, _sample_weight

    rng = np.random.default_rng(11)
    for trial in range(60):
        n = int(rng.integers(1, 2000))
        v = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
        v[:: 7 + trial % 5] = 5e-324 * rng.integers(-9, 9, len(v[:: 7 + trial % 5]))
        v[::11] = 0.0
        if trial % 3 == 0:
            v = np.concatenate([v, -v[: n // 2]])  # cancellation
        cuts = np.sort(rng.integers(0, len(v), int(rng.integers(1, 8))))
        parts = [_kernels.exact_sum(p, parts=True) for p in np.split(v, cuts)]
        assert all(len(p) <= 68 for p in parts)
        rng.shuffle(parts)
        assert _sample_weight.exact_total(np.concatenate(parts)) == _sample_weight.exact_total(v)
    assert np.isnan(_kernels.exact_sum(np.array([np.inf, -np.inf, 1.0]), parts=True)).all()
    assert _kernels.exact_sum(np.array([np.inf, 2.0]), parts=True).tolist() == [np.inf]
    big = np.finfo(np.float64).max
    # a block sum past the double range is its rounded total alone (+inf), as the whole's is
    assert _kernels.exact_sum(np.array([big, big]), parts=True).tolist() == [np.inf]
    parts = _kernels.exact_sum(np.array([big, big, -big, -1e-300]), parts=True)
    assert _sample_weight.exact_total(np.concatenate([parts, [1e-300]])) == big
    assert _kernels.exact_sum(np.zeros(3), parts=True).tolist() == []
