"""xent.torch's nll_loss, binary losses and linear_cross_entropy, its dtypes, torch.compile and
torch.func, against PyTorch itself (cross_entropy's own cases are in test_torch_adapter.py).

Skipped when torch is not installed.

Tolerances: float64 rtol 1e-10 / atol 1e-12 (both sides compute in double; a gradient entry
near 0 needs the atol); float32 rtol 1e-5 / atol 1e-6 (torch rounds in float32, xent rounds a
double once; values here are O(1) or O(1 / N)); float16 and bfloat16 are compared with
PyTorch on the same half-precision values widened to float32, within one rounding of the
result's dtype (float16 2^-10, bfloat16 2^-7 relative) plus what PyTorch's own half-precision
rounding adds.
"""

import warnings
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import xent  # noqa: E402
import xent.torch as xt  # noqa: E402

TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.float16: dict(rtol=2e-3, atol=1e-4),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-3),
}
REDUCTIONS = ["mean", "sum", "none"]


def _generator(*parts):
    return torch.Generator().manual_seed(zlib.crc32(repr(parts).encode()))


def assert_close(got, expected, dtype=None):
    dtype = dtype or expected.dtype
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    torch.testing.assert_close(got, expected, equal_nan=True, **TOL[dtype])


def _grads(loss, leaves, grad_output):
    return torch.autograd.grad(loss, leaves, grad_output)


def _grad_output(loss, g):
    """A non-uniform incoming gradient: per row for 'none', 2.5 for a reduced loss."""
    if loss.ndim:
        return torch.rand(loss.shape, generator=g, dtype=torch.float64).to(loss.dtype) + 0.1
    return torch.tensor(2.5, dtype=loss.dtype)


# ---- nll_loss -----------------------------------------------------------------------------------

NLL_SHAPES = [(5,), (6, 5), (3, 5, 4), (2, 5, 3, 2)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted, ignore", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("shape", NLL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_nll_loss_forward_and_gradient_match_torch(shape, weighted, ignore, reduction, dtype):
    g = _generator("nll", shape, weighted, ignore, reduction, str(dtype))
    class_dim = 1 if len(shape) >= 2 else 0
    x = (
        torch.log_softmax(3 * torch.randn(shape, generator=g, dtype=torch.float64), class_dim)
        .to(dtype)
        .requires_grad_(True)
    )
    batch = shape[:class_dim] + shape[class_dim + 1 :]
    t = torch.randint(0, 5, batch, generator=g)
    ignore_index = 2 if ignore else -100
    if ignore:
        t.view(-1)[::2] = 2
    w = (0.5 + torch.rand(5, generator=g, dtype=torch.float64)).to(dtype) if weighted else None
    options = dict(weight=w, ignore_index=ignore_index, reduction=reduction)
    got, expected = xt.nll_loss(x, t, **options), F.nll_loss(x, t, **options)
    assert_close(got.detach(), expected.detach())
    grad_output = _grad_output(expected, g)
    assert_close(_grads(got, x, grad_output)[0], _grads(expected, x, grad_output)[0])
    module = xt.NLLLoss(**options)
    assert_close(module(x, t).detach(), torch.nn.NLLLoss(**options)(x, t).detach())


def test_nll_loss_all_ignored_and_legacy_reduction_like_torch():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.full((4,), -100)
    got, expected = xt.nll_loss(x, t), F.nll_loss(x, t)
    assert torch.isnan(got) and torch.isnan(expected)
    assert_close(_grads(got, x, None)[0], _grads(expected, x, None)[0])
    t = torch.tensor([0, 1, 2, 1])
    with pytest.warns(UserWarning, match="deprecated"):
        got = xt.nll_loss(x, t, size_average=False)
    with pytest.warns(UserWarning, match="deprecated"):
        expected = F.nll_loss(x, t, size_average=False)
    assert_close(got.detach(), expected.detach())


# ---- binary cross-entropy -----------------------------------------------------------------------

BINARY_SHAPES = [(), (7,), (4, 3), (2, 3, 4)]


def _binary_case(shape, dtype, weighted, pos, g):
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    y = torch.rand(shape, generator=g, dtype=torch.float64)
    last = shape[-1:] if shape else ()
    w = 0.5 + torch.rand(last, generator=g, dtype=torch.float64) if weighted else None
    pw = 0.5 + 2 * torch.rand(last, generator=g, dtype=torch.float64) if pos else None
    return tuple(None if a is None else a.to(dtype) for a in (x, y, w, pw))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "logits, weighted, pos",
    [  # pos_weight: of the logits loss only
        (False, False, False),
        (False, True, False),
        (True, False, False),
        (True, True, False),
        (True, True, True),
        (True, False, True),
    ],
)
@pytest.mark.parametrize("shape", BINARY_SHAPES, ids=lambda s: "x".join(map(str, s)) or "0d")
def test_binary_losses_and_gradients_match_torch(shape, logits, weighted, pos, reduction, dtype):
    g = _generator("bce", shape, logits, weighted, pos, reduction, str(dtype))
    x, y, w, pw = _binary_case(shape, dtype, weighted, pos, g)
    if not logits:
        x = torch.sigmoid(x)
    x.requires_grad_(True)
    y.requires_grad_(True)
    if logits:
        options = dict(weight=w, pos_weight=pw, reduction=reduction)
        got = xt.binary_cross_entropy_with_logits(x, y, **options)
        expected = F.binary_cross_entropy_with_logits(x, y, **options)
        module, reference = xt.BCEWithLogitsLoss(**options), torch.nn.BCEWithLogitsLoss(**options)
    else:
        options = dict(weight=w, reduction=reduction)
        got = xt.binary_cross_entropy(x, y, **options)
        expected = F.binary_cross_entropy(x, y, **options)
        module, reference = xt.BCELoss(**options), torch.nn.BCELoss(**options)
    assert_close(got.detach(), expected.detach())
    grad_output = _grad_output(expected, g)
    for a, b in zip(_grads(got, (x, y), grad_output), _grads(expected, (x, y), grad_output)):
        assert_close(a, b)
    assert_close(module(x, y).detach(), reference(x, y).detach())


