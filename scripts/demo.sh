#!/usr/bin/env bash
# The main job, end to end, on a sample set: convert → check → train → predict → metrics.
#
# Data: MovieLens-1M (implicit, LightGCN split) from ../shared/data when it is there; otherwise
# a synthetic set of the same shape made by the generator. Input = train + valid of each user,
# held out = test (EVALUATION.md's protocol). Everything is written to work-out/demo/.
#
# Usage: scripts/demo.sh [EPOCHS]   (default 37, the count benches/quality/run.sh selected on
# the validation split for this network; about a minute on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
epochs="${1:-37}"
./scripts/install-deps.sh
cargo build --release --workspace --quiet
bin=target/release
out=work-out/demo
rm -rf "$out"
mkdir -p "$out/input"

shared="${MOIRA_DEMO_DATA:-../shared/data/ml-1m-lightgcnpp}"
if [ -f "$shared/train.txt" ]; then
  echo "== data: MovieLens-1M from $shared"
  cp "$shared/train.txt" "$out/input/1-train.txt"
  cp "$shared/valid.txt" "$out/input/2-valid.txt"
  cp "$shared/test.txt" "$out/test.txt"
else
  echo "== data: no $shared here; generating an ML-1M-shaped synthetic set"
  "$bin/generate-data" --preset ml1m --format lists --holdout 0.2 \
    --holdout-output "$out/test.txt" -o "$out/input/1-train.txt"
fi

echo "== convert (DSSTNE NetCDF datasets + feature/sample indices)"
# The directory's files are read in order and a user's lines are joined: input = train + valid,
# each row scaled to unit L2 norm (Mult-DAE's input normalisation).
"$bin/converter" --format lists -d input -i "$out/input" -o "$out/input.nc" \
  -f "$out/features" -s "$out/samples" -c --l2-normalize -v
# The autoencoder's target is its input: a second dataset named `output`, same indices.
"$bin/converter" --format lists -d output -i "$out/input" -o "$out/output.nc" \
  -f "$out/features" -s "$out/samples" -v
# Held-out items, in the same feature and sample spaces (rows aligned with the input).
"$bin/converter" --format lists -d test -i "$out/test.txt" -o "$out/test.nc" \
  -f "$out/features" -s "$out/samples" -v

# The ML-1M recipe: a denoising linear autoencoder (I -> I, L2 loss), past EASE on this split
# (BENCHMARKS.md), with the weight decay selected on valid.
net=networks/ml1m-dlae.json
echo "== check $net against the data"
"$bin/trainer" --check "$net" -i "$out/input.nc" -o "$out/output.nc"

echo "== train $epochs epochs, evaluating Recall@20 / NDCG@20 on the held-out items"
"$bin/trainer" "$net" -i "$out/input.nc" -o "$out/output.nc" -n "$out/model.nc" \
  -b 500 -e "$epochs" --optimizer adam --alpha 0.003 --lambda 0.001 --mu 0.9 \
  --threads 2 --validation "$out/test.nc" --validation-k 10,20,50 --validate-every 5 \
  --plot "$out/curves.svg"

echo "== predict: top-10 recommendations per user (own items excluded), and metrics on the held-out items"
"$bin/predictor" -n "$out/model.nc" -i "$out/input.nc" -o "$out/features" --samples "$out/samples" \
  -k 10 -s "$out/recs" --threads 2 --evaluate "$out/test.nc" --evaluate-k 10,20,50
echo "== first recommendations ($out/recs, DSSTNE's format: user<TAB>item,score:…):"
head -n 3 "$out/recs" | cut -c1-160
echo "== done: model $out/model.nc (DSSTNE NetCDF schema), recs $out/recs, per-epoch metrics $out/model.metrics.jsonl (drawn in $out/curves.svg)"
