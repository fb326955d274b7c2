"""xent.torch: xent's cross-entropy as a PyTorch autograd function, against PyTorch itself.

Skipped when torch is not installed.

Tolerances: as in tests/test_against_peers.py. float64: rtol 1e-10 (atol 1e-12 for gradient
entries near 0). float32: rtol 1e-5, atol 1e-6: torch forms its values in float32, xent in
double rounded once, and the entries here are O(1) (losses) or O(1 / N) (gradients).
"""

import doctest
import itertools
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import xent  # noqa: E402
import xent.torch as xt  # noqa: E402

from support import seed_of  # noqa: E402

C = 5
# input shape, in PyTorch's layout: one row (C,), (N, C), (N, C, d1), (N, C, d1, d2)
SHAPES = [(C,), (6, C), (3, C, 4), (2, C, 3, 2)]
REDUCTIONS = ["mean", "sum", "none"]
SMOOTHINGS = [0.0, 0.1]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}
IGNORE = 3  # a valid class used as ignore_index


def _generator(*parts):
    """A torch.Generator seeded per parameter combination (hash() is salted)."""
    return torch.Generator().manual_seed(seed_of(*parts))


def _class_dim(shape):
    return 1 if len(shape) >= 2 else 0


def _batch_shape(shape):
    d = _class_dim(shape)
    return shape[:d] + shape[d + 1 :]


def make_case(shape, kind, dtype, weighted, *, requires_grad=False):
    """(input, target, weight, ignore_index) for one combination.

    kind: "index" (class indices, the default ignore_index, no row ignored), "ignore" (class
    indices, ignore_index=IGNORE, a valid class, held by every other row) or "prob"
    (probabilities).
    """
    g = _generator(shape, kind, str(dtype), weighted)
    x = (3 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)
    x.requires_grad_(requires_grad)
    ignore_index = -100
    if kind == "prob":
        t = torch.softmax(
            2 * torch.randn(shape, generator=g, dtype=torch.float64), _class_dim(shape)
        ).to(dtype)
    else:
        t = torch.randint(0, C, _batch_shape(shape), generator=g)
        if kind == "ignore":
            ignore_index = IGNORE
            flat = t.view(-1)
            flat[::2] = IGNORE  # half the rows ignored, always including the first
            if flat.numel() > 1:
                flat[1] = 0  # and at least one row not
    w = (0.5 + torch.rand(C, generator=g, dtype=torch.float64)).to(dtype) if weighted else None
    return x, t, w, ignore_index


def assert_tensor_close(got, expected, dtype):
    """``got`` a tensor of ``dtype`` and of ``expected``'s shape, equal to it within ``TOL``
    (``torch.testing.assert_close``: ``|got - expected| <= atol + rtol * |expected|``, NaN
    meeting NaN)."""
    assert isinstance(got, torch.Tensor)
    assert got.dtype == expected.dtype == dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    torch.testing.assert_close(got, expected, equal_nan=True, **TOL[dtype])


CASES = list(
    itertools.product(
        SHAPES,
        ["index", "ignore", "prob"],
        [False, True],
        SMOOTHINGS,
        REDUCTIONS,
        [torch.float32, torch.float64],
    )
)


def _case_id(case):
    shape, kind, weighted, eps, reduction, dtype = case
    return (
        f"{'x'.join(map(str, shape))}-{kind}-{'w' if weighted else 'nw'}-ls{eps}-"
        f"{reduction}-{str(dtype).split('.')[-1]}"
    )