def test_binary_cross_entropy_names_an_entry_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"probs\[1\] = 1.5 is outside \[0, 1\]"):
        xt.binary_cross_entropy(torch.tensor([0.5, 1.5]), torch.tensor([0.0, 1.0]))


# ---- linear_cross_entropy -----------------------------------------------------------------------


def _linear_case(n, h, v, dtype, bias, g, ignore=True):
    x = torch.randn(n, h, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
    w = (torch.randn(v, h, generator=g, dtype=torch.float64) / h**0.5).to(dtype)
    w.requires_grad_(True)
    b = (
        torch.randn(v, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)
        if bias
        else None
    )
    t = torch.randint(0, v, (n,), generator=g)
    if ignore:
        t[::3] = -100
    return x, w, b, t


def _reference_linear(x, w, t, b=None, softcap=None, **options):
    logits = F.linear(x, w, b)
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits, t, **options)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "bias, smoothing, softcap",
    [(False, 0.0, None), (True, 0.1, None), (True, 0.0, 5.0), (False, 0.1, 2.0)],
)
def test_linear_cross_entropy_matches_torch(bias, smoothing, softcap, reduction, dtype):
    g = _generator("linear", bias, smoothing, softcap, reduction, str(dtype))
    x, w, b, t = _linear_case(9, 16, 300, dtype, bias, g)
    options = dict(reduction=reduction, label_smoothing=smoothing)
    got = xt.linear_cross_entropy(x, w, t, linear_bias=b, softcap=softcap, **options)
    expected = _reference_linear(x, w, t, b, softcap, **options)
    if softcap is None:  # PyTorch's own fused head agrees with its reference
        assert_close(
            F.linear_cross_entropy(x, w, t, linear_bias=b, **options).detach(), expected.detach()
        )
    assert_close(got.detach(), expected.detach())
    leaves = (x, w) + ((b,) if bias else ())
    grad_output = _grad_output(expected, g)
    for a, c in zip(_grads(got, leaves, grad_output), _grads(expected, leaves, grad_output)):
        assert_close(a, c)


