"""xent.compare and ``xent compare``: two models' logits compared, against xent.reference and
PyTorch, on every kernel variant."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.special import log_softmax

import xent
from xent import _kernels, reference

TOL = {np.float16: 2e-5, np.float32: 2e-5, np.float64: 1e-10}


def model_pair(n, c, dtype=np.float32, seed=0, noise=0.3, labels=True, ignore_every=0):
    """A reference model's logits, a candidate's (the reference plus noise, as a quantised
    model's), and targets the reference prefers."""
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((n, c)) * 2
    t = rng.integers(0, c, n)
    ref[np.arange(n), t] += 2
    cand = ref + rng.standard_normal((n, c)) * noise
    if ignore_every:
        t[::ignore_every] = -100
    return ref.astype(dtype), cand.astype(dtype), (t if labels else None)


def assert_report_matches(report, expected, tol):
    got = report.as_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        if key in ("count", "ignored"):
            assert got[key] == value, key
        elif key.startswith("top1_agreement"):
            assert got[key] == pytest.approx(value, abs=1e-12), key
        elif key.startswith("kl_p") or key == "kl_max" or key.startswith("target_prob_shift_p"):
            # percentiles of the per-row values kept as float32
            assert got[key] == pytest.approx(value, rel=max(tol, 3e-7), abs=tol), key
        else:
            assert got[key] == pytest.approx(value, rel=tol, abs=tol), key


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(500, 1), (1000, 7), (3000, 64), (300, 1500), (12, 5000)])
def test_against_reference(shape, dtype):
    ref, cand, t = model_pair(*shape, dtype=dtype, seed=shape[1], ignore_every=9)
    expected = reference.compare(ref, cand, t)
    assert_report_matches(xent.compare(ref, cand, t), expected, TOL[dtype])


def test_every_kernel_variant(isa, dtype):
    ref, cand, t = model_pair(2000, 333, dtype=dtype, seed=1)
    assert_report_matches(
        xent.compare(ref, cand, t), reference.compare(ref, cand, t), TOL[np.dtype(dtype).type]
    )
    ref, cand, _ = model_pair(700, 70, dtype=dtype, seed=2, labels=False)
    assert_report_matches(
        xent.compare(ref, cand), reference.compare(ref, cand), TOL[np.dtype(dtype).type]
    )


def test_kernel_rows_on_every_variant(isa, dtype):
    ref, cand, t = model_pair(300, 1100, dtype=dtype, seed=3)  # rows of several chunks
    values = np.empty((300, len(_kernels.compare_columns())))
    _kernels.compare_rows(ref, cand, t.astype(np.intp), -100, values, 2)
    cols = dict(zip(_kernels.compare_columns(), values.T))
    lp, lq = log_softmax(ref.astype(np.float64), -1), log_softmax(cand.astype(np.float64), -1)
    kl = np.sum(np.exp(lp) * (lp - lq), axis=1)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(cols["kl"], kl, rtol=tol * 10, atol=tol)
    np.testing.assert_array_equal(cols["agree"], ref.argmax(1) == cand.argmax(1))
    np.testing.assert_allclose(cols["nll_ref"], -lp[np.arange(300), t], rtol=tol)


def test_kl_of_close_models_keeps_its_digits(dtype):
    # a quantised model: logits off by about 1e-3, KL about 1e-6; written with the per-entry
    # difference, the KL carries no rounding of the log-sum-exps themselves
    rng = np.random.default_rng(4)
    ref = (rng.standard_normal((400, 4000)) * 3).astype(dtype)
    cand = (ref + rng.standard_normal(ref.shape) * 1e-3).astype(dtype)
    got = xent.compare(ref, cand)
    want = reference.compare(ref, cand)
    assert 1e-7 < want["kl"] < 1e-5
    rel = 1e-5 if dtype == np.float32 else 1e-10
    assert got.kl == pytest.approx(want["kl"], rel=rel)
    assert got.js == pytest.approx(want["js"], rel=rel)


def test_huge_logits_keep_their_softmax(isa, dtype):
    # a row of equal logits at 1e17 has the uniform softmax; its log-sum-exp 1e17 + log 2
    # rounds to 1e17 in double, and subtracting that rounded sum once gave every entry q = 1
    # (a KL of 0.315 where the exact one is 0.0082)
    ref = np.array([[0.12573022, -0.13210486], [3.0, -1.0]], dtype=dtype)
    for big in (1e17, 1e30, 1e300):
        if big > float(np.finfo(dtype).max):
            continue
        cand = np.full_like(ref, big)
        cand[1] = [big, big]
        lp = log_softmax(ref.astype(np.float64), -1)
        want = np.sum(np.exp(lp) * (lp - np.log(0.5)), axis=1)
        values = np.empty((2, len(_kernels.compare_columns())))
        _kernels.compare_rows(ref, cand, np.zeros(2, np.intp), -100, values, 1)
        kl = dict(zip(_kernels.compare_columns(), values.T))["kl"]
        tol = 1e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(kl, want, rtol=tol, atol=tol, err_msg=f"logits at {big}")
        assert xent.compare(ref, cand).kl == pytest.approx(want.mean(), rel=tol, abs=tol)


