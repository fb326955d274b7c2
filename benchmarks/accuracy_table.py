"""Measured errors of xent, PyTorch and SciPy against mpmath, per magnitude of the result.

    python benchmarks/accuracy_table.py [--rows 1500] [--seed 0] [--dtypes float64,float32]

Rows are built as tests/test_accuracy_mpmath.py builds them: a max repeated 1 to 3 times and
up to six other values, each repeated 1 to 3 times, at gaps below the max drawn to reach the
edge of the dtype's range (so a confident row's loss goes down to the smallest normal). The
exact value of every result is computed with mpmath at 200 bits from the row's own entries
(rounded to the dtype). Functions: logsumexp, cross_entropy of the max (tiny) and of the
lowest entry (large), log_softmax of the max and of the lowest entry, the target's gradient
entry p_t - 1, the lowest entry's gradient entry and softmax, and binary cross-entropy with
logits (x across the dtype's range, y 0 or 1).

Errors are in ulp of the exact value for float64 (worst and median per band of |exact value|),
and for float32, bfloat16 and float16 the worst relative error with the worst in ulp of the
dtype beside it (the half precisions are computed in float32 by xent and PyTorch and returned
in their dtype; SciPy gets the float32 values and its result is rounded to the dtype). Only
results at or above the dtype's smallest normal count (a band without any is left out). A
result that is NaN, infinite or 0 where the exact value is not counts as "inf". Functions
also include the gradient entry and the softmax of the lowest entry (a small probability:
exp carries the rounding of x - max into it). Runs in well under two minutes (about 40 s).
"""

import argparse
import math
import sys
import time
import warnings

import mpmath
import numpy as np

import xent
from xent._dispatch import current_isa

mpmath.mp.prec = 200

BANDS_F64 = [(1e-300, 1e-100), (1e-100, 1e-20), (1e-20, 1e-8), (1e-8, 1.0), (1.0, 1e4)]
#: float32 and the half precisions (computed in float32): down to float32's smallest normal
BANDS_F32 = [(1e-38, 1e-30), (1e-30, 1e-20), (1e-20, 1e-10), (1e-10, 1e-4), (1e-4, 1.0), (1.0, 1e4)]


def bands(dtype_name):
    return BANDS_F64 if dtype_name == "float64" else BANDS_F32


#: The widest gap below a row's max whose exp is a normal number of the dtype.
MAX_GAP = {"float64": 700.0, "float32": 86.0, "bfloat16": 86.0, "float16": 9.5}
LIBRARIES = ("xent", "torch", "scipy")
FUNCTIONS = (
    "logsumexp",
    "cross_entropy (target the max)",
    "cross_entropy (target the lowest)",
    "log_softmax (the max)",
    "log_softmax (the lowest)",
    "gradient p_t - 1",
    "gradient p_j (the lowest)",
    "softmax (the lowest)",
    "logsumexp, log P(A)",
    "BCE with logits",
)


def numpy_dtype(name):
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def ml_finfo(dtype):
    """np.finfo, or ml_dtypes' for bfloat16 (numpy's does not know it)."""
    if dtype.name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.finfo(dtype)
    return np.finfo(dtype)


def error(got, exact, dtype):
    """(error in ulp of exact in dtype, relative error); inf for a non-finite or lost result."""
    got = float(got)
    if not math.isfinite(got) or (got == 0 and exact != 0):
        return math.inf, math.inf
    diff = abs(mpmath.mpf(got) - exact)
    # the spacing of dtype's numbers at |exact| (above its smallest normal)
    ulp = mpmath.ldexp(1, int(mpmath.floor(mpmath.log(abs(exact), 2))) - ml_finfo(dtype).nmant)
    return float(diff / ulp), float(diff / abs(exact))