def test_linear_cross_entropy_module_and_the_paths_through_the_logits():
    g = _generator("linear module")
    torch.manual_seed(0)
    module = xt.LinearCrossEntropyLoss(16, 40, bias=True, dtype=torch.float64, label_smoothing=0.1)
    reference = torch.nn.LinearCrossEntropyLoss(
        16, 40, bias=True, dtype=torch.float64, label_smoothing=0.1
    )
    reference.load_state_dict(module.state_dict())
    x = torch.randn(6, 16, generator=g, dtype=torch.float64)
    t = torch.randint(0, 40, (6,), generator=g)
    got, expected = module(x, t), reference(x, t)
    assert_close(got.detach(), expected.detach())
    got.backward()
    expected.backward()
    assert_close(module.linear.weight.grad, reference.linear.weight.grad)
    assert_close(module.linear.bias.grad, reference.linear.bias.grad)
    # class weights, probability targets and K-dimensional heads go through the logits
    x, w, _, t = _linear_case(6, 8, 12, torch.float64, False, g)
    cw = torch.rand(12, generator=g, dtype=torch.float64) + 0.5
    p = torch.softmax(torch.randn(6, 12, generator=g, dtype=torch.float64), 1)
    wk = torch.randn(12, 3, 8, generator=g, dtype=torch.float64)
    tk = torch.randint(0, 12, (6, 3), generator=g)
    for args, options in [((x, w, t), dict(weight=cw)), ((x, w, p), {}), ((x, wk, tk), {})]:
        assert_close(
            xt.linear_cross_entropy(*args, **options), F.linear_cross_entropy(*args, **options)
        )


def test_linear_cross_entropy_keeps_no_logits_for_the_backward():
    """Saved for the backward: the gradients (mean) or the inputs (none), never N x V."""
    g = _generator("linear memory")
    x, w, b, t = _linear_case(64, 8, 2000, torch.float32, True, g)
    for reduction in ("mean", "none"):
        loss = xt.linear_cross_entropy(x, w, t, linear_bias=b, reduction=reduction)
        saved = [
            getattr(loss.grad_fn, name)
            for name in dir(loss.grad_fn)
            if name.startswith("_saved") and isinstance(getattr(loss.grad_fn, name), torch.Tensor)
        ]
        largest = max((s.numel() for s in saved), default=0)
        assert largest <= w.numel() < 64 * 2000, (reduction, largest)


# ---- gradcheck -------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_every_loss(reduction):
    g = _generator("gradcheck", reduction)
    d = torch.float64
    x = torch.randn(3, 4, 2, generator=g, dtype=d).log_softmax(1).requires_grad_(True)
    t = torch.randint(0, 4, (3, 2), generator=g)
    t[0, 0] = -100
    w = torch.rand(4, generator=g, dtype=d) + 0.5
    assert torch.autograd.gradcheck(
        lambda x: xt.nll_loss(x, t, weight=w, reduction=reduction), (x,)
    )
    p = torch.rand(3, 4, generator=g, dtype=d).mul(0.8).add(0.1).requires_grad_(True)
    y = torch.rand(3, 4, generator=g, dtype=d).requires_grad_(True)
    pw = torch.rand(4, generator=g, dtype=d) + 0.5
    assert torch.autograd.gradcheck(
        lambda p, y: xt.binary_cross_entropy(p, y, weight=w, reduction=reduction), (p, y)
    )
    assert torch.autograd.gradcheck(
        lambda p, y: xt.binary_cross_entropy_with_logits(
            p, y, weight=w, pos_weight=pw, reduction=reduction
        ),
        (p, y),
    )
    h, lw, b, lt = _linear_case(4, 3, 7, d, True, g)
    assert torch.autograd.gradcheck(
        lambda h, lw, b: xt.linear_cross_entropy(
            h, lw, lt, linear_bias=b, reduction=reduction, label_smoothing=0.1, softcap=3.0
        ),
        (h, lw, b),
    )