# ---- forward and gradients against torch ----------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward_matches_torch(case):
    shape, kind, weighted, eps, reduction, dtype = case
    x, t, w, ignore_index = make_case(shape, kind, dtype, weighted)
    options = dict(weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=eps)
    got = xt.cross_entropy(x, t, **options)
    expected = F.cross_entropy(x, t, **options)
    assert_tensor_close(got, expected, dtype)
    assert got.grad_fn is None
    assert got.shape == (_batch_shape(shape) if reduction == "none" else ())
    module = xt.CrossEntropyLoss(**options)
    assert_tensor_close(module(x, t), torch.nn.CrossEntropyLoss(**options)(x, t), dtype)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_gradient_matches_torch_autograd(case):
    shape, kind, weighted, eps, reduction, dtype = case
    x, t, w, ignore_index = make_case(shape, kind, dtype, weighted, requires_grad=True)
    options = dict(weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=eps)
    got = xt.cross_entropy(x, t, **options)
    expected = F.cross_entropy(x, t, **options)
    assert got.requires_grad and got.grad_fn is not None
    assert_tensor_close(got.detach(), expected.detach(), dtype)
    # A non-uniform incoming gradient: per row for "none", a scalar other than 1 otherwise.
    g = _generator("grad_output", case)
    if reduction == "none":
        grad_output = torch.rand(got.shape, generator=g, dtype=torch.float64).to(dtype) + 0.1
    else:
        grad_output = torch.tensor(2.5, dtype=dtype)
    (got_grad,) = torch.autograd.grad(got, x, grad_output)
    (expected_grad,) = torch.autograd.grad(expected, x, grad_output)
    assert_tensor_close(got_grad, expected_grad, dtype)
    # The same through loss.backward(gradient=...), into x.grad.
    xt.cross_entropy(x, t, **options).backward(gradient=grad_output)
    assert_tensor_close(x.grad, expected_grad, dtype)
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["index", "ignore", "prob"])
@pytest.mark.parametrize("shape", [(6, C), (3, C, 4)])
def test_plain_backward_matches_torch(shape, kind, reduction):
    """loss.backward() (the default incoming gradient of 1: no multiplication at all)."""
    x, t, w, ignore_index = make_case(shape, kind, torch.float64, True, requires_grad=True)
    options = dict(weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=0.1)
    loss = xt.cross_entropy(x, t, **options)
    (loss if reduction != "none" else loss.sum()).backward()
    got = x.grad
    x.grad = None
    expected = F.cross_entropy(x, t, **options)
    (expected if reduction != "none" else expected.sum()).backward()
    assert_tensor_close(got, x.grad, torch.float64)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_probability_target_and_weight_gradients_match_torch(reduction, weighted):
    """Probability targets (and, with them, weights) get gradients, as in PyTorch."""
    x, t, w, _ = make_case((3, C, 4), "prob", torch.float64, weighted, requires_grad=True)
    t.requires_grad_(True)
    if weighted:
        w.requires_grad_(True)
    leaves = [x, t] + ([w] if weighted else [])
    grad_output = (
        torch.rand(3, 4, dtype=torch.float64)
        if reduction == "none"
        else torch.tensor(0.7, dtype=torch.float64)
    )
    options = dict(weight=w, reduction=reduction, label_smoothing=0.1)
    got = torch.autograd.grad(xt.cross_entropy(x, t, **options), leaves, grad_output)
    expected = torch.autograd.grad(F.cross_entropy(x, t, **options), leaves, grad_output)
    for a, b in zip(got, expected):
        assert_tensor_close(a, b, torch.float64)


def test_all_rows_ignored_gives_nan_mean_and_zero_gradient_like_torch():
    x = torch.randn(4, C, dtype=torch.float64, requires_grad=True)
    t = torch.full((4,), -100)
    got = xt.cross_entropy(x, t)
    expected = F.cross_entropy(x, t)
    assert torch.isnan(got) and torch.isnan(expected)
    (g_got,) = torch.autograd.grad(got, x)
    (g_expected,) = torch.autograd.grad(expected, x)
    assert_tensor_close(g_got, g_expected, torch.float64)
    assert not g_got.any()


