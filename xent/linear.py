"""Fused linear cross-entropy: ``cross_entropy(hidden @ weight.T + bias, target)`` without the
logits.

A language model's loss over a vocabulary of 32 000 to 256 000 classes needs N x V logits
(8192 tokens x 128 256 classes = 4 GiB of float32) that nobody keeps. These functions compute
them tile by tile (xent/_linear.pyx): one single-threaded BLAS gemm per tile of 1024 rows x
512 classes into a buffer of the thread's own, folded into each row's online log-sum-exp while it
is in cache. Beyond the inputs, the forward holds O(N) numbers and one or two tiles per
thread; the gradient (three gemms, as PyTorch's forward and backward) one chunk of rows x V
logits, at most 128 MiB.
"""

import collections
import numbers

import numpy as np

from . import _blas, _kernels, _linear
from ._threads import get_num_threads, shares_cpus
from ._multiclass import check_z_loss
from ._validation import (
    as_rows,
    bad_label_message,
    bool_option,
    check_ignore_index,
    check_label_smoothing,
    check_reduction,
    class_targets,
    compute_dtype,
    fit_dtype,
    float_array,
    grad_output_factors,
    input_array,
    reduce_loss,
    safe_divide,
)

__all__ = [
    "LinearCrossEntropyGrads",
    "LinearRowStats",
    "blas_info",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "set_blas",
]

# BLAS takes 32-bit sizes and leading dimensions.
_BLAS_INT_MAX = 2**31 - 1


def blas_info():
    """Which BLAS the linear head's gemms run on, and why it was chosen.

    At the first call of :func:`linear_cross_entropy` (or of this function) xent compares the
    kernels each OpenBLAS in the process picked for this CPU (scipy's, which
    ``scipy.linalg.cython_blas`` calls, and numpy's) with the CPU's own vector extensions, and
    takes the widest, scipy's on a tie. An OpenBLAS may pick less than the CPU has (scipy's
    0.3.30 took an AMD EPYC with AVX-512 for a Haswell: its gemm ran at half the speed of its
    AVX-512 kernels). When every one of them has narrower kernels than an AVX-512 CPU and
    ``OPENBLAS_CORETYPE`` is not set, xent loads the ``scipy-openblas32`` wheel's library (a
    dependency on x86-64 Linux) for itself, with its AVX-512 kernels. ``XENT_BLAS`` in the
    environment, or :func:`set_blas`, names the library instead.

    Returns
    -------
    dict
        ``library`` ("scipy", "numpy" or "scipy-openblas32"), its ``path``, OpenBLAS
        ``version`` and ``kernels`` (OpenBLAS's core name: "SkylakeX", "Haswell", ...; these
        three None where scipy's BLAS is not an OpenBLAS), ``cpu`` (the widest vector extension
        the CPU gives them: "AVX-512", "AVX2", "older" or "unknown"), ``asked`` (what
        :func:`set_blas` or ``XENT_BLAS`` named: "auto" unless changed), ``reason`` and a
        one-line ``description``.

    Examples
    --------
    >>> import xent.linear
    >>> info = xent.linear.blas_info()
    >>> info["library"] in ("scipy", "numpy", "scipy-openblas32")
    True
    >>> info["asked"]
    'auto'
    """
    return _blas.info()


def set_blas(name="auto"):
    """Choose the BLAS the linear head's gemms run on.

    Parameters
    ----------
    name : {"auto", "scipy", "numpy", "scipy-openblas32"}
        "auto" (the default) takes the library with the widest kernels for this CPU (see
        :func:`blas_info`); "scipy" the one ``scipy.linalg.cython_blas`` calls; "numpy" the
        OpenBLAS numpy's wheel brings; "scipy-openblas32" the library of the wheel of that
        name, loaded with the kernels its own detection picks (``OPENBLAS_CORETYPE``, if set,
        chooses them). ``XENT_BLAS`` in the environment names it for the first call instead.

    Returns
    -------
    dict
        :func:`blas_info` of the library now in use.

    Raises
    ------
    ValueError
        If ``name`` is not one of these, or that library is not in this process.
    RuntimeError
        If a linear cross-entropy call is running (in another thread).

    Notes
    -----
    Each library rounds its sums in its own order: the losses and gradients of two libraries
    agree to a few units in the last place of the dtype, not bit for bit (with one library,
    every bit is the same on any thread count).

    Examples
    --------
    >>> import xent.linear
    >>> xent.linear.set_blas("scipy")["library"]
    'scipy'
    >>> xent.linear.set_blas()["asked"]  # back to the automatic choice
    'auto'
    """
    return _blas.use(name)


