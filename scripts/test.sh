#!/usr/bin/env bash
# The test suite: installs system packages if missing, then runs every test of the workspace
# (optimised build with debug assertions; the shared data is read from ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo test --workspace --profile ci "$@"