def draw_row(rng, dtype, dtype_name):
    """A row as tests/test_accuracy_mpmath.py's strategy draws it, and its exact log-sum-exp
    (shift + log(ties + rest), the ties kept apart so nothing cancels)."""
    max_gap = MAX_GAP[dtype_name]
    if rng.integers(2):
        # a confident row: every other entry about as far below the max, the gap drawn so
        # that the loss of the max, about e^-gap, is spread evenly over the bands in log scale
        # (every term a normal number: the gap stays within max_gap, as in the tests)
        gap_scale = rng.uniform(0.02, max_gap - 2)
        return _row(
            rng,
            dtype,
            rng.uniform(-50, 50),
            [gap_scale + rng.uniform(0, 2) for _ in range(rng.integers(1, 7))],
        )
    top_kind = rng.integers(3)
    top = (
        0.0 if top_kind == 0 else rng.uniform(-1e3, 1e3) if top_kind == 1 else rng.uniform(1e3, 9e3)
    )
    if dtype_name == "float16":
        top = float(np.clip(top, -6e4, 6e4))
    gaps = []
    for _ in range(rng.integers(1, 7)):
        kind = rng.integers(3)
        gaps.append(
            rng.uniform(0, 4)
            if kind == 0
            else rng.uniform(0, max_gap)
            if kind == 1
            else rng.uniform(0.8 * max_gap, max_gap)
        )
    return _row(rng, dtype, top, gaps)


def _row(rng, dtype, top, gaps):
    """The row of a max ``top`` (1 to 3 times) and entries ``gaps`` below it (1 to 3 times
    each), shuffled, with its exact log-sum-exp."""
    values = [top] * int(rng.integers(1, 4))
    for gap in gaps:
        values += [float(dtype.type(dtype.type(top) - dtype.type(gap)))] * int(rng.integers(1, 4))
    row = np.array(values, dtype=np.float64).astype(dtype)
    rng.shuffle(row)
    distinct, counts = np.unique(row.astype(np.float64), return_counts=True)
    shift = mpmath.mpf(float(distinct[-1]))
    rest = mpmath.fsum(
        int(k) * mpmath.exp(mpmath.mpf(float(v)) - shift)
        for v, k in zip(distinct[:-1], counts[:-1])
    )
    ties = int(counts[-1])
    return row, shift, mpmath.log(ties) + mpmath.log1p(rest / ties)


def exact_values(row, shift, log_sum):
    """The exact results of one row, by function name."""
    top, low = int(np.argmax(row)), int(np.argmin(row))
    x_top, x_low = mpmath.mpf(float(row[top])), mpmath.mpf(float(row[low]))
    return (
        top,
        low,
        {
            "logsumexp": shift + log_sum,
            "cross_entropy (target the max)": shift - x_top + log_sum,
            "cross_entropy (target the lowest)": shift - x_low + log_sum,
            "log_softmax (the max)": x_top - shift - log_sum,
            "log_softmax (the lowest)": x_low - shift - log_sum,
            "gradient p_t - 1": mpmath.expm1(x_top - shift - log_sum),
            # p_j, or p_t - 1 where the lowest entry is the target (a row of equal entries)
            "gradient p_j (the lowest)": (mpmath.exp if low != top else mpmath.expm1)(
                x_low - shift - log_sum
            ),
            "softmax (the lowest)": mpmath.exp(x_low - shift - log_sum),
        },
    )


# ---- the three libraries, on one row (a 1 x C array of the dtype) -------------------------


def xent_row(x, top, low):
    losses = xent.cross_entropy(np.repeat(x, 2, axis=0), np.array([top, low]), reduction="none")
    log_softmax = xent.log_softmax(x)[0]
    _, grad = xent.cross_entropy_with_grad(x, np.array([top]), reduction="sum")
    return {
        "logsumexp": xent.logsumexp(x)[0],
        "gradient p_j (the lowest)": grad[0, low],
        "softmax (the lowest)": xent.softmax(x)[0, low],
        "cross_entropy (target the max)": losses[0],
        "cross_entropy (target the lowest)": losses[1],
        "log_softmax (the max)": log_softmax[top],
        "log_softmax (the lowest)": log_softmax[low],
        "gradient p_t - 1": grad[0, top],
    }


def torch_tensor(a, dtype_name):
    import torch

    return torch.tensor(np.asarray(a, dtype=np.float64)).to(getattr(torch, dtype_name))


