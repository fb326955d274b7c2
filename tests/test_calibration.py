"""xent.evaluate's calibration (ECE, MCE, Brier score), standard errors, bits per byte and
per-document log-likelihoods, against xent.reference and outside oracles."""

import json
import os

import numpy as np
import pytest
from scipy import stats
from scipy.special import log_softmax, softmax

import xent
from xent import _calibration, _kernels, reference

from support import classifier_outputs


def clustered_outputs(n, c, seed):
    """Logits whose top-1 confidences cluster on a few values (rows repeat a few patterns):
    ties straddle the equal-mass cuts, so the fine histogram cannot cut exactly."""
    rng = np.random.default_rng(seed)
    patterns = rng.standard_normal((7, c)) * 2
    x = patterns[rng.integers(0, 7, n)] + rng.standard_normal((n, c)) * 1e-3
    t = rng.integers(0, c, n)
    return x, t


def test_kernel_row_values_on_every_variant(isa, dtype):
    x, t = classifier_outputs(700, 37, dtype=dtype, seed=11)
    t[::9] = -100
    values = np.empty((700, _kernels.evaluate_fields()))
    rank = np.empty(700, dtype=np.intp)
    _kernels.evaluate_rows(x, t.astype(np.intp), None, -100, values, rank, 2)
    cols = dict(zip(_kernels.evaluate_columns(), values.T))
    kept = t != -100
    p = softmax(x.astype(np.float64), axis=-1)
    onehot = np.eye(37)[np.where(kept, t, 0)]
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(cols["confidence"][kept], p.max(axis=1)[kept], rtol=tol)
    brier = np.sum((p - onehot) ** 2, axis=1)
    np.testing.assert_allclose(cols["brier"][kept], brier[kept], rtol=tol, atol=tol)
    loss = -log_softmax(x.astype(np.float64), axis=-1)[np.arange(700), np.where(kept, t, 0)]
    np.testing.assert_allclose(cols["loss_sq"][kept], loss[kept] ** 2, rtol=5 * tol)
    assert np.all(values[~kept] == 0) and np.all(rank[~kept] == -1)


@pytest.mark.parametrize("kind", ["mass", "width"])
@pytest.mark.parametrize("bins", [1, 10, 15, 40])
def test_ece_and_mce_against_the_reference(kind, bins):
    x, t = classifier_outputs(5000, 30, dtype=np.float64, seed=bins)
    got = xent.evaluate(x, t, calibration=kind, calibration_bins=bins)
    want = reference.evaluate(x, t, calibration=kind, calibration_bins=bins)
    assert got.calibration == kind and got.calibration_table.shape == (bins, 5)
    assert got.ece == pytest.approx(want["ece"], abs=got.ece_error_bound + 1e-13)
    if got.ece_error_bound == 0:  # every cut on a fine edge: the same bins exactly
        assert got.mce == pytest.approx(want["mce"], rel=1e-12)
    if kind == "width":
        assert got.ece_error_bound == 0
        conf = softmax(x, axis=-1).max(axis=1)
        _, _, table = reference.calibration_errors(conf, x.argmax(1) == t, bins=bins, kind="width")
        np.testing.assert_array_equal(got.calibration_table[:, 2], table[:, 0])
        np.testing.assert_allclose(got.calibration_table[:, 3:], table[:, 1:], rtol=1e-13)
    assert got.calibration_table[:, 2].sum() == got.count


def test_equal_mass_error_bound_holds_where_cuts_fall_inside_fine_bins():
    bounds = []
    for seed in range(6):
        x, t = clustered_outputs(3000, 12, seed)
        got = xent.evaluate(x, t, calibration_bins=15)
        want = reference.evaluate(x, t, calibration_bins=15)
        assert abs(got.ece - want["ece"]) <= got.ece_error_bound + 1e-13
        bounds.append(got.ece_error_bound)
        # the merged bins hold every row, in bins as near equal-mass as the fine edges allow
        assert got.calibration_table[:, 2].sum() == 3000
    assert max(bounds) > 0  # the data did put cuts inside fine bins: the bound was tested


def test_ece_from_a_hand_made_example():
    # two classes; rows with confidence 0.9 right 8 times in 10, rows with 0.6 right 3/5
    x1, x2 = np.log([0.9, 0.1]), np.log([0.6, 0.4])
    x = np.array([x1] * 10 + [x2] * 5)
    t = np.array([0] * 8 + [1] * 2 + [0] * 3 + [1] * 2)
    report = xent.evaluate(x, t, calibration="width", calibration_bins=10)
    # bins [0.9, 1.0): |0.8 - 0.9|, [0.6, 0.7): |0.6 - 0.6| = 0
    assert report.ece == pytest.approx(10 / 15 * 0.1, abs=1e-12)
    assert report.mce == pytest.approx(0.1, abs=1e-12)
    brier = (8 * (0.1**2 * 2) + 2 * (0.9**2 * 2) + 3 * (0.4**2 * 2) + 2 * (0.6**2 * 2)) / 15
    assert report.brier == pytest.approx(brier, abs=1e-12)


