"""The BLAS of the linear head: the automatic choice, the explicit one, and their results.

The choice's logic is tested on facts alone (xent._blas.decide); the libraries themselves on
what this process has (scipy's and numpy's OpenBLAS, the scipy-openblas32 wheel where
installed), each checked against the float64 reference; and the case that made the choice
necessary (every OpenBLAS of the process on narrower kernels than the CPU has, as scipy's took
an AMD EPYC with AVX-512 for a Haswell) is rebuilt in a subprocess with OPENBLAS_CORETYPE.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import xent
import xent.linear
from xent import _blas, reference


@pytest.fixture(autouse=True)
def _back_to_auto():
    yield
    xent.linear.set_blas("auto")


def _available():
    names = ["scipy"]
    for name in ("numpy", "scipy-openblas32"):
        if _blas._candidate(name) is not None:
            names.append(name)
    return names


# ---- the decision, on facts alone ----------------------------------------------------------


def test_core_and_cpu_levels():
    assert _blas.core_level("SkylakeX") == 2
    assert _blas.core_level("COOPERLAKE") == 2
    assert _blas.core_level("SapphireRapids") == 2
    assert _blas.core_level("Haswell") == 1
    assert _blas.core_level("Zen") == 1
    assert _blas.core_level("Prescott") == 0
    assert _blas.core_level(None) == 0
    avx512 = {"avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}
    assert _blas.cpu_level(avx512) == 2
    assert _blas.cpu_level(avx512 - {"avx512vl"}) == 1  # OpenBLAS's AVX-512 kernels need VL
    assert _blas.cpu_level({"avx2", "fma", "sse2"}) == 1
    assert _blas.cpu_level({"avx", "sse2"}) == 0


@pytest.mark.parametrize(
    "levels, cpu, user, wheel, expected",
    [
        ({"scipy": 2, "numpy": 2}, 2, False, True, "scipy"),  # a tie: scipy's
        ({"scipy": 1, "numpy": 2}, 2, False, True, "numpy"),  # numpy's is wider
        ({"scipy": 1, "numpy": 1}, 2, False, True, "scipy-openblas32"),  # both narrow
        ({"scipy": 1, "numpy": 1}, 2, True, True, "scipy"),  # OPENBLAS_CORETYPE stands
        ({"scipy": 1, "numpy": 1}, 2, False, False, "scipy"),  # no wheel to load
        ({"scipy": 1, "numpy": 1}, 1, False, True, "scipy"),  # all an AVX2 CPU has
        ({"scipy": 1}, None, False, True, "scipy"),  # CPU unknown: no loading
        ({}, 2, False, True, "scipy"),  # scipy's BLAS not an OpenBLAS: kept
    ],
)
def test_decide(levels, cpu, user, wheel, expected):
    name, reason = _blas.decide(levels, cpu, user, wheel)
    assert name == expected
    assert reason
    if user and name == "scipy":
        assert "OPENBLAS_CORETYPE" in reason
    if levels and not wheel and cpu == 2 and max(levels.values()) < 2:
        assert "pip install scipy-openblas32" in reason


# ---- the libraries --------------------------------------------------------------------------


def test_default_is_auto_and_described():
    info = xent.linear.blas_info()
    assert info["asked"] == "auto"
    assert info["library"] in ("scipy", "numpy", "scipy-openblas32")
    assert info["cpu"] in ("AVX-512", "AVX2", "older", "unknown")
    assert info["description"] and info["reason"]
    if info["path"] is not None:
        assert os.path.exists(info["path"]) and info["kernels"] and info["version"]
    assert "blas" in xent._dispatch.config()


@pytest.mark.parametrize("name", ["scipy", "numpy", "scipy-openblas32"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_library_gives_the_reference(name, dtype):
    if name not in _available():
        pytest.skip(f"{name}'s OpenBLAS is not in this process")
    info = xent.linear.set_blas(name)
    assert info["library"] == name and info["asked"] == name
    rng = np.random.default_rng(3)
    hidden = rng.standard_normal((700, 40)).astype(dtype)
    weight = (rng.standard_normal((1100, 40)) * 0.3).astype(dtype)
    bias = rng.standard_normal(1100).astype(dtype)
    target = rng.integers(0, 1100, 700)
    loss = xent.linear_cross_entropy(hidden, weight, target, bias=bias, reduction="none")
    expected = reference.linear_cross_entropy(hidden, weight, target, bias=bias, reduction="none")
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, expected, rtol=tol, atol=tol)
    mean, *grads = xent.linear_cross_entropy_with_grad(hidden, weight, target, bias=bias)
    wanted = reference.linear_cross_entropy_grad(hidden, weight, target, bias=bias)
    assert abs(mean - expected.mean()) <= tol * abs(expected.mean())
    assert len(grads) == len(wanted) == 3
    for got, want in zip(grads, wanted):
        np.testing.assert_allclose(got, want, rtol=10 * tol, atol=10 * tol * np.abs(want).max())
    # one library: the same bits on any thread count
    again = xent.linear_cross_entropy(
        hidden, weight, target, bias=bias, reduction="none", num_threads=1
    )
    np.testing.assert_array_equal(again, loss)


def test_bad_names_and_a_running_call():
    with pytest.raises(ValueError, match="one of auto, scipy, numpy, scipy-openblas32"):
        xent.linear.set_blas("mkl")
    with pytest.raises(ValueError, match="one of"):
        xent.linear.set_blas(None)
    with _blas.single_threaded():  # as while another thread's call runs
        with pytest.raises(RuntimeError, match="while a linear cross-entropy call runs"):
            xent.linear.set_blas("scipy")


def _run(code, tmp_path, **env):
    """Run code in a new interpreter, in tmp_path: from the checkout's root, ``import xent``
    would find its sources (no built extensions) before the installed package."""
    environment = {k: v for k, v in os.environ.items() if k not in ("XENT_BLAS",)}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        cwd=tmp_path,
    )


def test_environment_names_the_library(tmp_path):
    out = _run(
        "import xent.linear; print(xent.linear.blas_info()['library'])",
        tmp_path,
        XENT_BLAS="numpy",
    )
    assert out.returncode == 0, out.stderr
    if _blas._candidate("numpy") is not None:
        assert out.stdout.split() == ["numpy"]
    out = _run("import xent.linear; xent.linear.blas_info()", tmp_path, XENT_BLAS="atlas")
    assert out.returncode != 0 and "XENT_BLAS='atlas' is not one of" in out.stderr


# Every OpenBLAS of the process starts on Haswell kernels (OPENBLAS_CORETYPE, then removed,
# as if their own detection had picked them): xent must load the wheel's with AVX-512 ones,
# leave scipy's own calls on scipy's library, and still give the reference's numbers.
_NARROW = """
    import os
    import numpy as np
    import scipy.linalg
    import xent, xent.linear
    from xent import _blas, reference
    assert _blas._candidate("scipy").core == "Haswell"
    {unset}
    info = xent.linear.blas_info()
    print(info["library"], info["kernels"], _blas._candidate("scipy").core)
    rng = np.random.default_rng(0)
    h = rng.standard_normal((300, 64)).astype(np.float32)
    w = rng.standard_normal((900, 64)).astype(np.float32)
    y = rng.integers(0, 900, 300)
    got = xent.linear_cross_entropy(h, w, y, reduction="none")
    want = reference.linear_cross_entropy(h, w, y, reduction="none")
    assert np.allclose(got, want, rtol=2e-5, atol=2e-5)
    a = rng.standard_normal((50, 50))
    assert np.allclose(scipy.linalg.blas.dgemm(1.0, a, a), a @ a)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_narrow_kernels_everywhere_load_the_wheels_wide_ones(tmp_path):
    if _blas.cpu_level() != 2 or _blas._wheel_path() is None:
        pytest.skip("needs an AVX-512 CPU and the scipy-openblas32 wheel")
    out = _run(
        _NARROW.format(unset='del os.environ["OPENBLAS_CORETYPE"]'),
        tmp_path,
        OPENBLAS_CORETYPE="Haswell",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["scipy-openblas32", "SkylakeX", "Haswell"]
    # the user's own OPENBLAS_CORETYPE stands
    out = _run(_NARROW.format(unset=""), tmp_path, OPENBLAS_CORETYPE="Haswell")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["scipy", "Haswell", "Haswell"]


def test_first_calls_from_several_threads_at_once(tmp_path):
    # the first call chooses the library: others arriving meanwhile wait for the choice,
    # then run beside each other (one of them once found a call running and raised)
    code = """
        import threading
        import numpy as np
        import xent
        rng = np.random.default_rng(0)
        h = rng.standard_normal((64, 16)).astype(np.float32)
        w = rng.standard_normal((300, 16)).astype(np.float32)
        y = rng.integers(0, 300, 64)
        start, results, errors = threading.Barrier(8), [], []
        def work():
            start.wait()
            try:
                results.append(xent.linear_cross_entropy(h, w, y))
            except Exception as error:
                errors.append(repr(error))
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(len(results), len(set(results)), errors)
    """
    for _ in range(3):
        out = _run(code, tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "8 1 []", out.stdout
