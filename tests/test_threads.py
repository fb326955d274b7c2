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
from xent import _threads
from xent._threads import available_cpus, oversubscribe, shares_cpus


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
    assert xent.get_num_threads(3) == min(3, cpus)
    with oversubscribe():
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
    inputs = [
        (rng.standard_normal((3000, 50)).astype(np.float32), rng.integers(0, 50, 3000))
        for _ in range(8)
    ]
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
    assert _threads.calls_in_flight() == 1  # outside any call: the one about to start


@pytest.mark.parametrize(
    "preset, expected",
    [
        ({}, "GOMP_SPINCOUNT=10000"),
        ({"GOMP_SPINCOUNT": "300000"}, "GOMP_SPINCOUNT=300000"),
        ({"OMP_WAIT_POLICY": "active"}, "OMP_WAIT_POLICY=active"),
    ],
)
def test_openmp_spin_default_yields_to_the_caller_setting(tmp_path, preset, expected):
    """import xent shortens OpenMP's spin only where the user set no wait policy."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(preset)
    code = "import xent; print(xent._dispatch.config()['openmp_wait'])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_thread_pool_and_threadpool_limits_give_serial_results_without_deadlock():
    """Calls from a pool of eight threads, and under threadpool_limits, finish and agree
    bit for bit with one-thread calls."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(2)
    inputs = [
        (rng.standard_normal((4000, 300)).astype(np.float32), rng.integers(0, 300, 4000))
        for _ in range(8)
    ]
    expected = [xent.cross_entropy(x, t, reduction="none", num_threads=1) for x, t in inputs]

    def run_pool():
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(xent.cross_entropy, x, t, reduction="none") for x, t in inputs]
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
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# ---- counts above the CPUs, and the limits of the process ------------------------------------


def test_counts_above_the_cpus_are_lowered_unless_allowed(monkeypatch):
    if not _kernels.has_openmp():
        pytest.skip("serial build: every count resolves to 1")
    cpus = available_cpus()
    monkeypatch.delenv("XENT_ALLOW_OVERSUBSCRIBE", raising=False)
    assert xent.get_num_threads(cpus + 1) == cpus
    assert xent.get_num_threads(1000) == cpus
    with oversubscribe():
        assert xent.get_num_threads(cpus + 1) == cpus + 1
        with oversubscribe(False):
            assert xent.get_num_threads(cpus + 1) == cpus
    monkeypatch.setenv("XENT_ALLOW_OVERSUBSCRIBE", "1")
    assert xent.get_num_threads(1000) == 1000
    with oversubscribe(False):
        assert xent.get_num_threads(1000) == cpus
    with pytest.raises(ValueError, match="more than the 4096"):
        xent.get_num_threads(4097)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("512", 512 << 10),
        ("4M", 4 << 20),
        ("4 m", 4 << 20),
        ("1G", 1 << 30),
        ("100B", 100),
        ("", None),
        ("x", None),
        ("-4M", None),
    ],
)
def test_stack_size_follows_omp_stacksize(monkeypatch, text, expected):
    assert _threads._parse_stacksize(text) == expected
    monkeypatch.delenv("GOMP_STACKSIZE", raising=False)
    monkeypatch.setenv("OMP_STACKSIZE", text)
    if expected:
        assert _threads.thread_stack_bytes() == expected + 4096
    else:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
        default = (2 << 20) if soft == resource.RLIM_INFINITY else soft
        assert _threads.thread_stack_bytes() == default + 4096


def test_teams_are_lowered_to_what_the_limits_hold(monkeypatch):
    """The arithmetic of threads_within_limits on made-up limits and usage."""
    limits = {"RLIMIT_AS": None, "RLIMIT_DATA": None, "RLIMIT_NPROC": None}
    monkeypatch.setattr(_threads, "_soft_limit", limits.get)
    monkeypatch.setattr(_threads, "_cgroup_pids_headroom", lambda: None)
    monkeypatch.setattr(_threads, "thread_stack_bytes", lambda: 8 << 20)
    monkeypatch.setattr(
        _threads, "_proc_status_bytes", lambda *fields: {"VmSize": 1 << 30, "VmData": 1 << 29}
    )
    assert _threads.threads_within_limits(1) == 1
    assert _threads.threads_within_limits(64) == 64
    # 1 GiB used, 64 MiB kept for the call, 80 MiB free: ten stacks of 8 MiB
    limits["RLIMIT_AS"] = (1 << 30) + (64 << 20) + (80 << 20)
    assert _threads.threads_within_limits(64) == 11
    assert _threads.threads_within_limits(4) == 4
    limits["RLIMIT_DATA"] = (1 << 29) + (64 << 20) + (20 << 20)  # two stacks
    assert _threads.threads_within_limits(64) == 3
    limits["RLIMIT_AS"] = 1 << 29  # already beyond: no thread at all
    assert _threads.threads_within_limits(64) == 1
    limits.update(RLIMIT_AS=None, RLIMIT_DATA=None, RLIMIT_NPROC=100)
    monkeypatch.setattr(_threads.os, "getuid", lambda: 1234)
    monkeypatch.setattr(_threads, "_tasks_on_system", lambda: 50)  # far below: not counted
    monkeypatch.setattr(_threads, "_tasks_of_user", lambda uid: pytest.fail("counted"))
    assert _threads.threads_within_limits(8) == 8
    monkeypatch.setattr(_threads, "_tasks_on_system", lambda: 99)
    monkeypatch.setattr(_threads, "_tasks_of_user", lambda uid: 95 if uid == 1234 else 0)
    assert _threads.threads_within_limits(8) == 4  # 100 - 95 - 2 kept free: 3 new threads
    monkeypatch.setattr(_threads, "_tasks_of_user", lambda uid: 99)
    assert _threads.threads_within_limits(8) == 1
    monkeypatch.setattr(_threads.os, "getuid", lambda: 0)  # root: the kernel ignores it
    assert _threads.threads_within_limits(8) == 8
    monkeypatch.setattr(_threads, "_cgroup_pids_headroom", lambda: 4)
    assert _threads.threads_within_limits(8) == 3