def test_no_double_backward_for_any_loss():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 2, 1, 0])
    y = torch.rand(4, 3, dtype=torch.float64)
    w = torch.randn(5, 3, dtype=torch.float64)
    for name, loss in [
        ("nll_loss", xt.nll_loss(x, t)),
        ("binary_cross_entropy_with_logits", xt.binary_cross_entropy_with_logits(x, y)),
        ("linear_cross_entropy", xt.linear_cross_entropy(x, w, t)),
    ]:
        with pytest.raises(RuntimeError, match=f"{name} is differentiable once only"):
            torch.autograd.grad(loss, x, create_graph=True)


# ---- half precision ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32_and_returned_in_its_dtype(dtype):
    g = _generator("half", str(dtype))
    x = (3 * torch.randn(16, 7, generator=g)).to(dtype).requires_grad_(True)
    t = torch.randint(0, 7, (16,), generator=g)
    x32 = x.detach().float().requires_grad_(True)
    for reduction in REDUCTIONS:
        got = xt.cross_entropy(x, t, reduction=reduction, label_smoothing=0.1)
        expected = F.cross_entropy(x32, t, reduction=reduction, label_smoothing=0.1)
        assert got.dtype == dtype
        assert_close(got.detach().float(), expected.detach(), dtype)
        grad_output = _grad_output(expected, g)
        got_grad = _grads(got, x, grad_output.to(dtype))[0]
        assert got_grad.dtype == dtype
        # the incoming gradient rounded to the half type, as the half-precision loss sees it
        expected_grad = _grads(expected, x32, grad_output.to(dtype).float())[0]
        assert_close(got_grad.float(), expected_grad, dtype)
    # the other losses, once each
    p = torch.sigmoid(x.detach().float())
    y = torch.rand(16, 7, generator=g)
    assert_close(
        xt.binary_cross_entropy(p.to(dtype), y.to(dtype)).float(),
        F.binary_cross_entropy(p.to(dtype).float(), y.to(dtype).float()),
        dtype,
    )
    assert_close(
        xt.binary_cross_entropy_with_logits(x.detach(), y.to(dtype)).float(),
        F.binary_cross_entropy_with_logits(x32.detach(), y.to(dtype).float()),
        dtype,
    )
    logp = torch.log_softmax(x32.detach(), 1)
    assert_close(
        xt.nll_loss(logp.to(dtype), t).float(), F.nll_loss(logp.to(dtype).float(), t), dtype
    )
    h, w, _, lt = _linear_case(16, 8, 50, torch.float32, False, g)
    h, w = h.detach().to(dtype).requires_grad_(True), w.detach().to(dtype).requires_grad_(True)
    got = xt.linear_cross_entropy(h, w, lt)
    h32, w32 = (a.detach().float().requires_grad_(True) for a in (h, w))
    expected = _reference_linear(h32, w32, lt)
    assert got.dtype == dtype
    assert_close(got.detach().float(), expected.detach(), dtype)
    for a, b in zip(_grads(got, (h, w), None), _grads(expected, (h32, w32), None)):
        assert a.dtype == dtype
        assert_close(a.float(), b, dtype)


def test_bfloat16_is_read_in_place_through_ml_dtypes(monkeypatch):
    pytest.importorskip("ml_dtypes")
    x = torch.randn(32, 9, dtype=torch.bfloat16, requires_grad=True)
    t = torch.randint(0, 9, (32,))
    seen = []
    original = xent.cross_entropy_with_grad

    def record(logits, target, **kwargs):
        seen.append(np.shares_memory(logits, x.detach().view(torch.int16).numpy()))
        return original(logits, target, **kwargs)

    monkeypatch.setattr(xent, "cross_entropy_with_grad", record)
    xt.cross_entropy(x, t).backward()
    assert seen == [True] and x.grad.dtype == torch.bfloat16


# ---- layouts -----------------------------------------------------------------------------------