def test_empty_batch_like_torch():
    x = torch.randn(0, C, requires_grad=True)
    t = torch.zeros(0, dtype=torch.long)
    for reduction in REDUCTIONS:
        got = xt.cross_entropy(x, t, reduction=reduction)
        assert_tensor_close(
            got.detach(), F.cross_entropy(x, t, reduction=reduction).detach(), torch.float32
        )
    xt.cross_entropy(x, t, reduction="sum").backward()
    assert x.grad.shape == (0, C)


def test_float16_is_computed_in_float32_and_returned_as_float16():
    x, t, _, _ = make_case((6, C), "index", torch.float16, False, requires_grad=True)
    loss = xt.cross_entropy(x, t)
    assert loss.dtype == torch.float16
    torch.testing.assert_close(
        loss.float(), F.cross_entropy(x.detach().float(), t), rtol=1e-3, atol=1e-3
    )
    loss.backward()
    assert x.grad.dtype == torch.float16
    x32 = x.detach().float().requires_grad_(True)
    F.cross_entropy(x32, t).backward()
    torch.testing.assert_close(x.grad.float(), x32.grad, rtol=1e-2, atol=1e-3)


def test_no_grad_mode_keeps_no_graph_and_skips_the_gradient(monkeypatch):
    x, t, _, _ = make_case((6, C), "index", torch.float32, False, requires_grad=True)
    calls = []
    original = xent.cross_entropy_with_grad
    monkeypatch.setattr(
        xent, "cross_entropy_with_grad", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    with torch.no_grad():
        loss = xt.cross_entropy(x, t)
    assert loss.grad_fn is None and not loss.requires_grad and not calls
    xt.cross_entropy(x, t)
    assert calls == [1]


# ---- gradcheck --------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("kind", ["index", "ignore", "prob"])
@pytest.mark.parametrize("shape", [(4, C), (2, C, 3)])
def test_gradcheck(shape, kind, reduction):
    x, t, w, ignore_index = make_case(shape, kind, torch.float64, True, requires_grad=True)
    options = dict(weight=w, ignore_index=ignore_index, reduction=reduction, label_smoothing=0.1)
    assert torch.autograd.gradcheck(lambda x: xt.cross_entropy(x, t, **options), (x,))
    unweighted = dict(options, weight=None, label_smoothing=0.0)
    assert torch.autograd.gradcheck(lambda x: xt.cross_entropy(x, t, **unweighted), (x,))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_with_respect_to_probabilities_and_weight(reduction):
    x, t, w, _ = make_case((2, C, 3), "prob", torch.float64, True, requires_grad=True)
    t.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x, t, w: xt.cross_entropy(x, t, weight=w, reduction=reduction, label_smoothing=0.1),
        (x, t, w),
    )


def test_no_double_backward():
    """once_differentiable: create_graph=True is refused, not answered with a wrong Hessian."""
    x, t, _, _ = make_case((4, C), "index", torch.float64, False, requires_grad=True)
    loss = xt.cross_entropy(x, t)
    with pytest.raises(RuntimeError, match="differentiable once only"):
        torch.autograd.grad(loss, x, create_graph=True)
    (grad,) = torch.autograd.grad(loss, x)  # the graph is still usable once
    assert_tensor_close(grad, torch.autograd.grad(F.cross_entropy(x, t), x)[0], torch.float64)


# ---- no copies --------------------------------------------------------------------------------


def _record(monkeypatch, name, tensor, seen):
    """Wrap xent.<name> to record whether its logits share memory with ``tensor``."""
    original = getattr(xent, name)

    def wrapper(logits, target, **kwargs):
        seen.append(np.shares_memory(logits, tensor.detach().numpy()))
        return original(logits, target, **kwargs)

    monkeypatch.setattr(xent, name, wrapper)


def test_forward_reads_the_tensor_in_place(monkeypatch):
    x, t, _, _ = make_case((64, C), "index", torch.float32, False)
    assert x.is_contiguous() and not x.requires_grad
    seen = []
    _record(monkeypatch, "cross_entropy", x, seen)
    loss = xt.cross_entropy(x, t)
    assert seen == [True]
    assert_tensor_close(loss, F.cross_entropy(x, t), torch.float32)


