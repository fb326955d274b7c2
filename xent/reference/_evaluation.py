"""Reference dataset evaluation: the twin of :func:`xent.evaluate`.
"""

import numpy as np

from ._common import class_weights, gather
from ._multiclass import log_softmax
from .info import entropy_from_logits

__all__ = [
    "target_rank", "evaluate",
]


def target_rank(logits, target):
    """Rank of each row's target logit: how many logits are not ``<=`` it.

    Parameters
    ----------
    logits : array_like, shape (N, C)
    target : array_like of int, shape (N,)
        Class indices in ``[0, C)``.

    Returns
    -------
    numpy.ndarray of int64, shape (N,)
        ``#{j : not (x[j] <= x[t])}``: the logits strictly greater than the
        target's, plus the NaN ones. Ties do not count (a target tied for the
        largest logit has rank 0, so top-1 counts it correct); a NaN target
        has rank C (never correct for any k <= C).

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 0.0]])
    >>> reference.target_rank(logits, np.array([0, 0, 1]))  # a tie with the largest is rank 0
    array([0, 2, 0])
    """
    x = np.asarray(logits, dtype=np.float64)
    t = np.asarray(target).astype(np.int64)
    x_t = gather(x, t)
    with np.errstate(invalid="ignore"):
        return np.sum(~(x <= x_t[:, None]), axis=-1).astype(np.int64)


def evaluate(logits, target, *, topk=(1, 5), weight=None, ignore_index=-100):
    """Loss, perplexity, accuracies and predictive entropy of a classifier.

    Parameters
    ----------
    logits : array_like, shape (..., C)
        Unnormalised scores, classes on the last axis.
    target : array_like of int, shape (...)
        Class indices; rows equal to ``ignore_index`` are left out of every
        metric (they are only counted in ``ignored``).
    topk : sequence of int, optional
        The k of each top-k accuracy.
    weight : array_like, shape (C,), optional
        Class weights: they weight the loss (and so the perplexity) as in
        :func:`cross_entropy`; accuracies and entropy are plain means over
        the counted rows, unweighted.

    Returns
    -------
    dict
        ``loss``: ``cross_entropy(..., reduction="mean")`` (weighted mean);
        ``perplexity``: ``exp(loss)``; ``accuracy``: fraction of counted rows
        whose :func:`target_rank` is 0; ``top{k}_accuracy``: rank < k;
        ``entropy``: mean of :func:`entropy_from_logits` (nats) over counted
        rows; ``count``: rows counted; ``ignored``: rows equal to
        ``ignore_index``. With no row counted the means are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0], [0.0, 0.0, 0.0]])
    >>> report = reference.evaluate(logits, np.array([0, 2, 0, -100]), topk=(1, 2))
    >>> round(report["loss"], 4), round(report["accuracy"], 4), report["top2_accuracy"]
    (0.485, 0.6667, 1.0)
    >>> report["count"], report["ignored"]
    (3, 1)
    """
    x = np.asarray(logits, dtype=np.float64)
    n_classes = x.shape[-1]
    x = x.reshape(-1, n_classes)
    t = np.asarray(target).astype(np.int64).reshape(-1)
    kept = t != ignore_index
    x, t = x[kept], t[kept]
    if np.any((t < 0) | (t >= n_classes)):
        raise IndexError("target class index out of range")
    w = class_weights(weight, n_classes)[t]
    count = int(t.size)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        row_loss = w * gather(-log_softmax(x), t)
        loss = np.sum(row_loss) / np.sum(w)
        rank = target_rank(x, t)
        report = {"loss": float(loss), "perplexity": float(np.exp(loss)),
                  "accuracy": float(np.mean(rank < 1)) if count else float("nan")}
        for k in topk:
            report[f"top{int(k)}_accuracy"] = (float(np.mean(rank < k)) if count
                                                else float("nan"))
        entropy = entropy_from_logits(x) if count else np.zeros(0)
        report["entropy"] = float(np.mean(entropy)) if count else float("nan")
    report["count"] = count
    report["ignored"] = int(np.sum(~kept))
    return report
