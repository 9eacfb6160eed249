#!/usr/bin/env bash
# Quality benchmark with honest model selection, one data set per run (EVALUATION.md's
# protocol; results in BENCHMARKS.md):
#   1. tune: for each candidate descriptor and each L2 weight decay of the grid (`--lambda`),
#      train on train.txt and validate on valid.txt, keeping the best epoch (`trainer
#      --select-by ndcg@20 --patience P`); the candidate and lambda with the best validation
#      NDCG@20 win, with their selected epoch count;
#   2. final: train the winner on train + valid for that many epochs, recommend the top 20 for
#      every user (their train + valid items excluded) and score them once against test.txt;
#   3. baselines on the same split, scored by the same code (benches/quality/baselines.py):
#      popularity, and EASE with lambda chosen on valid from a grid.
# The table at the end: P@20, Recall@20 (min(K, |test|) denominator), Recall_full@20 (|test|
# denominator, LightGCN's), NDCG@20 for Moira, EASE and popularity.
#
# Usage: benches/quality/run.sh ml1m|gowalla
# Env: NETS="a.json b.json" (candidates; default: the shipped descriptors of the data set),
#      EPOCHS (most epochs when tuning), PATIENCE, THREADS (default 2), DECAYS (the networks'
#      weight-decay grid, --lambda values), LAMBDAS (EASE's grid),
#      BASELINES=0 (skip popularity and EASE; Gowalla's EASE needs ~7 GB and minutes),
#      PROFILE (cargo profile of the tools, default release).
#      Elsewhere (the GPU machine, benches/gpu/run.sh quality): DATA (the folder with train.txt,
#      valid.txt, test.txt), BIN (built binaries: no cargo build), DEVICE (the trainer's and
#      predictor's --device), PYTHON (an interpreter with numpy and scipy: no venv; without
#      one, BASELINES=0 and the predictor's own metrics), OUT_DIR (default
#      target/bench-quality/SET).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
set_name="${1:?usage: benches/quality/run.sh ml1m|gowalla}"
case "$set_name" in
ml1m)
    data="${DATA:-../shared/data/ml-1m-lightgcnpp}"
    nets="${NETS:-networks/ml1m-dlae.json networks/ml1m-multvae.json networks/ml1m-multdae.json}"
    epochs="${EPOCHS:-80}" patience="${PATIENCE:-10}" lambdas="${LAMBDAS:-200,500,1000,2000}"
    decays="${DECAYS:-0.0001 0.001}"
    train_flags=(-b 500 --optimizer adam --alpha 0.003 --mu 0.9)
    ;;
gowalla)
    data="${DATA:-../shared/data/gowalla-lightgcnpp}"
    nets="${NETS:-networks/gowalla-multdae.json}"
    epochs="${EPOCHS:-60}" patience="${PATIENCE:-5}" lambdas="${LAMBDAS:-100,300}"
    decays="${DECAYS:-0.0001}"
    train_flags=(-b 500 --optimizer adam --alpha 0.003 --mu 0.9)
    ;;
*) echo "error: unknown data set '$set_name' (ml1m or gowalla)" >&2; exit 1 ;;
esac
threads="${THREADS:-2}"
for f in train valid test; do
    [ -f "$data/$f.txt" ] || { echo "error: $data/$f.txt not found" >&2; exit 1; }
done
# numpy + scipy for the baselines and the scorer: $PYTHON's, or a venv under target/.
scorer=1
if [ -n "${PYTHON:-}" ]; then
    py="$PYTHON"
    "$py" -c 'import numpy, scipy' 2>/dev/null || scorer=0
else
    venv=target/quality-venv
    if ! "$venv/bin/python" -c 'import numpy, scipy' 2>/dev/null; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check numpy scipy
    fi
    py="$venv/bin/python"
fi
device=()
[ -n "${DEVICE:-}" ] && device=(--device "$DEVICE")
if [ -n "${BIN:-}" ]; then
    bin="$BIN"
else
    profile="${PROFILE:-release}"
    cargo build --profile "$profile" --workspace --quiet
    bin=target/$profile
fi
out="${OUT_DIR:-target/bench-quality/$set_name}"
rm -rf "$out"
mkdir -p "$out/tune" "$out/final/input"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
convert() { "$bin/converter" --format lists "$@" >/dev/null; }