def test_standard_errors_against_scipy():
    x, t = classifier_outputs(4000, 50, dtype=np.float64, seed=3)
    report = xent.evaluate(x, t, topk=(1, 5))
    lp = log_softmax(x, axis=-1)
    loss = -lp[np.arange(4000), t]
    assert report.stderr["loss"] == pytest.approx(stats.sem(loss), rel=1e-9)
    rank = (x > x[np.arange(4000), t][:, None]).sum(1)
    assert report.stderr["accuracy"] == pytest.approx(stats.sem(rank < 1), rel=1e-9)
    assert report.stderr["top5_accuracy"] == pytest.approx(stats.sem(rank < 5), rel=1e-9)
    p = np.exp(lp)
    brier = np.sum(p**2, axis=1) - 2 * p[np.arange(4000), t] + 1
    assert report.stderr["brier"] == pytest.approx(stats.sem(brier), rel=1e-9)
    assert report.stderr["perplexity"] == pytest.approx(
        report.perplexity * stats.sem(loss), rel=1e-9
    )
    lo, hi = report.interval("loss")
    assert (lo + hi) / 2 == pytest.approx(report.loss, rel=1e-12)
    assert hi - lo == pytest.approx(2 * 1.959963984540054 * stats.sem(loss), rel=1e-9)
    plo, phi = report.interval("perplexity")
    assert plo == pytest.approx(np.exp(lo)) and phi == pytest.approx(np.exp(hi))
    want = reference.evaluate(x, t, topk=(1, 5))
    for key, se in report.stderr.items():
        assert se == pytest.approx(want[f"{key}_stderr"], rel=1e-9), key


def test_weighted_loss_stderr_against_the_reference():
    x, t = classifier_outputs(3000, 20, dtype=np.float64, seed=4, ignore_every=7)
    w = np.random.default_rng(1).random(20) + 0.5
    got = xent.evaluate(x, t, weight=w)
    want = reference.evaluate(x, t, weight=w)
    assert got.stderr["loss"] == pytest.approx(want["loss_stderr"], rel=1e-9)
    # linearisation: the bootstrap's spread agrees to a few percent
    rng = np.random.default_rng(2)
    kept = t != -100
    xk, tk = x[kept], t[kept]
    loss = -log_softmax(xk, axis=-1)[np.arange(len(tk)), tk]
    wk = w[tk]
    boot = []
    for _ in range(400):
        i = rng.integers(0, len(tk), len(tk))
        boot.append(np.sum(wk[i] * loss[i]) / np.sum(wk[i]))
    assert got.stderr["loss"] == pytest.approx(np.std(boot), rel=0.15)


def test_bits_per_byte_total_and_per_row():
    x, t = classifier_outputs(2000, 40, dtype=np.float64, seed=5, ignore_every=10)
    row_bytes = np.random.default_rng(0).integers(1, 9, 2000)
    got = xent.evaluate(x, t, num_bytes=row_bytes, chunk_rows=333)
    want = reference.evaluate(x, t, num_bytes=row_bytes)
    assert got.bits_per_byte == pytest.approx(want["bits_per_byte"], rel=1e-12)
    assert got.byte_perplexity == pytest.approx(2 ** want["bits_per_byte"], rel=1e-12)
    kept = t != -100
    total = xent.evaluate(x, t, num_bytes=int(row_bytes[kept].sum()))
    assert total.bits_per_byte == pytest.approx(got.bits_per_byte, rel=1e-12)
    # the definition: summed nats over bytes, in bits
    nats = got.loss * got.count
    assert got.bits_per_byte == pytest.approx(nats / np.log(2) / row_bytes[kept].sum(), rel=1e-12)


def test_document_loglikelihoods_same_bits_any_chunking():
    x, t = classifier_outputs(3000, 25, dtype=np.float32, seed=6, ignore_every=13)
    docs = np.repeat(np.arange(40), 75)
    base = xent.evaluate(x, t, documents=docs)
    want = reference.evaluate(x, t, documents=docs)
    np.testing.assert_allclose(
        base.document_loglikelihood, want["document_loglikelihood"], rtol=2e-6
    )
    assert len(base.document_loglikelihood) == 40
    assert base.document_loglikelihood.sum() == pytest.approx(-base.loss * base.count, rel=1e-12)
    for chunk in (1, 100, 4096):
        again = xent.evaluate(x, t, documents=docs, chunk_rows=chunk, num_threads=1)
        np.testing.assert_array_equal(again.document_loglikelihood, base.document_loglikelihood)


