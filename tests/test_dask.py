"""xent.dask on a real distributed.LocalCluster of worker processes: the same report as
xent.evaluate in memory, bit for bit, and cross_entropy equal to xent.cross_entropy."""

import os

import numpy as np
import pytest

import xent
from xent import reference

from support import classifier_outputs

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
    assert got == pytest.approx(xent.cross_entropy(x, t, reduction=reduction, **options), rel=1e-13)
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
