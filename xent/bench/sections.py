"""The cross-entropy sections of ``xent bench``: the mean loss of each case against the
reference and the peers, xent's thread scaling, and the loss + gradient against PyTorch."""

import statistics

import numpy as np

from .._evaluation import evaluate
from .._multiclass import cross_entropy, cross_entropy_with_grad
from .cases import (
    EVALUATE,
    GRAD_CHECK_ROWS,
    REFERENCE_MAX_RUNS,
    RTOL,
    agrees,
    make_data,
    reference_mean,
)
from .measure import (
    WARM_BELOW,
    medians_of,
    peak_rss_rise,
    relative_difference,
    speedups_of,
    time_interleaved,
)
from .peers import prepare_peers
from .roofline import READ_PROBE, READ_WRITE_PROBE, fraction, read_probe, read_write_probe


def split_probe(timings, results, name):
    """Take a probe's timings and result out of the interleaved runs' (they are no peer)."""
    return timings.pop(name), results.pop(name)


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
    warmup_seconds = {}
    peer_calls, skipped = prepare_peers(peers, logits, labels, warmup_seconds=warmup_seconds)
    # the read bandwidth's probe reads the same array, in the same rounds as the others
    probe = read_probe(logits, threads)
    probe()

    def run_evaluate():
        return float(evaluate(logits, labels, num_threads=threads).loss)

    run_evaluate()  # warm-up
    calls = {
        "xent": run_xent,
        EVALUATE: run_evaluate,
        READ_PROBE: probe,
        "reference": lambda: reference_mean(logits, labels),
        **peer_calls,
    }
    timings, results = time_interleaved(
        calls, repeat, {"reference": min(repeat, REFERENCE_MAX_RUNS)}, warm_below=WARM_BELOW
    )
    probe_timings, probe_sum = split_probe(timings, results, READ_PROBE)
    del calls[READ_PROBE]
    probe_median = statistics.median(probe_timings)
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
        "read_probe": {
            "timings": probe_timings,
            "median": probe_median,
            "gb_per_s": case.nbytes / probe_median / 1e9,
            "sum": probe_sum,
        },
        "fraction_of_read_bw": fraction(probe_median, medians["xent"]),
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
        "peer_warmup_seconds": warmup_seconds,
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
    # The limit of the in-place gradient: one in-place read and write of the same array,
    # restored as the in-place call's is (the probe writes back what it reads: unchanged).
    probe = read_write_probe(work, threads)
    probe()
    calls = {
        "xent": run_xent,
        "xent_out": run_xent_out,
        # before the in-place call, whose gradient stays in work for the check below
        READ_WRITE_PROBE: (lambda: np.copyto(work, logits), probe),
        "xent_inplace": (lambda: np.copyto(work, logits), run_xent_inplace),
        **peer_calls,
    }
    timings, results = time_interleaved(calls, repeat)
    probe_timings, probe_sum = split_probe(timings, results, READ_WRITE_PROBE)
    del calls[READ_WRITE_PROBE]
    probe_median = statistics.median(probe_timings)
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
        "read_write_probe": {
            "timings": probe_timings,
            "median": probe_median,
            "gb_per_s": 2 * case.nbytes / probe_median / 1e9,
            "sum": probe_sum,
        },
        "fraction_of_read_write_bw": {
            name: fraction(probe_median, median)
            for name, median in medians.items()
            if name.startswith("xent")
        },
        "losses": losses,
        "relative_difference_loss": rel_loss,
        "relative_difference_grad": rel_grad,
        "agree": agree,
        "rtol": RTOL[case.dtype],
        "peak_rss_rise": memory,
        "skipped": skipped,
    }
