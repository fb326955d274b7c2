"""Calls under hostile process limits: an address space a little above what the process
uses (``ulimit -v``), no task left (``ulimit -u``), any num_threads, oversubscription allowed
or not. Each child process draws its calls from a seed, computes every answer on one thread
before the limit is set, then repeats the calls under the limit: it must neither end (the
OpenMP runtime used to exit on "Thread creation failed") nor give other bits."""

import os
import subprocess
import sys

import pytest

from xent import _kernels

FUZZ_SCRIPT = r"""
import os, resource, sys, numpy as np, xent, xent.info
seed, kind, headroom_mib = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(seed)
calls = []
for _ in range(12):
    n, c = int(rng.integers(1, 30000)), int(rng.choice([2, 7, 50, 300]))
    x = rng.standard_normal((n, c)).astype(rng.choice([np.float32, np.float64]))
    t = rng.integers(0, c, n)
    name = str(rng.choice(["cross_entropy", "logsumexp", "log_softmax", "entropy"]))
    threads = int(rng.choice([1, 2, 3, 8, 64, 500, -1]))
    calls.append((name, x, t, threads))
def run(name, x, t, threads):
    if name == "cross_entropy":
        return xent.cross_entropy(x, t, num_threads=threads)
    if name == "entropy":
        return xent.info.entropy(xent.softmax(x, num_threads=threads), num_threads=threads)
    return getattr(xent, name)(x, num_threads=threads)
expected = [run(name, x, t, 1) for name, x, t, _ in calls]
outputs = 0
for _, x, _, _ in calls:
    outputs += 2 * x.nbytes  # room for the calls' own outputs under the address limit
def status(field):
    return int(dict(l.split(":", 1) for l in open("/proc/self/status"))[field].split()[0])
if kind == "as":
    limit = (status("VmSize") << 10) + outputs + (headroom_mib << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
else:
    if os.getuid() == 0:
        os.setgid(65534); os.setuid(65534)  # RLIMIT_NPROC does not apply to root
    limit = status("Threads") + headroom_mib  # here: threads, not MiB
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
for (name, x, t, threads), want in zip(calls, expected):
    try:
        got = run(name, x, t, threads)
    except MemoryError:
        continue  # a Python exception is an allowed answer to a full address space
    assert np.array_equal(got, want, equal_nan=True), (name, x.shape, threads)
print("ok")
"""


@pytest.mark.parametrize("allowed", ["0", "1"])
@pytest.mark.parametrize(
    "kind, headroom",
    [("as", 0), ("as", 20), ("as", 70), ("as", 300), ("nproc", 0), ("nproc", 1), ("nproc", 3)],
)
def test_calls_under_limits_neither_end_the_process_nor_change_bits(
    tmp_path, kind, headroom, allowed
):
    if not _kernels.has_openmp():
        pytest.skip("serial build: no thread is ever started")
    os.chmod(tmp_path, 0o755)  # the child may run as another user
    seed = sum(map(ord, f"{kind}{headroom}{allowed}"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), XENT_ALLOW_OVERSUBSCRIBE=allowed)
    done = subprocess.run(
        [sys.executable, "-c", FUZZ_SCRIPT, str(seed), kind, str(headroom)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert "Thread creation failed" not in done.stderr
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
