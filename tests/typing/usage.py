"""The README's calls, typed: ``mypy --strict tests/typing/usage.py`` checks xent's stubs as a
user's code meets them, and ``assert_type`` pins what each call returns.

Also runs as a script (tests/test_typing.py does so), small arrays, so that every call here is
one xent accepts at run time too.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

import xent
import xent.info
import xent.linear
import xent.divergence
import xent.reference

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type

Scalar = np.floating[Any]
Array = NDArray[np.floating[Any]]


def losses(rng: np.random.Generator) -> None:
    logits = rng.standard_normal((64, 10), dtype=np.float32)
    labels = rng.integers(0, 10, 64)

    assert_type(xent.cross_entropy(logits, labels), Scalar)
    assert_type(xent.cross_entropy(logits, labels, reduction="none"), Array)
    assert_type(xent.cross_entropy(logits, labels, reduction="sum"), Scalar)
    assert_type(xent.cross_entropy(logits, labels, weight=np.ones(10), label_smoothing=0.1), Scalar)
    assert_type(xent.cross_entropy(logits, xent.softmax(logits)), Scalar)
    assert_type(xent.nll_loss(xent.log_softmax(logits), labels), Scalar)
    assert_type(xent.nll_loss(xent.log_softmax(logits), labels, reduction="none"), Array)
    reduction: Literal["mean", "sum", "none"] = "none" if rng.random() < 2 else "mean"
    assert_type(xent.cross_entropy(logits, labels, reduction=reduction), Scalar | Array)

    assert_type(xent.logsumexp(logits), Scalar | Array)
    assert_type(xent.logsumexp(logits, keepdims=True), Array)
    assert_type(xent.softmax(logits, axis=-1), Array)
    scratch = logits.copy()
    assert_type(xent.log_softmax(scratch, out=scratch), Array)

    loss, grad = xent.cross_entropy_with_grad(logits, labels)
    assert_type(loss, Scalar)
    assert_type(grad, Array)
    scratch = logits.copy()
    rows, grad = xent.cross_entropy_with_grad(scratch, labels, reduction="none", out=scratch)
    assert_type(rows, Array)

    scores = rng.standard_normal(256) * 5
    probs = 1 / (1 + np.exp(-scores))
    targets = rng.integers(0, 2, 256).astype(np.float64)
    assert_type(xent.binary_cross_entropy(probs, targets), Scalar)
    assert_type(xent.binary_cross_entropy(probs, targets, reduction="none"), Array)
    assert_type(
        xent.binary_cross_entropy_with_logits(scores, targets, pos_weight=np.float64(2.0)),
        Scalar,
    )
    loss, grad = xent.binary_cross_entropy_with_logits_with_grad(scores, targets)
    assert_type(loss, Scalar)
    loss, grad = xent.binary_cross_entropy_with_grad(probs, targets, grad_output=2.0)
    assert_type(grad, Array)

    assert_type(xent.cross_entropy(logits, labels, num_threads=1), Scalar)
    assert_type(xent.cross_entropy(logits, labels, check=True), Scalar)
    assert_type(xent.get_num_threads(), int)
    assert_type(xent.show_config(), None)
    try:
        xent.cross_entropy(logits, labels, check=True)
    except xent.CheckError as error:
        assert_type(error, xent.CheckError)


def information(rng: np.random.Generator) -> None:
    logits = rng.standard_normal((64, 10))
    labels = rng.integers(0, 10, 64)
    p = np.array([0.5, 0.25, 0.25])
    q = np.array([0.4, 0.4, 0.2])
    assert_type(xent.info.entropy(p, base=2), Scalar | Array)
    assert_type(xent.info.cross_entropy(p, q), Scalar | Array)
    assert_type(xent.info.kl_divergence(p, q, normalize=True), Scalar | Array)
    assert_type(xent.info.self_information(p), Scalar | Array)
    assert_type(xent.info.binary_entropy(p), Scalar | Array)
    assert_type(xent.info.entropy_from_logits(logits), Scalar | Array)
    assert_type(xent.info.perplexity(logits, labels), Scalar)
    bits: float = float(xent.info.entropy(p, base=2))
    assert bits == 1.5


def linear(rng: np.random.Generator) -> None:
    hidden = rng.standard_normal((32, 16), dtype=np.float32)
    weight = rng.standard_normal((100, 16), dtype=np.float32) / 4
    b = np.zeros(100, dtype=np.float32)
    target = rng.integers(0, 100, 32)

    assert_type(xent.linear_cross_entropy(hidden, weight, target), Scalar)
    assert_type(xent.linear_cross_entropy(hidden, weight, target, reduction="none"), Array)
    loss, grad_hidden, grad_weight = xent.linear_cross_entropy_with_grad(hidden, weight, target)
    result = xent.linear_cross_entropy_with_grad(
        hidden, weight, target, bias=b, label_smoothing=0.1, softcap=30.0
    )
    assert_type(result, xent.linear.LinearCrossEntropyGrads)
    loss, gh, gw, gb = result
    assert_type(result.loss, Scalar | Array)
    assert_type(result.grad_hidden, Array)
    assert_type(result.grad_weight, Array)
    assert_type(result.grad_bias, Array | None)


def evaluation(rng: np.random.Generator, folder: Path) -> None:
    logits = rng.standard_normal((512, 10), dtype=np.float32)
    labels = rng.integers(0, 10, 512)
    np.save(folder / "logits.npy", logits)
    np.save(folder / "labels.npy", labels)
    report = xent.evaluate(str(folder / "logits.npy"), folder / "labels.npy", topk=(1, 5))
    assert_type(report, xent.EvaluationReport)
    assert_type(report.loss, float)
    assert_type(report.count, int)
    assert_type(report.top(5), float)
    assert_type(report.topk_accuracy, tuple[tuple[int, float], ...])
    assert_type(report.as_dict(), dict[str, float | int])

    w = np.linspace(0.5, 1.5, 10)
    xent.evaluate(np.load(folder / "logits.npy", mmap_mode="r"), labels, weight=w)
    batches = ((logits[i : i + 128], labels[i : i + 128]) for i in range(0, 512, 128))
    assert_type(xent.evaluate(batches), xent.EvaluationReport)


def reference(rng: np.random.Generator) -> None:
    logits = rng.standard_normal((8, 5))
    labels = rng.integers(0, 5, 8)
    assert_type(xent.reference.cross_entropy(logits, labels), np.float64)
    assert_type(xent.reference.cross_entropy(logits, labels, reduction="none"), NDArray[np.float64])
    loss, grad = xent.reference.cross_entropy_with_grad(logits, labels)
    assert_type(loss, np.float64)
    assert_type(xent.reference.softmax(logits), NDArray[np.float64])
    assert_type(xent.reference.info.perplexity(logits, labels), np.float64)


def distillation_and_comparison(rng: np.random.Generator) -> None:
    student = rng.standard_normal((16, 6), dtype=np.float32)
    teacher = rng.standard_normal((16, 6), dtype=np.float32)
    labels = rng.integers(0, 6, 16)

    assert_type(xent.kl_divergence_logits(student, teacher), Scalar)
    assert_type(xent.divergence.js_divergence_logits(student, teacher, reduction="none"), Array)
    kl, grad = xent.kl_divergence_logits_with_grad(student, teacher, temperature=2.0)
    assert_type(kl, Scalar)
    assert_type(grad, Array)
    assert_type(xent.tv_distance_logits(student, teacher, reduction="sum"), Scalar)

    report = xent.compare(teacher, student, labels)
    assert_type(report, xent.ComparisonReport)
    assert_type(report.kl, float)
    assert_type(report.ref_loss, float | None)
    assert_type(report.as_dict(), dict[str, Any])

    grad, hess = xent.cross_entropy_grad_hess(student, labels, sample_weight=np.ones(16))
    assert_type(hess, Array)
    targets = (labels % 2).astype(np.float32)
    assert_type(
        xent.binary_cross_entropy_with_logits_grad_hess(student[:, 0], targets), tuple[Array, Array]
    )

    loss, lse = xent.cross_entropy(student, labels, z_loss=1e-4, return_lse=True)
    assert_type(loss, Scalar | Array)
    assert_type(lse, Array)
    assert_type(xent.cross_entropy(student, labels, sample_weight=np.ones(16)), Scalar)
    assert_type(
        xent.logsumexp(student, axis=None, return_sign=True), tuple[Scalar | Array, Scalar | Array]
    )
    assert_type(xent.logsumexp(student, b=np.ones(6), keepdims=True), Array)

    hidden = rng.standard_normal((16, 4), dtype=np.float32)
    weight = rng.standard_normal((6, 4), dtype=np.float32)
    loss, stats = xent.linear.linear_cross_entropy(hidden, weight, labels, return_stats=True)
    assert_type(stats, xent.linear.LinearRowStats)
    assert_type(stats.argmax, NDArray[np.intp])
    evaluation = xent.evaluate(student, labels, calibration="width", num_bytes=64)
    assert_type(evaluation.ece, float)
    assert_type(evaluation.bits_per_byte, float | None)


def main() -> None:
    rng = np.random.default_rng(0)
    losses(rng)
    information(rng)
    linear(rng)
    with tempfile.TemporaryDirectory() as folder:
        evaluation(rng, Path(folder))
    reference(rng)
    distillation_and_comparison(rng)


if __name__ == "__main__":
    main()