def test_non_contiguous_inputs_match_torch():
    g = _generator("strided")
    base = torch.randn(8, 2, 6, generator=g, dtype=torch.float64)
    x = base[:, 0, :].t().requires_grad_(False)  # (6, 8) with strides (1, 12)
    y = torch.rand(16, 8, generator=g, dtype=torch.float64)[::2]
    for fn, ref, data, target in [
        (xt.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, x, y[:6]),
        (xt.nll_loss, F.nll_loss, x, torch.randint(0, 8, (6,), generator=g)),
    ]:
        results = []
        for f in (fn, ref):
            leaf = data.detach().requires_grad_(True)
            loss = f(leaf, target, reduction="sum")
            results.append((loss.detach(), _grads(loss, leaf, None)[0]))
        for a, b in zip(*results):
            assert_close(a, b)
    h = torch.randn(10, 2, 16, generator=g, dtype=torch.float64)[:, 1]  # rows stepped
    w = torch.randn(16, 30, generator=g, dtype=torch.float64).t()  # (30, 16) transposed
    t = torch.randint(0, 30, (10,), generator=g)
    assert_close(xt.linear_cross_entropy(h, w, t), _reference_linear(h, w, t))


# ---- torch.compile and torch.func ----------------------------------------------------------


def _every_loss(x, t, p, y, h, w):
    """One training objective calling each of xent.torch's losses."""
    return (
        xt.cross_entropy(x, t, label_smoothing=0.1)
        + xt.nll_loss(torch.log_softmax(x, 1), t)
        + xt.binary_cross_entropy(torch.sigmoid(p), y)
        + xt.binary_cross_entropy_with_logits(p, y, reduction="sum")
        + xt.linear_cross_entropy(h, w, t, softcap=4.0)
        + xt.linear_cross_entropy(h, w, t, reduction="none").sum()
    )


def _every_loss_inputs():
    g = _generator("compile")
    x = torch.randn(6, 5, generator=g, requires_grad=True)
    t = torch.randint(0, 5, (6,), generator=g)
    p = torch.randn(6, 3, generator=g, requires_grad=True)
    y = torch.rand(6, 3, generator=g)
    h = torch.randn(6, 4, generator=g, requires_grad=True)
    w = torch.randn(5, 4, generator=g, requires_grad=True)
    return x, t, p, y, h, w


