#!/usr/bin/env bash
# Peer comparison on this machine: the I -> 200 -> I autoencoder (batch 500, fp32, 2 threads)
# in TensorFlow-CPU and JAX-CPU, then Moira, on ML-1M and Gowalla (LightGCN splits).
#
#   benches/peers/run.sh [--quick]     (from any directory)
#
# --quick: ML-1M only, 2 timed epochs. Otherwise ML-1M with 5 and Gowalla with 2 timed
# epochs (a Gowalla run takes about 3-4 minutes per peer on 2 cores).
# Env: MOIRA_SHARED_DATA (default <repo>/../shared/data), THREADS (default 2).
# Each run's JSON line is appended to benches/peers/out/results-<time>.jsonl (git-ignored).
# Last line printed: moira_vs_best_peer=<ratio> (Moira users/s over the best peer's, the
# geometric mean over the datasets), or moira_vs_best_peer=n/a when Moira did not run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${MOIRA_SHARED_DATA:-$root/../shared/data}"
threads="${THREADS:-2}"

quick=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument '$arg' (usage: run.sh [--quick])" >&2; exit 2 ;;
    esac
done

# name, train file, timed epochs
if (( quick )); then
    datasets=("ml-1m-lightgcnpp 2")
else
    datasets=("ml-1m-lightgcnpp 5" "gowalla-lightgcnpp 2")
fi
for d in "${datasets[@]}"; do
    f="$data/${d%% *}/train.txt"
    [[ -f "$f" ]] || { echo "run.sh: missing $f (set MOIRA_SHARED_DATA)" >&2; exit 1; }
done

"$here/setup.sh"
py="$here/.venv/bin/python"

# Pin to the first $threads cores so that no library can use more.
pin=()
if command -v taskset >/dev/null && (( $(nproc) >= threads )); then
    pin=(taskset -c "0-$((threads - 1))")
fi

mkdir -p "$here/out"
results="$here/out/results-$(date +%Y%m%d-%H%M%S).jsonl"
: > "$results"
echo "run.sh: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), results in $results" >&2

# Runs one benchmark command; keeps its last stdout line if it is a JSON object.
record() {
    local line
    if line="$("$@" | tail -n 1)" && [[ "$line" == "{"* ]]; then
        echo "$line" >> "$results"
        echo "$line"
    else
        echo "run.sh: failed: $*" >&2
        return 1
    fi
}

moira_ran=0
for d in "${datasets[@]}"; do
    name="${d%% *}"
    epochs="${d##* }"
    train="$data/$name/train.txt"
    for peer in tf jax; do
        record "${pin[@]}" "$py" "$here/${peer}_ae.py" --data "$train" --dataset "$name" \
            --epochs "$epochs" --threads "$threads"
    done

    # ---- HOOK: Moira -------------------------------------------------------------------
    # Runs once target/release/trainer supports training (the stub exits non-zero on
    # --help). It must train benches/peers/moira-ae200.json on $train with batch 500, Adam,
    # $threads threads, one warm-up epoch excluded, and print as its last stdout line a
    # JSON object like the peers': {"peer":"moira","dataset":...,"users_per_s":...,
    # "epochs":...,"loss":...}. Adjust the flags below to the trainer's real interface.
    trainer="$root/target/release/trainer"
    if [[ -x "$trainer" ]] && "$trainer" --help >/dev/null 2>&1; then
        record "${pin[@]}" "$trainer" --config "$here/moira-ae200.json" --data "$train" \
            --dataset "$name" --batch 500 --optimizer adam --epochs "$epochs" \
            --warmup-epochs 1 --threads "$threads" --bench-json
        moira_ran=1
    else
        echo "moira: trainer not built yet"
    fi
    # ---- end of HOOK ---------------------------------------------------------------------
done

"$py" - "$results" "$moira_ran" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
moira_ran = sys.argv[2] == "1"
peers = ["tensorflow", "jax", "moira"]
datasets = list(dict.fromkeys(r["dataset"] for r in rows))
ups = {(r["dataset"], r["peer"]): r["users_per_s"] for r in rows}
print()
print(f"{'dataset':<22}" + "".join(f"{p + ' users/s':>20}" for p in peers) + f"{'moira/best peer':>18}")
ratios = []
for d in datasets:
    cells = [ups.get((d, p)) for p in peers]
    best = max((ups[(d, p)] for p in peers[:2] if (d, p) in ups), default=None)
    ratio = None
    if moira_ran and cells[2] is not None and best:
        ratio = cells[2] / best
        ratios.append(ratio)
    print(f"{d:<22}" + "".join(f"{c:>20,.0f}" if c is not None else f"{'-':>20}" for c in cells)
          + (f"{ratio:>18.2f}" if ratio is not None else f"{'n/a':>18}"))
if moira_ran and ratios and len(ratios) == len(datasets):
    g = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"moira_vs_best_peer={g:.3f}")
else:
    print("moira_vs_best_peer=n/a")
PY
