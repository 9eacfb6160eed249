#!/usr/bin/env bash
# Runs on the GPU machine after benches/gpu/pack.sh here: the bundle's trainer against another
# trainer binary (BASE, e.g. an earlier commit's `target/release/trainer` copied into .gpu/),
# alternating runs on DSSTNE's benchmark network (networks/deep-recommender.json, ML-20M shape,
# batch 256, SGD, --device cuda): each run's epoch times and last loss, then the median epoch
# after the first of each binary and their ratio.
#   device run (carry .gpu):  BASE=.gpu/base-trainer bash benches/gpu/ab.sh [ROUNDS] [EPOCHS]
set -uo pipefail
rounds="${1:-3}"; epochs="${2:-3}"
root="$(pwd)"
work="$(mktemp -d)"
tar -C "$work" -xJf "$root/.gpu/bundle.tar.xz"
cudalibs=""
for d in /usr/local/cuda/lib64 $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13", "lib") for p in nvidia.__path__))' 2>/dev/null); do
    [[ -d "$d" ]] && cudalibs="$cudalibs:$d"
done
export LD_LIBRARY_PATH="$work/lib$cudalibs"
d="$work/data"; mkdir -p "$d"
"$work/bin/generate-data" --preset ml20m --format text --output "$d/ml20m.txt" 2>&1 | tail -1
"$work/bin/converter" -d input -i "$d/ml20m.txt" -o "$d/input.nc" -f "$d/features" -s "$d/samples" -c >/dev/null 2>&1
"$work/bin/converter" -d output -i "$d/ml20m.txt" -o "$d/output.nc" -f "$d/features" -s "$d/samples" >/dev/null 2>&1
for r in $(seq "$rounds"); do
    for who in new base; do
        bin="$work/bin/trainer"; [[ $who == base ]] && bin="$root/${BASE:?BASE names the other trainer}"
        "$bin" networks/deep-recommender.json -i "$d/input.nc" -o "$d/output.nc" -n "$d/$who.nc" \
            --force -b 256 -e "$epochs" --device cuda --metrics-log "$d/$who-$r.jsonl" >/dev/null 2>&1 || echo "$who run $r failed"
        python3 -c "import json,sys; e=[json.loads(l) for l in open(sys.argv[1])]; print(sys.argv[2], [round(x['seconds'],3) for x in e], round(e[-1]['loss'],6))" "$d/$who-$r.jsonl" "$who"
    done
done
python3 - "$d" "$rounds" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
med = {}
for who in ("new", "base"):
    secs = [json.loads(l)["seconds"] for r in range(1, rounds + 1) for l in list(open(f"{d}/{who}-{r}.jsonl"))[1:]]
    med[who] = statistics.median(secs)
    print(f"{who}: median epoch {med[who]:.3f} s over {len(secs)} epochs")
print(f"new/base = {med['new'] / med['base']:.3f}")
PY