def test_torch_compile_traces_every_loss_in_one_graph_without_warnings():
    torch._dynamo.reset()
    inputs = _every_loss_inputs()
    leaves = [a for a in inputs if a.requires_grad]
    explanation = torch._dynamo.explain(_every_loss)(*inputs)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1, explanation
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # aot_eager: Dynamo and AOT autograd (fake tensors, the backward graph) without
        # compiling C++, which would take minutes on the test machine.
        compiled = torch.compile(_every_loss, fullgraph=True, backend="aot_eager")
        loss = compiled(*inputs)
        got = torch.autograd.grad(loss, leaves)
    expected_loss = _every_loss(*inputs)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=1e-6)
    for a, b in zip(got, torch.autograd.grad(expected_loss, leaves)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_custom_ops_pass_pytorchs_opcheck():
    """torch.library.opcheck: schema, fake tensors, autograd registration, and AOT dispatch."""
    g = _generator("opcheck")
    x = torch.randn(4, 5, 2, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 5, (4, 2), generator=g)
    h = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    lt = torch.randint(0, 7, (6,), generator=g)
    y = torch.rand(4, 5, 2, generator=g, dtype=torch.float64)
    cases = [
        (torch.ops.xent.cross_entropy, (x, t, None, -100, "mean", 0.1, None, True)),
        (torch.ops.xent.cross_entropy, (x.detach(), t, None, -100, "none", 0.0, 1, False)),
        (torch.ops.xent.nll_loss, (x, t, None, -100, "sum", None)),
        (torch.ops.xent.binary_cross_entropy, (x, y, None, None, True, "mean", None, True)),
        (torch.ops.xent.linear_cross_entropy, (h, w, lt, None, -100, "mean", 0.0, 2.0, None, True)),
    ]
    tests = ("test_schema", "test_faketensor", "test_aot_dispatch_static")
    for op, args in cases:
        torch.library.opcheck(op, args, test_utils=tests)


def test_vmap_maps_each_loss_over_a_batch_of_problems():
    g = _generator("vmap")
    xs = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    ts = torch.randint(0, 5, (3, 4), generator=g)
    ys = torch.rand(3, 4, 5, generator=g, dtype=torch.float64)
    hs = torch.randn(3, 4, 6, generator=g, dtype=torch.float64)
    w = torch.randn(5, 6, generator=g, dtype=torch.float64)
    vmap = torch.func.vmap
    for ours, theirs, args, in_dims in [
        (xt.cross_entropy, F.cross_entropy, (xs, ts), (0, 0)),
        (xt.nll_loss, F.nll_loss, (xs, ts), (0, 0)),
        (xt.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits, (xs, ys), (0, 0)),
        (xt.linear_cross_entropy, F.linear_cross_entropy, (hs, w, ts), (0, None, 0)),
    ]:
        got = vmap(ours, in_dims=in_dims)(*args)
        expected = torch.stack(
            [theirs(*[a[i] if d == 0 else a for a, d in zip(args, in_dims)]) for i in range(3)]
        )
        assert_close(got, expected)


def test_torch_func_grad_raises_a_clear_error():
    x, t = torch.randn(4, 5), torch.randint(0, 5, (4,))
    with pytest.raises(RuntimeError, match="does not support torch.func.grad"):
        torch.func.grad(lambda x: xt.cross_entropy(x, t))(x)


# ---- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: xt.nll_loss(torch.zeros(3, 4, device="meta"), torch.zeros(3, dtype=torch.long)),
            ValueError,
            "input is on device meta",
        ),
        (
            lambda: xt.binary_cross_entropy(torch.zeros(3), torch.zeros(3, device="meta")),
            ValueError,
            "target is on device meta",
        ),
        (
            lambda: xt.linear_cross_entropy(
                torch.zeros(2, 3),
                torch.zeros(4, 3, device="meta"),
                torch.zeros(2, dtype=torch.long),
            ),
            ValueError,
            "linear_weight is on device meta",
        ),
        (
            lambda: xt.binary_cross_entropy_with_logits(
                torch.zeros(3), torch.zeros(3), pos_weight=torch.ones(3, device="meta")
            ),
            ValueError,
            "pos_weight is on device meta",
        ),
        (
            lambda: xt.binary_cross_entropy(torch.zeros(3, dtype=torch.int32), torch.zeros(3)),
            TypeError,
            "input must be float16, bfloat16, float32 or float64, got torch.int32",
        ),
        (
            lambda: xt.binary_cross_entropy(torch.zeros(3), torch.zeros(4)),
            ValueError,
            r"target has shape \(4,\), expected the input's shape \(3,\)",
        ),
        (
            lambda: xt.binary_cross_entropy(torch.zeros(3), torch.zeros(3), reduction="avg"),
            ValueError,
            "reduction must be one of",
        ),
        (
            lambda: xt.binary_cross_entropy_with_logits(
                torch.zeros(3), torch.zeros(3), weight=torch.ones(3, requires_grad=True)
            ),
            ValueError,
            "not differentiable with respect to weight",
        ),
        (
            lambda: xt.nll_loss(
                torch.zeros(3, 4),
                torch.zeros(3, dtype=torch.long),
                weight=torch.ones(4, requires_grad=True),
            ),
            ValueError,
            "not differentiable with respect to weight",
        ),
        (
            lambda: xt.nll_loss(torch.zeros(3, 4), torch.tensor([0, 4, 1])),
            IndexError,
            r"target\[1\] = 4 is out of range",
        ),
        (
            lambda: xt.linear_cross_entropy(
                torch.zeros(2, 3), torch.zeros(4, 5), torch.zeros(2, dtype=torch.long)
            ),
            ValueError,
            r"linear_weight has shape \(4, 5\) and input \(2, 3\)",
        ),
        (
            lambda: xt.linear_cross_entropy(
                torch.zeros(2, 3),
                torch.zeros(4, 3, dtype=torch.float64),
                torch.zeros(2, dtype=torch.long),
            ),
            TypeError,
            "linear_weight has dtype torch.float64, input torch.float32",
        ),
        (
            lambda: xt.linear_cross_entropy(
                torch.zeros(2, 3), torch.zeros(4, 3), torch.tensor([0, 7])
            ),
            IndexError,
            r"target\[1\] = 7",
        ),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_modules_register_their_tensors_as_buffers():
    w, pw = torch.rand(3), torch.rand(3) + 1
    assert torch.equal(xt.BCEWithLogitsLoss(weight=w, pos_weight=pw).state_dict()["pos_weight"], pw)
    assert torch.equal(xt.BCELoss(weight=w).state_dict()["weight"], w)
    assert "reduction='sum'" in repr(xt.NLLLoss(weight=w, reduction="sum"))
    assert set(xt.__all__) == {
        name
        for name in dir(xt)
        if name[0] != "_"
        and (
            name.endswith("Loss")
            or name.endswith("entropy")
            or name == "nll_loss"
            or name.endswith("logits")
        )
    }


