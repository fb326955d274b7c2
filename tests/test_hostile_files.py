"""Files that are not files, change while read, or are built to exhaust memory and descriptors.

Each test here failed before xent read files with pread (a crash, a hang, a silent wrong
answer or an unnamed error). Crashes and hangs are provoked in a subprocess, under a timeout.
"""

import os
import stat
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import xent
from xent import _io, cli, reference

TIMEOUT = 120


def run_python(code, cwd, timeout=TIMEOUT):
    """Run ``code`` in a fresh interpreter in ``cwd``: (returncode, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


def expected_loss(x, t):
    return float(reference.cross_entropy(x, t, reduction="mean"))


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 30), dtype=np.float32)
    t = rng.integers(0, 30, 2000)
    np.save("x.npy", x)
    np.save("t.npy", t)
    return x, t


# ---- inputs that are not regular files ---------------------------------------------------


def test_fifo_is_refused_by_the_api_and_the_cli_without_blocking(data, tmp_path):
    os.mkfifo("pipe.npy")
    # in a subprocess under a timeout: before, opening the FIFO waited for a writer forever
    code = """
        import xent
        try:
            xent.evaluate("pipe.npy", "t.npy")
        except ValueError as exc:
            print("API:", exc)
        from xent import cli
        print("CLI status:", cli.main(["eval", "--no-progress", "pipe.npy", "t.npy"]))
    """
    status, out, err = run_python(code, tmp_path, timeout=60)
    assert status == 0, err
    assert "API: logits: pipe.npy: is a FIFO (named pipe)" in out
    assert "CLI status: 1" in out
    assert "pipe.npy: is a FIFO" in err


def test_character_device_is_refused(data, capsys):
    # /dev/zero has size 0: before, it was read as no rows and gave a NaN loss, status 0
    assert stat.S_ISCHR(os.stat("/dev/zero").st_mode)
    status = cli.main(
        ["eval", "--no-progress", "--dtype", "float32", "--shape", "30", "/dev/zero", "t.npy"]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert "/dev/zero: is a character device" in err
    with pytest.raises(ValueError, match="labels: /dev/null: is a character device"):
        xent.evaluate("x.npy", "/dev/null")


def test_directory_is_refused_by_name(data, tmp_path):
    os.mkdir("shards")
    with pytest.raises(ValueError, match="logits: shards: is a directory"):
        xent.evaluate("shards", "t.npy")


def test_regular_files_still_give_the_reference_answer(data):
    x, t = data
    report = xent.evaluate("x.npy", "t.npy", chunk_rows=333)
    assert report.loss == pytest.approx(expected_loss(x, t), rel=1e-6)
    assert report.count == len(t)


def test_user_memmap_still_works(data):
    x, t = data
    xm = np.load("x.npy", mmap_mode="r")
    tm = np.memmap("t.bin", dtype=t.dtype, mode="w+", shape=t.shape)
    tm[:] = t
    tm.flush()
    report = xent.evaluate(xm, tm, chunk_rows=700)
    assert report.loss == pytest.approx(expected_loss(x, t), rel=1e-6)


# ---- files that change while they are read -----------------------------------------------

# The kernel of the first chunk truncates the logits file: the next chunk's rows are gone.
# Before, those rows were a memory map and reading them killed the process with SIGBUS.
TRUNCATE_AFTER_FIRST_CHUNK = """
    import os, sys
    import xent
    from xent import _kernels
    real = _kernels.evaluate_summary
    def truncating(*args):
        result = real(*args)
        os.truncate("x.npy", 4096)
        return result
    _kernels.evaluate_summary = truncating
