#!/usr/bin/env bash
# The ML-1M quality benchmark: benches/quality/run.sh ml1m (tune on valid, train on
# train + valid for the selected epochs, test once; popularity and EASE in the same run).
# Kept for its old command line: benches/quality/ml1m.sh [NET.json] [MAX_EPOCHS].
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
NETS="${1:-${NETS:-networks/ml1m-dlae.json}}" EPOCHS="${2:-${EPOCHS:-80}}" exec "$here/run.sh" ml1m
