"""``xent eval``: every input format against xent.reference, every error path as one line on
stderr with a non-zero status, and Ctrl-C as status 130 without a traceback."""

import json
import os
import re
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from xent import cli, reference


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 40), dtype=np.float32)
    t = rng.integers(0, 40, 3000)
    t[::10] = -7
    np.save("x.npy", x)
    np.save("t.npy", t)
    x.tofile("x.bin")
    t.tofile("t.bin")
    np.savez("d.npz", logits=x, labels=t)
    for i in range(3):
        np.save(f"x_{i}.npy", x[i * 1000 : (i + 1) * 1000])
        np.save(f"t_{i}.npy", t[i * 1000 : (i + 1) * 1000])
    return x, t


def run(argv, capsys):
    status = cli.main(["eval", "--no-progress"] + argv)
    out, err = capsys.readouterr()
    return status, out, err


def json_report(argv, capsys):
    status, out, err = run(argv + ["--json"], capsys)
    assert status == 0, err
    return json.loads(out)


@pytest.mark.parametrize(
    "argv",
    [
        ["x.npy", "t.npy"],
        ["x_*.npy", "t_*.npy"],  # quoted globs
        ["x_0.npy", "x_1.npy", "x_2.npy", "t_0.npy", "t_1.npy", "t_2.npy"],  # shell-expanded
        ["x.bin", "t.bin", "--dtype", "float32", "--shape", "40"],
        ["x.bin", "t.bin", "--dtype", "float32", "--shape", "3000,40"],
        ["x.bin", "t.npy", "--dtype", "float32", "--shape=-1,40", "--chunk-rows", "7"],
        ["d.npz"],
    ],
)
def test_formats_agree_with_the_reference(files, argv, capsys):
    x, t = files
    got = json_report(argv + ["--topk", "1,3", "--ignore-index", "-7"], capsys)
    expected = reference.evaluate(x, t, topk=(1, 3), ignore_index=-7)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=2e-5), key
    assert got["rows"] == 3000


def test_human_readable_table(files, capsys):
    status, out, err = run(
        ["x.npy", "t.npy", "--topk", "1,5", "--threads", "1", "--ignore-index", "-7"], capsys
    )
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("xent eval: 3,000 rows x 40 classes")
    names = [line[:13].strip() for line in lines[1:]]
    assert names == [
        "loss",
        "perplexity",
        "accuracy",
        "top-5",
        "entropy",
        "count",
        "ignored",
        "NaN rows",
        "brier",
        "ECE",
        "MCE",
        "loss 95%",
        "acc. 95%",
    ]
    row = {name: line for name, line in zip(names, lines[1:])}
    loss = float(row["loss"].split()[1])
    expected = reference.evaluate(np.load("x.npy"), np.load("t.npy"), ignore_index=-7)
    assert loss == pytest.approx(expected["loss"], abs=1e-6)
    assert row["ignored"].split()[1] == "300"
    assert row["NaN rows"].split()[2] == "0"
    assert float(row["brier"].split()[1]) == pytest.approx(expected["brier"], abs=1e-6)
    assert float(row["ECE"].split()[1]) == pytest.approx(expected["ece"], abs=1e-6)
    low, high = (float(v) for v in row["loss 95%"].split("[")[1].split("]")[0].split(","))
    assert low == pytest.approx(expected["loss"] - 1.959964 * expected["loss_stderr"], abs=2e-6)
    assert high == pytest.approx(expected["loss"] + 1.959964 * expected["loss_stderr"], abs=2e-6)


