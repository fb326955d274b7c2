"""xent as a package: metadata, what an installed copy carries, and what the docs promise.

Some checks concern an installed (non-editable) copy, which `pip install .` and
`tools/wheel.sh` give and an in-place build does not; the repaired-wheel checks run where
`tools/wheel.sh` runs the suite (it sets XENT_TEST_INSTALLED_WHEEL=1).
"""

import importlib
import importlib.metadata
import os
import pathlib
import re
import struct
import sysconfig

import numpy as np
import pytest

import xent

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE_DIR = pathlib.Path(xent.__file__).resolve().parent
SITE_DIRS = {pathlib.Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
INSTALLED = PACKAGE_DIR.parent in SITE_DIRS
FROM_REPAIRED_WHEEL = os.environ.get("XENT_TEST_INSTALLED_WHEEL") == "1"
needs_installed = pytest.mark.skipif(not INSTALLED, reason="xent is built in place (editable)")
needs_repaired_wheel = pytest.mark.skipif(
    not FROM_REPAIRED_WHEEL, reason="checks of the repaired wheel: run by tools/wheel.sh"
)


def test_version_is_written_once():
    from xent import _version

    assert xent.__version__ == _version.__version__
    assert importlib.metadata.version("xent") == xent.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc)?\d*", xent.__version__)


def test_license_metadata_and_file():
    distribution = importlib.metadata.distribution("xent")
    assert distribution.metadata["License-Expression"] == "BSD-3-Clause"
    licence_files = [f for f in distribution.files or [] if f.name == "LICENSE"]
    assert licence_files, "the LICENSE file is not recorded in the installed distribution"
    text = licence_files[0].locate().read_text(encoding="utf-8")
    assert "BSD 3-Clause License" in text and "the xent developers" in text


def extension_modules():
    return sorted(PACKAGE_DIR.glob("_*.so"))


def elf_section_names(path):
    """Names of the sections of a 64-bit little-endian ELF file (a shared library)."""
    data = pathlib.Path(path).read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, f"{path}: not ELF64 LE"
    section_offset = struct.unpack_from("<Q", data, 0x28)[0]
    entry_size, count, names_index = struct.unpack_from("<HHH", data, 0x3A)

    def header(i):  # (name offset, file offset, size) of section i
        base = section_offset + i * entry_size
        return (
            struct.unpack_from("<I", data, base)[0],
            *struct.unpack_from("<QQ", data, base + 0x18),
        )

    _, names_at, names_size = header(names_index)
    names = data[names_at : names_at + names_size]
    return [names[n : names.index(b"\0", n)].decode() for n, _, _ in map(header, range(count))]


def test_elf_reader_reads_a_library_of_this_process():
    # the reader the checks below rely on, on a file whose sections are known to exist
    sections = elf_section_names(extension_modules()[0])
    assert ".text" in sections and ".dynsym" in sections


@needs_installed
def test_installed_copy_has_no_generated_c():
    assert not list(PACKAGE_DIR.glob("*.c")), "Cython's generated .c files were installed"
    assert len(extension_modules()) == 3  # _table (the kernels), _kernels, _linear


@needs_repaired_wheel
def test_repaired_wheel_has_no_debug_info():
    for module in extension_modules():
        debug = [s for s in elf_section_names(module) if s.startswith((".debug", ".zdebug"))]
        assert not debug, f"{module.name} carries debug sections {debug}"


@needs_repaired_wheel
def test_repaired_wheel_loads_its_own_openmp_runtime():
    libs = PACKAGE_DIR.parent / "xent.libs"
    vendored = sorted(p.name for p in libs.glob("libgomp*.so*"))
    assert vendored, f"no libgomp vendored in {libs}"
    xent.cross_entropy(np.zeros((4, 3)), np.zeros(4, dtype=np.int64), num_threads=2)
    with open("/proc/self/maps", encoding="utf-8") as maps:
        loaded = {line.split()[-1] for line in maps if "libgomp" in line}
    assert any(str(libs) in path for path in loaded), f"libgomp loaded from {loaded}"


# -- the documentation's promises ---------------------------------------------------------

API_PAGES = ROOT / "docs" / "api"


def documented_names(page):
    """The names an API page's autosummary tables list."""
    text = (API_PAGES / page).read_text(encoding="utf-8")
    names = set()
    for block in re.findall(r"\.\. autosummary::\n(?:[ \t]+:.*\n)*\n((?:[ \t]+\S+\n)+)", text):
        names.update(line.strip() for line in block.splitlines())
    return names


