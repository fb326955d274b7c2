"""The ``Examples`` section of every public docstring runs as a doctest, and the modules in
``REQUIRED_EXAMPLES`` have one for every public name.

Public names: ``xent.__all__``, ``xent.info.__all__``, ``xent.linear.__all__``,
``xent.reference.__all__``, and ``xent.dask`` / ``xent.torch`` when dask / PyTorch are
installed (the module docstrings' own Examples run too). Each section runs in fresh globals
holding ``np`` and ``xent``, with ``NORMALIZE_WHITESPACE | ELLIPSIS`` and numpy's print
options fixed (numpy 2's defaults, set explicitly), so that an example's output does not
depend on what ran before it.
"""

import doctest
import importlib
import importlib.util
import inspect
import re
import types

import numpy as np
import pytest

import xent

#: Modules (or single public names, "module.name") every public name of which must have an
#: Examples section. Grows as the docstrings get theirs; the test below holds them to it.
REQUIRED_EXAMPLES = {
    "xent.torch.CrossEntropyLoss",
}

OPTIONFLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS

#: numpy's print options of numpy 2, written out: an example prints the same everywhere.
PRINT_OPTIONS = dict(
    precision=8,
    threshold=1000,
    edgeitems=3,
    linewidth=75,
    suppress=False,
    nanstr="nan",
    infstr="inf",
    sign="-",
    floatmode="maxprec",
    legacy=False,
)

#: The modules whose public names are documented, and whether each needs an optional package.
PUBLIC_MODULES = {
    "xent": None,
    "xent.info": None,
    "xent.linear": None,
    "xent.reference": None,
    "xent.dask": "dask",
    "xent.torch": "torch",
}

# A numpydoc section: its title on one line, underlined with dashes on the next.
_SECTION = re.compile(r"^(\w[\w ]*)\n-{3,}\n", re.MULTILINE)


def examples_section(docstring):
    """The body of the docstring's ``Examples`` section, or None."""
    if not docstring:
        return None
    text = inspect.cleandoc(docstring)
    headings = list(_SECTION.finditer(text))
    for i, heading in enumerate(headings):
        if heading.group(1).strip() == "Examples":
            end = headings[i + 1].start() if i + 1 < len(headings) else len(text)
            return text[heading.end() : end]
    return None


def importable(module_name):
    package = PUBLIC_MODULES[module_name]
    return package is None or importlib.util.find_spec(package) is not None


def public_objects():
    """(qualified name, object) of every public function and class, each object once, and of
    each public module (for its module docstring)."""
    seen = set()
    found = []
    for module_name in PUBLIC_MODULES:
        if not importable(module_name):
            continue
        module = importlib.import_module(module_name)
        found.append((module_name, module))
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType) or not callable(obj) or id(obj) in seen:
                continue
            seen.add(id(obj))
            found.append((f"{module_name}.{name}", obj))
    return found


PUBLIC = public_objects()
WITH_EXAMPLES = [(name, obj) for name, obj in PUBLIC if examples_section(obj.__doc__)]


def required(name):
    """Whether the public name ``name`` must have an Examples section."""
    module_name = name.rpartition(".")[0]
    return name in REQUIRED_EXAMPLES or module_name in REQUIRED_EXAMPLES


def test_the_section_parser():
    doc = """Summary.

    Parameters
    ----------
    x : int

    Examples
    --------
    >>> 1 + 1
    2

    Notes
    -----
    Not an example.
    """
    assert examples_section(doc) == ">>> 1 + 1\n2\n\n"
    assert examples_section("Summary only.") is None
    assert examples_section(None) is None


@pytest.mark.parametrize("name, obj", WITH_EXAMPLES, ids=[name for name, _ in WITH_EXAMPLES])
def test_examples_run(name, obj):
    text = examples_section(obj.__doc__)
    try:
        filename = inspect.getsourcefile(obj)
    except TypeError:
        filename = None
    globs = {"np": np, "xent": xent}
    test = doctest.DocTestParser().get_doctest(text, globs, name, filename, 0)
    assert test.examples, f"{name}: its Examples section has no >>> lines"
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    report = []
    with np.printoptions(**PRINT_OPTIONS):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_required_names_have_examples():
    """Every public name under REQUIRED_EXAMPLES has an Examples section; the message lists
    the ones without (and, for the next entries of REQUIRED_EXAMPLES, all of them)."""
    missing = [
        name
        for name, obj in PUBLIC
        if not isinstance(obj, types.ModuleType)
        and required(name)
        and examples_section(obj.__doc__) is None
    ]
    everywhere = [
        name
        for name, obj in PUBLIC
        if not isinstance(obj, types.ModuleType) and examples_section(obj.__doc__) is None
    ]
    assert missing == [], (
        f"public names without an Examples section: {missing} "
        f"(all public names without one: {everywhere})"
    )


def test_required_entries_are_public_names():
    """An entry of REQUIRED_EXAMPLES that names nothing would make the check above hold
    vacuously: each is a documented module or one of its public names."""
    names = {name for name, _ in PUBLIC}
    for entry in REQUIRED_EXAMPLES:
        module_name = entry if entry in PUBLIC_MODULES else entry.rpartition(".")[0]
        assert module_name in PUBLIC_MODULES, entry
        if importable(module_name):
            assert entry in names, f"REQUIRED_EXAMPLES names {entry!r}, which is not public"