def write_bad(kind):
    """Make the bad input of one error path; returns the argv."""
    rng = np.random.default_rng(1)
    if kind == "missing":
        return ["nope.npy", "t.npy"]
    if kind == "directory":
        os.mkdir("dir")
        return ["dir", "t.npy"]
    if kind == "no-match":
        return ["z_*.npy", "t.npy"]
    if kind == "lengths":
        np.save("t_short.npy", np.zeros(2999, dtype=np.int64))
        return ["x.npy", "t_short.npy"]
    if kind == "int-logits":
        np.save("xi.npy", np.zeros((3000, 40), dtype=np.int32))
        return ["xi.npy", "t.npy"]
    if kind == "float-labels":
        np.save("tf.npy", np.zeros(3000))
        return ["x.npy", "tf.npy"]
    if kind == "truncated-npy":
        data = pathlib.Path("x.npy").read_bytes()
        pathlib.Path("xt.npy").write_bytes(data[: len(data) - 1000])
        return ["xt.npy", "t.npy"]
    if kind == "truncated-raw":
        pathlib.Path("xt.bin").write_bytes(pathlib.Path("x.bin").read_bytes()[:-4])
        return ["xt.bin", "t.bin", "--dtype", "float32", "--shape", "3000,40"]
    if kind == "partial-row-raw":
        pathlib.Path("xt.bin").write_bytes(pathlib.Path("x.bin").read_bytes()[:-4])
        return ["xt.bin", "t.bin", "--dtype", "float32", "--shape", "40"]
    if kind == "raw-without-dtype":
        return ["x.bin", "t.npy"]
    if kind == "odd-count":
        return ["x_0.npy", "x_1.npy", "t_0.npy"]
    if kind == "shard-counts":
        np.save("t_3.npy", np.zeros(5, dtype=np.int64))
        return ["x_*.npy", "t_*.npy"]
    if kind == "label-range":
        t = np.load("t.npy")
        t[1234] = 40
        np.save("tr.npy", t)
        return ["x.npy", "tr.npy", "--ignore-index", "-7"]
    if kind == "label-range-shard":
        t = np.load("t_1.npy")
        t[234] = 40
        np.save("t_1.npy", t)
        return ["x_*.npy", "t_*.npy", "--ignore-index", "-7"]
    if kind == "labels-n-by-1":
        np.save("t1.npy", np.load("t.npy").reshape(-1, 1))
        return ["x.npy", "t1.npy", "--ignore-index", "-7"]
    if kind == "npz-labels-n-by-1":
        np.savez("d1.npz", logits=np.load("x.npy"), labels=np.load("t.npy").reshape(-1, 1))
        return ["d1.npz"]
    if kind == "topk-above-classes":
        return ["x.npy", "t.npy", "--topk", "1,1000"]
    if kind == "npz-keys":
        np.savez("k.npz", a=np.zeros((3, 4)))
        return ["k.npz"]
    if kind == "npz-corrupt":
        pathlib.Path("c.npz").write_bytes(
            b"PK\x03\x04" + bytes(rng.integers(0, 255, 100, np.uint8))
        )
        return ["c.npz"]
    if kind == "bad-npy-header":
        pathlib.Path("h.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
        return ["h.npy", "t.npy"]
    if kind == "classes-differ":
        np.save("x_1.npy", np.zeros((1000, 41), dtype=np.float32))
        return ["x_*.npy", "t_*.npy", "--ignore-index", "-7"]
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "nope.npy: no such file"),
        ("directory", "is a directory"),
        ("no-match", "no file matches"),
        ("lengths", "2,999 labels for x.npy's 3,000 rows"),
        ("int-logits", "must be float16, float32 or float64"),
        ("float-labels", "labels must be integers"),
        ("truncated-npy", "truncated"),
        ("truncated-raw", "truncated"),
        ("partial-row-raw", "not a whole number of rows"),
        ("raw-without-dtype", "give --dtype and --shape"),
        ("odd-count", "3 files given"),
        ("shard-counts", "3 logits files but 4 label files"),
        ("label-range", r"^xent eval: error: tr.npy: label 40 at row 1,234 is out of range"),
        ("label-range-shard", r"t_1.npy: label 40 at row 234 is out of range"),
        (
            "labels-n-by-1",
            r"t1.npy: labels of shape \(3000, 1\) for x.npy's logits of shape "
            r"\(3000, 40\): expected shape \(3000,\)",
        ),
        ("npz-labels-n-by-1", r"d1.npz: labels of shape \(3000, 1\)"),
        ("topk-above-classes", r"--topk 1000 is more than the 40 classes of x.npy"),
        ("npz-keys", "must hold arrays named 'logits' and 'labels'"),
        ("npz-corrupt", "not a valid .npz"),
        ("bad-npy-header", "not a valid .npy"),
        ("classes-differ", "41 classes"),
    ],
)
def test_error_paths_one_line_nonzero(files, kind, message, capsys):
    import re

    status, out, err = run(write_bad(kind), capsys)
    assert status == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("xent eval: error: ")
    assert re.search(message, err), err