def torch_row(x, top, low, dtype_name):
    import torch
    import torch.nn.functional as F

    t = torch_tensor(x, dtype_name)
    losses = F.cross_entropy(t.repeat(2, 1), torch.tensor([top, low]), reduction="none")
    log_softmax = F.log_softmax(t, dim=-1)[0]
    leaf = t.clone().requires_grad_(True)
    F.cross_entropy(leaf, torch.tensor([top]), reduction="sum").backward()
    return {
        "logsumexp": torch.logsumexp(t, dim=-1)[0].item(),
        "gradient p_j (the lowest)": leaf.grad[0, low].item(),
        "softmax (the lowest)": F.softmax(t, dim=-1)[0, low].item(),
        "cross_entropy (target the max)": losses[0].item(),
        "cross_entropy (target the lowest)": losses[1].item(),
        "log_softmax (the max)": log_softmax[top].item(),
        "log_softmax (the lowest)": log_softmax[low].item(),
        "gradient p_t - 1": leaf.grad[0, top].item(),
    }


def scipy_row(x, top, low, dtype):
    import scipy.special as sc

    row = np.asarray(x[0], dtype=np.float64 if dtype == np.float64 else np.float32)
    lse = sc.logsumexp(row)
    log_softmax = sc.log_softmax(row)
    p = sc.softmax(row)
    out = {
        "logsumexp": lse,
        "cross_entropy (target the max)": lse - row[top],
        "cross_entropy (target the lowest)": lse - row[low],
        "log_softmax (the max)": log_softmax[top],
        "log_softmax (the lowest)": log_softmax[low],
        "gradient p_t - 1": p[top] - 1,
        "gradient p_j (the lowest)": p[low],
        "softmax (the lowest)": p[low],
    }
    return {k: dtype.type(v) for k, v in out.items()}


def likely_event_rows(rng, n, dtype):
    """log P(A) of likely events A: rows of log-probabilities (a row's log_softmax, 1 to 40
    classes), most of each kept, and their exact log-sum-exps: a negative max that log(sum)
    nearly cancels, the case that keeps only an ulp or two of the max unless the sum is
    carried in more than the dtype's precision."""
    import scipy.special as sc

    for _ in range(n):
        c = int(rng.integers(2, 41))
        logits = rng.standard_normal(c) * rng.uniform(0.5, 3)
        log_probs = sc.log_softmax(logits)
        keep = rng.random(c) < rng.uniform(0.6, 0.98)
        keep[int(rng.integers(c))] = True
        keep[int(rng.integers(c))] = False  # a proper subset (else the row is normalised)
        if not keep.any():
            continue
        row = log_probs[keep].astype(dtype)
        exact = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))
        # below 2^-45 of the max: the residue of a row that is normalised all the same
        if abs(exact) >= 2.0**-45 * abs(float(row.max())):
            yield row, exact


def likely_event_results(row, dtype_name):
    import scipy.special as sc
    import torch

    return {
        "xent": xent.logsumexp(row[None, :])[0],
        "torch": torch.logsumexp(torch_tensor(row, dtype_name), dim=-1).item(),
        "scipy": row.dtype.type(
            sc.logsumexp(row.astype(np.float64 if row.dtype == np.float64 else np.float32))
        ),
    }


def bce_cases(rng, n, dtype, dtype_name):
    """(x, y, exact loss) with x spread in log scale across the dtype's range."""
    limit = {"float64": 700.0, "float32": 87.0, "bfloat16": 87.0, "float16": 11.0}[dtype_name]
    x = np.exp(rng.uniform(np.log(1e-3), np.log(limit), n)) * rng.choice([-1.0, 1.0], n)
    x = x.astype(dtype)
    y = rng.integers(0, 2, n).astype(dtype)
    exact = []
    for xi, yi in zip(x.astype(np.float64), y.astype(np.float64)):
        mx = mpmath.mpf(float(xi))
        # log(1 + e^-x) for y = 1, log(1 + e^x) for y = 0: no cancellation at any precision
        exact.append(mpmath.log1p(mpmath.exp(-mx if yi == 1 else mx)))
    return x, y, exact


def bce_results(x, y, dtype, dtype_name):
    import scipy.special as sc
    import torch.nn.functional as F

    got = {"xent": xent.binary_cross_entropy_with_logits(x, y, reduction="none")}
    got["torch"] = (
        F.binary_cross_entropy_with_logits(
            torch_tensor(x, dtype_name), torch_tensor(y, dtype_name), reduction="none"
        )
        .double()
        .numpy()
    )
    compute = np.float64 if dtype == np.float64 else np.float32
    xs, ys = x.astype(compute), y.astype(compute)
    scipy_loss = -(ys * sc.log_expit(xs) + (1 - ys) * sc.log_expit(-xs))
    got["scipy"] = scipy_loss.astype(dtype)
    return got


