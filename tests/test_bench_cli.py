"""``xent bench``: its table, JSON, peers, disagreements, plot, and errors."""

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from xent import bench, cli
from xent.bench import command, plot

# --no-limits and --no-compile: the header's DRAM probe reads up to 1 GiB, and torch.compile
# takes seconds a shape; the tests that need them ask for them.
FAST = ["--no-limits", "--no-compile"]
SMALL = ["bench", "--shape", "2000x50", "--repeat", "2", "--no-grad", *FAST]


def run_module(*args, **kwargs):
    # From a neutral directory: run from a source checkout, "-m xent" would import the
    # uncompiled source tree instead of the installed package.
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(
            [sys.executable, "-m", "xent", *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=cwd,
            **kwargs,
        )


def table_row(out, label):
    """The table row of a shape, split into cells."""
    rows = [line for line in out.splitlines() if line.startswith(label + " ")]
    assert len(rows) == 1, out
    return re.split(r"\s{2,}", rows[0].strip())


def test_table_and_json(tmp_path, capsys):
    path = tmp_path / "b.json"
    assert cli.main(SMALL + ["--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "xent 0.1.0" in out and "numpy" in out and "kernels:" in out
    cells = table_row(out, "2000 x 50")
    assert cells[1] == "float32"
    assert re.fullmatch(r"[0-9.]+ (us|ms|s)", cells[2])
    assert re.fullmatch(r"[0-9]+%", cells[5])  # of read bw
    assert re.fullmatch(r"[0-9.]+x", cells[6])  # evaluate
    assert re.fullmatch(r"[0-9.]+x", cells[7])  # vs reference

    report = json.loads(path.read_text())
    assert report["exit_status"] == 0 and report["disagreements"] == []
    assert report["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", report["commit"])
    assert report["config"]["isa"] and report["threads"] >= 1
    (case,) = report["cases"]
    assert (case["rows"], case["classes"], case["dtype"]) == (2000, 50, "float32")
    timings, medians = case["timings"], case["medians"]
    assert len(timings["xent"]) == 2 and len(timings["reference"]) == 2
    for name, times in timings.items():
        assert medians[name] == statistics.median(times)
    expected = statistics.median(timings["reference"]) / statistics.median(timings["xent"])
    assert case["speedup"]["reference"] == pytest.approx(expected, rel=1e-12)
    assert cells[7] == bench.format_ratio(expected)
    # evaluate: its median time over cross_entropy's, its loss cross_entropy's
    evaluate = statistics.median(timings["xent.evaluate"]) / statistics.median(timings["xent"])
    assert cells[6] == bench.format_ratio(evaluate)
    assert case["agree"]["xent.evaluate"]
    assert case["results"]["xent.evaluate"] == pytest.approx(case["results"]["xent"], rel=1e-6)
    assert case["gelem_per_s"] == pytest.approx(2000 * 50 / medians["xent"] / 1e9)
    assert case["agree"]["reference"] and case["results"]["xent"] == pytest.approx(
        case["results"]["reference"], rel=1e-5
    )
    assert case["peak_rss_rise"]["xent"] is None or case["peak_rss_rise"]["xent"] >= 0
    assert report["grad"] is None


@pytest.mark.parametrize("module", ["scipy", "torch", "sklearn", "jax"])
def test_absent_peer_is_skipped(module, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # "import module" now fails
    path = tmp_path / "b.json"
    assert cli.main(SMALL + ["--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"skipped:  {module}: not installed" in out
    assert f"vs {module}" not in out
    table_row(out, "2000 x 50")
    report = json.loads(path.read_text())
    assert report["skipped"][module] == "not installed"
    assert module not in report["cases"][0]["medians"]
    if module == "torch":
        assert "torch" not in report["cases"][0]["peak_rss_rise"]
        assert "torch mem" not in out  # no column of dashes for a peer that is absent


def test_no_empty_columns_without_torch(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert (
        cli.main(
            ["bench", "--shape", "300x40", "--repeat", "1", "--linear-shape", "64x16x300", *FAST]
        )
        == 0
    )
    out = capsys.readouterr().out
    grad_header = next(line for line in out.splitlines() if line.startswith("who"))
    assert "vs torch" not in grad_header
    linear_header, linear_grad_header = [
        line for line in out.splitlines() if line.startswith("who")
    ][-2:]
    assert "vs numpy+xent" in linear_header
    assert "vs torch" not in linear_grad_header and "GEMMs" in linear_grad_header
    for line in out.splitlines():  # every table row has a value in every column
        assert not re.search(r"\s-\s*$", line), line


def test_one_heading_style(capsys):
    pytest.importorskip("torch")
    assert (
        cli.main(
            ["bench", "--shape", "300x40", "--repeat", "1", "--linear-shape", "64x16x300", *FAST]
        )
        == 0
    )
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith(("shape", "who"))]
    assert len(headers) == 4  # forward, gradient, linear loss, linear loss + gradients
    for header in headers:
        assert "vs torch" in header and "speedup" not in header
    xent_row = next(
        line for line in out.splitlines() if line.startswith("xent.linear_cross_entropy ")
    )
    assert re.search(r"\s[0-9.]+x\s", xent_row)


def test_disagreement_exits_1(capsys, monkeypatch):
    special = pytest.importorskip("scipy.special")
    monkeypatch.setattr(special, "logsumexp", lambda x, axis: np.zeros(x.shape[0]))
    assert cli.main(SMALL) == 1
    captured = capsys.readouterr()
    assert "DISAGREEMENT: scipy gives" in captured.out
    assert any(cell.endswith("x !") for cell in table_row(captured.out, "2000 x 50"))
    assert "DISAGREE" in captured.err


def test_loss_and_gradient(tmp_path, capsys):
    path = tmp_path / "b.json"
    assert (
        cli.main(["bench", "--shape", "300x40", "--repeat", "1", "--json", str(path), *FAST]) == 0
    )
    out = capsys.readouterr().out
    assert "Loss + gradient, 300 x 40 float32" in out
    assert "xent.cross_entropy_with_grad" in out
    grad = json.loads(path.read_text())["grad"]
    assert len(grad["timings"]["xent"]) == 1
    assert all(grad["agree"].values())
    if "torch" in grad["medians"]:
        assert "torch forward + backward" in out
        assert grad["speedup"]["torch"] == grad["medians"]["torch"] / grad["medians"]["xent"]


def test_plot_written(tmp_path, capsys):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    path = tmp_path / "b.png"
    assert cli.main(SMALL + ["--shape", "64x3000", "--scaling", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Thread scaling of xent" in capsys.readouterr().out


def test_plot_draws_every_section_with_values(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    figures = []
    real = plot.import_matplotlib_figure()

    class Recording:
        def Figure(*args, **kwargs):
            figures.append(real.Figure(*args, **kwargs))
            return figures[-1]

    monkeypatch.setattr(command, "import_matplotlib_figure", lambda: Recording)
    path = tmp_path / "b.png"
    json_path = tmp_path / "b.json"
    assert (
        cli.main(
            [
                "bench",
                "--quick",
                "--shape",
                "300x40",
                "--repeat",
                "1",
                "--linear-shape",
                "64x16x300",
                "--plot",
                str(path),
                "--json",
                str(json_path),
                *FAST,
            ]
        )
        == 0
    )
    (fig,) = figures
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert [t.split(",")[0].split(" (")[0].split(":")[0] for t in titles] == [
        "Mean cross-entropy throughput",
        "Loss + gradient",
        "Fused linear cross-entropy",
        "Roofline",
    ]
    report = json.loads(json_path.read_text())
    throughput, grad, linear, roofline = [ax for ax in fig.axes if ax.get_visible()]
    # every line's fraction of its limit, labelled as the table prints it
    roofline_labels = {text.get_text() for text in roofline.texts}
    case = report["cases"][0]
    assert f"{case['fraction_of_read_bw'] * 100:.0f}%" in roofline_labels
    for value in report["grad"]["fraction_of_read_write_bw"].values():
        assert f"{value * 100:.0f}%" in roofline_labels
    assert f"{report['linear'][0]['gemms']['xent']:.2f}x GEMM" in roofline_labels
    assert f"{report['linear'][0]['grad']['gemms']['xent']:.2f}x GEMM" in roofline_labels
    labels = {text.get_text() for text in throughput.texts}
    case = report["cases"][0]
    assert f"{case['elements'] / case['medians']['xent'] / 1e9:.3g}" in labels
    assert bench.format_time(report["grad"]["medians"]["xent"]) in {
        text.get_text() for text in grad.texts
    }
    assert bench.format_time(report["linear"][0]["medians"]["xent"]) in {
        text.get_text() for text in linear.texts
    }
    assert "--quick" not in fig.get_suptitle()  # --shape replaced the quick shapes


def test_plot_says_quick_shapes(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    figures = []
    real = plot.import_matplotlib_figure()

    class Recording:
        def Figure(*args, **kwargs):
            figures.append(real.Figure(*args, **kwargs))
            return figures[-1]

    report = {
        "cases": [],
        "grad": None,
        "linear": [],
        "quick": True,
        "arguments": {},
        "threads": 2,
        "peers": {},
        "config": {"xent": "0.1.0", "processor": "cpu", "isa": "avx2"},
    }
    report["linear"] = [
        {
            "rows": 256,
            "hidden": 1024,
            "vocab": 32000,
            "dtype": "float32",
            "medians": {"xent": 0.1, "numpy+xent": 0.2},
        }
    ]
    plot.write_plot(report, str(tmp_path / "q.png"), Recording)
    assert "--quick shapes" in figures[0].get_suptitle()


def test_plot_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "b.png"
    assert cli.main(SMALL + ["--plot", str(path)]) == 2
    captured = capsys.readouterr()
    assert "--plot needs matplotlib" in captured.err
    assert "2000 x 50" not in captured.out  # refused before measuring anything
    assert not path.exists()


def test_interrupt_exits_130_and_restores_torch_threads(capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "run_case", interrupted)
    # with the torch.compile peer loaded too: each restores the count it found
    assert cli.main(SMALL[:-1] + ["--threads", "1"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert torch.get_num_threads() == before


def test_ctrl_c_in_a_real_run():
    with tempfile.TemporaryDirectory() as cwd:
        process = subprocess.Popen(
            [sys.executable, "-m", "xent", "bench", "--shape", "4096x2000", "--repeat", "1000"]
            + FAST,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            for line in process.stdout:  # wait for the table's header: the run has begun
                if line.startswith("shape"):
                    break
            time.sleep(0.5)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shape", "10"], "expected ROWSxCLASSES"),
        (["--shape", "0x10"], "must be positive"),
        (["--repeat", "0"], "expected a positive integer"),
        (["--threads", "0"], "must not be 0"),
        (["--dtype", "int8"], "invalid choice"),
        (["--plot", "/nonexistent-dir/b.png"], "does not exist"),
        (["--plot", "b.txt"], "expected a .png"),
    ],
)
def test_bad_arguments_exit_2_without_traceback(args, message):
    result = run_module("bench", *args)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "text, shape",
    [
        ("65536x1000", (65536, 1000)),
        ("64kx1000", (65536, 1000)),
        ("64x1M", (64, 1 << 20)),
        (" 8192 X 32000 ", (8192, 32000)),
    ],
)
def test_parse_shape(text, shape):
    assert bench.parse_shape(text) == shape


@pytest.mark.parametrize(
    "ratio, text",
    [
        (12.34, "12.3x"),
        (0.8, "0.8x"),
        (0.04321, "0.043x"),
        (81.6, "81.6x"),
        (1234.4, "1234x"),
    ],
)
def test_slowdowns_are_printed_as_such(ratio, text):
    assert bench.format_ratio(ratio) == text


def test_quick_shapes_are_16x_smaller_in_rows():
    pytest.importorskip("ml_dtypes")
    args = argparse.Namespace(shape=None, dtype=None, quick=True)
    cases = bench.select_cases(args)
    assert [(c.rows * 16, c.classes, c.dtype) for c in cases] == bench.DEFAULT_CASES
    # short rows and half precision are among the defaults
    assert {2, 10, 64} <= {c.classes for c in cases}
    assert {"bfloat16", "float16"} <= {c.dtype for c in cases}
    assert bench.select_grad_case(args) == bench.Case(512, 32000, "float32")
    args = argparse.Namespace(shape=[(10, 3), (10, 3)], dtype="float64", quick=False)
    assert bench.select_cases(args) == [bench.Case(10, 3, "float64")]


def test_peak_rss_rise_sees_an_allocation():
    rise = bench.peak_rss_rise(lambda: np.ones(64 << 20, dtype=np.uint8))
    if rise is None:
        pytest.skip("no /proc/self/clear_refs here")
    assert rise >= 48 << 20


def test_peak_rss_rise_sees_memory_reused_from_the_heap():
    # Freeing a 30 MiB block raises glibc's mmap threshold: the next 20 MiB come from the
    # heap and stay resident once freed, so reusing them would show no rise without a trim.
    first = np.ones(30 << 20, dtype=np.uint8)
    del first
    second = np.ones(20 << 20, dtype=np.uint8)
    del second
    rise = bench.peak_rss_rise(lambda: np.ones(20 << 20, dtype=np.uint8))
    if rise is None:
        pytest.skip("no /proc/self/clear_refs here")
    assert rise >= 16 << 20


# --------------------------------------------------------------------------------------------
# The roofline: the machine's limits and each line's fraction of its limit


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [0, 1, 255, 32768 * 3 + 17])
@pytest.mark.parametrize("threads", [1, 2])
def test_probes_read_every_element(dtype, size, threads):
    from xent import _kernels

    rng = np.random.default_rng(size)
    # small integers: every partial sum is exact, so the probe's sum is numpy's to the bit
    array = rng.integers(-1000, 1000, size).astype(dtype)
    assert _kernels.read_sum(array, threads) == float(array.sum(dtype=np.float64))
    out = np.full_like(array, np.nan)
    assert _kernels.copy_array(array, out, threads) == float(array.sum(dtype=np.float64))
    np.testing.assert_array_equal(out, array)
    before = array.copy()
    assert _kernels.copy_array(array, array, threads) == float(before.sum(dtype=np.float64))
    np.testing.assert_array_equal(array, before)  # in place: read and written back


def test_probe_view_covers_the_array_bytes():
    from xent.bench import roofline

    logits = np.arange(12, dtype=np.float32).reshape(3, 4)
    view = roofline.probe_view(logits)
    assert view.dtype == np.float32 and np.shares_memory(view, logits) and view.size == 12
    assert roofline.read_probe(logits, 2)() == 66.0
    half = np.ones((3, 7), dtype=np.float16)  # 42 bytes: the first 40 read as float64
    view = roofline.probe_view(half)
    assert view.dtype == np.float64 and view.nbytes == 40 and np.shares_memory(view, half)
    with pytest.raises(ValueError, match="C-contiguous"):
        roofline.probe_view(np.ones((4, 4), dtype=np.float32)[:, ::2])


def test_roofline_header_table_and_json(tmp_path, capsys):
    path = tmp_path / "b.json"
    argv = ["bench", "--shape", "4096x64", "--repeat", "5", "--linear-shape", "256x64x2000"]
    assert cli.main(argv + ["--no-compile", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    report = json.loads(path.read_text())
    limits = report["limits"]
    memory = limits["memory"]
    assert memory["sums_agree"]  # each probe's sum of ones counted every element
    for key in ("read_dram_gb_per_s", "read_cache_gb_per_s", "read_write_gb_per_s"):
        assert memory[key] > 0
    assert f"read {memory['read_dram_gb_per_s']:.1f} GB/s from DRAM" in out
    gemm = limits["gemm"]
    assert (gemm["rows"], gemm["hidden"], gemm["vocab"]) == (256, 64, 2000)
    assert gemm["agree"] and gemm["gflops"] > 0 and "scipy" in gemm["blas"]
    assert f"GEMM {gemm['gflops']:.0f} GFLOP/s" in out

    # forward: the probe read the case's own array (its sum is numpy's), in the same rounds
    (case,) = report["cases"]
    probe = case["read_probe"]
    assert len(probe["timings"]) == 5 and probe["median"] == statistics.median(probe["timings"])
    logits, _ = bench.make_data(bench.Case(4096, 64, "float32"), report["seed"])
    assert probe["sum"] == pytest.approx(
        float(logits.sum(dtype=np.float64)), abs=1e-5 * logits.size
    )
    assert "read probe" not in case["medians"] and "read probe" not in case["speedup"]
    fraction = case["fraction_of_read_bw"]
    # The fraction is what the timings give: near or below 1 on a quiet machine, but on one
    # busy with other work a single preempted probe run moves it anywhere, so the test holds
    # it to its definition (and to being a positive number), not to a timing.
    assert fraction == probe["median"] / case["medians"]["xent"]
    assert 0 < fraction < float("inf")
    assert table_row(out, "4096 x 64")[5] == f"{fraction * 100:.0f}%"

    # gradient: against an in-place read and write of the array
    grad = report["grad"]
    assert set(grad["fraction_of_read_write_bw"]) == {"xent", "xent_out", "xent_inplace"}
    for name, value in grad["fraction_of_read_write_bw"].items():
        assert value == grad["read_write_probe"]["median"] / grad["medians"][name]
        assert 0 < value < float("inf")
    assert all(grad["agree"].values())  # the probe left the in-place call's input intact

    # linear: times in GEMMs of the shape, timed in the same rounds
    (linear,) = report["linear"]
    for section in (linear, linear["grad"]):
        assert section["agree"]["gemm"]
        for name, median in section["medians"].items():
            assert section["gemms"][name] == median / section["gemm"]["median"] > 0
    assert all(linear["grad"]["agree"].values()), linear["grad"]["relative_difference"]
    xent_row = next(
        line for line in out.splitlines() if line.startswith("xent.linear_cross_entropy ")
    )
    assert f"{linear['gemms']['xent']:.2f}x" in xent_row


def test_linear_peers_with_gradients(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    path = tmp_path / "b.json"
    argv = ["bench", "--linear-only", "--linear-shape", "128x32x500", "--repeat", "1"]
    assert cli.main(argv + [*FAST, "--json", str(path)]) == 0
    out = capsys.readouterr().out
    (linear,) = json.loads(path.read_text())["linear"]
    grad = linear["grad"]
    assert {"xent", "torch"} <= set(grad["medians"])
    if hasattr(torch.nn, "LinearCrossEntropyOptions"):  # torch 2.13 on
        assert "torch.lce" in linear["medians"] and "torch.lce" in grad["medians"]
        assert "torch F.linear_cross_entropy (chunked) fwd + bwd" in out
    for name, differences in grad["relative_difference"].items():
        assert set(differences) == {"loss", "grad_hidden", "grad_weight"}
        assert max(differences.values()) <= grad["rtol"], name
    assert "torch eager forward + backward" in out


def test_torch_compile_peer(capsys, tmp_path):
    pytest.importorskip("torch")
    from xent.bench import peers

    if peers.cpp_compiler() is None:
        pytest.skip("no C++ compiler: torch.compile cannot run here")
    path = tmp_path / "b.json"
    argv = ["bench", "--shape", "256x100", "--repeat", "1", "--no-grad", "--no-linear"]
    assert cli.main(argv + ["--no-limits", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "peer:     torch.compile: torch.compile(torch.nn.functional.cross_entropy)" in out
    assert "warmed up before the timing" in out
    (case,) = json.loads(path.read_text())["cases"]
    assert case["agree"]["torch.compile"]
    assert case["results"]["torch.compile"] == pytest.approx(case["results"]["xent"], rel=1e-5)
    assert re.fullmatch(r"[0-9.]+x", table_row(out, "256 x 100")[8])  # vs torch.compile


def test_torch_compile_skipped_without_a_compiler(capsys, monkeypatch):
    pytest.importorskip("torch")
    from xent.bench import peers

    monkeypatch.setattr(peers, "cpp_compiler", lambda: None)
    assert cli.main(SMALL[:-1]) == 0
    out = capsys.readouterr().out
    assert "skipped:  torch.compile: torch.compile needs a C++ compiler" in out
    assert "vs torch.compile" not in out


def test_no_compile_is_listed_as_skipped(capsys):
    assert cli.main(SMALL) == 0
    assert "skipped:  torch.compile: left out (--no-compile)" in capsys.readouterr().out


def test_a_peer_that_overflows_is_reported_but_not_a_disagreement(tmp_path, capsys, monkeypatch):
    special = pytest.importorskip("scipy.special")
    monkeypatch.setattr(special, "logsumexp", lambda x, axis: np.full(x.shape[0], np.inf))
    path = tmp_path / "b.json"
    assert cli.main(SMALL + ["--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "PEER FAILED: scipy gives inf where xent gives" in out
    assert "DISAGREEMENT" not in out
    assert any(cell.endswith("x !") for cell in table_row(out, "2000 x 50"))
    report = json.loads(path.read_text())
    assert report["exit_status"] == 0 and len(report["peer_failures"]) == 1


def test_a_probe_that_misses_elements_exits_1(capsys, monkeypatch):
    from types import SimpleNamespace

    from xent import _kernels
    from xent.bench import roofline

    def short_read(x, threads):  # reads all but the last element
        return _kernels.read_sum(x[:-1], threads)

    fake = SimpleNamespace(read_sum=short_read, copy_array=_kernels.copy_array)
    monkeypatch.setattr(roofline, "_kernels", fake)
    argv = ["bench", "--shape", "300x40", "--repeat", "1", "--no-grad", "--no-linear"]
    assert cli.main(argv + ["--no-compile"]) == 1
    assert "DISAGREEMENT: the bandwidth probes' sums of ones" in capsys.readouterr().out
