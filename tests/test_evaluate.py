"""xent.evaluate against xent.reference.evaluate: every metric, the rank rules, chunking and
batching that must not change a bit, memory maps and bounded memory."""

import os
import subprocess
import sys

import numpy as np
import pytest

import xent
from xent import reference

from support import classifier_outputs

TOL = {np.float16: 2e-5, np.float32: 2e-5, np.float64: 1e-11}


def assert_matches(report, expected, tol):
    """The report's metrics are those of ``expected`` (a dict): the counts exactly, the
    accuracies within 1e-12 (a ratio of counts), the rest within ``tol`` relative and
    absolute (NaN meeting NaN)."""
    got = report.as_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        if key in ("count", "ignored"):
            assert got[key] == value, key
        elif key.endswith("accuracy"):
            assert got[key] == pytest.approx(value, abs=1e-12, nan_ok=True), key
        else:
            assert got[key] == pytest.approx(value, rel=tol, abs=tol, nan_ok=True), key


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(300, 1), (1000, 5), (4100, 37), (600, 1000), (20, 5000)])
def test_every_metric_against_reference(shape, dtype):
    x, t = classifier_outputs(*shape, dtype=dtype, ignore_every=13)
    expected = reference.evaluate(x, t, topk=(1, 2, 5))
    assert_matches(xent.evaluate(x, t, topk=(1, 2, 5)), expected, TOL[dtype])


def test_every_kernel_variant(isa):
    x, t = classifier_outputs(2000, 300, dtype=np.float32, seed=3)
    assert_matches(xent.evaluate(x, t), reference.evaluate(x, t), TOL[np.float32])
    x64 = x.astype(np.float64)
    assert_matches(xent.evaluate(x64, t), reference.evaluate(x64, t), TOL[np.float64])


def test_weights_weight_the_loss_only():
    x, t = classifier_outputs(3000, 20, seed=1, ignore_every=7)
    w = np.random.default_rng(5).random(20) * 3
    report = xent.evaluate(x, t, weight=w, topk=(1, 3))
    assert_matches(report, reference.evaluate(x, t, weight=w, topk=(1, 3)), 2e-5)
    # the loss is PyTorch's weighted mean, exactly what xent.cross_entropy gives
    assert report.loss == pytest.approx(
        float(xent.cross_entropy(x.astype(np.float64), t, weight=w)), rel=1e-6
    )
    plain = xent.evaluate(x, t, topk=(1, 3))
    assert report.accuracy == plain.accuracy and report.entropy == plain.entropy
    assert report.topk_accuracy == plain.topk_accuracy


def test_ignore_index_and_counts():
    x, t = classifier_outputs(1000, 10, seed=2)
    t[:100] = 7
    report = xent.evaluate(x, t, ignore_index=7)
    assert (
        report.ignored == 100 + int(np.sum(t[100:] == 7)) and report.count == 1000 - report.ignored
    )
    assert_matches(report, reference.evaluate(x, t, ignore_index=7), 2e-5)
    everything = xent.evaluate(x, np.full(1000, -100))
    assert everything.count == 0 and everything.ignored == 1000
    assert np.isnan(everything.loss) and np.isnan(everything.accuracy)
    assert np.isnan(everything.entropy)


def test_rank_rules_ties_nan_inf():
    nan, inf = np.nan, np.inf
    x = np.array(
        [
            [1.0, 3.0, 3.0, 0.0],  # target 1 tied with 2 for the max: rank 0
            [3.0, 1.0, 3.0, 1.0],  # target 1 below two, tied with one: rank 2
            [nan, 1.0, 0.0, 0.0],  # NaN elsewhere beats the target: rank 1
            [0.0, nan, 0.0, 0.0],  # NaN target: rank C
            [0.0, 1.0, inf, 0.0],  # +inf elsewhere
            [inf, 1.0, 0.0, 0.0],  # +inf target: rank 0
            [-inf, -inf, -inf, -inf],
            [-inf, 5.0, -inf, 2.0],  # -inf entries add nothing
        ]
    )
    t = np.array([1, 1, 1, 1, 1, 0, 0, 1])
    assert list(reference.target_rank(x, t)) == [0, 2, 1, 4, 1, 0, 0, 0]
    for dtype in (np.float32, np.float64):
        got = xent.evaluate(x.astype(dtype), t, topk=(1, 2, 3, 4, 5))
        assert_matches(got, reference.evaluate(x, t, topk=(1, 2, 3, 4, 5)), 1e-6)
        # per row: every metric of every single row, so a non-finite row cannot hide
        for i in range(len(t)):
            one = xent.evaluate(x[i : i + 1].astype(dtype), t[i : i + 1], topk=(1, 2, 5))
            assert_matches(
                one, reference.evaluate(x[i : i + 1], t[i : i + 1], topk=(1, 2, 5)), 1e-6
            )