# ---- the table -------------------------------------------------------------------------------


def band_of(value, dtype_name):
    v = abs(float(value))
    edges = bands(dtype_name)
    for i, (low, high) in enumerate(edges):
        if low <= v < high or (i == len(edges) - 1 and v == high):
            return i
    return None


def measure(dtype_name, n_rows, seed):
    """{function: {library: {band: [(ulp, relative error)]}}} for one dtype."""
    dtype = numpy_dtype(dtype_name)
    rng = np.random.default_rng(seed)
    n_bands = len(bands(dtype_name))
    errors = {f: {lib: {b: [] for b in range(n_bands)} for lib in LIBRARIES} for f in FUNCTIONS}

    # the bounds hold down to the dtype's smallest normal: below it a result has fewer digits
    # (a subnormal) or rounds to 0, whoever computes it
    smallest = float(ml_finfo(dtype).tiny)

    def record(function, exact, got_by_library):
        band = band_of(exact, dtype_name)
        if band is None or abs(float(exact)) < smallest:
            return
        for lib, got in got_by_library.items():
            errors[function][lib][band].append(error(got, exact, dtype))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_rows):
            row, shift, log_sum = draw_row(rng, dtype, dtype_name)
            top, low, exact = exact_values(row, shift, log_sum)
            x = row[None, :]
            results = {
                "xent": xent_row(x, top, low),
                "torch": torch_row(x, top, low, dtype_name),
                "scipy": scipy_row(x, top, low, dtype),
            }
            for function, value in exact.items():
                record(function, value, {lib: results[lib][function] for lib in LIBRARIES})
        for row, exact in likely_event_rows(rng, n_rows // 2, dtype):
            if exact != 0:
                record("logsumexp, log P(A)", exact, likely_event_results(row, dtype_name))
        x, y, exact = bce_cases(rng, n_rows * 2, dtype, dtype_name)
        got = bce_results(x, y, dtype, dtype_name)
        for i, value in enumerate(exact):
            record("BCE with logits", value, {lib: got[lib][i] for lib in LIBRARIES})
    return errors


def fmt(v):
    if math.isinf(v):
        return "inf"
    return f"{v:.3g}" if v < 1e4 else f"{v:.1e}"


def print_table(dtype_name, errors, out):
    """float64: worst / median ulp; the others: worst relative error (worst ulp)."""
    if dtype_name == "float64":
        out.write(f"\n## {dtype_name}: worst / median ulp, per band of |exact result|\n\n")
    else:
        out.write(
            f"\n## {dtype_name}: worst relative error (worst ulp of {dtype_name}), per band "
            "of |exact result|\n\n"
        )
    out.write("| function | band | n | " + " | ".join(LIBRARIES) + " |\n")
    out.write("|---|---|---|" + "---|" * len(LIBRARIES) + "\n")
    for function in FUNCTIONS:
        for b, (low, high) in enumerate(bands(dtype_name)):
            n = len(errors[function]["xent"][b])
            if n == 0:
                continue
            cells = []
            for lib in LIBRARIES:
                e = np.array(errors[function][lib][b]).reshape(-1, 2)
                if dtype_name == "float64":
                    cells.append(f"{fmt(e[:, 0].max())} / {fmt(float(np.median(e[:, 0])))}")
                else:
                    cells.append(f"{e[:, 1].max():.2g} ({fmt(e[:, 0].max())})")
            out.write(f"| {function} | {low:g}..{high:g} | {n} | " + " | ".join(cells) + " |\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1500, help="rows per dtype (default 1500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dtypes",
        default="float64,float32,bfloat16,float16",
        help="comma-separated (default: float64,float32,bfloat16,float16)",
    )
    args = parser.parse_args(argv)
    import scipy
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    out = sys.stdout
    out.write(
        f"# Errors against mpmath (200 bits): xent {xent.__version__}, torch "
        f"{torch.__version__}, scipy {scipy.__version__}; {args.rows} rows per dtype, "
        f"seed {args.seed}, kernel variant {current_isa()}\n"
    )
    for dtype_name in args.dtypes.split(","):
        errors = measure(dtype_name, args.rows, args.seed)
        print_table(dtype_name, errors, out)
        out.flush()
    out.write(f"\n({time.perf_counter() - start:.0f} s)\n")


if __name__ == "__main__":
    main()