@pytest.mark.skipif(not API_PAGES.is_dir(), reason="docs/ is not next to the tests")
@pytest.mark.parametrize(
    "module, page",
    [
        ("xent", "xent.rst"),
        ("xent.info", "info.rst"),
        ("xent.linear", "linear.rst"),
        ("xent.reference", "reference.rst"),
        ("xent.dask", "dask.rst"),
        ("xent.torch", "torch.rst"),
    ],
)
def test_api_reference_lists_every_public_name(module, page):
    if module in ("xent.dask", "xent.torch"):
        pytest.importorskip({"xent.dask": "distributed", "xent.torch": "torch"}[module])
    public = set(importlib.import_module(module).__all__)
    public -= {"info", "reference"}  # the submodules have pages of their own
    listed = documented_names(page)
    assert public - listed == set(), f"docs/api/{page} misses {sorted(public - listed)}"
    assert listed - public == set(), f"docs/api/{page} lists non-public {sorted(listed - public)}"


RNG = np.random.default_rng(7)
SCORES = RNG.standard_normal((64, 10))
LABELS = RNG.integers(0, 10, 64)
CLASS_WEIGHT = RNG.uniform(0.5, 2.0, 10)
SAMPLE_WEIGHT = RNG.uniform(0.5, 2.0, 64)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_switching_from_pytorch_table(reduction):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    t = torch.from_numpy
    labels = LABELS.copy()
    labels[3] = -100
    np.testing.assert_allclose(
        xent.cross_entropy(
            SCORES, labels, weight=CLASS_WEIGHT, reduction=reduction, label_smoothing=0.1
        ),
        F.cross_entropy(
            t(SCORES), t(labels), weight=t(CLASS_WEIGHT), reduction=reduction, label_smoothing=0.1
        ).numpy(),
        rtol=1e-12,
    )
    log_probs = xent.log_softmax(SCORES)
    np.testing.assert_allclose(
        xent.nll_loss(log_probs, labels, weight=CLASS_WEIGHT, reduction=reduction),
        F.nll_loss(t(log_probs), t(labels), weight=t(CLASS_WEIGHT), reduction=reduction).numpy(),
        rtol=1e-12,
    )
    hidden, weight, bias = SCORES[:16, :8], RNG.standard_normal((30, 8)), np.ones(30)
    logits = t(hidden) @ t(weight).T + t(bias)
    capped = 5.0 * torch.tanh(logits / 5.0)
    np.testing.assert_allclose(
        xent.linear_cross_entropy(
            hidden, weight, LABELS[:16], bias=bias, softcap=5.0, reduction=reduction
        ),
        F.cross_entropy(capped, t(LABELS[:16]), reduction=reduction).numpy(),
        rtol=1e-10,
    )


def test_switching_from_scikit_learn_table():
    pytest.importorskip("sklearn")
    from sklearn.metrics import log_loss

    proba = xent.softmax(SCORES)
    classes = range(10)
    np.testing.assert_allclose(
        xent.cross_entropy(SCORES, LABELS), log_loss(LABELS, proba, labels=classes), rtol=1e-12
    )
    np.testing.assert_allclose(
        xent.nll_loss(np.log(proba), LABELS, reduction="sum"),
        log_loss(LABELS, proba, normalize=False, labels=classes),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        np.average(xent.nll_loss(np.log(proba), LABELS, reduction="none"), weights=SAMPLE_WEIGHT),
        log_loss(LABELS, proba, sample_weight=SAMPLE_WEIGHT, labels=classes),
        rtol=1e-12,
    )
    p, y = proba[:, 0], (LABELS < 5).astype(np.float64)
    np.testing.assert_allclose(xent.binary_cross_entropy(p, y), log_loss(y, p), rtol=1e-12)


# -- the sdist -----------------------------------------------------------------------------


@pytest.mark.skipif(not (ROOT / "MANIFEST.in").is_file(), reason="not a source checkout")
def test_manifest_ships_what_the_tests_read():
    # A file the suite needs must match a recursive-include of MANIFEST.in, or the unpacked
    # sdist's tests fail (as tests/conftest.py and docs/nonfinite.md once did).
    rules = [
        line.split()
        for line in (ROOT / "MANIFEST.in").read_text().splitlines()
        if line.startswith("recursive-include")
    ]
    needed = [
        *ROOT.glob("tests/*.py"),
        *ROOT.glob("benchmarks/*.py"),
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("docs/**/*.rst"),
        *ROOT.glob("docs/**/*.md"),
        ROOT / "docs/conf.py",
    ]
    assert ROOT / "tests/conftest.py" in needed and ROOT / "docs/nonfinite.md" in needed
    for path in needed:
        relative = path.relative_to(ROOT)
        assert any(
            relative.parts[0] == rule[1] and any(relative.match(p) for p in rule[2:])
            for rule in rules
        ), f"MANIFEST.in leaves {relative} out of the sdist"
