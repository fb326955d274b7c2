#!/usr/bin/env bash
# A long fuzz campaign over every public function (tests/test_fuzz.py), then what it did.
#
#     bash tools/fuzz.sh [examples per function, default 5000] [pytest arguments]
#
# The normal test run uses 150 examples per function; this raises that and writes the counts
# of calls, returns and raised exceptions per function to fuzz-report.json.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
examples="${1:-5000}"
shift || true
cd "$here"
XENT_FUZZ_EXAMPLES="$examples" XENT_FUZZ_REPORT="$here/fuzz-report.json" \
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" python -m pytest -q -p no:cacheprovider tests/test_fuzz.py "$@"
python - "$here/fuzz-report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
print(f"{'function':45} {'calls':>7} {'returned':>9} {'raised':>7}")
for name, c in sorted(report.items()):
    raised = sum(v for k, v in c.items() if k.startswith("raised"))
    returned = sum(v for k, v in c.items() if k.startswith("returned"))
    print(f"{name:45} {c['calls']:7} {returned:9} {raised:7}")
print("total calls:", sum(c["calls"] for c in report.values()))
PY