def test_gradient_pass_reads_the_tensor_in_place(monkeypatch):
    x, t, _, _ = make_case((64, C), "prob", torch.float32, False, requires_grad=True)
    seen = []
    _record(monkeypatch, "cross_entropy_with_grad", x, seen)
    xt.cross_entropy(x, t).backward()
    assert seen == [True]


def test_channels_last_input_is_read_in_place(monkeypatch):
    """(N, C, H, W) in channels_last memory has its classes contiguous: no copy either."""
    x, t, _, _ = make_case((2, C, 3, 2), "index", torch.float32, False)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    seen = []
    _record(monkeypatch, "cross_entropy_with_grad", x, seen)
    loss = xt.cross_entropy(x, t, reduction="sum")
    assert seen == [True]
    loss.backward()
    x_ref = x.detach().clone().requires_grad_(True)
    F.cross_entropy(x_ref, t, reduction="sum").backward()
    assert_tensor_close(
        loss.detach(), F.cross_entropy(x_ref, t, reduction="sum").detach(), torch.float32
    )
    assert_tensor_close(x.grad, x_ref.grad, torch.float32)


LAYOUTS = {
    "expanded rows": lambda g: torch.randn(1, C, generator=g, dtype=torch.float64).expand(4, C),
    "transposed": lambda g: torch.randn(C, 4, generator=g, dtype=torch.float64).t(),
    "stepped": lambda g: torch.randn(8, 2 * C, generator=g, dtype=torch.float64)[::2, ::2],
    "permuted (N, C, d)": lambda g: torch.randn(3, 4, C, generator=g, dtype=torch.float64).permute(
        0, 2, 1
    ),
}


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_strided_layouts_match_torch(layout, kind, reduction):
    """Views of every stride pattern: read in place or copied by xent, never misread."""
    g = _generator(layout, kind, reduction)
    x = LAYOUTS[layout](g)
    if kind == "prob":
        t = torch.softmax(torch.randn(x.shape, generator=g, dtype=torch.float64), 1)
    else:
        t = torch.randint(0, C, _batch_shape(tuple(x.shape)), generator=g)
    options = dict(reduction=reduction, label_smoothing=0.1)
    results = []
    for fn in (xt.cross_entropy, F.cross_entropy):
        leaf = x.detach().requires_grad_(True)  # the same strides as x
        loss = fn(leaf, t, **options)
        results.append((loss.detach(), torch.autograd.grad(loss.sum(), leaf)[0]))
    for got, expected in zip(*results):
        assert_tensor_close(got, expected, torch.float64)


def test_input_is_not_modified():
    x, t, w, _ = make_case((3, C, 4), "prob", torch.float64, True, requires_grad=True)
    before = x.detach().clone()
    xt.cross_entropy(x, t, weight=w, reduction="none").sum().backward()
    assert torch.equal(x.detach(), before)


def test_training_step_reduces_the_loss():
    torch.manual_seed(0)
    features = torch.randn(64, 10)
    labels = (features @ torch.randn(10, 4)).argmax(1)
    model = torch.nn.Linear(10, 4)
    criterion = xt.CrossEntropyLoss(label_smoothing=0.05, num_threads=1)
    reference = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = criterion(model(features), labels)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        optimizer.zero_grad()
        reference(model(features), labels).backward()
        for got, expected in zip(grads, (p.grad for p in model.parameters())):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


def test_module_registers_weight_as_buffer_and_has_a_repr():
    w = torch.rand(C) + 0.5
    module = xt.CrossEntropyLoss(weight=w, ignore_index=2, reduction="sum")
    assert torch.equal(module.state_dict()["weight"], w)
    assert "ignore_index=2" in repr(module) and "'sum'" in repr(module)
    assert {"cross_entropy", "CrossEntropyLoss"} <= set(xt.__all__)


