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

SMALL = ["bench", "--shape", "2000x50", "--repeat", "2", "--no-grad"]


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
    assert re.fullmatch(r"[0-9.]+x", cells[5])  # vs reference

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
    assert cells[5] == bench.format_ratio(expected)
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
        cli.main(["bench", "--shape", "300x40", "--repeat", "1", "--linear-shape", "64x16x300"])
        == 0
    )
    out = capsys.readouterr().out
    grad_header = next(line for line in out.splitlines() if line.startswith("who"))
    assert "vs torch" not in grad_header
    linear_header = [line for line in out.splitlines() if line.startswith("who")][-1]
    assert "vs numpy+xent" in linear_header
    for line in out.splitlines():  # every table row has a value in every column
        assert not re.search(r"\s-\s*$", line), line


def test_one_heading_style(capsys):
    pytest.importorskip("torch")
    assert (
        cli.main(["bench", "--shape", "300x40", "--repeat", "1", "--linear-shape", "64x16x300"])
        == 0
    )
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith(("shape", "who"))]
    assert len(headers) == 3
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
    assert cli.main(["bench", "--shape", "300x40", "--repeat", "1", "--json", str(path)]) == 0
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
            ]
        )
        == 0
    )
    (fig,) = figures
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert [t.split(",")[0].split(" (")[0] for t in titles] == [
        "Mean cross-entropy throughput",
        "Loss + gradient",
        "Fused linear cross-entropy",
    ]
    report = json.loads(json_path.read_text())
    throughput, grad, linear = [ax for ax in fig.axes if ax.get_visible()]
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
    assert cli.main(SMALL + ["--threads", "1"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert torch.get_num_threads() == before


def test_ctrl_c_in_a_real_run():
    with tempfile.TemporaryDirectory() as cwd:
        process = subprocess.Popen(
            [sys.executable, "-m", "xent", "bench", "--shape", "4096x2000", "--repeat", "1000"],
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
    args = argparse.Namespace(shape=None, dtype=None, quick=True)
    cases = bench.select_cases(args)
    assert [(c.rows * 16, c.classes, c.dtype) for c in cases] == bench.DEFAULT_CASES
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
