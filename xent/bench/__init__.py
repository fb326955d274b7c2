"""``xent bench``: xent against the numpy reference and the installed peers.

The package's parts each do one job, and import each other in this order only:

- :mod:`~xent.bench.measure`: timing (interleaved runs, medians) and memory (peak resident
  set, tracemalloc), for any calls; also used by ``xent`` and ``benchmarks/``;
- :mod:`~xent.bench.cases`: the shapes, their data, the tolerances, the argparse types;
- :mod:`~xent.bench.roofline`: the machine's limits (read and read + write bandwidth, the
  GEMM rate) and each line's fraction of its limit;
- :mod:`~xent.bench.peers`: PyTorch (eager and torch.compile), SciPy, scikit-learn and JAX
  behind one adapter each;
- :mod:`~xent.bench.report`: the format helpers, tables and JSON;
- :mod:`~xent.bench.sections`: the cross-entropy and gradient measurements;
- :mod:`~xent.bench.linear`: the fused linear cross-entropy section;
- :mod:`~xent.bench.plot`: the ``--plot`` image;
- :mod:`~xent.bench.command`: the options and the run.

The names below were this module's when it was one file; they stay importable from here.
"""

from .cases import (
    DEFAULT_CASES,
    DEFAULT_GRAD_SHAPE,
    DTYPES,
    GRAD_CHECK_ROWS,
    QUICK_DIVISOR,
    REFERENCE_MAX_RUNS,
    REFERENCE_ROWS,
    RTOL,
    Case,
    agrees,
    make_data,
    numpy_dtype,
    parse_shape,
    positive_int,
    reference_mean,
    select_cases,
    select_grad_case,
    thread_count,
)
from .command import add_arguments, main, measure_all, run
from .measure import (
    busy_cpus,
    git_commit,
    median_time,
    medians_of,
    peak_rss_rise,
    relative_difference,
    release_free_heap,
    speedups_of,
    time_interleaved,
    tracemalloc_peak,
)
from .peers import (
    PEER_LOADERS,
    Peer,
    PeerSkipped,
    import_chain,
    load_jax,
    load_peers,
    load_scipy,
    load_sklearn,
    load_torch,
    load_torch_compile,
    prepare_peers,
)
from .plot import import_matplotlib_figure, write_plot
from .report import (
    Table,
    disagreements,
    format_bytes,
    format_ratio,
    format_time,
    forward_row,
    forward_table,
    peer_failures,
    print_case_skips,
    print_grad,
    print_header,
    print_scaling,
    write_json,
)
from .sections import measure_scaling, run_case, run_grad

__all__ = [
    "DEFAULT_CASES",
    "DEFAULT_GRAD_SHAPE",
    "DTYPES",
    "GRAD_CHECK_ROWS",
    "PEER_LOADERS",
    "QUICK_DIVISOR",
    "REFERENCE_MAX_RUNS",
    "REFERENCE_ROWS",
    "RTOL",
    "Case",
    "Peer",
    "PeerSkipped",
    "Table",
    "add_arguments",
    "agrees",
    "busy_cpus",
    "disagreements",
    "format_bytes",
    "format_ratio",
    "format_time",
    "forward_row",
    "forward_table",
    "git_commit",
    "import_chain",
    "import_matplotlib_figure",
    "load_jax",
    "load_peers",
    "load_scipy",
    "load_sklearn",
    "load_torch",
    "load_torch_compile",
    "main",
    "make_data",
    "measure_all",
    "measure_scaling",
    "median_time",
    "medians_of",
    "numpy_dtype",
    "peer_failures",
    "parse_shape",
    "peak_rss_rise",
    "positive_int",
    "prepare_peers",
    "print_case_skips",
    "print_grad",
    "print_header",
    "print_scaling",
    "reference_mean",
    "relative_difference",
    "release_free_heap",
    "run",
    "run_case",
    "run_grad",
    "select_cases",
    "select_grad_case",
    "speedups_of",
    "thread_count",
    "time_interleaved",
    "tracemalloc_peak",
    "write_json",
    "write_plot",
]
