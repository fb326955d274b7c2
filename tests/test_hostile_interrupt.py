"""Long rows and interruption: a row longer than a piece is read and evaluated a piece at a
time (bounded memory, Ctrl-C between pieces) and gives the unsplit row's numbers."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc

import numpy as np
import pytest

import xent
from xent import _evaluation

FIELDS = ("loss", "entropy", "brier", "confidence")


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of 4 KiB cut into sub-rows of 100 columns: rows of a few thousand classes take
    the long-row path, with uneven last pieces and sub-rows."""

    def use():
        monkeypatch.setattr(_evaluation, "PIECE_BYTES", 4096)
        monkeypatch.setattr(_evaluation, "SUBROW_COLS", 100)

    return use


def split_and_whole(small_pieces, logits, labels, **options):
    whole = xent.evaluate(logits, labels, **options)
    small_pieces()
    return xent.evaluate(logits, labels, **options), whole


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_long_rows_give_the_unsplit_numbers(small_pieces, dtype, rng, tmp_path):
    c = 5003  # pieces of 512 to 2048 elements and a short last one
    x = (rng.standard_normal((4, c)) * 4).astype(dtype)
    x[1, :2000] = -np.inf  # a piece of nothing but -inf contributes nothing
    x[2, 17] = x[2, 4000] = x[2].max()  # the target ties the max: rank 0
    labels = np.array([5, 4999, 4000, -100])
    weight = rng.uniform(0.5, 2.0, c)
    options = dict(topk=(1, 5, 100), weight=weight)
    np.save(tmp_path / "x.npy", x)
    split, whole = split_and_whole(small_pieces, x, labels, **options)
    from_file = xent.evaluate(tmp_path / "x.npy", labels, **options)
    assert from_file == split
    assert split.topk_accuracy == whole.topk_accuracy and split.count == 3
    assert split.ignored == 1
    # float64: the unsplit row's numbers to a few ulps; float32 and float16: the kernel's
    # exps are float32, rounded differently against a sub-row's max than against the row's,
    # so both the split and the unsplit row are compared with the float64 evaluation of the
    # same numbers, within the float32 kernel's accuracy
    exact = xent.evaluate(x.astype(np.float64), labels, **options)
    tol = 1e-13 if dtype == np.float64 else 1e-7
    for name in FIELDS:
        got, unsplit, want = getattr(split, name), getattr(whole, name), getattr(exact, name)
        assert got == pytest.approx(want, rel=tol), name
        assert unsplit == pytest.approx(want, rel=tol), name
    for name, se in whole.stderr.items():
        assert split.stderr[name] == pytest.approx(se, rel=1e-6), name


def test_ranks_count_across_pieces(small_pieces):
    # the target's rank counts larger logits and NaN in every piece, however far from it
    x = np.zeros((1, 3000))
    x[0, [10, 1500, 2999]] = 1.0
    x[0, 2500] = 2.0
    labels = np.array([700])
    for k, hit in ((4, 0.0), (5, 1.0)):
        split, whole = split_and_whole(small_pieces, x, labels, topk=(k,))
        assert split.topk_accuracy == whole.topk_accuracy == ((k, hit),)


