"""The cross-entropy sections of ``xent bench``: the mean loss of each case against the
reference and the peers, xent's thread scaling, and the loss + gradient against PyTorch."""

import statistics

import numpy as np

from .._multiclass import cross_entropy, cross_entropy_with_grad
from .cases import GRAD_CHECK_ROWS, REFERENCE_MAX_RUNS, RTOL, agrees, make_data, reference_mean
from .measure import medians_of, peak_rss_rise, relative_difference, speedups_of, time_interleaved
from .peers import prepare_peers


def run_case(case, peers, threads, repeat, seed, scaling=False):
    """Time xent, the reference and the peers on one case; check and measure memory.

    Parameters
    ----------
    case : Case
    peers : list of Peer
    threads : int
        Threads for xent.
    repeat : int
        Timed runs of each (the reference at most :data:`REFERENCE_MAX_RUNS`).
    seed : int
        Seed of the data.
    scaling : bool, optional
        Also time xent on 1..``threads`` threads.

    Returns
    -------
    dict
        The case's raw numbers: timings, medians, speedups, results, agreement, memory,
        skipped peers and (with ``scaling``) the thread scaling.
    """
    logits, labels = make_data(case, seed)

    def run_xent():
        return float(cross_entropy(logits, labels, num_threads=threads))

    run_xent()  # warm-up
    peer_calls, skipped = prepare_peers(peers, logits, labels)
    calls = {"xent": run_xent, "reference": lambda: reference_mean(logits, labels), **peer_calls}
    timings, results = time_interleaved(
        calls, repeat, {"reference": min(repeat, REFERENCE_MAX_RUNS)}
    )
    medians = medians_of(timings)
    expected = results["xent"]
    memory = {"xent": peak_rss_rise(run_xent)}
    if "torch" in calls:
        memory["torch"] = peak_rss_rise(calls["torch"])
    return {
        "rows": case.rows,
        "classes": case.classes,
        "dtype": case.dtype,
        "elements": case.elements,
        "bytes": case.nbytes,
        "timings": timings,
        "medians": medians,
        "speedup": speedups_of(medians),
        "gelem_per_s": case.elements / medians["xent"] / 1e9,
        "gb_per_s": case.nbytes / medians["xent"] / 1e9,
        "results": results,
        "relative_difference": {
            name: relative_difference(value, expected)
            for name, value in results.items()
            if name != "xent"
        },
        "agree": {
            name: agrees(value, expected, case.dtype)
            for name, value in results.items()
            if name != "xent"
        },
        "rtol": RTOL[case.dtype],
        "peak_rss_rise": memory,
        "skipped": skipped,
        "scaling": measure_scaling(logits, labels, threads, repeat) if scaling else None,
    }


def measure_scaling(logits, labels, max_threads, repeat):
    """xent's timings on 1..``max_threads`` threads, interleaved.

    Returns
    -------
    dict
        ``{"threads": [...], "timings": [[...], ...], "medians": [...]}``.
    """
    counts = list(range(1, max_threads + 1))
    calls = {n: (lambda n=n: cross_entropy(logits, labels, num_threads=n)) for n in counts}
    timings, _ = time_interleaved(calls, repeat)
    return {
        "threads": counts,
        "timings": [timings[n] for n in counts],
        "medians": [statistics.median(timings[n]) for n in counts],
    }


def run_grad(case, peers, threads, repeat, seed):
    """Time ``xent.cross_entropy_with_grad`` against PyTorch's forward + backward.

    The gradients are compared on :data:`GRAD_CHECK_ROWS` rows spread over the batch: the
    largest difference must be within the dtype's relative tolerance of the largest entry.

    Returns
    -------
    dict
        Timings, medians, speedups, losses, agreement and peak extra memory of each.
    """
    logits, labels = make_data(case, seed)
    check_rows = np.unique(
        np.linspace(0, case.rows - 1, min(case.rows, GRAD_CHECK_ROWS)).astype(np.int64)
    )

    def run_xent():
        loss, grad = cross_entropy_with_grad(logits, labels, num_threads=threads)
        return float(loss), grad

    # A training loop keeps one gradient buffer: out= skips the first touch of fresh pages,
    # which costs the new-array call a quarter of a second per GB, and varies run to run.
    buffer = np.empty_like(logits)

    def run_xent_out():
        loss, grad = cross_entropy_with_grad(logits, labels, num_threads=threads, out=buffer)
        return float(loss), grad

    # In place (out=logits) the gradient overwrites its input, which is restored untimed.
    work = logits.copy()

    def run_xent_inplace():
        loss, grad = cross_entropy_with_grad(work, labels, num_threads=threads, out=work)
        return float(loss), grad

    run_xent()  # warm-up
    run_xent_out()
    peer_calls, skipped = prepare_peers(peers, logits, labels, grad=True)
    calls = {
        "xent": run_xent,
        "xent_out": run_xent_out,
        "xent_inplace": (lambda: np.copyto(work, logits), run_xent_inplace),
        **peer_calls,
    }
    timings, results = time_interleaved(calls, repeat)
    medians = medians_of(timings)
    loss, grad = results["xent"]
    grad_rows = grad[check_rows]
    losses, rel_loss, rel_grad, agree = {"xent": loss}, {}, {}, {}
    for name, (peer_loss, peer_grad) in results.items():
        if name == "xent":
            continue
        losses[name] = peer_loss
        rel_loss[name] = relative_difference(peer_loss, loss)
        scale = float(np.max(np.abs(peer_grad[check_rows])))
        worst = float(np.max(np.abs(peer_grad[check_rows] - grad_rows)))
        rel_grad[name] = worst / scale if scale else (0.0 if worst == 0 else float("inf"))
        agree[name] = bool(
            rel_loss[name] <= RTOL[case.dtype] and rel_grad[name] <= RTOL[case.dtype]
        )
    del results, grad, grad_rows
    memory = {
        name: peak_rss_rise(fn[1] if isinstance(fn, tuple) else fn) for name, fn in calls.items()
    }
    return {
        "rows": case.rows,
        "classes": case.classes,
        "dtype": case.dtype,
        "elements": case.elements,
        "bytes": case.nbytes,
        "timings": timings,
        "medians": medians,
        "speedup": speedups_of(medians),
        "losses": losses,
        "relative_difference_loss": rel_loss,
        "relative_difference_grad": rel_grad,
        "agree": agree,
        "rtol": RTOL[case.dtype],
        "peak_rss_rise": memory,
        "skipped": skipped,
    }