# 1. Tune on valid.
t="$out/tune"
convert -d input -i "$data/train.txt" -o "$t/input.nc" -f "$t/features" -s "$t/samples" -c --l2-normalize
convert -d output -i "$data/train.txt" -o "$t/output.nc" -f "$t/features" -s "$t/samples"
convert -d valid -i "$data/valid.txt" -o "$t/valid.nc" -f "$t/features" -s "$t/samples"
best_net="" best_decay="" best_value=-1 best_epoch=0
for net in $nets; do
    for decay in $decays; do
        name="$(basename "$net" .json)-lambda$decay"
        log "tuning $name: up to $epochs epochs, patience $patience"
        "$bin/trainer" "$net" -i "$t/input.nc" -o "$t/output.nc" -n "$t/$name.nc" \
            "${train_flags[@]}" --lambda "$decay" -e "$epochs" --threads "$threads" "${device[@]}" \
            --validation "$t/valid.nc" --validation-k 20 --select-by ndcg@20 \
            --patience "$patience" 2> "$t/$name.log"
        read -r epoch value < <(tail -n 1 "$t/$name.metrics.jsonl" |
            "$py" -c 'import json,sys; s=json.load(sys.stdin)["selected"]; print(s["epoch"], s["value"])')
        log "$name: best validation ndcg@20 $value at epoch $epoch"
        echo "{\"model\": \"moira $name\", \"split\": \"valid\", \"selected_epoch\": $epoch, \"ndcg@20\": $value}" >> "$out/results.jsonl"
        if "$py" -c "import sys; sys.exit(not $value > $best_value)"; then
            best_net="$net" best_decay="$decay" best_value="$value" best_epoch="$epoch"
        fi
    done
done

# 2. Train the winner on train + valid for the selected number of epochs; score test once.
f="$out/final"
cp "$data/train.txt" "$f/input/1-train.txt"
cp "$data/valid.txt" "$f/input/2-valid.txt"
convert -d input -i "$f/input" -o "$f/input.nc" -f "$f/features" -s "$f/samples" -c --l2-normalize
convert -d output -i "$f/input" -o "$f/output.nc" -f "$f/features" -s "$f/samples"
convert -d test -i "$data/test.txt" -o "$f/test.nc" -f "$f/features" -s "$f/samples"
final_epochs=$((best_epoch + 1))
log "final: $(basename "$best_net") (lambda $best_decay) on train + valid for $final_epochs epochs"
timed=()
[ -x /usr/bin/time ] && timed=(/usr/bin/time -f "peak RSS %M KiB, wall %e s")
"${timed[@]}" "$bin/trainer" "$best_net" -i "$f/input.nc" -o "$f/output.nc" -n "$f/model.nc" \
    "${train_flags[@]}" --lambda "$best_decay" -e "$final_epochs" --threads "$threads" \
    "${device[@]}" 2> "$f/train.log"
tail -n 1 "$f/train.log" >&2
"$bin/predictor" -n "$f/model.nc" -i "$f/input.nc" -k 20 -s "$f/recs" --threads "$threads" \
    "${device[@]}" -o "$f/features" --samples "$f/samples" --evaluate "$f/test.nc" \
    --evaluate-k 20 > "$f/evaluate.txt"
final_name="moira $(basename "$best_net" .json), lambda $best_decay, $final_epochs epochs"
if [ "$scorer" = 1 ]; then
    "$py" benches/quality/baselines.py --data "$data" --recs "$f/recs" |
        sed "s/\"moira\"/\"$final_name\"/" >> "$out/results.jsonl"
else
    # No scipy: the predictor's own metrics (the same definitions, EVALUATION.md).
    grep '^{"metrics"' "$f/evaluate.txt" | tail -n 1 | "$py" -c '
import json, sys
m = [x for x in json.load(sys.stdin)["metrics"] if x["k"] == 20][0]
print(json.dumps({"model": sys.argv[1], "split": "test", "precision@20": m["precision"],
                  "recall@20": m["recall"], "recall_full@20": m["recall_full"],
                  "ndcg@20": m["ndcg"]}))' "$final_name" >> "$out/results.jsonl"
fi

# 3. Baselines on the same split.
if [ "${BASELINES:-1}" != 0 ] && [ "$scorer" = 1 ]; then
    log "baselines: popularity, EASE (lambda from $lambdas on valid)"
    # scipy's bundled OpenBLAS crashed (SIGSEGV in spotrf) factorising Gowalla's 41k x 41k
    # matrix on 2 threads; one thread works (BENCHMARKS.md).
    blas_threads="$threads"
    [ "$set_name" = gowalla ] && blas_threads=1
    OPENBLAS_NUM_THREADS="$blas_threads" "$py" benches/quality/baselines.py --data "$data" \
        --lambdas "$lambdas" >> "$out/results.jsonl"
fi

"$py" - "$out/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'model':<46} {'split':<6} {'P@20':>7} {'R@20':>7} {'Rfull@20':>8} {'NDCG@20':>8}")
for r in rows:
    name = r["model"] + (f" (lambda {r['lambda']:g})" if "lambda" in r else "")
    if r["split"] == "valid" and "precision@20" not in r:
        name += f" (epoch {r['selected_epoch']})"
    get = lambda k: f"{r[k]:.4f}" if k in r else "-"
    print(f"{name:<46} {r['split']:<6} {get('precision@20'):>7} {get('recall@20'):>7} "
          f"{get('recall_full@20'):>8} {get('ndcg@20'):>8}")
PY