@pytest.mark.parametrize(
    "argv",
    [
        ["x.npy", "t.npy", "--topk", "0"],
        ["x.npy", "t.npy", "--topk", "a"],
        ["x.bin", "t.bin", "--dtype", "float32", "--shape", "0"],
        ["x.npy", "t.npy", "--threads", "0"],
    ],
)
def test_bad_options_are_usage_errors(files, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["eval"] + argv)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_error_in_a_subprocess_has_no_traceback(files):
    proc = subprocess.run(
        [sys.executable, "-m", "xent", "eval", "x.npy", "missing.npy"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "xent eval: error: missing.npy: no such file"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_exits_130_without_traceback(tmp_path):
    # sparse files: 16 GiB of zero logits cost no disk, and minutes to evaluate
    rows, classes = 4 * 2**20, 1024
    with open(tmp_path / "x.bin", "wb") as f:
        f.truncate(rows * classes * 4)
    with open(tmp_path / "t.bin", "wb") as f:
        f.truncate(rows)
    argv = ["eval", "x.bin", "t.bin", "--dtype", "float32", "--shape", str(classes)]
    argv += ["--labels-dtype", "int8", "--threads", "1"]
    # xent's own entry point, after a line saying it is imported: a signal during the
    # import (slow on a busy machine) would test Python's import, not xent
    code = f"import sys, xent.cli; print('ready', flush=True); sys.exit(xent.cli.main({argv!r}))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready", proc.communicate()
        time.sleep(1.0)  # files opened, evaluating
        assert proc.poll() is None, proc.communicate()
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        waited = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert waited < 3, f"took {waited:.1f} s to stop"


def test_dtype_and_shape_for_a_npy_warn(files, capsys):
    x, t = files
    status, out, err = run(
        ["x.npy", "t.npy", "--dtype", "float64", "--shape", "40", "--ignore-index", "-7", "--json"],
        capsys,
    )
    assert status == 0
    assert err.strip() == (
        "xent eval: warning: --dtype and --shape ignored for x.npy: a .npy "
        "or .npz file carries its own dtype and shape"
    )
    expected = reference.evaluate(x, t, ignore_index=-7)
    assert json.loads(out)["loss"] == pytest.approx(expected["loss"], rel=2e-5)
    # raw files take them without a word
    status, out, err = run(
        ["x.bin", "t.bin", "--dtype", "float32", "--shape", "40", "--ignore-index", "-7"], capsys
    )
    assert status == 0 and err == ""


def test_nan_rows_are_counted(files, capsys):
    x, t = files
    x = x.copy()
    x[[5, 17, 2999], [0, 39, 3]] = np.nan
    x[30, 1] = np.nan  # row 30's label is -7: ignored, so not counted
    np.save("xn.npy", x)
    report = json_report(["xn.npy", "t.npy", "--ignore-index", "-7"], capsys)
    assert report["nan_rows"] == 3 and report["loss"] is None
    status, out, err = run(["xn.npy", "t.npy", "--ignore-index", "-7"], capsys)
    row = next(line for line in out.splitlines() if line.split()[:2] == ["NaN", "rows"])
    assert row.split()[2] == "3" and "NaN" in row
    assert json_report(["x.npy", "t.npy", "--ignore-index", "-7"], capsys)["nan_rows"] == 0


def test_progress_bar_has_total_percentage_eta_and_name(files, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_stderr_is_terminal", lambda: True)
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL", 0)  # draw every chunk, however fast
    assert cli.main(["eval", "x.npy", "t.npy", "--chunk-rows", "500", "--ignore-index", "-7"]) == 0
    err = capsys.readouterr().err
    assert "xent eval:" in err and "xent evaluate" not in err
    # a chunk done: rows done of the total, the percentage, time spent < time left
    assert re.search(r"xent eval: +[1-9]\d%\|.*\| [0-9.]+k?/3\.00k \[\d\d:\d\d<\d\d:\d\d,", err), (
        err
    )
