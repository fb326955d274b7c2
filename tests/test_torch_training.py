"""Training loops with xent.torch's losses follow PyTorch's loss curves step by step.

Each model is trained twice from the same initial parameters on the same generated data,
once with PyTorch's loss and once with xent's, and the two loss curves are compared at every
step. In float64 both sides round the same double-precision sums differently only in the
last bits, so the curves agree to ~1e-15 after 200 steps; in float32 the per-step rounding
differences (~1e-7) are carried by the optimizer into the parameters and grow, and the bound
is looser. Run this file as a script to print the largest differences.

Skipped when torch is not installed.
"""

import copy

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import xent.torch as xt  # noqa: E402

STEPS = 200
# The largest |loss_xent - loss_torch| over the curve, by dtype: double rounding plus what
# 200 optimizer steps make of it.
# Measured (python tests/test_torch_training.py): 2.7e-15 in float64, 9.5e-7 in float32.
BOUND = {torch.float64: 1e-12, torch.float32: 1e-5}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """PyTorch on one thread: its intra-op threads wait for CPU on a shared 2-core machine
    (25 ms a backward instead of 0.1 ms), and one thread is the deterministic baseline."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(model, loss_fn, batches, lr):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    curve = []
    for inputs, target in batches:
        optimizer.zero_grad()
        loss = loss_fn(model, inputs, target)
        loss.backward()
        optimizer.step()
        curve.append(loss.item())
    return torch.tensor(curve, dtype=torch.float64)


def _compare(model, ours, theirs, batches, lr=1e-2):
    """Train copies of ``model`` with both losses; return (curve, largest difference)."""
    curve_ours = _train(copy.deepcopy(model), ours, batches, lr)
    curve_theirs = _train(copy.deepcopy(model), theirs, batches, lr)
    return curve_theirs, float((curve_ours - curve_theirs).abs().max())


def mlp_classifier(dtype):
    """A 2-layer MLP on 10 classes of generated data; cross-entropy with label smoothing."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    centres = 3 * torch.randn(10, 32, generator=g, dtype=dtype)
    batches = []
    for _ in range(STEPS):
        labels = torch.randint(0, 10, (64,), generator=g)
        batches.append((centres[labels] + torch.randn(64, 32, generator=g, dtype=dtype), labels))
    model = torch.nn.Sequential(
        torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 10)
    ).to(dtype)

    def ours(m, x, t):
        return xt.cross_entropy(m(x), t, label_smoothing=0.1)

    def theirs(m, x, t):
        return F.cross_entropy(m(x), t, label_smoothing=0.1)

    return _compare(model, ours, theirs, batches)


def mlp_multilabel(dtype):
    """A 2-layer MLP with 6 independent binary outputs; BCE with logits and pos_weight."""
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    projection = torch.randn(16, 6, generator=g, dtype=dtype)
    pos_weight = torch.linspace(0.5, 2.0, 6, dtype=dtype)
    batches = []
    for _ in range(STEPS):
        x = torch.randn(64, 16, generator=g, dtype=dtype)
        batches.append((x, (x @ projection > 0.5).to(dtype)))
    model = torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 6)
    ).to(dtype)

    def ours(m, x, y):
        return xt.binary_cross_entropy_with_logits(m(x), y, pos_weight=pos_weight)

    def theirs(m, x, y):
        return F.binary_cross_entropy_with_logits(m(x), y, pos_weight=pos_weight)

    return _compare(model, ours, theirs, batches)


class TinyLM(torch.nn.Module):
    """Embedding, one hidden layer, and an output head whose weight the loss reads."""

    def __init__(self, vocab, width):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, width)
        self.hidden = torch.nn.Linear(2 * width, width)
        self.head = torch.nn.Linear(width, vocab, bias=False)

    def forward(self, tokens):
        # predict token i + 2 from tokens i and i + 1
        both = torch.cat([self.embed(tokens[:, :-2]), self.embed(tokens[:, 1:-1])], dim=-1)
        return torch.tanh(self.hidden(both)).flatten(0, 1)


def lm_head(dtype):
    """A tiny language model with a 300-word vocabulary on a generated sequence rule;
    linear_cross_entropy (with ignored positions) against F.linear_cross_entropy."""
    g = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    vocab = 300
    batches = []
    for _ in range(STEPS):
        start = torch.randint(0, vocab, (8, 2), generator=g)
        tokens = [start[:, 0], start[:, 1]]
        for _ in range(14):  # a deterministic rule the model can learn
            tokens.append((tokens[-1] + tokens[-2] % 3) % vocab)
        tokens = torch.stack(tokens, 1)
        target = tokens[:, 2:].flatten().clone()
        target[::7] = -100  # some positions ignored
        batches.append((tokens, target))
    model = TinyLM(vocab, 24).to(dtype)

    def ours(m, tokens, t):
        return xt.linear_cross_entropy(m(tokens), m.head.weight, t, label_smoothing=0.05)

    def theirs(m, tokens, t):
        return F.linear_cross_entropy(m(tokens), m.head.weight, t, label_smoothing=0.05)

    return _compare(model, ours, theirs, batches)


MODELS = {"mlp classifier": mlp_classifier, "mlp multilabel": mlp_multilabel, "lm head": lm_head}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(MODELS))
def test_training_with_xent_follows_pytorchs_loss_curve(name, dtype):
    curve, largest = MODELS[name](dtype)
    assert largest <= BOUND[dtype], (name, dtype, largest)
    # and the training did learn: the last steps' loss well below the first step's
    assert curve[-20:].mean() < 0.5 * curve[0], curve


if __name__ == "__main__":
    torch.set_num_threads(1)
    for dtype in BOUND:
        for name, run in MODELS.items():
            curve, largest = run(dtype)
            print(
                f"{name:15s} {str(dtype):14s} loss {curve[0]:.4f} -> {curve[-1]:.4f}  "
                f"largest |xent - torch| over {STEPS} steps: {largest:.3g}"
            )


def test_the_training_step_benchmark_runs_and_its_methods_agree(capsys):
    """benchmarks/train_step.py at a tiny shape: every method prints a time and one loss.

    Run in this process (its main() with arguments): a new process would spend seconds
    importing PyTorch again.
    """
    import importlib.util
    import pathlib

    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"
    spec = importlib.util.spec_from_file_location("train_step", script)
    train_step = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_step)
    threads = torch.get_num_threads()
    try:
        assert (
            train_step.main(
                [
                    "--shape",
                    "64x16x300",
                    "--repeat",
                    "1",
                    "--no-compile",
                    "--dtype",
                    "float64",
                    "--threads",
                    "1",
                ]
            )
            == 0
        )
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    methods = {"xent", "torch eager", "torch chunked"}
    rows = {
        line[:15].strip(): line.split() for line in out.splitlines() if line[:15].strip() in methods
    }
    assert set(rows) == methods, out
    losses = [float(fields[-1]) for fields in rows.values()]
    assert max(losses) - min(losses) < 1e-12, out
