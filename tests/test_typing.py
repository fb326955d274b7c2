"""xent's type information: the stubs agree with the run time (mypy's stubtest), a typed use
of every public function passes ``mypy --strict`` (tests/typing/usage.py, which pins the
return types with ``assert_type``), and that use runs.

The two mypy checks need mypy; without it they skip. CI installs mypy and runs the same two
commands in tools/ci-extra.sh after the suite.
"""

import importlib.util
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
USAGE = HERE / "typing" / "usage.py"
ALLOWLIST = HERE / "typing" / "stubtest-allowlist.txt"
# Run from the project's root (where pyproject.toml carries [tool.mypy]), so that mypy reads
# the stubs beside the modules xent is imported from (an editable install or the tree), and
# from wherever the tests were copied to when the suite runs against an installed wheel.
ROOT = HERE.parent

needs_mypy = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (CI installs it: tools/ci-extra.sh)",
)


@pytest.fixture(scope="module")
def mypy_env(tmp_path_factory):
    """One mypy cache for both checks, in a temporary directory (never in the tree)."""
    return {**os.environ, "MYPY_CACHE_DIR": str(tmp_path_factory.mktemp("mypy-cache"))}


def config_args():
    config = ROOT / "pyproject.toml"
    return ["--config-file", str(config)] if config.exists() else []


def run(args, env, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@needs_mypy
def test_stubs_agree_with_the_run_time(mypy_env, tmp_path):
    config = ["--mypy-config-file", *config_args()[1:]] if config_args() else []
    # stubtest imports xent and reads its stubs: from the checkout when the xent in use is the
    # checkout's (an editable install), else from a temporary directory, so that the installed
    # xent (built, its stubs beside it) is the one found, not an unbuilt source tree
    import xent

    in_tree = Path(xent.__file__).resolve().parent.parent == ROOT.resolve()
    proc = run(
        ["mypy.stubtest", "xent", *config, "--allowlist", str(ALLOWLIST)],
        mypy_env,
        ROOT if in_tree else tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout


@needs_mypy
def test_typed_usage_passes_mypy_strict(mypy_env):
    proc = run(["mypy", "--strict", *config_args(), str(USAGE)], mypy_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found in 1 source file" in proc.stdout


def test_typed_usage_runs(capsys):
    """Every call in the typed usage file is one xent accepts, with the results it checks."""
    runpy.run_path(str(USAGE), run_name="__main__")
    assert "threads" in capsys.readouterr().out  # xent.show_config() printed its table


#: The stubs xent ships, beside the modules (and in the wheel: pyproject.toml's package-data).
STUBS = [
    "__init__",
    "_compare",
    "_evaluation",
    "divergence",
    "info",
    "linear",
    "dask",
    "torch/__init__",
    "_kernels",
    "_linear",
    "_table",
    "reference/__init__",
    "reference/divergence",
    "reference/info",
    "reference/linear",
]


def test_installed_xent_carries_its_type_information():
    """The xent the tests import (the tree, or an installed wheel under tools/wheel.sh) has
    py.typed and every stub: without py.typed a user's mypy ignores the stubs."""
    import xent

    package = Path(xent.__file__).resolve().parent
    assert (package / "py.typed").is_file()
    missing = [name for name in STUBS if not (package / f"{name}.pyi").is_file()]
    assert missing == []
