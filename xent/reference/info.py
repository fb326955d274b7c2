"""Reference information quantities: the twin of :mod:`xent.info`.

Names mirror :mod:`xent.info`: here ``cross_entropy`` is the cross-entropy of two
distributions (``cross_entropy_dist`` at the top of :mod:`xent.reference`).
"""

import numpy as np

from ._common import result
from ._multiclass import cross_entropy as loss_cross_entropy
from ._multiclass import log_softmax

__all__ = [
    "self_information",
    "entropy",
    "cross_entropy",
    "kl_divergence",
    "binary_entropy",
    "entropy_from_logits",
    "perplexity",
    "cross_entropy_dist",
]


def _in_base(values, base):
    """Convert nats to units of `base` (``None``: keep nats)."""
    if base is None:
        return values
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return values / np.log(np.float64(base))


def _normalized(p, axis):
    """``p / sum(p, axis)``; a zero sum gives NaN (no warning).

    A positive entry stays positive where the division underflows (it becomes the smallest
    subnormal): the exact quotient is positive, so the support of the distribution, and with it
    whether ``p log q`` meets ``log 0``, is the caller's, not the rounding's.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scaled = p / np.sum(p, axis=axis, keepdims=True)
    tiny = np.finfo(np.float64).smallest_subnormal
    return np.where((scaled == 0) & (p > 0), tiny, scaled)


def _xlogy(x, y):
    """``x * log(y)``; 0 where ``x == 0`` and `y` is not NaN (SciPy's xlogy)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where((x == 0) & ~np.isnan(y), 0.0, x * np.log(y))


def _rel_entr(x, y):
    """SciPy's ``rel_entr``: ``x log(x / y)``, 0, +inf or NaN elementwise.

    For ``x, y > 0`` the logarithm is evaluated as SciPy (>= 1.15) does:
    ``log1p((x - y) / y)`` when ``x / y`` is in (0.5, 2) (accurate when the
    two are close), ``log(x / y)`` when the ratio is a normal finite number,
    and ``log(x) - log(y)`` when it underflows or overflows.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        ratio = x / y
        log_ratio = np.where(
            (ratio > 0.5) & (ratio < 2.0),
            np.log1p((x - y) / y),
            np.where(
                (ratio > np.finfo(np.float64).tiny) & (ratio < np.inf),
                np.log(ratio),
                np.log(x) - np.log(y),
            ),
        )
        value = x * log_ratio
    out = np.where((x > 0) & (y > 0), value, np.where((x == 0) & (y >= 0), 0.0, np.inf))
    return np.where(np.isnan(x) | np.isnan(y), np.nan, out)


def self_information(p, base=None):
    """Self-information (surprisal) ``-log(p)``, elementwise.

    Parameters
    ----------
    p : array_like
        Probabilities (not validated).
    base : float, optional
        Logarithm base (positive, not 1); default ``None`` gives nats.

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``-log(p) / log(base)``, same shape as `p`; ``p == 0`` gives +inf,
        negative `p` gives NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> np.round(reference.self_information(np.array([0.5, 0.25, 0.0]), base=2), 4)
    array([ 1.,  2., inf])
    """
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return result(_in_base(-np.log(p), base))


def entropy(p, axis=-1, base=None, normalize=False):
    """Shannon entropy of distributions along an axis.

    Parameters
    ----------
    p : array_like
        Probabilities; each slice along `axis` is one distribution (not
        validated).
    axis : int, optional
        Distribution axis (default: last).
    base : float, optional
        Logarithm base (positive, not 1); default ``None`` gives nats.
    normalize : bool, optional
        If True, divide `p` by its sum along `axis` first (as
        ``scipy.stats.entropy`` always does); a zero sum gives NaN.

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``-sum(p * log(p), axis)`` with ``0 log 0 = 0``, i.e. the sum of
        ``scipy.special.entr(p)``, divided by ``log(base)``.  A zero-length
        axis gives 0.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> np.round(reference.entropy(np.array([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]]), base=2), 4)
    array([1. , 1.5])
    >>> round(float(reference.entropy(np.array([2.0, 1.0, 1.0]), base=2, normalize=True)), 4)
    1.5
    """
    p = np.asarray(p, dtype=np.float64)
    if normalize:
        p = _normalized(p, axis)
    with np.errstate(invalid="ignore", over="ignore"):
        h = -np.sum(_xlogy(p, p), axis=axis)
    return result(_in_base(h, base))


def cross_entropy_dist(p, q, axis=-1, base=None, normalize=False):
    """Cross-entropy ``H(p, q)`` between distributions along an axis.

    Parameters
    ----------
    p, q : array_like
        Probabilities (broadcast against each other; not validated).
    axis : int, optional
        Distribution axis (default: last).
    base : float, optional
        Logarithm base (positive, not 1); default ``None`` gives nats.
    normalize : bool, optional
        If True, divide `p` and `q` by their sums along `axis` first.

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``-sum(xlogy(p, q), axis)`` divided by ``log(base)``: a term with
        ``p == 0`` is 0 (unless ``q`` is NaN), ``p > 0`` with ``q == 0``
        gives +inf.

    See Also
    --------
    cross_entropy : the loss on logits.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> p, q = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])
    >>> round(float(reference.cross_entropy_dist(p, q, base=2)), 4)
    2.0
    >>> float(reference.cross_entropy_dist(q, p))
    inf
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if normalize:
        p = _normalized(p, axis)
        q = _normalized(q, axis)
    with np.errstate(invalid="ignore", over="ignore"):
        h = -np.sum(_xlogy(p, q), axis=axis)
    return result(_in_base(h, base))


