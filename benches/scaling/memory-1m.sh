#!/usr/bin/env bash
# Memory per rank of a model too wide for comfort on one rank: a 1,000,000-item synthetic
# catalogue, I -> 256 -> I (sigmoid, CrossEntropy, SGD, batch 64), one epoch over USERS users,
# trained alone and under `mpirun -np 4` (CPU). Prints the peak resident memory (VmHWM, from
# /usr/bin/time) of every process and the ratio of the 4-rank mean to the single run.
#   benches/scaling/memory-1m.sh            (USERS=512 ITEMS=1000000 HIDDEN=256 by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
users="${USERS:-512}"; items="${ITEMS:-1000000}"; hidden="${HIDDEN:-256}"
bin="$root/target/release"
cargo build --release -p moira-tools -p moira-datagen --bins --quiet --manifest-path "$root/Cargo.toml"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cd "$work"
"$bin/generate-data" --users "$users" --items "$items" --entries $((users * 100)) --min-per-user 50 \
    --max-per-user 150 --format lists --output lists.txt 2>/dev/null
# Every item in the features index, so that the layers are ITEMS wide (most items are cold).
awk -v n="$items" 'BEGIN { for (i = 0; i < n; i++) printf "%d\t%d\n", i, i }' > features
"$bin/converter" --format lists -d input -i lists.txt -o input.nc -f features -s samples --exact-width >/dev/null 2>&1
"$bin/converter" --format lists -d output -i lists.txt -o output.nc -f features -s samples --exact-width >/dev/null 2>&1
cat > net.json <<JSON
{ "Version": 0.8, "Name": "wide", "Kind": "FeedForward", "ShuffleIndices": false,
  "Layers": [
    { "Name": "Input", "Kind": "Input", "N": "auto", "DataSet": "input", "Sparse": true },
    { "Name": "Hidden", "Kind": "Hidden", "Source": "Input", "N": $hidden, "Activation": "Sigmoid" },
    { "Name": "Output", "Kind": "Output", "Source": "Hidden", "N": "auto", "DataSet": "output",
      "Sparse": true, "Activation": "Sigmoid" } ],
  "ErrorFunction": "CrossEntropy" }
JSON
args=(net.json -i input.nc -o output.nc --force -b 64 -e 1 --device cpu --threads 1)
peak() { grep -h "Maximum resident set size" "$@" | awk '{print $NF}'; }
echo "== 1 rank"
/usr/bin/time -v -o time-1.txt "$bin/trainer" "${args[@]}" -n one.nc 2>&1 | grep -E "memory estimate|trained"
one=$(peak time-1.txt)
echo "peak RSS: $((one / 1024)) MiB"
echo "== 4 ranks"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 4 --oversubscribe \
    sh -c '/usr/bin/time -v -o time-4.$OMPI_COMM_WORLD_RANK.txt "$0" "$@"' "$bin/trainer" "${args[@]}" --parallel model -n four.nc 2>&1 |
    grep -E "memory estimate|trained|largest weight share"
peaks=$(peak time-4.*.txt)
echo "peak RSS per rank: $(for p in $peaks; do printf '%d ' $((p / 1024)); done)MiB"
mean=$(echo "$peaks" | awk '{s += $1} END {print s / NR}')
python3 -c "print(f'mean per rank / single = {float($mean) / $one:.3f}')"