def test_bfloat16_without_ml_dtypes_is_widened_and_gives_the_same_values(monkeypatch):
    g = _generator("bf16 widened")
    x = torch.randn(12, 6, generator=g).to(torch.bfloat16).requires_grad_(True)
    t = torch.randint(0, 6, (12,), generator=g)
    in_place = xt.cross_entropy(x, t, reduction="none")
    (grad_in_place,) = torch.autograd.grad(in_place.sum(), x)
    monkeypatch.setattr(xt._common, "_ml_dtypes", None)  # as without ml_dtypes
    widened = xt.cross_entropy(x, t, reduction="none")
    (grad_widened,) = torch.autograd.grad(widened.sum(), x)
    assert widened.dtype == grad_widened.dtype == torch.bfloat16
    assert torch.equal(widened, in_place) and torch.equal(grad_widened, grad_in_place)


def test_binary_target_gradient_has_the_targets_dtype():
    x = torch.randn(5, dtype=torch.float32, requires_grad=True)
    y = torch.rand(5, dtype=torch.float64, requires_grad=True)
    xt.binary_cross_entropy_with_logits(x, y).backward()
    x_ref, y_ref = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
    F.binary_cross_entropy_with_logits(x_ref, y_ref.float()).backward()
    assert y.grad.dtype == torch.float64 and x.grad.dtype == torch.float32
    torch.testing.assert_close(y.grad, y_ref.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-7)


def test_bfloat16_weights_and_probability_targets_are_taken():
    """xent's numpy API takes bfloat16 logits only: the adapter widens the other operands."""
    g = _generator("bf16 operands")
    b = torch.bfloat16
    x = torch.randn(6, 5, generator=g).to(b).requires_grad_(True)
    p = torch.softmax(torch.randn(6, 5, generator=g), 1).to(b)
    w = (0.5 + torch.rand(5, generator=g)).to(b)
    t = torch.randint(0, 5, (6,), generator=g)
    x32 = x.detach().float().requires_grad_(True)
    for ours, theirs in [
        (
            lambda x: xt.cross_entropy(x, p, weight=w),
            lambda x: F.cross_entropy(x, p.float(), weight=w.float()),
        ),
        (
            lambda x: xt.cross_entropy(x, t, weight=w),
            lambda x: F.cross_entropy(x, t, weight=w.float()),
        ),
        (lambda x: xt.nll_loss(x, t, weight=w), lambda x: F.nll_loss(x, t, weight=w.float())),
    ]:
        got, expected = ours(x), theirs(x32)
        assert got.dtype == b
        assert_close(got.detach().float(), expected.detach(), b)
        got_grad, expected_grad = _grads(got, x, None)[0], _grads(expected, x32, None)[0]
        assert got_grad.dtype == b
        assert_close(got_grad.float(), expected_grad, b)


def test_eager_calls_skip_the_operators_dispatch_and_give_the_operators_bits():
    g = _generator("eager path")
    x = torch.randn(8, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 5, (8, 3), generator=g)
    eager = xt.cross_entropy(x, t, reduction="none", label_smoothing=0.1)
    assert type(eager.grad_fn).__name__ == "_EagerOpBackward"
    through_op, _ = torch.ops.xent.cross_entropy(x, t, None, -100, "none", 0.1, None, True)
    assert "xent_cross_entropy" in type(through_op.grad_fn).__name__
    grad_output = torch.rand(8, 3, generator=g, dtype=torch.float64)
    assert torch.equal(eager, through_op)
    assert torch.equal(_grads(eager, x, grad_output)[0], _grads(through_op, x, grad_output)[0])