@pytest.mark.parametrize(
    "case",
    ["nan", "posinf", "target posinf", "all neginf", "target neginf", "huge", "tiny range"],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_long_rows_keep_the_kernel_answer_for_special_values(small_pieces, case, dtype, rng):
    c, t = 4000, 1234
    x = rng.standard_normal((1, c)).astype(dtype)
    if case == "nan":
        x[0, 3999] = np.nan
    elif case == "posinf":
        x[0, 10] = np.inf
    elif case == "target posinf":
        x[0, [t, 3000]] = np.inf
    elif case == "all neginf":
        x[:] = -np.inf
    elif case == "target neginf":
        x[0, t] = -np.inf
    elif case == "huge":  # near the dtype's largest: differences, not values, matter
        big = np.finfo(dtype).max / 2
        x = (big - np.abs(x) * (big * 1e-6)).astype(dtype)
    elif case == "tiny range":  # all within one ulp-scale step: every term ~1
        x = (1e4 + x * 1e-3).astype(dtype)
    labels = np.array([t])
    split, whole = split_and_whole(small_pieces, x, labels, topk=(1, 3))
    assert split.topk_accuracy == whole.topk_accuracy
    for name in FIELDS:
        got, want = getattr(split, name), getattr(whole, name)
        if np.isfinite(want):
            assert got == pytest.approx(want, rel=1e-13 if dtype == np.float64 else 1e-6), name
        else:  # the same infinity, or NaN for NaN
            assert got == want or (np.isnan(got) and np.isnan(want)), (name, got, want)


def test_a_long_row_is_never_read_whole(tmp_path, monkeypatch):
    # 16 MiB row, pieces of 1 MiB: the evaluation holds a few pieces, never the row
    c = 4 * 2**20
    x = np.zeros((1, c), dtype=np.float32)
    x[0, 123] = 5.0
    np.save(tmp_path / "x.npy", x)
    del x
    monkeypatch.setattr(_evaluation, "PIECE_BYTES", 2**20)
    labels = np.array([123])
    xent.evaluate(tmp_path / "x.npy", labels)  # imports and first-use buffers
    tracemalloc.start()
    try:
        report = xent.evaluate(tmp_path / "x.npy", labels)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 2**20, f"peak {peak / 2**20:.1f} MiB for a 16 MiB row"
    assert report.loss == pytest.approx(np.log1p((c - 1) * np.exp(-5.0)), rel=1e-12)
    assert report.accuracy == 1.0


def sparse_long_row(tmp_path, gib):
    """A raw float32 file of one row of zeros (sparse: no disk), and its int64 label."""
    n = gib * 2**28
    with open(tmp_path / "x.bin", "wb") as f:
        f.truncate(n * 4)
    np.array([7], dtype=np.int64).tofile(tmp_path / "t.bin")
    return n


def stop_after(proc, ready, timeout=60):
    """Wait for ``ready`` on the child's stdout, send SIGINT, and return (seconds to exit,
    stdout, stderr)."""
    line = ""
    deadline = time.monotonic() + timeout
    while ready not in line:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the child never got ready"
    time.sleep(0.5)  # into the evaluation
    assert proc.poll() is None, proc.communicate()
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return time.monotonic() - sent, line + out, err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_stops_a_long_row_in_xent_eval_within_a_second(tmp_path):
    n = sparse_long_row(tmp_path, 8)  # 8 GiB of logits in one row: many seconds to evaluate
    code = textwrap.dedent(
        f"""
        import sys
        import xent.cli
        print("ready", flush=True)
        sys.exit(xent.cli.main(["eval", "x.bin", "t.bin", "--dtype", "float32",
                               "--shape", "{n}", "--labels-dtype", "int64"]))
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        waited, out, err = stop_after(proc, "ready")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert waited < 2, f"took {waited:.2f} s to stop"  # measured: about 0.5 s


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_stops_evaluate_of_a_long_row_leaving_nothing_behind(tmp_path):
    sparse_long_row(tmp_path, 8)
    code = textwrap.dedent(
        """
        import os
        import threading
        import time
        import numpy as np
        import xent
        from xent import _io
        x = _io.open_raw("x.bin", np.dtype(np.float32), (1, -1), "logits")
        labels = np.array([7])
        print("ready", flush=True)
        try:
            xent.evaluate(x, labels, progress=True)
        except KeyboardInterrupt:
            # tqdm's monitor is tqdm's, kept for the process by design, not xent's state; a
            # reader whose start the signal interrupted ends its bounded read within ms
            for _ in range(100):
                others = [t for t in threading.enumerate() if t is not threading.main_thread()
                          and type(t).__name__ != "TMonitor"]
                if not others:
                    break
                time.sleep(0.01)
            fds = sorted(os.listdir("/proc/self/fd"))
            print("interrupted", len(others), len(fds), [t.name for t in others], flush=True)
        else:
            print("finished", flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        waited, out, err = stop_after(proc, "ready")
    finally:
        if proc.poll() is None:
            proc.kill()
    words = out.split()
    assert "interrupted" in words, (out, err)
    threads, fds = (int(w) for w in words[words.index("interrupted") + 1 :][:2])
    assert threads == 0, out  # no reader thread left running
    assert fds <= 4, out  # stdin, stdout, stderr and the listing's own: no file left open
    assert proc.returncode == 0, err
    assert waited < 2, f"took {waited:.2f} s to stop"  # measured: about 0.5 s


def test_a_long_row_file_that_shrinks_gives_an_error_naming_it(small_pieces, tmp_path):
    from xent import _io

    np.save(tmp_path / "x.npy", np.zeros((2, 5000)))
    x = _io.open_npy(str(tmp_path / "x.npy"))  # checked whole here, then cut under the run
    os.truncate(tmp_path / "x.npy", os.path.getsize(tmp_path / "x.npy") - 30000)
    small_pieces()
    with pytest.raises(_io.ArrayFileError, match=r"x\.npy: the file shrank .*\(row 1, elements"):
        xent.evaluate(x, np.array([0, 1]))