"""


@pytest.mark.parametrize("readers", ["one reader", "parallel readers"])
def test_file_truncated_during_evaluate_raises_naming_it(data, tmp_path, readers):
    code = (
        TRUNCATE_AFTER_FIRST_CHUNK
        + f"""
    from xent import _io
    if {readers == "parallel readers"}:
        _io._PARALLEL_READ_BYTES = 4096   # a chunk of 60 kB is read by several threads
    try:
        xent.evaluate("x.npy", "t.npy", chunk_rows=500)
    except ValueError as exc:
        print("error:", exc)
    """
    )
    status, out, err = run_python(code, tmp_path)
    assert status == 0, f"status {status} (a negative status is a signal): {err}"
    assert "error: x.npy: the file shrank to 4,096 bytes while it was read" in out


def test_file_truncated_during_xent_eval_exits_1_naming_it(data, tmp_path):
    code = (
        TRUNCATE_AFTER_FIRST_CHUNK
        + """
    from xent import cli
    sys.exit(cli.main(["eval", "--no-progress", "--chunk-rows", "500", "x.npy", "t.npy"]))
    """
    )
    status, out, err = run_python(code, tmp_path)
    assert status == 1, f"status {status} (a negative status is a signal): {err}"
    assert "x.npy: the file shrank" in err


def test_file_replaced_during_evaluate_raises(data, tmp_path):
    code = """
        import os, numpy as np, xent
        from xent import _kernels
        real = _kernels.evaluate_summary
        def replacing(*args):
            result = real(*args)
            np.save("y.npy", np.zeros((2000, 30), np.float32))
            os.replace("y.npy", "x.npy")
            return result
        _kernels.evaluate_summary = replacing
        try:
            xent.evaluate("x.npy", "t.npy", chunk_rows=500)
        except ValueError as exc:
            print("error:", exc)
    """
    status, out, err = run_python(code, tmp_path)
    assert status == 0, err
    assert "error: x.npy: the file was replaced while it was read" in out


# ---- hostile headers -------------------------------------------------------------------------


def write_npy_header(path, header_dict, data=b""):
    header = repr(header_dict).encode("latin1")
    pad = 64 - (10 + len(header) + 1) % 64
    header += b" " * pad + b"\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2**40, 2**40, 2**40), r"more than any file can hold"),
        ((-3, 4), r"negative dimension"),
    ],
)
def test_hostile_npy_header_is_named_without_warning(tmp_path, monkeypatch, shape, message):
    monkeypatch.chdir(tmp_path)
    write_npy_header("h.npy", {"descr": "<f4", "fortran_order": False, "shape": shape}, b"\0" * 64)
    np.save("t.npy", np.zeros(4, dtype=np.int64))
    # warnings are errors in this suite: a RuntimeWarning first would fail here too
    with pytest.raises(ValueError, match=rf"logits: h.npy: invalid .npy header: .*{message}"):
        xent.evaluate("h.npy", "t.npy")


def test_object_dtype_in_npz_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.savez("o.npz", logits=np.array([[1.0, None]], dtype=object), labels=np.zeros(1, int))
    assert cli.main(["eval", "--no-progress", "o.npz"]) == 1
    err = capsys.readouterr().err
    assert "o.npz (member logits.npy): holds Python objects" in err


# ---- sharded input: memory and descriptors ---------------------------------------------------


def write_zero_member_npz(path, rows, classes):
    """A .npz whose logits are rows x classes float32 zeros: a deflate ratio of about 1000."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (rows, classes)}
    text = repr(header).encode("latin1")
    text += b" " * (64 - (10 + len(text) + 1) % 64) + b"\n"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("logits.npy", "w", force_zip64=True) as f:
            f.write(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text)
            zeros = bytes(1 << 20)
            for _ in range(rows * classes * 4 // len(zeros)):
                f.write(zeros)
        with z.open("labels.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros(rows, dtype=np.int64))


def test_npz_bomb_is_refused_before_it_is_inflated(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_zero_member_npz("bomb.npz", 1 << 16, 1 << 10)  # 256 MiB of zeros in ~250 kB
    assert os.path.getsize("bomb.npz") < 2 << 20
    status = cli.main(["eval", "--no-progress", "bomb.npz"])
    err = capsys.readouterr().err
    assert status == 1
    assert "bomb.npz: member logits.npy inflates" in err
    assert "likely zip bomb" in err


def test_npz_member_over_the_size_limit_is_refused(data, monkeypatch, capsys):
    x, t = data
    np.savez("d.npz", logits=x, labels=t)
    monkeypatch.setattr(_io, "NPZ_MEMBER_LIMIT", x.nbytes - 1, raising=False)
    status = cli.main(["eval", "--no-progress", "d.npz"])
    err = capsys.readouterr().err
    assert status == 1
    assert "d.npz: member logits.npy inflates to 240,128 bytes, more than the limit" in err


def test_npz_shards_leave_memory_flat_one_shard_at_a_time(tmp_path):
    # 8 shards of 24 MiB of logits: before, all were inflated before the first was evaluated
    # (peak memory the sum, 192 MiB); now one shard is in memory at a time. (Named so that
    # tools/sanitize.sh leaves it out with the other resident-memory tests.)
    rng = np.random.default_rng(0)
    for i in range(8):
        x = rng.standard_normal((3 << 14, 128), dtype=np.float32)
        np.savez(tmp_path / f"s{i}.npz", logits=x, labels=rng.integers(0, 128, len(x)))
    code = """
        import resource, sys
        from xent import cli
        import tqdm.auto, zipfile   # imported before the baseline
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        status = cli.main(["eval", "--no-progress", "--json"] + [f"s{i}.npz" for i in range(8)])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("grew_mib", (peak - base) / 1024, file=sys.stderr)
        sys.exit(status)
    """
    status, out, err = run_python(code, tmp_path)
    assert status == 0, err
    grew = float(err.split("grew_mib")[1])
    assert grew < 80, f"peak memory grew by {grew:.0f} MiB evaluating 8 shards of 24 MiB"


def test_hundreds_of_shards_under_a_small_open_file_limit(tmp_path):
    code = """
        import resource, sys
        import numpy as np
        rng = np.random.default_rng(0)
        for i in range(300):
            np.save(f"x_{i}.npy", rng.standard_normal((20, 8), dtype=np.float32))
            np.save(f"t_{i}.npy", rng.integers(0, 8, 20))
        for i in range(150):
            np.savez(f"d_{i}.npz", logits=rng.standard_normal((20, 8)), labels=np.zeros(20, int))
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
        import xent
        from xent import cli
        a = cli.main(["eval", "--no-progress", "x_*.npy", "t_*.npy"])
        b = cli.main(["eval", "--no-progress", "d_*.npz"])
        report = xent.evaluate((f"x_{i}.npy", f"t_{i}.npy") for i in range(300))
        print("statuses", a, b, report.count)
    """
    status, out, err = run_python(code, tmp_path)
    assert status == 0, err
    assert "statuses 0 0 6000" in out, err


def test_fortran_ordered_files_give_the_reference_answer(data, capsys):
    x, t = data
    np.save("xf.npy", np.asfortranarray(x))
    np.savez("f.npz", logits=np.asfortranarray(x), labels=t)
    assert xent.evaluate("xf.npy", "t.npy", chunk_rows=300).loss == pytest.approx(
        expected_loss(x, t), rel=1e-6
    )
    import json

    assert cli.main(["eval", "--no-progress", "--json", "--chunk-rows", "300", "f.npz"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["loss"] == pytest.approx(expected_loss(x, t), rel=1e-6)
    assert report["rows"] == len(t)


def test_raw_files_are_read_by_chunks(data, capsys):
    x, t = data
    x.tofile("x.bin")
    t.tofile("t.bin")
    import json

    assert (
        cli.main(
            [
                "eval",
                "--no-progress",
                "--json",
                "--chunk-rows",
                "300",
                "--dtype",
                "float32",
                "--shape",
                "30",
                "x.bin",
                "t.bin",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["loss"] == pytest.approx(expected_loss(x, t), rel=1e-6)
