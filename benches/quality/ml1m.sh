#!/usr/bin/env bash
# ML-1M quality protocol (EVALUATION.md): input = train + valid of each user, held out = test;
# train the shipped recommender, rank every item (the user's own items excluded), and report
# Recall@20 / NDCG@20 with `predictor --evaluate` on the saved model. Last line:
# `recall@20=<r> ndcg@20=<n>`.
#
# Usage: benches/quality/ml1m.sh [NET.json] [EPOCHS]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
net="${1:-networks/ml1m-multdae.json}"
epochs="${2:-40}"
data=../shared/data/ml-1m-lightgcnpp
[ -f "$data/train.txt" ] || { echo "error: $data/train.txt not found" >&2; exit 1; }
cargo build --release --workspace --quiet
bin=target/release
out=target/bench-quality/ml1m
rm -rf "$out"
mkdir -p "$out/input"
cp "$data/train.txt" "$out/input/1-train.txt"
cp "$data/valid.txt" "$out/input/2-valid.txt"
"$bin/converter" --format lists -d input -i "$out/input" -o "$out/input.nc" -f "$out/features" -s "$out/samples" -c --l2-normalize
"$bin/converter" --format lists -d output -i "$out/input" -o "$out/output.nc" -f "$out/features" -s "$out/samples"
"$bin/converter" --format lists -d test -i "$data/test.txt" -o "$out/test.nc" -f "$out/features" -s "$out/samples"
/usr/bin/env time -f "peak RSS %M KiB, wall %e s" "$bin/trainer" "$net" -i "$out/input.nc" -o "$out/output.nc" \
  -n "$out/model.nc" -b 500 -e "$epochs" --optimizer adam --alpha 0.003 --lambda 0.0001 --mu 0.9 \
  --threads 2 --validation "$out/test.nc" --validation-k 20 --validate-every 5
# converter → trainer → predictor --evaluate: the metrics of the saved model, as a user gets them.
"$bin/predictor" -n "$out/model.nc" -i "$out/input.nc" -k 20 -s "$out/recs" --threads 2 \
  --evaluate "$out/test.nc" --evaluate-k 10,20,50 | tee "$out/evaluate.txt"
python3 - "$out/evaluate.txt" <<'PY'
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][-1]
at20 = [m for m in last["metrics"] if m["k"] == 20][0]
print(f"recall@20={at20['recall']:.4f} ndcg@20={at20['ndcg']:.4f}")
PY
