"""Every public function's docstring has an Examples section, and its examples run as written.

The examples are doctests: each docstring runs in a namespace of its own (so an example
imports what it uses, as a reader copying it would), on each kernel variant this CPU runs,
and its printed output must match what the docstring shows. The public names are read from
the modules' ``__all__``, so a function added later without examples fails here.

xent.torch's examples run where PyTorch is installed (xent never requires it).
"""

import doctest
import importlib
import importlib.util
import inspect
import sys

import numpy as np
import pytest

#: The modules whose public functions (their ``__all__``) must show runnable examples.
MODULES = [
    "xent",
    "xent.info",
    "xent.linear",
    "xent.dask",
    "xent.reference",
    "xent.reference.info",
    "xent.reference.linear",
    "xent.torch",
]

#: Modules whose examples need an optional dependency: (module, the package it needs).
OPTIONAL = {"xent.dask": "dask", "xent.torch": "torch"}


#: torch.nn.Module methods that PyTorch calls for the user (module(x), repr(module)).
_MODULE_HOOKS = {"forward", "extra_repr"}


def _is_torch_module(cls):
    """Whether ``cls`` is a ``torch.nn.Module`` (False where torch is not imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and issubclass(cls, torch.nn.Module)


def public_objects():
    """(name, object) of every public function, class and method of a class, once each."""
    found, seen = [], set()
    for module_name in MODULES:
        needs = OPTIONAL.get(module_name)
        if needs is not None and importlib.util.find_spec(needs) is None:
            found.append(
                pytest.param(
                    module_name,
                    None,
                    marks=pytest.mark.skip(
                        reason=f"{module_name}'s examples need {needs}, which is not installed"
                    ),
                )
            )
            continue
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isroutine(obj) or inspect.isclass(obj)) or id(obj) in seen:
                continue  # modules (xent.info) and constants (SUM_TOLERANCE)
            seen.add(id(obj))
            found.append(pytest.param(f"{module_name}.{name}", obj, id=f"{module_name}.{name}"))
            if inspect.isclass(obj):
                for method_name, method in vars(obj).items():
                    if method_name in _MODULE_HOOKS and _is_torch_module(obj):
                        continue  # called as module(x): the class's own example shows it
                    if not method_name.startswith("_") and inspect.isfunction(method):
                        qualified = f"{module_name}.{name}.{method_name}"
                        found.append(pytest.param(qualified, method, id=qualified))
    return found


PUBLIC = public_objects()


def test_the_public_names_are_found():
    # the parametrized test below would pass vacuously if __all__ stopped being read
    names = {p.values[0] for p in PUBLIC}
    assert {
        "xent.cross_entropy",
        "xent.EvaluationReport.as_dict",
        "xent.info.entropy",
        "xent.reference.target_rank",
        "xent.linear.LinearCrossEntropyGrads",
    } <= names
    assert len(names) >= 50


def examples_of(name, obj):
    """The doctests of ``obj``'s own docstring (not of its members), globals empty."""
    finder = doctest.DocTestFinder(recurse=False)
    return [t for t in finder.find(obj, name, module=False, globs={}) if t.examples]


@pytest.mark.parametrize("name, obj", PUBLIC)
def test_docstring_has_an_examples_section(name, obj):
    lines = [line.strip() for line in (inspect.getdoc(obj) or "").splitlines()]
    assert any(a == "Examples" and b == "--------" for a, b in zip(lines, lines[1:])), (
        f"{name}'s docstring has no numpydoc Examples section"
    )
    assert examples_of(name, obj), f"{name}'s Examples section has no >>> example"


@pytest.mark.parametrize("name, obj", PUBLIC)
def test_docstring_examples_run(name, obj, isa):
    report = []
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    # NumPy's current print style (np.float64(1.0) for scalars), whatever a test set before
    with np.printoptions(legacy=False):
        for test in examples_of(name, obj):
            runner.run(test, out=report.append, clear_globs=True)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0, f"{name} has no example to run"
    assert results.failed == 0, f"{name}'s examples on {isa}:\n" + "".join(report)
