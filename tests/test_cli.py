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
        return subprocess.run([sys.executable, "-m", "xent", *args], capture_output=True,
                              text=True, timeout=300, cwd=cwd)


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
    assert cli.main(["demo", "--rows", "500", "--classes", "7", "--dtype", "float64",
                     "--threads", "1", "--repeat", "1"]) == 0
    assert "float64" in capsys.readouterr().out


def test_module_entry_point_and_config():
    result = run("config")
    assert result.returncode == 0, result.stderr
    assert "isa:" in result.stdout and "threads:" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--rows", "0"], "expected a positive integer"),
    (["--threads", "0"], "must not be 0"),
    (["--dtype", "int8"], "invalid choice"),
    (["frobnicate"], "unrecognized arguments"),
])
def test_bad_arguments_exit_2_without_traceback(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_disagreement_is_reported(monkeypatch, capsys):
    monkeypatch.setattr(cli, "reference_mean", lambda logits, labels, progress: 123.0)
    assert cli.main(["--rows", "100", "--classes", "5", "--repeat", "1"]) == 1
    assert "DISAGREE" in capsys.readouterr().out
