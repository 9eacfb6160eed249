#!/usr/bin/env bash
# Model-parallel training on CPU ranks: MovieLens-1M's training lists (6,040 users x 3,706
# items, ../shared/data), 3,706 -> 1,024 -> 1,024 -> 3,706 sigmoid (dropout 0.5, SMCE: the
# ML-20M benchmark network's shape at ML-1M width), batch 256, SGD, 2 epochs, one thread per
# rank; alone and under `mpirun -np 2`, `-np 4 --oversubscribe`. Prints each run's median
# epoch time, its last loss and the speed-up over the single run.
#   benches/scaling/cpu-ranks.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/target/release"
cargo build --release -p moira-tools --bins --quiet --manifest-path "$root/Cargo.toml"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cd "$work"
cp "$root/../shared/data/ml-1m-lightgcnpp/train.txt" lists.txt
"$bin/converter" --format lists -d input -i lists.txt -o input.nc -f features -s samples -c >/dev/null 2>&1
"$bin/converter" --format lists -d output -i lists.txt -o output.nc -f features -s samples >/dev/null 2>&1
args=("$root/networks/deep-recommender.json" -i input.nc -o output.nc --force -b 256 -e 2 --device cpu --threads 1)
median() { python3 -c "import json,sys,statistics; r=[json.loads(l) for l in open(sys.argv[1])]; print(f\"{statistics.median(x['seconds'] for x in r):.3f} {r[-1]['loss']:.6f}\")" "$1"; }
"$bin/trainer" "${args[@]}" -n one.nc --metrics-log one.jsonl >/dev/null 2>&1
read -r t1 l1 < <(median one.jsonl)
echo "1 rank:  ${t1} s/epoch, loss ${l1}"
for np in 2 4; do
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np "$np" --oversubscribe \
        "$bin/trainer" "${args[@]}" --parallel model -n "np$np.nc" --metrics-log "np$np.jsonl" >/dev/null 2>&1
    read -r t l < <(median "np$np.jsonl")
    python3 -c "print(f'$np ranks: $t s/epoch, loss $l, speed-up {float($t1) / float($t):.2f}x')"
done