def kl_divergence(p, q, axis=-1, base=None, normalize=False):
    """Kullback-Leibler divergence ``KL(p || q)`` along an axis.

    Parameters
    ----------
    p, q : array_like
        Probabilities (broadcast against each other; not validated).
    axis : int, optional
        Distribution axis (default: last).
    base : float, optional
        Logarithm base (positive, not 1); default ``None`` gives nats.
    normalize : bool, optional
        If True, divide `p` and `q` by their sums along `axis` first (as
        ``scipy.stats.entropy(p, q)`` always does).

    Returns
    -------
    numpy.ndarray or numpy.float64
        The sum along `axis` of ``scipy.special.rel_entr(p, q)``, divided by
        ``log(base)``.

    Notes
    -----
    Each term is ``p * log(p / q)`` where ``p > 0`` and ``q > 0``, 0 where
    ``p == 0`` and ``q >= 0``, NaN where either is NaN and +inf otherwise
    (``p > 0`` with ``q == 0``, or a negative entry).  As in SciPy (>= 1.15)
    the log is ``log1p((p - q) / q)`` when ``p / q`` is in (0.5, 2), so
    nearly equal distributions keep their tiny divergence accurately, and
    ``log(p) - log(q)`` when ``p / q`` underflows or overflows.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> p, q = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])
    >>> round(float(reference.kl_divergence(p, q, base=2)), 4)
    1.0
    >>> round(float(reference.kl_divergence(p, p)), 4)
    0.0
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if normalize:
        p = _normalized(p, axis)
        q = _normalized(q, axis)
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.sum(_rel_entr(p, q), axis=axis)
    return result(_in_base(d, base))


def binary_entropy(p, base=None):
    """Entropy of Bernoulli(p), elementwise.

    Parameters
    ----------
    p : array_like
        Probabilities of the positive outcome (not validated).
    base : float, optional
        Logarithm base (positive, not 1); default ``None`` gives nats.

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``-p log(p) - (1 - p) log1p(-p)`` with ``0 log 0 = 0`` (so 0 at
        ``p = 0`` and ``p = 1``), divided by ``log(base)``.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> np.round(reference.binary_entropy(np.array([0.0, 0.1, 0.5]), base=2), 4)
    array([0.   , 0.469, 1.   ])
    """
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = np.where(p == 0, 0.0, p * np.log(p))
        negative = np.where(p == 1, 0.0, (1.0 - p) * np.log1p(-p))
    return result(_in_base(-positive - negative, base))


def entropy_from_logits(logits, axis=-1, base=None):
    """Entropy of ``softmax(logits)`` along an axis.

    Parameters
    ----------
    logits : array_like
        Unnormalised log-probabilities.
    axis : int, optional
        Class axis (default: last).
    base : float, optional
        Logarithm base (positive, not 1); default ``None`` gives nats.

    Returns
    -------
    numpy.ndarray or numpy.float64
        ``sum(softmax(x) * -log_softmax(x), axis)`` divided by ``log(base)``,
        a term being 0 where the softmax is exactly 0 (so -inf logits
        contribute nothing).  Rows that :func:`log_softmax` makes NaN (all
        -inf, or containing +inf) give NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> logits = np.array([[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, -np.inf]])
    >>> np.round(reference.entropy_from_logits(logits, base=2), 4)
    array([2.    , 0.9602])
    """
    x = np.asarray(logits, dtype=np.float64)
    ls = log_softmax(x, axis=axis)
    with np.errstate(invalid="ignore", over="ignore"):
        probs = np.exp(ls)
        terms = np.where(probs == 0, 0.0, probs * -ls)
        h = np.sum(terms, axis=axis)
    return result(_in_base(h, base))


def perplexity(logits, target, *, weight=None, ignore_index=-100, label_smoothing=0.0):
    """Perplexity, ``exp`` of the mean cross-entropy.

    Parameters
    ----------
    logits, target, weight, ignore_index, label_smoothing
        As for :func:`xent.reference.cross_entropy` (classes on the last axis).

    Returns
    -------
    numpy.float64
        ``exp(xent.reference.cross_entropy(logits, target, ..., reduction="mean"))``; NaN
        when the mean is NaN (e.g. every row ignored).

    Examples
    --------
    >>> import numpy as np
    >>> from xent import reference
    >>> logits = np.zeros((3, 10))
    >>> round(float(reference.perplexity(logits, np.array([1, 4, 7]))), 4)
    10.0
    >>> logits[0, 1] = 5.0
    >>> round(float(reference.perplexity(logits, np.array([1, 4, -100]))), 4)
    3.2567
    """
    loss = loss_cross_entropy(
        logits,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction="mean",
        label_smoothing=label_smoothing,
    )
    with np.errstate(over="ignore", invalid="ignore"):
        return np.float64(np.exp(loss))


#: The name xent.info gives it.
cross_entropy = cross_entropy_dist