def test_huge_logits_keep_their_differences():
    x = np.array([[1e30, 1e30 + 2e23, 1e30 - 3e23]], dtype=np.float64)
    t = np.array([0])
    assert_matches(xent.evaluate(x, t), reference.evaluate(x, t), 1e-11)


def test_long_rows():
    x, t = classifier_outputs(3, 1_000_003, dtype=np.float32, seed=4)
    assert_matches(xent.evaluate(x, t), reference.evaluate(x, t), 2e-5)


def test_same_bits_for_any_chunking_batching_and_threads():
    x, t = classifier_outputs(20000, 23, seed=6, ignore_every=11)
    w = np.random.default_rng(0).random(23)
    base = xent.evaluate(x, t, weight=w, num_threads=1)
    for chunk in (1, 3, 4095, 4096, 4097, 12345):
        for threads in (1, 2):
            assert xent.evaluate(x, t, weight=w, chunk_rows=chunk, num_threads=threads) == base
    cuts = [0, 5, 4096, 4100, 9999, 15000, 20000]
    batches = [(x[a:b], t[a:b]) for a, b in zip(cuts, cuts[1:])]
    assert xent.evaluate(iter(batches), weight=w, chunk_rows=777) == base
    # the leading batch axes are flattened: (4, 5000, C) is the same dataset
    assert xent.evaluate(x.reshape(4, 5000, 23), t.reshape(4, 5000), weight=w) == base


def test_iterables_of_batches(tmp_path):
    x, t = classifier_outputs(5000, 50, seed=7, ignore_every=9)
    expected = xent.evaluate(x, t)
    assert_matches(expected, reference.evaluate(x, t), 2e-5)

    def model():  # a generator, as a model's outputs would come
        for start in range(0, 5000, 999):
            yield x[start : start + 999], t[start : start + 999]

    assert xent.evaluate(model()) == expected
    assert xent.evaluate([x[:10], x[10:]], [t[:10], t[10:]]) == expected
    paths = []
    for i, start in enumerate(range(0, 5000, 2000)):  # .npy shards, memory-mapped
        px, pt = tmp_path / f"x{i}.npy", tmp_path / f"t{i}.npy"
        np.save(px, x[start : start + 2000])
        np.save(pt, t[start : start + 2000])
        paths.append((str(px), pt))
    assert xent.evaluate(paths) == expected


def test_float16_memmap_converted_per_chunk(tmp_path):
    x, t = classifier_outputs(3000, 40, dtype=np.float16, seed=8)
    path = tmp_path / "x16.npy"
    np.save(path, x)
    got = xent.evaluate(str(path), t, chunk_rows=500)
    assert got == xent.evaluate(x.astype(np.float32), t)
    assert_matches(got, reference.evaluate(x, t), 2e-5)


def write_memmap(path, n, c, chunk=65536, seed=0):
    """A (n, c) float32 .npy written a chunk at a time; returns the labels."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, c))
    labels = rng.integers(0, c, n)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        block = rng.standard_normal((stop - start, c), dtype=np.float32)
        block[np.arange(stop - start), labels[start:stop]] += 1.0
        out[start:stop] = block
    out.flush()
    del out
    return labels


def check_memmap_equals_memory(path, n, c):
    labels = write_memmap(path, n, c)
    streamed = xent.evaluate(str(path), labels, chunk_rows=n // 7 + 1)
    mapped = np.load(path, mmap_mode="r")
    # in memory: the same rows as one array, evaluated at once, and checked on a sample
    in_memory = xent.evaluate(np.array(mapped[:n]), labels, chunk_rows=n)
    assert streamed == in_memory
    rows = np.random.default_rng(0).choice(n, 2000, replace=False)
    sample = xent.evaluate(np.array(mapped[rows]), labels[rows])
    assert_matches(sample, reference.evaluate(mapped[rows], labels[rows]), 2e-5)


def test_memmap_streaming_equals_in_memory(tmp_path):
    check_memmap_equals_memory(tmp_path / "x.npy", 40000, 100)  # 16 MB


@pytest.mark.slow
def test_memmap_of_a_gibibyte_equals_in_memory(tmp_path):
    n, c = 270000, 1000  # 1.006 GiB of float32
    assert n * c * 4 >= 2**30
    path = tmp_path / "big.npy"
    labels = write_memmap(path, n, c)
    streamed = xent.evaluate(str(path), labels)
    # in memory: the whole array in RAM at once, one chunk
    in_memory = xent.evaluate(np.load(path), labels, chunk_rows=n)
    assert streamed == in_memory
    os.remove(path)


def rss_anon_kib(pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_anonymous_memory_bounded_by_the_chunk(tmp_path, dtype):
    # 96 MiB of logits, chunks of 2 MiB: the anonymous memory (not the file's pages) must
    # grow by far less than the file, whatever the dtype conversion
    n, c = 96 * 2**20 // (1000 * np.dtype(dtype).itemsize), 1000
    path = tmp_path / "x.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, c))
    rng = np.random.default_rng(0)
    for start in range(0, n, 4096):
        out[start : start + 4096] = rng.standard_normal((min(4096, n - start), c))
    del out
    labels = rng.integers(0, c, n)
    script = f"""
