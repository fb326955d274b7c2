"""The xent command: the default job, its options, and its errors."""

import re
import subprocess
import sys
import tempfile

import pytest

from xent import cli


def run(*args):
    # From a neutral directory: run from a source checkout, "-m xent" would import the
    # uncompiled source tree instead of the installed package.
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(
            [sys.executable, "-m", "xent", *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=cwd,
        )


def test_default_job_small(capsys):
    assert cli.main(["--rows", "3000", "--classes", "50", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert "3,000 rows x 50 classes, float32" in out
    losses = dict(re.findall(r"^(xent|reference) +([0-9.]+) ", out, flags=re.M))
    xent_loss, ref_loss = float(losses["xent"]), float(losses["reference"])
    assert xent_loss == pytest.approx(ref_loss, rel=1e-6)
    assert 2.0 < xent_loss < 6.0  # log(50) = 3.9 for noise; the raised target logit lowers it
    assert "agree" in out


def test_demo_float64_named(capsys):
    assert (
        cli.main(
            [
                "demo",
                "--rows",
                "500",
                "--classes",
                "7",
                "--dtype",
                "float64",
                "--threads",
                "1",
                "--repeat",
                "1",
            ]
        )
        == 0
    )
    assert "float64" in capsys.readouterr().out


def test_module_entry_point_and_config():
    result = run("config")
    assert result.returncode == 0, result.stderr
    assert "isa:" in result.stdout and "threads:" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rows", "0"], "expected a positive integer"),
        (["--threads", "0"], "must not be 0"),
        (["--dtype", "int8"], "invalid choice"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["selftst"], "invalid choice: 'selftst'"),
    ],
)
def test_bad_arguments_exit_2_without_traceback(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_disagreement_is_reported(monkeypatch, capsys):
    monkeypatch.setattr(cli, "reference_mean", lambda logits, labels, rows, progress: 123.0)
    assert cli.main(["--rows", "100", "--classes", "5", "--repeat", "1"]) == 1
    assert "DISAGREE" in capsys.readouterr().out


def test_threads_0_speaks_cli():
    result = run("--threads", "0")
    assert result.returncode == 2
    assert "leave --threads out for the default" in result.stderr
    assert "None" not in result.stderr and "num_threads" not in result.stderr


@pytest.mark.parametrize("command", ["demo", "bench", "eval", "selftest", "config"])
def test_every_option_has_help(command):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    for action in sub._actions:
        assert action.help, f"xent {command}: {action.option_strings or action.dest} has no help"
    result = run(command, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: xent " + command)


def test_selftest_passes(capsys):
    from xent import _kernels, _selftest

    before = _kernels.current_isa()
    assert cli.main(["selftest"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()]
    header = next(i for i, cells in enumerate(lines) if cells[:1] == ["function"])
    rows = [cells for cells in lines[header + 1 :] if cells and cells[-1] in ("ok", "FAIL")]
    isas = {cells[-5] for cells in rows}
    assert isas == set(_selftest.supported_isas()) and "baseline" in isas
    names = {" ".join(cells[:-5]) for cells in rows}
    for name in [
        "cross_entropy",
        "nll_loss",
        "logsumexp",
        "log_softmax",
        "softmax",
        "cross_entropy_with_grad",
        "binary_cross_entropy_with_logits_with_grad",
        "info.kl_divergence",
        "evaluate",
        "linear_cross_entropy_with_grad",
    ]:
        assert name in names
    for cells in rows:
        assert cells[-1] == "ok" and float(cells[-3]) <= float(cells[-2])
    assert "all" in out.splitlines()[-1] and "agree" in out.splitlines()[-1]
    assert _kernels.current_isa() == before  # the variant in use was restored


def test_selftest_fails_on_a_broken_function(monkeypatch, capsys):
    import xent
    from xent import reference

    # wrong by 1e-3 of the value: far beyond float32's tolerance, as a miscompiled kernel
    monkeypatch.setattr(
        xent, "logsumexp", lambda x, *a, **k: reference.logsumexp(x, *a, **k) * (1 + 1e-3)
    )
    assert cli.main(["selftest"]) == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.endswith("FAIL")]
    assert failed and all(line.startswith("logsumexp ") for line in failed)
    assert "FAILED: logsumexp (" in out.splitlines()[-1]


def test_readme_first_command_runs_the_demo():
    # `pip install . && xent`: the bare command runs the main job on generated data
    result = run("--rows", "20000")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("xent 0.1.0: mean cross-entropy of 20,000 rows x 1,024 classes")
    assert re.search(r"xent is [0-9,]+x faster than the reference; .*: agree$", lines[-1])