def test_calibration_same_bits_any_chunking_and_dask():
    x, t = classifier_outputs(9000, 17, dtype=np.float32, seed=7, ignore_every=11)
    base = xent.evaluate(x, t, num_threads=1)
    for chunk in (7, 4096, 5000):
        assert xent.evaluate(x, t, chunk_rows=chunk, num_threads=2) == base
    da = pytest.importorskip("dask.array")
    xdask = pytest.importorskip("xent.dask")
    got = xdask.evaluate(da.from_array(x, chunks=(1234, 17)), t)
    assert got == base
    width = xdask.evaluate(
        da.from_array(x, chunks=(2000, 17)), t, calibration="width", calibration_bins=7
    )
    assert width == xent.evaluate(x, t, calibration="width", calibration_bins=7)


def test_nan_rows_make_calibration_nan():
    x, t = classifier_outputs(100, 5, dtype=np.float64, seed=8)
    x[3, 2] = np.nan
    report = xent.evaluate(x, t)
    assert np.isnan(report.ece) and np.isnan(report.mce) and np.isnan(report.brier)
    assert report.calibration_table[:, 2].sum() == 99


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"calibration": "quantile"}, ValueError, "calibration must be"),
        ({"calibration_bins": 0}, ValueError, "calibration_bins"),
        ({"calibration_bins": 2.5}, TypeError, "calibration_bins"),
        ({"num_bytes": 0}, ValueError, "num_bytes must be positive"),
        ({"num_bytes": np.ones(3, int)}, ValueError, "num_bytes has shape"),
        ({"documents": np.ones(50)}, TypeError, "documents must hold integers"),
        ({"documents": -np.ones(50, int)}, ValueError, "documents\\[0\\] is negative"),
        ({"num_bytes": 100, "weight": np.ones(4)}, ValueError, "weight=None"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    x, t = classifier_outputs(50, 4, dtype=np.float64)
    with pytest.raises(error, match=match):
        xent.evaluate(x, t, **kwargs)


def test_per_row_units_need_arrays_not_batches():
    x, t = classifier_outputs(50, 4, dtype=np.float64)
    with pytest.raises(TypeError, match="documents per row needs"):
        xent.evaluate(iter([(x, t)]), documents=np.zeros(50, int))
    total = xent.evaluate(iter([(x[:20], t[:20]), (x[20:], t[20:])]), num_bytes=200)
    assert total.bits_per_byte == pytest.approx(
        xent.evaluate(x, t, num_bytes=200).bits_per_byte, rel=1e-15
    )


def test_fine_histogram_fixed_point_is_exact_to_float64():
    rng = np.random.default_rng(9)
    conf = rng.random(10000)
    high, low = _calibration._fixed_point(conf)
    back = high / 2.0**32 + low / 2.0**64
    np.testing.assert_allclose(back, conf, rtol=0, atol=2.0**-64)


def test_eval_cli_plot_and_json(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from xent.cli import main

    x, t = classifier_outputs(3000, 20, dtype=np.float32, seed=10)
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", x)
    np.save("t.npy", t)
    status = main(
        [
            "eval",
            "x.npy",
            "t.npy",
            "--json",
            "--plot",
            "rel.png",
            "--bytes",
            "9000",
            "--calibration",
            "width",
            "--calibration-bins",
            "12",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert status == 0
    want = reference.evaluate(x, t, calibration="width", calibration_bins=12, num_bytes=9000)
    for key in ("ece", "mce", "brier", "loss_stderr", "bits_per_byte"):
        assert out[key] == pytest.approx(want[key], rel=2e-5), key
    assert len(out["calibration_bins"]) == 12 and out["ece_error_bound"] == 0
    assert sum(b["count"] for b in out["calibration_bins"]) == 3000
    with open("rel.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize("rel.png") > 10000


def test_compiled_histogram_equals_the_numpy_one():
    x, t = classifier_outputs(5000, 9, dtype=np.float64, seed=12, ignore_every=5)
    x[7, 3] = np.nan
    values = np.empty((5000, _kernels.evaluate_fields()))
    rank = np.empty(5000, dtype=np.intp)
    _kernels.evaluate_rows(x, t.astype(np.intp), None, -100, values, rank, 1)
    compiled, numpy_made = (_calibration.CalibrationHistogram(13) for _ in range(2))
    column = _kernels.evaluate_columns().index("confidence")
    compiled.add_rows(values, column, rank)
    kept = rank >= 0
    numpy_made.add(values[kept, column], rank[kept] == 0)
    np.testing.assert_array_equal(compiled.fine, numpy_made.fine)
    np.testing.assert_array_equal(compiled.width, numpy_made.width)
    assert compiled.nan == numpy_made.nan == 1