def test_the_counters_read_this_system():
    assert _threads._tasks_of_user(os.getuid()) >= threading.active_count()
    assert _threads._tasks_on_system() >= _threads._tasks_of_user(os.getuid())
    used = _threads._proc_status_bytes("VmSize", "VmData")
    assert used["VmData"] > 0 and used["VmSize"] >= used["VmData"]


# The crash tests: each child sets a limit, then asks for a team the limit cannot hold. Before
# the limits were checked, libgomp printed "Thread creation failed" and ended the process.
LIMIT_SCRIPT = r"""
import os, resource, sys, numpy as np, xent
kind, threads = sys.argv[1], int(sys.argv[2])
x = np.random.default_rng(0).standard_normal((300000, 8)).astype(np.float32)
t = np.random.default_rng(1).integers(0, 8, 300000)
expected = xent.cross_entropy(x, t, num_threads=1)
def status(field):
    return int(dict(l.split(":", 1) for l in open("/proc/self/status"))[field].split()[0])
if kind == "as":  # address space for the process as it is, plus 48 MiB: five 8 MiB stacks
    resource.setrlimit(resource.RLIMIT_STACK, (8 << 20, resource.getrlimit(resource.RLIMIT_STACK)[1]))
    limit = (status("VmSize") << 10) + (48 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
else:  # tasks: the threads this user runs now, and no more
    if os.getuid() == 0:
        os.setgid(65534); os.setuid(65534)  # RLIMIT_NPROC does not apply to root
    limit = status("Threads")
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
got = xent.cross_entropy(x, t, num_threads=threads)
assert got == expected, (got, expected)
print("ok", xent.get_num_threads(threads))
"""


def _run_limited(tmp_path, *args, **env):
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **env)
    environ.pop("OMP_STACKSIZE", None)
    environ.pop("GOMP_STACKSIZE", None)
    return subprocess.run(
        [sys.executable, "-c", LIMIT_SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("kind, threads, fits", [("as", 64, 4), ("nproc", 2, 1)])
def test_a_team_beyond_the_limits_falls_back_instead_of_ending_the_process(
    tmp_path, kind, threads, fits
):
    if not _kernels.has_openmp():
        pytest.skip("serial build")
    os.chmod(tmp_path, 0o755)  # the child may run as another user (see LIMIT_SCRIPT)
    done = _run_limited(tmp_path, kind, str(threads), XENT_ALLOW_OVERSUBSCRIBE="1")
    assert "Thread creation failed" not in done.stderr
    assert done.returncode == 0, done.stderr[-2000:]
    word, team = done.stdout.split()
    assert word == "ok" and 1 <= int(team) <= fits


POOL_SCRIPT = r"""
import time, numpy as np, xent
def threads():
    return int(dict(l.split(":", 1) for l in open("/proc/self/status"))["Threads"])
x = np.random.default_rng(0).standard_normal((200000, 50))
t = np.zeros(200000, dtype=np.int64)
before = threads()
xent.cross_entropy(x, t, num_threads=1000)
deadline = time.monotonic() + 5
while threads() > before + 1 and time.monotonic() < deadline:
    time.sleep(0.01)  # the released threads exit on their own, just after the call
print(before, threads())
"""


@pytest.mark.parametrize("allowed", ["0", "1"])
def test_a_large_team_does_not_outlive_its_call(tmp_path, allowed):
    """num_threads=1000 used to leave ~80 idle threads (8 MiB of stack each) in the process."""
    if not _kernels.has_openmp():
        pytest.skip("serial build")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), XENT_ALLOW_OVERSUBSCRIBE=allowed)
    done = subprocess.run(
        [sys.executable, "-c", POOL_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = map(int, done.stdout.split())
    assert after <= before + available_cpus() - 1, (before, after)


def test_limit_check_and_team_start_are_one_step_across_threads(monkeypatch):
    # Two Python threads calling at once under a limit: each call's team is started before
    # the other call checks the limits, so neither counts on tasks or address space the
    # other's team is about to take (before, both checked, then both started).
    import threading
    import time

    from xent import _table, _threads

    if not _table.has_openmp():
        pytest.skip("serial build: no team is ever started")
    events = []
    monkeypatch.setattr(_threads, "_limited", lambda: True)

    def check(n):
        events.append(("check", threading.get_ident()))
        time.sleep(0.05)  # a slow /proc scan: the window another call could use
        return n, True

    def start(n):
        events.append(("start", threading.get_ident()))

    monkeypatch.setattr(_threads, "_team_within_limits", check)
    monkeypatch.setattr(_threads, "_start_team", start)
    monkeypatch.setenv(_threads.OVERSUBSCRIBE_ENV, "1")  # 2 threads even on 1 CPU
    callers = [threading.Thread(target=_threads.get_num_threads, args=(2,)) for _ in range(2)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert len(events) == 4
    assert [kind for kind, _ in events] == ["check", "start", "check", "start"], events
    assert events[0][1] == events[1][1] and events[2][1] == events[3][1], events
