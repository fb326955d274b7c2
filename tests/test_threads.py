"""The num_threads policy, threadpoolctl, thread pools, fork, and the GIL released during
kernels."""

import concurrent.futures
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import xent
from xent import _kernels
from xent._threads import available_cpus, shares_cpus


def test_default_follows_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert xent.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1,1")
    assert xent.get_num_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    expected = min(available_cpus(), _kernels.openmp_max_threads()) if _kernels.has_openmp() else 1
    assert xent.get_num_threads() == expected


def test_explicit_and_negative_counts():
    if not _kernels.has_openmp():
        pytest.skip("serial build: every count resolves to 1")
    cpus = available_cpus()
    assert xent.get_num_threads(3) == 3
    assert xent.get_num_threads(-1) == cpus
    if cpus > 1:
        assert xent.get_num_threads(-2) == cpus - 1


def test_threadpoolctl_limits_the_default():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not _kernels.has_openmp() or available_cpus() < 2:
        pytest.skip("needs OpenMP and two CPUs")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert xent.get_num_threads() == 1
        x = np.random.default_rng(0).standard_normal((1000, 10))
        assert np.isfinite(xent.cross_entropy(x, np.zeros(1000, dtype=np.int64)))
    assert xent.get_num_threads() >= 2


def test_gil_is_released_during_kernels():
    """Another Python thread keeps running while one long kernel call runs.

    With the GIL held for the call, the other thread would stall for its whole duration.
    """
    row = np.random.default_rng(0).standard_normal(65536).astype(np.float32)
    x = np.broadcast_to(row, (4096, row.size))  # 1 GiB of logits in 256 KiB of memory
    t = np.zeros(4096, dtype=np.int64)
    gaps = []
    running = threading.Event()
    stop = threading.Event()

    def spin():
        last = time.perf_counter()
        longest = 0.0
        running.set()
        while not stop.is_set():
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now
        gaps.append(longest)

    worker = threading.Thread(target=spin)
    worker.start()
    running.wait()
    start = time.perf_counter()
    loss = xent.cross_entropy(x, t, num_threads=1)
    duration = time.perf_counter() - start
    stop.set()
    worker.join()
    assert np.isfinite(loss)
    assert duration > 0.02, "the call was too short to tell"
    assert gaps[0] < duration / 2, (gaps[0], duration)


def test_concurrent_python_threads_get_serial_results():
    rng = np.random.default_rng(1)
    inputs = [(rng.standard_normal((3000, 50)).astype(np.float32), rng.integers(0, 50, 3000))
              for _ in range(8)]
    expected = [xent.cross_entropy(x, t, reduction="none") for x, t in inputs]
    results = [None] * 8

    def work(i):
        for _ in range(5):
            results[i] = xent.cross_entropy(*inputs[i], reduction="none")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for got, want in zip(results, expected):
        assert got.tobytes() == want.tobytes()


def test_nested_public_calls_count_once():
    """perplexity calls cross_entropy: inside it, the call is counted once, not twice."""
    from xent import _threads
    seen = []
    original = _threads.get_num_threads

    def spy(num_threads=None):
        seen.append(_threads.calls_in_flight())
        return original(num_threads)

    import xent.info as info
    x = np.zeros((4, 3), np.float32)
    try:
        info.get_num_threads = spy
        xent._multiclass.get_num_threads = spy
        info.perplexity(x, np.zeros(4, np.int64))
    finally:
        info.get_num_threads = original
        xent._multiclass.get_num_threads = original
    assert seen and set(seen) == {1}
    assert _threads.calls_in_flight() == 1   # outside any call: the one about to start


@pytest.mark.parametrize("preset, expected", [
    ({}, "GOMP_SPINCOUNT=10000"),
    ({"GOMP_SPINCOUNT": "300000"}, "GOMP_SPINCOUNT=300000"),
    ({"OMP_WAIT_POLICY": "active"}, "OMP_WAIT_POLICY=active"),
])
def test_openmp_spin_default_yields_to_the_caller_setting(tmp_path, preset, expected):
    """import xent shortens OpenMP's spin only where the user set no wait policy."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(preset)
    code = "import xent; print(xent._dispatch.config()['openmp_wait'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_thread_pool_and_threadpool_limits_give_serial_results_without_deadlock():
    """Calls from a pool of eight threads, and under threadpool_limits, finish and agree
    bit for bit with one-thread calls."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(2)
    inputs = [(rng.standard_normal((4000, 300)).astype(np.float32),
               rng.integers(0, 300, 4000)) for _ in range(8)]
    expected = [xent.cross_entropy(x, t, reduction="none", num_threads=1) for x, t in inputs]

    def run_pool():
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(xent.cross_entropy, x, t, reduction="none")
                       for x, t in inputs]
            return [f.result(timeout=60) for f in futures]

    for got, want in zip(run_pool(), expected):
        assert got.tobytes() == want.tobytes()
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        for got, want in zip(run_pool(), expected):
            assert got.tobytes() == want.tobytes()


def test_default_threads_are_shared_by_calls_in_flight():
    """Two xent calls running at once each get half the default threads (not oversubscribed)."""
    if not _kernels.has_openmp() or xent.get_num_threads() < 2:
        pytest.skip("needs OpenMP and two threads")
    alone = xent.get_num_threads()
    entered, release = threading.Event(), threading.Event()

    @shares_cpus
    def blocked_call():
        entered.set()
        release.wait(30)

    @shares_cpus
    def measured_call():
        return xent.get_num_threads(), xent.get_num_threads(alone)

    other = threading.Thread(target=blocked_call)
    other.start()
    try:
        assert entered.wait(30)
        shared, explicit = measured_call()
    finally:
        release.set()
        other.join()
    assert shared == alone // 2
    assert explicit == alone  # an explicit count is honoured
    assert measured_call() == (alone, alone)


FORK_SCRIPT = r"""
import multiprocessing, os, sys, numpy as np, xent
x = np.random.default_rng(0).standard_normal((100000, 100)).astype(np.float32)
t = np.random.default_rng(1).integers(0, 100, 100000)
parent = xent.cross_entropy(x, t, num_threads=2)  # the parent runs an OpenMP team
pid = os.fork()
if pid == 0:
    ok = xent.cross_entropy(x, t, num_threads=2) == parent
    os._exit(0 if ok and xent.get_num_threads(2) == 1 else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
with multiprocessing.get_context("fork").Pool(2) as pool:
    results = pool.starmap(xent.cross_entropy, [(x[:50000], t[:50000])] * 2)
assert all(r == xent.cross_entropy(x[:50000], t[:50000]) for r in results), results
print("ok")
"""


def test_fork_after_threads_does_not_hang_the_child(tmp_path):
    """GNU libgomp's pool does not survive fork: a child starting a parallel region after the
    parent ran one used to wait forever. Now the child runs serially (same bits)."""
    if not _kernels.has_openmp():
        pytest.skip("serial build")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
