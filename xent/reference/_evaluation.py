"""Reference dataset evaluation: the twin of :func:`xent.evaluate`."""

import numpy as np

from ._common import class_weights, gather
from ._multiclass import log_softmax
from .info import entropy_from_logits

__all__ = [
    "target_rank",
    "evaluate",
    "calibration_errors",
    "compare",
]

#: The normal quantile of a two-sided 95% interval.
Z95 = 1.959963984540054


def calibration_errors(confidence, correct, *, bins=15, kind="mass"):
    """Expected and maximum calibration error of top-1 predictions, exactly.

    Parameters
    ----------
    confidence : array_like, shape (N,)
        Top-1 probability of each row.
    correct : array_like of bool, shape (N,)
        Whether the top-1 prediction is right.
    bins : int
    kind : {"mass", "width"}
        ``"mass"``: sort the rows by confidence (stable) and split them into ``bins`` runs
        whose sizes differ by at most one (``numpy.array_split``); ``"width"``: bin b holds
        ``[b/bins, (b+1)/bins)``, the last one including 1.

    Returns
    -------
    (ece, mce, table)
        ``ece = sum_b n_b |acc_b - conf_b| / N``, ``mce = max_b |acc_b - conf_b|`` over
        non-empty bins; table rows (count, mean confidence, accuracy) per bin.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> confidence = np.array([0.9, 0.8, 0.6, 0.55])
    >>> correct = np.array([True, True, False, True])
    >>> ece, mce, table = reference.calibration_errors(confidence, correct, bins=2)
    >>> round(ece, 4), round(mce, 4)
    (0.1125, 0.15)
    >>> np.round(table, 4)
    array([[2.   , 0.575, 0.5  ],
           [2.   , 0.85 , 1.   ]])

    ``kind="width"`` bins by value instead: here every row falls in ``[0.5, 1]``:

    >>> ece, mce, table = reference.calibration_errors(confidence, correct, bins=2, kind="width")
    >>> round(ece, 4), table[:, 0]
    (0.0375, array([0., 4.]))
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    n = conf.size
    if kind == "mass":
        order = np.argsort(conf, kind="stable")
        groups = np.array_split(order, bins)
    else:
        index = np.minimum(np.floor(np.clip(conf, 0, 1) * bins).astype(np.int64), bins - 1)
        groups = [np.flatnonzero(index == b) for b in range(bins)]
    table = np.array(
        [
            [g.size, conf[g].mean() if g.size else np.nan, ok[g].mean() if g.size else np.nan]
            for g in groups
        ]
    )
    kept = table[:, 0] > 0
    gap = np.abs(table[kept, 2] - table[kept, 1])
    if n == 0:
        return float("nan"), float("nan"), table
    return float(np.sum(table[kept, 0] * gap) / n), float(gap.max()), table


def _stderr(values, weights=None):
    """Standard error of a (weighted) mean sum(w v) / sum(w), by linearisation."""
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    if n < 2:
        return float("nan")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    r = np.sum(w * v) / np.sum(w)
    return float(np.sqrt(np.sum((w * (v - r)) ** 2) / np.sum(w) ** 2 * n / (n - 1)))


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


def evaluate(
    logits,
    target,
    *,
    topk=(1, 5),
    weight=None,
    ignore_index=-100,
    calibration="mass",
    calibration_bins=15,
    num_bytes=None,
    documents=None,
):
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
        ``brier``: mean of ``sum_k (p_k - onehot_k)^2``; ``confidence``: mean top-1
        probability; ``ece``, ``mce``: :func:`calibration_errors` of the top-1 predictions;
        ``<metric>_stderr`` for loss, perplexity (delta method), accuracy, top-k, entropy
        and brier; with ``num_bytes`` (a total or per-row counts) ``bits_per_byte`` and
        ``byte_perplexity``; with ``documents`` (per-row ids) ``document_loglikelihood``.

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
    if num_bytes is not None and np.ndim(num_bytes):
        num_bytes = int(np.asarray(num_bytes).reshape(-1)[kept].sum())
    if documents is not None:
        documents = np.asarray(documents).astype(np.int64).reshape(-1)[kept]
    if np.any((t < 0) | (t >= n_classes)):
        raise IndexError("target class index out of range")
    w = class_weights(weight, n_classes)[t]
    count = int(t.size)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        row_loss = w * gather(-log_softmax(x), t)
        loss = np.sum(row_loss) / np.sum(w)
        rank = target_rank(x, t)
        report = {
            "loss": float(loss),
            "perplexity": float(np.exp(loss)),
            "accuracy": float(np.mean(rank < 1)) if count else float("nan"),
        }
        for k in topk:
            report[f"top{int(k)}_accuracy"] = float(np.mean(rank < k)) if count else float("nan")
        entropy = entropy_from_logits(x) if count else np.zeros(0)
        report["entropy"] = float(np.mean(entropy)) if count else float("nan")
    report["count"] = count
    report["ignored"] = int(np.sum(~kept))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        p = np.exp(log_softmax(x)) if count else np.zeros((0, n_classes))
        onehot = np.zeros_like(p)
        onehot[np.arange(count), t] = 1
        brier = np.sum((p - onehot) ** 2, axis=-1)
        confidence = p.max(axis=-1) if count else np.zeros(0)
        nan = float("nan")
        report["brier"] = float(np.mean(brier)) if count else nan
        report["confidence"] = float(np.mean(confidence)) if count else nan
        if np.isnan(confidence).any():
            report["ece"] = report["mce"] = nan
        else:
            report["ece"], report["mce"], _ = calibration_errors(
                confidence, rank < 1, bins=calibration_bins, kind=calibration
            )
        loss_se = _stderr(row_loss / w, w)
        report["loss_stderr"] = loss_se
        report["perplexity_stderr"] = report["perplexity"] * loss_se
        report["accuracy_stderr"] = _stderr(rank < 1)
        for k in topk:
            report[f"top{int(k)}_accuracy_stderr"] = _stderr(rank < k)
        report["entropy_stderr"] = _stderr(entropy)
        report["brier_stderr"] = _stderr(brier)
        if num_bytes is not None:
            bpb = np.sum(row_loss) / (np.log(2.0) * num_bytes)
            report["bits_per_byte"] = float(bpb)
            report["byte_perplexity"] = float(2.0**bpb)
        if documents is not None:
            ll = np.zeros(int(documents.max()) + 1 if documents.size else 0)
            np.add.at(ll, documents, -row_loss)
            report["document_loglikelihood"] = ll
    return report


def compare(ref, cand, labels=None, *, ignore_index=-100):
    """Two models' logits on the same rows, compared: the twin of :func:`xent.compare`.

    Parameters
    ----------
    ref, cand : array_like, shape (..., C)
        The reference model's and the candidate's logits.
    labels : array_like of int, shape (...), optional
        Targets; rows equal to ``ignore_index`` are left out.

    Returns
    -------
    dict
        ``kl`` (mean over rows of ``KL(softmax(ref) || softmax(cand))``), ``kl_stderr``,
        ``kl_p50``, ``kl_p90``, ``kl_p99``, ``kl_p99.9``, ``kl_max``, ``js`` (mean
        Jensen-Shannon divergence), ``top1_agreement`` (first argmax equal) and its stderr,
        ``count``, ``ignored``; with labels ``ref_loss``, ``cand_loss``, their perplexities,
        ``perplexity_ratio`` (``exp`` of the mean per-row NLL difference) and the target
        probability change ``target_prob_shift_{mean,rms,stderr,p1,p10,p50,p90,p99}``.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> ref = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.0, 0.0]])
    >>> cand = np.array([[1.5, 1.0, -1.0], [0.0, 0.5, 2.5], [0.5, 1.5, 0.0]])
    >>> numbers = reference.compare(ref, cand)
    >>> {name: round(numbers[name], 4) for name in ("count", "kl", "js", "top1_agreement")}
    {'count': 3, 'kl': 0.0713, 'js': 0.0181, 'top1_agreement': 0.6667}

    A label equal to ``ignore_index`` leaves its row out of every number:

    >>> numbers = reference.compare(ref, cand, np.array([0, 2, -100]))
    >>> numbers["count"], numbers["ignored"], round(numbers["perplexity_ratio"], 4)
    (2, 1, 1.2031)
    """
    from scipy.special import rel_entr

    xr = np.asarray(ref, dtype=np.float64)
    xc = np.asarray(cand, dtype=np.float64)
    c = xr.shape[-1]
    xr, xc = xr.reshape(-1, c), xc.reshape(-1, c)
    kept = np.ones(len(xr), dtype=bool)
    if labels is not None:
        t = np.asarray(labels).astype(np.int64).reshape(-1)
        kept = t != ignore_index
        t = t[kept]
    xr, xc = xr[kept], xc[kept]
    n = len(xr)
    if n == 0:  # nothing compared: every mean and percentile is NaN
        xr = xc = np.full((1, c), np.nan)
        t = np.zeros(1, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        lp, lq = log_softmax(xr), log_softmax(xc)
        p, q = np.exp(lp), np.exp(lq)
        kl = np.sum(rel_entr(p, q), axis=-1)
        m = (p + q) / 2
        js = 0.5 * (np.sum(rel_entr(p, m), axis=-1) + np.sum(rel_entr(q, m), axis=-1))

        def argmax(x):
            clean = np.where(np.isnan(x), -np.inf, x)
            a = np.argmax(clean, axis=-1)
            return np.where(np.max(clean, axis=-1) > -np.inf, a, -1)

        ar, ac = argmax(xr), argmax(xc)
        agree = (ar == ac) & (ar >= 0)
        if n == 0:
            agree = np.array([np.nan])
        out = {
            "count": n,
            "ignored": int(np.sum(~kept)),
            "kl": float(np.mean(kl)),
            "kl_stderr": _stderr(kl),
        }
        for qq, v in zip((50, 90, 99, 99.9), np.percentile(kl, (50, 90, 99, 99.9))):
            out[f"kl_p{qq:g}"] = float(v)
        out["kl_max"] = float(np.max(kl))
        out.update(
            js=float(np.mean(js)),
            top1_agreement=float(np.mean(agree)),
            top1_agreement_stderr=_stderr(agree),
        )
        if labels is not None:
            nll_r, nll_c = -gather(lp, t), -gather(lq, t)
            d = nll_c - nll_r
            dp = np.exp(-nll_c) - np.exp(-nll_r)
            ratio = float(np.exp(np.mean(d)))
            out.update(
                ref_loss=float(np.mean(nll_r)),
                cand_loss=float(np.mean(nll_c)),
                ref_perplexity=float(np.exp(np.mean(nll_r))),
                cand_perplexity=float(np.exp(np.mean(nll_c))),
                perplexity_ratio=ratio,
                perplexity_ratio_low=float(np.exp(np.mean(d) - Z95 * _stderr(d))),
                perplexity_ratio_high=float(np.exp(np.mean(d) + Z95 * _stderr(d))),
                ref_loss_stderr=_stderr(nll_r),
                cand_loss_stderr=_stderr(nll_c),
                perplexity_ratio_stderr=ratio * _stderr(d),
            )
            out["ref_perplexity_stderr"] = out["ref_perplexity"] * out["ref_loss_stderr"]
            out["cand_perplexity_stderr"] = out["cand_perplexity"] * out["cand_loss_stderr"]
            out.update(
                target_prob_shift_mean=float(np.mean(dp)),
                target_prob_shift_rms=float(np.sqrt(np.mean(dp**2))),
                target_prob_shift_stderr=_stderr(dp),
            )
            for qq, v in zip((1, 10, 50, 90, 99), np.percentile(dp, (1, 10, 50, 90, 99))):
                out[f"target_prob_shift_p{qq:g}"] = float(v)
    return out