def test_against_pytorch_kl_div(dtype):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    ref, cand, _ = model_pair(1500, 120, dtype=dtype, seed=5, labels=False)
    got = xent.compare(ref, cand)
    r, c = torch.from_numpy(ref), torch.from_numpy(cand)
    expected = F.kl_div(
        F.log_softmax(c, -1), F.log_softmax(r, -1), log_target=True, reduction="batchmean"
    )
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert got.kl == pytest.approx(float(expected), rel=tol)
    per_row = (
        F.kl_div(F.log_softmax(c, -1), F.log_softmax(r, -1), log_target=True, reduction="none")
        .sum(-1)
        .double()
        .numpy()
    )
    assert got.kl_percentiles[100.0] == pytest.approx(per_row.max(), rel=max(tol, 3e-7))
    assert got.kl_percentiles[50.0] == pytest.approx(np.median(per_row), rel=max(tol, 3e-7))
    m = 0.5 * (F.softmax(r.double(), -1) + F.softmax(c.double(), -1))
    js = 0.5 * (
        F.kl_div(m.log(), F.log_softmax(r.double(), -1), log_target=True, reduction="batchmean")
        + F.kl_div(m.log(), F.log_softmax(c.double(), -1), log_target=True, reduction="batchmean")
    )
    assert got.js == pytest.approx(float(js), rel=tol * 10)


def test_same_bits_any_chunking_batching_threads(tmp_path):
    ref, cand, t = model_pair(9000, 31, seed=6, ignore_every=7)
    base = xent.compare(ref, cand, t, num_threads=1)
    for chunk in (1, 4095, 5000):
        again = xent.compare(ref, cand, t, chunk_rows=chunk, num_threads=2)
        assert again.as_dict() == base.as_dict()
        np.testing.assert_array_equal(again.kl_values, base.kl_values)
    cuts = [0, 17, 4096, 8000, 9000]
    got = xent.compare(
        [ref[a:b] for a, b in zip(cuts, cuts[1:])],
        [cand[a:b] for a, b in zip(cuts, cuts[1:])],
        [t[a:b] for a, b in zip(cuts, cuts[1:])],
    )
    assert got.as_dict() == base.as_dict()
    np.save(tmp_path / "r.npy", ref)
    np.save(tmp_path / "c.npy", cand)
    files = xent.compare(str(tmp_path / "r.npy"), tmp_path / "c.npy", t)
    assert files.as_dict() == base.as_dict()
    mixed = xent.compare(ref, cand.astype(np.float16), t)  # models in different dtypes
    assert mixed.count == base.count


def test_special_values():
    inf, nan = np.inf, np.nan
    ref = np.array(
        [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [0.0, -inf, 2.0], [nan, 1.0, 0.0], [1.0, 1.0, 0.0]]
    )
    cand = np.array(
        [[0.0, 1.0, 2.0], [0.0, -inf, 2.0], [0.0, -inf, 2.0], [0.0, 1.0, 0.0], [0.0, 1.0, 1.0]]
    )
    values = np.empty((5, len(_kernels.compare_columns())))
    _kernels.compare_rows(ref, cand, None, -100, values, 1)
    kl = values[:, 1]
    assert kl[0] == 0 and kl[1] == inf and kl[2] == pytest.approx(0, abs=1e-15)
    assert np.isnan(kl[3])
    # first largest entries, NaN ignored: 2|2, 2|2, 2|2, 1|1, 0|1
    assert values[:, 4].tolist() == [1, 1, 1, 1, 0]
    ref_report = reference.compare(ref[[0, 2, 4]], cand[[0, 2, 4]])
    got = xent.compare(ref[[0, 2, 4]], cand[[0, 2, 4]])
    assert got.kl == pytest.approx(ref_report["kl"], rel=1e-12)
    assert got.top1_agreement == ref_report["top1_agreement"]