import threading, time, numpy as np, xent
def anon():
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon:'):
            return int(line.split()[1])
labels = np.load({str(tmp_path / "t.npy")!r})
xent.evaluate(np.zeros((10, 5), np.float32), np.zeros(10, int))   # warm up
base = anon(); peak = [base]; stop = []
def sample():
    while not stop:
        peak[0] = max(peak[0], anon()); time.sleep(0.002)
th = threading.Thread(target=sample); th.start()
xent.evaluate({str(path)!r}, labels, chunk_rows={2 * 2**20 // (c * 4)})
stop.append(1); th.join()
print(peak[0] - base)
"""
    np.save(tmp_path / "t.npy", labels)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    rise_mib = int(proc.stdout.split()[-1]) / 1024
    print(f"RssAnon rise {rise_mib:.1f} MiB")
    assert rise_mib < 24, f"RssAnon grew by {rise_mib:.1f} MiB over a 96 MiB file"


def test_progress_bar(capsys):
    pytest.importorskip("tqdm")
    x, t = classifier_outputs(3000, 10)
    assert xent.evaluate(x, t, progress=True, chunk_rows=100) == xent.evaluate(x, t)


def test_keyboard_interrupt_stops_between_chunks():
    x, t = classifier_outputs(1000, 10)
    seen = []

    def batches():
        yield x[:500], t[:500]
        seen.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        xent.evaluate(batches(), progress=True)
    assert seen


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda x, t: xent.evaluate(x.astype(np.int32), t), TypeError, "float16, float32"),
        (lambda x, t: xent.evaluate(x, t.astype(float)), TypeError, "integer class indices"),
        (lambda x, t: xent.evaluate(x, t[:-1]), ValueError, "labels has shape"),
        (lambda x, t: xent.evaluate(x, None), TypeError, "labels is required"),
        (
            lambda x, t: xent.evaluate(x, np.where(np.arange(100) == 42, 10, t)),
            IndexError,
            r"labels\[42\] = 10",
        ),
        (lambda x, t: xent.evaluate(x, t, topk=(0,)), ValueError, "positive"),
        (lambda x, t: xent.evaluate(x, t, topk="5"), TypeError, "topk"),
        (lambda x, t: xent.evaluate(x, t, chunk_rows=0), ValueError, "chunk_rows"),
        (lambda x, t: xent.evaluate(x, t, weight=np.ones(3)), ValueError, "weight"),
        (lambda x, t: xent.evaluate(x, t, num_threads=0), ValueError, "num_threads"),
        (lambda x, t: xent.evaluate(x[:, :0], t), ValueError, "class axis"),
        (lambda x, t: xent.evaluate("/nonexistent/x.npy", t), FileNotFoundError, "no such file"),
        (lambda x, t: xent.evaluate([(x, t), (x[:, :5], t)]), ValueError, "5 classes"),
        (lambda x, t: xent.evaluate([x, x], [t]), ValueError, "zip"),
        (lambda x, t: xent.evaluate([(x, t, t)]), TypeError, "pair"),
        (lambda x, t: xent.evaluate(x, iter([t])), TypeError, "iterable of batches"),
    ],
)
def test_errors_name_the_problem(call, error, message):
    x, t = classifier_outputs(100, 10)
    with pytest.raises(error, match=message):
        call(x, t)


def test_label_out_of_range_names_its_global_row():
    x, t = classifier_outputs(1000, 10)
    t[777] = 10
    with pytest.raises(
        IndexError, match=r"labels\[777\] = 10 is out of range \(batch 1, row 277\)"
    ):
        xent.evaluate(iter([(x[:500], t[:500]), (x[500:], t[500:])]), chunk_rows=100)


def test_inputs_not_modified(tmp_path):
    x, t = classifier_outputs(500, 30, dtype=np.float16)
    x0, t0 = x.copy(), t.copy()
    xent.evaluate(x, t)
    assert np.array_equal(x, x0) and np.array_equal(t, t0)


def test_import_xent_imports_neither_dask_nor_tqdm_nor_scipy(tmp_path):
    code = (
        "import sys, xent; import numpy as np; "
        "xent.evaluate(np.zeros((3, 4), np.float32), np.zeros(3, int)); "
        "print([m for m in ('dask', 'distributed', 'tqdm', 'scipy') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    ).stdout
    assert out.strip() == "[]"
