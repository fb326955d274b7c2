#!/usr/bin/env bash
# Build xent's extension with AddressSanitizer and UndefinedBehaviorSanitizer in a scratch
# copy of this checkout, and run the test suite against it.
#
#     bash tools/sanitize.sh [pytest arguments]
#
# Any memory error (out-of-bounds read or write, use after free) or undefined behaviour
# stops the run with the sanitizer's report. Leak checking is off: CPython itself does not
# free everything at exit. The sanitizers slow the code and change its vectorisation, so this
# run is about memory and UB, not speed.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$here" ls-files -z | (cd "$here" && xargs -0 cp --parents -t "$work")
cd "$work"
# XENT_REQUIRE_OPENMP: the threaded build is the one to check, never a quiet serial fallback.
XENT_REQUIRE_OPENMP=1 CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -g" \
LDFLAGS="-fsanitize=address,undefined" \
    python setup.py build_ext --inplace > build.log 2>&1 || { tail -30 build.log; exit 1; }
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
# The reports go to files as well as to stderr: pytest captures a test's stderr, and a report
# written there by a process the sanitizer then ends would be lost with the capture.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:log_path=$work/sanitizer"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$work/sanitizer"
report() {
    local status=$?
    if compgen -G "$work/sanitizer.*" > /dev/null; then
        echo "sanitize.sh: the sanitizers reported:" >&2
        cat "$work"/sanitizer.* >&2
        status=1
    fi
    rm -rf "$work"
    exit $status
}
trap report EXIT
# Left out: the GIL test times a long call against another thread, meaningless at sanitizer
# speed; the memory tests measure resident memory, which ASan's shadow and quarantine grow;
# the children under an address limit (ulimit -v) inherit LD_PRELOAD, and ASan's own
# allocator and shadow do not fit under a limit a little above the process's VmSize (ASan
# ends them with "allocator is out of memory": its limit, not xent's).
python -m pytest -q -p no:cacheprovider tests \
    -k "not test_gil_is_released and not anonymous_memory and not leave_memory_flat" \
    --deselect "tests/test_fuzz.py::test_fuzz_under_limits[as]" \
    --deselect "tests/test_hostile_limits.py::test_calls_under_limits_neither_end_the_process_nor_change_bits[as-" \
    "$@"
