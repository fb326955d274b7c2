"""The kernel table is declared once: the C list, what Cython sees, and the ISA choice agree."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xent
from xent import _dispatch, _kernels, _linear, _table

# The build's inputs and outputs (the C list, its generator, the generated Cython view) are
# the source tree's: a wheel carries none of them. These checks run beside a checkout (CI, a
# developer's tree) and are skipped where the tests run against an installed wheel alone.
SOURCE = Path(__file__).resolve().parents[1] / "xent"
needs_source = pytest.mark.skipif(
    not (SOURCE / "_kernel_api.pxd").exists(),
    reason="needs the built source tree (the generated xent/_kernel_api.pxd): a build check",
)


def _generator():
    sys.path.insert(0, str(SOURCE / "src"))
    try:
        import gen_kernel_api
    finally:
        sys.path.pop(0)
    return gen_kernel_api


def _pxd_fields():
    """The fields of xent_kernel_table as the generated _kernel_api.pxd declares them."""
    text = (SOURCE / "_kernel_api.pxd").read_text()
    return re.findall(r"^\s+\S.*?\(\*(\w+)\)\(", text, re.M)


@needs_source
def test_cython_view_has_the_c_tables_fields_in_its_order():
    c_names = _table.kernel_names()
    assert len(c_names) % 2 == 0 and len(c_names) >= 44
    assert _pxd_fields() == c_names
    # float fields first, then the same kernels for double
    half = len(c_names) // 2
    assert [n[:-4] for n in c_names[:half]] == [n[:-4] for n in c_names[half:]]
    assert all(n.endswith("_f32") for n in c_names[:half])
    assert all(n.endswith("_f64") for n in c_names[half:])


@needs_source
def test_generated_pxd_is_what_the_c_list_generates_now():
    gen = _generator()
    entries = gen.kernel_list((SOURCE / "src" / "xent_kernels.h").read_text())
    assert [name for _, name, _ in entries] == [
        n[:-4] for n in _table.kernel_names()[: len(entries)]
    ]
    assert (SOURCE / "_kernel_api.pxd").read_text() == gen.render(entries)


@needs_source
def test_generator_reads_parameters_and_rejects_a_malformed_list():
    gen = _generator()
    header = (
        "#define XENT_KERNELS(X, T, S) \\\n"
        "    X(double, row_a, S, (const T *x, ptrdiff_t n, double (*f)(double))) \\\n"
        "    X(void, row_b, S, (T *out))\n"
    )
    entries = gen.kernel_list(header)
    assert entries == [
        ("double", "row_a", ["const T *x", "ptrdiff_t n", "double (*f)(double)"]),
        ("void", "row_b", ["T *out"]),
    ]
    text = gen.render([("void", "row_b", ["T *out"])])
    assert "void (*row_b_f32)(float *out) noexcept nogil" in text
    assert "void (*row_b_f64)(double *out) noexcept nogil" in text
    assert "cdef inline void row_b(floating *out) noexcept nogil:" in text
    with pytest.raises(SystemExit, match="cannot read"):
        gen.kernel_list("#define XENT_KERNELS(X, T, S) \\\n    Y(void, bad, S, (T *x))\n")
    with pytest.raises(SystemExit, match="no '#define XENT_KERNELS"):
        gen.kernel_list("int x;\n")


def test_one_table_serves_every_extension(isa):
    # _linear holds no table of its own: it reports (and runs) the one set through _dispatch
    assert _dispatch.current_isa() == _kernels.current_isa() == _linear.current_isa() == isa
    x = np.random.default_rng(0).standard_normal((4, 300)).astype(np.float32)
    hidden, weight = x[:, :30].copy(), x[:, 30:90].reshape(-1, 30).copy()
    target = np.array([0, 1, 2, 3])
    got = xent.linear_cross_entropy(hidden, weight, target, reduction="none")
    logits = hidden.astype(np.float64) @ weight.T.astype(np.float64)
    expected = np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(4), target]
    np.testing.assert_allclose(got, expected, rtol=2e-5)


def test_set_isa_rejects_unknown_names():
    with pytest.raises(ValueError, match="isa must be one of auto, avx512, avx2, baseline"):
        _dispatch.set_isa("sse9")
    with pytest.raises(ValueError, match="isa must be one of"):
        _dispatch.set_isa(2)
    assert _dispatch.available_isas()[-1] == "baseline"
    assert _dispatch.config()["isa"] == _dispatch.current_isa()


def _import_xent(isa, cwd):
    env = dict(os.environ, XENT_ISA=isa)
    code = "import xent._dispatch as d; print(d.current_isa())"
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_xent_isa_bogus_warns_with_the_valid_values(tmp_path):
    result = _import_xent("bogus", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == _dispatch.available_isas()[0]
    assert "XENT_ISA='bogus'" in result.stderr
    assert "valid values: auto, " + ", ".join(_dispatch.available_isas()) in result.stderr


def test_xent_isa_selects_the_variant_at_import(tmp_path):
    result = _import_xent("baseline", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "baseline"
    assert "Warning" not in result.stderr
