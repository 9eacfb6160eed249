#!/usr/bin/env bash
# The test suite: installs system packages if missing, then runs every test of the workspace
# (optimised build with debug assertions; the shared data is read from ../shared/data), then
# the Python package's (scripts/test-python.sh: wheel, virtualenv, pytest).
# The last lines sum the results of every test binary (`tests: N passed, M failed`) and
# give pytest's (`python: …`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# NVRTC from install-deps.sh: the CUDA kernels are compiled to PTX by a test.
nvrtc_lib="${MOIRA_NVRTC_DIR:-$HOME/.cache/moira/cu13}/lib"
[ -d "$nvrtc_lib" ] && export LD_LIBRARY_PATH="$nvrtc_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --profile ci "$@" 2>&1 | tee "$log" || status=$?
pylog="$(mktemp)"
trap 'rm -f "$log" "$pylog"' EXIT
./scripts/test-python.sh 2>&1 | tee "$pylog" || status=1
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
summary="$(grep -E '[0-9]+ (passed|failed|errors?|skipped)' "$pylog" | tail -1 || true)"
echo "python: ${summary:-pytest did not run (see above)}"
exit "$status"
