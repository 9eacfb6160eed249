#!/usr/bin/env bash
# Data, model and hybrid parallelism on CPU ranks (issue: `--parallel model|data|hybrid|auto`):
# for each data set (MovieLens-1M and Gowalla training lists from ../shared/data) and network
# (networks/NAME.json, or a descriptor's path), batch $BATCH (default 500), SGD, one thread per
# rank: the trainer alone, then `mpirun -np 2` with each --parallel mode of $MODES (default
# "model data hybrid auto tune"). Prints each run's median users/s over the epochs after the first,
# its ratio to the single run, and what auto and tune chose. With REPEATS=N (default 1) the single
# run and the modes run N times in turn, each mode's ratio is taken to the single run of the same
# round, and the line gives the medians of the N rounds with the ratios' range: on a shared,
# noisy machine a ratio of neighbouring runs is far steadier than one of runs minutes apart.
# EXTRA adds trainer arguments to every run (e.g. EXTRA="--exact-chunk 125").
#   [BATCH=500] [REPEATS=1] [EXTRA=] [MODES="model data hybrid auto tune"] benches/scaling/data-parallel.sh
#       [EPOCHS (default 3)] [DATASETS (default "ml1m gowalla")]
#       [NETWORKS (default "ae-200 ml1m-multdae")]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/target/release"
epochs="${1:-3}"
sets="${2:-ml1m gowalla}"
nets="${3:-ae-200 ml1m-multdae}"
batch="${BATCH:-500}"
modes="${MODES:-model data hybrid auto tune}"
repeats="${REPEATS:-1}"
read -r -a extra <<<"${EXTRA:-}"
cargo build --release -p moira-tools --bins --quiet --manifest-path "$root/Cargo.toml"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cd "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
median() {
    python3 -c "import json,sys,statistics; r=[json.loads(l) for l in open(sys.argv[1])][1:]; print(f\"{statistics.median(x['examples_per_s'] for x in r):.0f}\")" "$1"
}
for set in $sets; do
    case "$set" in
        ml1m) src="$root/../shared/data/ml-1m-lightgcnpp/train.txt" ;;
        gowalla) src="$root/../shared/data/gowalla-lightgcnpp/train.txt" ;;
        *) echo "unknown data set $set" >&2; exit 1 ;;
    esac
    mkdir -p "$set"
    "$bin/converter" --format lists -d input -i "$src" -o "$set/input.nc" -f "$set/features" -s "$set/samples" -c >/dev/null 2>&1
    "$bin/converter" --format lists -d output -i "$src" -o "$set/output.nc" -f "$set/features" -s "$set/samples" >/dev/null 2>&1
    for net in $nets; do
        descriptor="$root/networks/$net.json"
        [ -f "$net" ] && descriptor="$(cd "$(dirname "$net")" && pwd)/$(basename "$net")"
        args=("$descriptor" -i "$set/input.nc" -o "$set/output.nc" --force -b "$batch" -e "$epochs" --device cpu --threads 1 "${extra[@]}")
        rm -f rounds.txt
        for round in $(seq "$repeats"); do
            "$bin/trainer" "${args[@]}" -n one.nc --metrics-log one.jsonl >/dev/null 2>&1
            printf 'one %s\n' "$(median one.jsonl)" >>rounds.txt
            for mode in $modes; do
                mpirun -np 2 --oversubscribe "$bin/trainer" "${args[@]}" --parallel "$mode" -n "$mode.nc" \
                    --metrics-log "$mode.jsonl" >"$mode.log" 2>&1
                printf '%s %s\n' "$mode" "$(median "$mode.jsonl")" >>rounds.txt
            done
        done
        line="$set $(basename "$net" .json) (batch $batch): $(python3 - "$repeats" $modes <<'PY'
import statistics, sys
repeats, modes = int(sys.argv[1]), sys.argv[2:]
rows = [line.split() for line in open("rounds.txt")]
one = [float(v) for m, v in rows if m == "one"]
parts = [f"1 rank {statistics.median(one):.0f} users/s"]
for mode in modes:
    got = [float(v) for m, v in rows if m == mode]
    ratios = [g / o for g, o in zip(got, one)]
    spread = f", {min(ratios):.2f}-{max(ratios):.2f} over {repeats} rounds" if repeats > 1 else ""
    parts.append(f"2 ranks {mode} {statistics.median(got):.0f} ({statistics.median(ratios):.2f}x{spread})")
print("; ".join(parts))
PY
)"
        chose="$(grep -o -- "-> [a-z]*" auto.log 2>/dev/null | tail -1 || true)"
        tuned="$(grep -o -- "-> [a-z]*" tune.log 2>/dev/null | tail -1 || true)"
        echo "$line; auto chose ${chose#-> }; tune chose ${tuned#-> }"
    done
done
