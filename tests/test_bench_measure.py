"""xent.bench.measure's interleaved timing: which runs are timed, warmed and set up."""

import time

from xent.bench.measure import time_interleaved


def test_short_calls_get_an_untimed_warm_run_first():
    log = []
    calls = {
        "a": lambda: log.append("a") or 1,
        "b": (lambda: log.append("setup b"), lambda: log.append("b") or 2),
    }
    timings, results = time_interleaved(calls, 3, warm_below=10.0)
    # each round: a warm run then the timed run of each call, the setup before both of b's
    assert log == ["a", "a", "setup b", "b", "setup b", "b"] * 3
    assert {name: len(t) for name, t in timings.items()} == {"a": 3, "b": 3}
    assert results == {"a": 1, "b": 2}
    log.clear()
    time_interleaved(calls, 2)  # no warming unless asked
    assert log == ["a", "setup b", "b"] * 2


def test_a_call_longer_than_the_threshold_is_warmed_only_before_its_first_run():
    log = []

    def slow():
        log.append("run")
        time.sleep(0.03)

    timings, _ = time_interleaved({"slow": slow}, 3, warm_below=0.02)
    assert len(log) == 4  # one warm run (nothing timed yet), then three timed runs
    assert len(timings["slow"]) == 3 and min(timings["slow"]) >= 0.03