# ---- imports ----------------------------------------------------------------------------------


def test_import_xent_does_not_import_torch(tmp_path):
    # Not from the repository, whose source tree would shadow the built package.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, xent; assert 'torch' not in sys.modules, 'torch imported'",
        ],
        cwd=tmp_path,
        check=True,
    )


def test_import_xent_torch_without_torch_says_what_to_install(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # as if torch were not installed\n"
        "try:\n"
        "    import xent.torch\n"
        "except ImportError as e:\n"
        "    assert 'pip install torch' in str(e), str(e)\n"
        "else:\n"
        "    raise SystemExit('no ImportError')\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)


def test_docstring_examples():
    result = doctest.testmod(xt, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ---- bad inputs --------------------------------------------------------------------------------

LONG3 = dict(dtype=torch.long)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: (torch.empty(3, 4, device="meta"), torch.zeros(3, **LONG3)),
            ValueError,
            "CPU tensors only; input is on device meta",
        ),
        (
            lambda: (torch.zeros(3, 4), torch.zeros(3, device="meta", **LONG3)),
            ValueError,
            "target is on device meta",
        ),
        (
            lambda: (torch.zeros(3, 4, **LONG3), torch.zeros(3, **LONG3)),
            TypeError,
            "input must be float16, bfloat16, float32 or float64, got torch.int64",
        ),
        (
            lambda: (np.zeros((3, 4)), torch.zeros(3, **LONG3)),
            TypeError,
            "input must be a torch.Tensor",
        ),
        (lambda: (torch.zeros(3, 4).to_sparse(), torch.zeros(3, **LONG3)), TypeError, "dense"),
        (
            lambda: (torch.zeros(3, 4), torch.zeros(3, dtype=torch.bool)),
            TypeError,
            "class indices .* or probabilities",
        ),
        (
            lambda: (torch.zeros(3, 4), torch.zeros(4, **LONG3)),
            ValueError,
            r"target has shape \(4,\), expected \(3,\)",
        ),
        (
            lambda: (torch.zeros(2, 4, 3), torch.zeros(2, 4, **LONG3)),
            ValueError,
            r"expected \(2, 3\)",
        ),
        (
            lambda: (torch.zeros(3, 4), torch.zeros(4, 3)),
            ValueError,
            "probability target has shape",
        ),
        (lambda: (torch.zeros(3, 0), torch.zeros(3, **LONG3)), ValueError, "class dim 1 is empty"),
        (lambda: (torch.zeros(()), torch.zeros((), **LONG3)), ValueError, "at least one dim"),
        (
            lambda: (torch.zeros(3, 4), torch.tensor([0, 1, 4])),
            IndexError,
            r"target\[2\] = 4 is out of range",
        ),
    ],
)
def test_bad_inputs_raise_clear_errors(make, error, match):
    x, t = make()
    with pytest.raises(error, match=match):
        xt.cross_entropy(x, t)


def test_bad_options_raise_clear_errors():
    x, t = torch.zeros(3, 4), torch.zeros(3, **LONG3)
    with pytest.raises(ValueError, match="reduction must be one of"):
        xt.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match=r"weight has shape \(3,\), expected \(4,\)"):
        xt.cross_entropy(x, t, weight=torch.ones(3))
    with pytest.raises(ValueError, match="weight is on device meta"):
        xt.cross_entropy(x, t, weight=torch.ones(4, device="meta"))
    with pytest.raises(ValueError, match="label_smoothing must lie in"):
        xt.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="not supported with probability targets"):
        xt.cross_entropy(x, torch.zeros(3, 4), ignore_index=1)
    with pytest.raises(ValueError, match="not differentiable with respect to weight"):
        xt.cross_entropy(x, t, weight=torch.ones(4, requires_grad=True))
    with pytest.raises(ValueError, match="num_threads"):
        xt.cross_entropy(x, t, num_threads=0)