def test_labels_and_errors():
    ref, cand, t = model_pair(100, 5, seed=7)
    with pytest.raises(ValueError, match="same shape"):
        xent.compare(ref, cand[:, :4])
    with pytest.raises(ValueError, match="labels has shape"):
        xent.compare(ref, cand, t[:50])
    with pytest.raises(TypeError, match="labels must hold integer"):
        xent.compare(ref, cand, t.astype(float))
    bad = t.copy()
    bad[42] = 5
    with pytest.raises(IndexError, match=r"labels\[42\] = 5"):
        xent.compare(ref, cand, bad)
    with pytest.raises(TypeError, match="both as arrays"):
        xent.compare(ref, iter([cand]))
    with pytest.raises(TypeError, match="ref must be"):
        xent.compare(ref.astype(int), cand)
    everything = xent.compare(ref, cand, np.full(100, -100))
    assert everything.count == 0 and everything.ignored == 100 and np.isnan(everything.kl)


def test_perplexity_ratio_uncertainty_is_paired():
    # the candidate is the reference shifted a little: the ratio's interval is far narrower
    # than either perplexity's (the paired differences cancel the shared per-row variation)
    ref, cand, t = model_pair(5000, 50, seed=8, noise=0.05)
    r = xent.compare(ref, cand, t)
    lo, hi = r.perplexity_ratio_interval
    assert lo < r.perplexity_ratio < hi
    assert (hi - lo) / r.perplexity_ratio < 0.2 * (
        2 * 1.96 * r.stderr["ref_perplexity"] / r.ref_perplexity
    )
    nll_r = -log_softmax(ref.astype(np.float64), -1)[np.arange(5000), t]
    nll_c = -log_softmax(cand.astype(np.float64), -1)[np.arange(5000), t]
    assert r.perplexity_ratio == pytest.approx(np.exp(nll_c.mean() - nll_r.mean()), rel=1e-9)
    assert r.cand_perplexity / r.ref_perplexity == pytest.approx(r.perplexity_ratio, rel=1e-9)


def test_cli_json_plot_and_shards(tmp_path):
    pytest.importorskip("matplotlib")
    ref, cand, t = model_pair(3000, 40, seed=9, ignore_every=11)
    for i, (a, b) in enumerate([(0, 1000), (1000, 3000)]):
        np.save(tmp_path / f"ref_{i}.npy", ref[a:b])
        np.save(tmp_path / f"cand_{i}.npy", cand[a:b])
        np.save(tmp_path / f"t_{i}.npy", t[a:b])
    cmd = [
        sys.executable,
        "-m",
        "xent",
        "compare",
        "ref_*.npy",
        "cand_*.npy",
        "t_*.npy",
        "--json",
        "--plot",
        "cmp.png",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    want = reference.compare(ref, cand, t)
    for key in (
        "kl",
        "kl_stderr",
        "js",
        "top1_agreement",
        "perplexity_ratio",
        "target_prob_shift_rms",
        "count",
        "ignored",
    ):
        assert out[key] == pytest.approx(want[key], rel=2e-5), key
    assert out["files"] == 2
    with open(tmp_path / "cmp.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    text = subprocess.run(
        [sys.executable, "-m", "xent", "compare", "ref_0.npy", "cand_0.npy"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert text.returncode == 0 and "KL mean" in text.stdout and "ppl ratio" not in text.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "xent", "compare", "ref_0.npy", "cand_1.npy"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert bad.returncode == 1 and "same shape" in bad.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_anonymous_memory_bounded(tmp_path):
    # two 48 MiB files, chunks of 1 MiB: anonymous memory grows by the chunks and 4 bytes of
    # KL per row, far less than the files
    n, c = 48 * 2**20 // (4 * 1000), 1000
    rng = np.random.default_rng(0)
    for name in ("r", "c"):
        out = np.lib.format.open_memmap(
            tmp_path / f"{name}.npy", mode="w+", dtype=np.float32, shape=(n, c)
        )
        for start in range(0, n, 4096):
            out[start : start + 4096] = rng.standard_normal((min(4096, n - start), c))
        del out
    script = """
import threading, time, numpy as np, xent
def anon():
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon:'):
            return int(line.split()[1])
xent.compare(np.zeros((10, 5), np.float32), np.zeros((10, 5), np.float32))   # warm up
base = anon(); peak = [base]; stop = []
def sample():
    while not stop:
        peak[0] = max(peak[0], anon()); time.sleep(0.002)
th = threading.Thread(target=sample); th.start()
xent.compare('r.npy', 'c.npy', chunk_rows=256)
stop.append(1); th.join()
print(peak[0] - base)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    rise_mib = int(proc.stdout.split()[-1]) / 1024
    assert rise_mib < 16, f"RssAnon grew by {rise_mib:.1f} MiB over two 48 MiB files"