def _softcap(value, compute):
    """The checked softcap (0.0 for none), a normal number of the compute dtype.

    The tile kernels compute ``softcap * tanh(z / softcap)`` in the compute dtype: a cap beyond
    its range becomes inf (inf * tanh(0) is NaN: every loss NaN), one below its smallest
    normal loses precision and at 0 divides by zero.
    """
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"softcap must be None or a positive float, got {type(value).__name__} {value!r}"
        )
    value = float(value)
    if not (value > 0 and np.isfinite(value)):
        raise ValueError(f"softcap must be a positive finite float, got {value!r}")
    info = np.finfo(compute)
    if not float(info.tiny) <= value <= float(info.max):  # Python floats: no numpy cast
        raise ValueError(
            f"softcap={value!r} is outside the range of {info.dtype.name} the "
            f"inputs are computed in ([{info.tiny:.6g}, {info.max:.6g}]); give "
            f"float64 inputs, or softcap=None for no cap"
        )
    return value


def _blas_rows(a, name):
    """``a`` (2-d, last axis contiguous) as rows BLAS can read in place, or a copy of it."""
    step = a.strides[0]
    ok = (
        a.shape[1] >= 1
        and step > 0
        and step % a.itemsize == 0
        and a.shape[1] <= step // a.itemsize <= _BLAS_INT_MAX
    )
    if not ok or (a.shape[0] == 1 and step // a.itemsize < a.shape[1]):
        a = np.ascontiguousarray(a)
    if a.shape[1] > _BLAS_INT_MAX:
        raise ValueError(f"{name} rows of {a.shape[1]} entries exceed BLAS's 32-bit sizes")
    return a


class LinearCrossEntropyGrads(tuple):
    """What :func:`linear_cross_entropy_with_grad` returns: a tuple, with names.

    ``(loss, grad_hidden, grad_weight)``, and ``grad_bias`` fourth when a bias was given, so
    that ``loss, gh, gw = ...`` (no bias) and ``loss, gh, gw, gb = ...`` (bias) unpack as they
    always have. Code written for either case reads the fields by name instead:
    ``grad_bias`` is None when there is no bias.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> hidden = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])
    >>> weight = np.array([[1.0, 1.0], [0.0, -1.0], [2.0, 0.5]])
    >>> target = np.array([2, 1, 0])
    >>> result = xent.linear_cross_entropy_with_grad(hidden, weight, target)
    >>> loss, grad_hidden, grad_weight = result  # three without a bias
    >>> result.grad_bias is None
    True
    >>> result = xent.linear_cross_entropy_with_grad(hidden, weight, target, bias=np.zeros(3))
    >>> len(result), np.round(result.grad_bias, 4)  # four with one
    (4, array([ 0.0294, -0.1167,  0.0874]))
    """

    __slots__ = ()

    def __new__(cls, loss, grad_hidden, grad_weight, grad_bias=None):
        tail = () if grad_bias is None else (grad_bias,)
        return super().__new__(cls, (loss, grad_hidden, grad_weight, *tail))

    def __getnewargs__(self):  # pickle and copy rebuild it through __new__
        return tuple(self)

    def __repr__(self):
        fields = ", ".join(
            f"{name}={value!r}"
            for name, value in zip(("loss", "grad_hidden", "grad_weight", "grad_bias"), self)
        )
        return f"{type(self).__name__}({fields})"

    loss = property(lambda self: self[0], doc="The loss, as linear_cross_entropy returns it.")
    grad_hidden = property(lambda self: self[1], doc="d loss / d hidden, hidden's shape.")
    grad_weight = property(lambda self: self[2], doc="d loss / d weight, shape (V, H).")
    grad_bias = property(
        lambda self: self[3] if len(self) > 3 else None,
        doc="d loss / d bias, shape (V,); None when no bias was given.",
    )


class _LinearInputs:
    """The checked arguments of a linear cross-entropy call."""

    def __init__(
        self,
        hidden,
        weight,
        target,
        bias,
        ignore_index,
        reduction,
        label_smoothing,
        softcap,
        num_threads,
    ):
        h = float_array(hidden, "hidden")
        w = float_array(weight, "weight")
        if w.ndim != 2:
            raise ValueError(
                f"weight must be 2-d (vocabulary, hidden), as a model's output "
                f"layer stores it, got shape {w.shape}"
            )
        vocab, width = w.shape
        if h.shape[-1] != width:
            raise ValueError(
                f"hidden has shape {h.shape} and weight {w.shape}: the last axis "
                f"of hidden must equal weight's second axis ({width})"
            )
        if vocab == 0:
            raise ValueError(f"weight has shape {w.shape}: the vocabulary (first axis) is empty")
        # Computed in the wider of the two compute dtypes, returned in the inputs' dtype when
        # they share one (float16 and bfloat16 are computed in float32).
        self.compute = compute = np.result_type(compute_dtype(h.dtype), compute_dtype(w.dtype))
        self.dtype = h.dtype if h.dtype == w.dtype else compute
        self.batch, self.vocab, self.width = h.shape[:-1], vocab, width
        self.hidden_shape, self.weight_shape = h.shape, w.shape
        self.reduction = check_reduction(reduction)
        self.ignore_index = check_ignore_index(ignore_index)
        self.smoothing = check_label_smoothing(label_smoothing)
        self.softcap = _softcap(softcap, compute)
        self.threads = get_num_threads(num_threads)
        t = input_array(target, "target")
        self.target = t
        # a private copy is checked and indexed with: another thread writing the caller's
        # labels during the call cannot send the kernels outside the weight's rows
        self.labels = np.array(class_targets(t, self.batch, (*self.batch, vocab)), copy=True)
        bad = (self.labels != self.ignore_index) & ((self.labels < 0) | (self.labels >= vocab))
        if bad.any():
            raise IndexError(bad_label_message(t, int(np.argmax(bad)), vocab, self.ignore_index))
        self.valid = self.labels != self.ignore_index
        if bias is None:
            self.bias = None
        else:
            b = float_array(bias, "bias")
            if b.shape != (vocab,):
                raise ValueError(
                    f"bias has shape {b.shape}, expected ({vocab},): one per row of weight"
                )
            self.bias = np.ascontiguousarray(fit_dtype(b, compute, "bias"))
        if width == 0:  # no features: every logit is the bias (or 0); BLAS wants k >= 1
            h_rows = np.zeros((int(np.prod(self.batch, dtype=np.int64)), 1), dtype=compute)
            w_rows = np.zeros((vocab, 1), dtype=compute)
        else:
            h_rows, w_rows = as_rows(h, compute), as_rows(w, compute)
        self.hidden = _blas_rows(h_rows, "hidden")
        self.weight = _blas_rows(w_rows, "weight")
        self.n_rows = self.hidden.shape[0]

    def row_stats(self, extra=None):
        """Per row (shift, sum-exp, target logit, sum of logits) and log(sum-exp), from one
        tiled pass (and, into extra unless None, what return_stats needs: see
        _linear.forward)."""
        stats = np.empty((self.n_rows, 4), dtype=np.float64)
        log_sum = np.empty(self.n_rows, dtype=np.float64)
        if self.n_rows:
            _blas.chosen()  # the library of the gemms: chosen at the first call
            with _blas.single_threaded():
                _linear.forward(
                    self.hidden,
                    self.weight,
                    self.bias,
                    self.labels,
                    self.softcap,
                    self.smoothing != 0,
                    stats,
                    self.threads,
                    row_extra=extra,
                    log_sum=log_sum,
                )
        return stats, log_sum

    def row_losses(self, stats, log_sum=None):
        """Per-row losses in float64 (0 for ignored rows), as PyTorch's cross_entropy.

        log_sum: each row's log(sum-exp) as the kernels give it (ties and rest apart, so a
        confident row's loss log1p(rest) keeps its digits); else log of stats' sum-exp."""
        shift, sum_exp, target_logit, logit_sum = stats.T
        eps = self.smoothing
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if log_sum is None:
                log_sum = np.log(sum_exp)
            loss = np.zeros(self.n_rows)
            if eps != 1:
                # -log_softmax at the target, as (shift - z_t) + log_sum: no rounding of lse
                loss = loss + (1 - eps) * ((shift - target_logit) + log_sum)
            if eps != 0:
                loss = loss + eps * ((shift + log_sum) - logit_sum / self.vocab)
        return np.where(self.valid, loss, 0.0)

    def reduce(self, row_loss):
        # The exact sum of the rows' float64 losses, rounded once: the mean and the sum are
        # correctly rounded, whatever the order or the partition of the rows.
        total = _kernels.exact_sum(np.ascontiguousarray(row_loss, dtype=np.float64).reshape(-1))
        return reduce_loss(
            total,
            int(np.count_nonzero(self.valid)),
            row_loss,
            self.reduction,
            self.batch,
            self.dtype,
        )


_COMMON_PARAMETERS = """hidden : array_like, shape (..., H)
        Hidden states (float16, bfloat16, float32, float64), one per token; leading axes are batch axes.
    weight : array_like, shape (V, H)
        The output layer's weight as a model stores it (PyTorch's ``nn.Linear(H, V).weight``):
        logits = ``hidden @ weight.T``.
    target : array_like of int, shape (...)
        Class indices in ``[0, V)``, any integer dtype; ``ignore_index`` marks rows to skip.
    bias : array_like, shape (V,), optional
        Added to the logits.
    ignore_index : int, optional
        Rows with this target count 0, and are left out of the mean (default -100).
    reduction : {"mean", "sum", "none"}, optional
        ``"none"``: per-row losses of shape ``(...)``; ``"mean"`` divides the sum by the
        number of non-ignored rows (NaN if there is none).
    label_smoothing : float, optional
        In [0, 1], as PyTorch's ``F.cross_entropy``.
    softcap : float, optional
        Cap the logits as Gemma does: ``softcap * tanh(logits / softcap)``.
    num_threads : int or None, optional
        Threads to use; see :func:`xent.get_num_threads`."""

_Z_LOSS_PARAMETERS = """z_loss : float, optional
        Adds ``z_loss * lse**2`` per row not ignored (PaLM's z-loss; ``lse`` the row's
        log-sum-exp, of the capped logits with ``softcap``), with its gradient: the softmax's
        share of each row's gradient becomes ``1 + 2 z_loss lse``. Default 0.
    return_lse : bool, optional
        Also return the per-row log-sum-exp (shape ``(...)``), free: the pass computes it."""

_MEMORY_AND_THREADS = """The logits are never stored whole: the forward computes them in tiles of 1024 rows x
    512 classes, one single-threaded BLAS gemm (the OpenBLAS with the widest kernels for the
    CPU: see :func:`xent.linear.blas_info`) per tile into a buffer each thread owns (2 MiB in
    float32), folded into each row's log-sum-exp state while the tile is in cache.
    The state is the row kernels' (the largest terms counted apart from the rest), so a
    confident row's loss ``log1p(rest)`` keeps its digits down to float64's smallest numbers.
    Threads take pieces of work: a block of 1024 rows x a stretch of the vocabulary (with
    fewer than 32 blocks the vocabulary is cut into stretches, so few rows still use every
    thread), merged in a fixed order. Beyond the inputs, a call allocates about 90 bytes per
    row, 72 more per row and extra stretch, and a tile (2 MiB in float32) per thread.

    The tiling depends only on the shapes, every sum runs over the tiles in a fixed order and
    the mean and sum over rows are the exact sum of the rows' float64 losses rounded once, so
    the result has the same bits on any number of threads. While the call runs, the
    process's OpenBLAS is held to one thread (restored afterwards), so BLAS never starts
    threads of its own inside xent's: no oversubscription. Ctrl-C (KeyboardInterrupt) stops a
    long call between two gemms, within a fraction of a second, and leaves nothing behind.
    Mixed float32/float64 inputs are computed in float64; float16 and bfloat16 in float32."""


@shares_cpus
def linear_cross_entropy(
    hidden,
    weight,
    target,
    *,
    bias=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    softcap=None,
    z_loss=0.0,
    return_lse=False,
    return_stats=False,
    num_threads=None,
):
    z_loss, return_lse = check_z_loss(z_loss), bool_option(return_lse, "return_lse")
    return_stats = bool_option(return_stats, "return_stats")
    if not (z_loss or return_lse or return_stats):
        return _forward(
            hidden,
            weight,
            target,
            bias,
            ignore_index,
            reduction,
            label_smoothing,
            softcap,
            num_threads,
        )
    problem = _LinearInputs(
        hidden, weight, target, bias, ignore_index, reduction, label_smoothing, softcap, num_threads
    )
    extra = np.zeros((problem.n_rows, 2), dtype=np.float64) if return_stats else None
    stats, log_sum = problem.row_stats(extra)
    lse = _row_lse(stats, log_sum)
    loss = problem.reduce(_add_z_loss(problem, problem.row_losses(stats, log_sum), lse, z_loss))
    result = (loss,)
    if return_lse:
        result += (_in_dtype(problem, lse),)
    if return_stats:
        result += (_row_statistics(problem, stats, extra, log_sum),)
    # z_loss alone returns the loss, as documented (and as the reference does): not a 1-tuple
    return result if len(result) > 1 else loss


linear_cross_entropy.__doc__ = f"""Cross-entropy of the logits ``hidden @ weight.T + bias``, without forming them.

    Equal to ``F.cross_entropy(hidden @ weight.T + bias, target, ...)`` in PyTorch (with
    ``softcap``: of ``softcap * tanh(logits / softcap)``), computed in the inputs' precision
    with float64 accumulators.

    Parameters
    ----------
    {_COMMON_PARAMETERS}
    {_Z_LOSS_PARAMETERS}
    return_stats : bool, optional
        Also return a :class:`LinearRowStats` ``(lse, entropy, argmax)``: per row the
        log-sum-exp, the entropy of the softmax (nats) and the index of the largest logit
        (the first if tied), folded into the same tiled pass: the logits are still never
        stored.

    Returns
    -------
    scalar or numpy.ndarray
        The loss in the inputs' dtype: a scalar, or per-row losses for ``reduction="none"``.
        With ``return_lse`` or ``return_stats``, a tuple ``(loss[, lse][, stats])`` in that
        order.

    Raises
    ------
    IndexError
        A target outside ``[0, V)`` that is not ``ignore_index`` (the first is named).

    Notes
    -----
    {_MEMORY_AND_THREADS}

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> hidden = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])  # 3 tokens, H = 2
    >>> weight = np.array([[1.0, 1.0], [0.0, -1.0], [2.0, 0.5]])  # V = 3 classes
    >>> target = np.array([2, 1, 0])
    >>> round(float(xent.linear_cross_entropy(hidden, weight, target)), 4)
    0.4461
    >>> round(float(xent.cross_entropy(hidden @ weight.T, target)), 4)  # the same, with logits
    0.4461

    Per-row losses, a bias, and Gemma's logit soft-capping:

    >>> bias = np.array([0.0, 0.5, -0.5])
    >>> np.round(xent.linear_cross_entropy(hidden, weight, target, bias=bias,
    ...                                     reduction="none"), 4)
    array([0.6803, 0.3064, 0.2258])
    >>> np.round(xent.linear_cross_entropy(hidden, weight, target, softcap=1.0,
    ...                                     reduction="none"), 4)
    array([0.7876, 0.7107, 0.6741])
    """


def _forward(
    hidden, weight, target, bias, ignore_index, reduction, label_smoothing, softcap, num_threads
):
    problem = _LinearInputs(
        hidden, weight, target, bias, ignore_index, reduction, label_smoothing, softcap, num_threads
    )
    return problem.reduce(problem.row_losses(*problem.row_stats()))


@shares_cpus
def linear_cross_entropy_with_grad(
    hidden,
    weight,
    target,
    *,
    bias=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    softcap=None,
    z_loss=0.0,
    return_lse=False,
    grad_output=None,
    num_threads=None,
):
    z_loss, return_lse = check_z_loss(z_loss), bool_option(return_lse, "return_lse")
    problem = _LinearInputs(
        hidden, weight, target, bias, ignore_index, reduction, label_smoothing, softcap, num_threads
    )
    factor, row_factors = grad_output_factors(grad_output, problem.reduction, problem.batch)
    if problem.reduction == "mean":
        factor = safe_divide(factor, np.count_nonzero(problem.valid))
    with np.errstate(over="ignore", invalid="ignore"):
        scale = np.full(problem.n_rows, factor) if row_factors is None else factor * row_factors
    row_scale = np.ascontiguousarray(np.where(problem.valid, scale, 0.0), dtype=np.float64)
    compute, width = problem.compute, problem.hidden.shape[1]
    keep, spread = 1.0 - problem.smoothing, problem.smoothing / problem.vocab
    grad_hidden = np.empty((problem.n_rows, width), dtype=compute)
    grad_weight = np.zeros(problem.weight.shape, dtype=compute)
    grad_bias = None if problem.bias is None else np.zeros(problem.vocab, dtype=np.float64)
    stats = np.empty((problem.n_rows, 4), dtype=np.float64)
    log_sum = np.empty(problem.n_rows, dtype=np.float64)
    if problem.n_rows:
        _blas.chosen()
        with _blas.single_threaded():
            _linear.gradient(
                problem.hidden,
                problem.weight,
                problem.bias,
                problem.labels,
                problem.softcap,
                problem.smoothing != 0,
                stats,
                log_sum,
                row_scale,
                keep,
                spread,
                grad_hidden,
                grad_weight,
                grad_bias,
                problem.threads,
                z_loss=z_loss,
            )
    row_loss = problem.row_losses(stats, log_sum)
    if z_loss:
        row_loss = _add_z_loss(problem, row_loss, _row_lse(stats, log_sum), z_loss)
    loss = problem.reduce(row_loss)
    dtype = problem.dtype
    with np.errstate(over="ignore"):
        grads = LinearCrossEntropyGrads(
            loss,
            grad_hidden[:, : problem.width].astype(dtype, copy=False).reshape(problem.hidden_shape),
            grad_weight[:, : problem.width].astype(dtype, copy=False),
            None if grad_bias is None else grad_bias.astype(dtype),
        )
    if return_lse:
        return grads, _in_dtype(problem, _row_lse(stats, log_sum))
    return grads


linear_cross_entropy_with_grad.__doc__ = f"""Linear cross-entropy and its gradients, recomputing the logits instead of storing them.

    Parameters
    ----------
    {_COMMON_PARAMETERS}
    {_Z_LOSS_PARAMETERS}
        With ``return_lse``, the pair ``(grads, lse)``: the gradients' tuple keeps its shape.
    grad_output : scalar or array_like, optional
        The gradient flowing into the loss: one value per row for ``reduction="none"``,
        else a scalar (default 1).

    Returns
    -------
    LinearCrossEntropyGrads
        A tuple ``(loss, grad_hidden, grad_weight)``, with ``grad_bias`` fourth only when
        ``bias`` is given; its fields are also attributes (``result.grad_bias`` is None
        without a bias), for code that takes either case.
    loss : scalar or numpy.ndarray
        Exactly what :func:`linear_cross_entropy` returns.
    grad_hidden : numpy.ndarray, shape of ``hidden``
    grad_weight : numpy.ndarray, shape (V, H)
    grad_bias : numpy.ndarray, shape (V,)
        Only when ``bias`` is given. The gradients are PyTorch's autograd gradients of
        ``F.cross_entropy(hidden @ weight.T + bias, target, ...)``; ignored rows contribute 0.

    Notes
    -----
    {_MEMORY_AND_THREADS}

    The gradient takes three gemms, as PyTorch's forward and backward do, over chunks of
    rows: for each chunk in turn, (1) its logits ``hidden[chunk] @ weight.T`` into one buffer,
    tile by tile, each tile folded into the rows' log-sum-exp states; (2) per group of eight
    vocabulary tiles, the logits become ``G = d loss / d logits`` in place and
    ``G[:, group].T @ hidden[chunk]`` is added to ``grad_weight[group]``; (3)
    ``grad_hidden[chunk] = G @ weight``. Threads take vocabulary tiles in (1), groups of them
    in (2) and stretches of 256 columns of H in (3); every entry of a
    gradient is written by one gemm and summed over the chunks in order: the same bits on any
    number of threads.

    Memory beyond the inputs and the gradients: the chunk's buffer, ``rows x V`` numbers of
    the compute dtype with ``rows`` the largest multiple of 256 that keeps it within 128 MiB
    (at least 256, at most N rounded up to 256: 1024 rows, 125 MiB, for V = 32 000 in float32;
    256 rows, 125 MiB, for V = 128 256), fixed by V and the dtype, never by the thread count;
    plus 40 bytes per row and vocabulary tile of the chunk (48 with ``label_smoothing``),
    O(N) numbers, and ``grad_bias`` in float64.

    Examples
    --------
    >>> import numpy as np
    >>> import xent
    >>> hidden = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])
    >>> weight = np.array([[1.0, 1.0], [0.0, -1.0], [2.0, 0.5]])
    >>> target = np.array([2, 1, -100])  # the last token is padding
    >>> loss, grad_hidden, grad_weight = xent.linear_cross_entropy_with_grad(hidden, weight,
    ...                                                                      target)
    >>> round(float(loss), 4)
    0.5059
    >>> np.round(grad_hidden, 4)  # the padding row gets 0
    array([[-0.2124, -0.0063],
           [ 0.3925,  0.3706],
           [ 0.    ,  0.    ]])
    >>> np.round(grad_weight, 4)
    array([[ 0.1529, -0.061 ],
           [-0.0683,  0.2267],
           [-0.0845, -0.1657]])

    They are the gradients of the logits' cross-entropy, carried through ``hidden @ weight.T``:

    >>> _, grad_logits = xent.cross_entropy_with_grad(hidden @ weight.T, target)
    >>> bool(np.allclose(grad_hidden, grad_logits @ weight))
    True
    >>> bool(np.allclose(grad_weight, grad_logits.T @ hidden))
    True
    """


# ---- z-loss, the log-sum-exp and per-row statistics (z_loss=, return_lse=, return_stats=) ---

LinearRowStats = collections.namedtuple("LinearRowStats", ["lse", "entropy", "argmax"])
LinearRowStats.__doc__ = """Per-row statistics of the logits from the same tiled pass as the
loss (``linear_cross_entropy(..., return_stats=True)``): ``lse`` the log-sum-exp, ``entropy``
the entropy of the softmax in nats (both in the loss's dtype) and ``argmax`` the index of the
largest logit (the first if tied; intp), each of the batch's shape.

Examples
--------
>>> import numpy as np
>>> import xent
>>> hidden = np.array([[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]])
>>> weight = np.array([[1.0, 1.0], [0.0, -1.0], [2.0, 0.5]])
>>> loss, stats = xent.linear_cross_entropy(hidden, weight, np.array([2, 1, 0]),
...                                         return_stats=True)
>>> np.round(stats.lse, 4), np.round(stats.entropy, 4), stats.argmax
(array([2.4076, 1.6041, 2.3266]), array([0.8324, 0.9528, 0.6448]), array([2, 1, 0]))

With ``return_lse`` too, the log-sum-exp comes before the statistics:

>>> loss, lse, stats = xent.linear_cross_entropy(hidden, weight, np.array([2, 1, 0]),
...                                              return_lse=True, return_stats=True)
>>> bool(np.allclose(lse, stats.lse))
True
"""


def _row_lse(stats, log_sum=None):
    with np.errstate(divide="ignore", invalid="ignore"):
        return stats[:, 0] + (np.log(stats[:, 1]) if log_sum is None else log_sum)


def _in_dtype(problem, values):
    with np.errstate(over="ignore"):
        return values.astype(problem.dtype).reshape(problem.batch)


def _add_z_loss(problem, row_loss, lse, z_loss):
    """Row losses plus ``z_loss * lse**2`` on the rows not ignored."""
    if not z_loss:
        return row_loss
    with np.errstate(over="ignore", invalid="ignore"):
        return row_loss + np.where(problem.valid, z_loss * lse * lse, 0.0)


def _row_statistics(problem, stats, extra, log_sum):
    """LinearRowStats from the forward's statistics and its extra columns."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        entropy = log_sum - extra[:, 0] / stats[:, 1]
    return LinearRowStats(
        _in_dtype(problem, _row_lse(stats, log_sum)),
        _in_dtype(problem, entropy),
        extra[:, 1].astype(np.intp).reshape(problem.batch),
    )
