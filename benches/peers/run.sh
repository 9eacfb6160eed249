#!/usr/bin/env bash
# Peer comparison on this machine: the I -> 200 -> I autoencoder (batch 500, fp32, 2 threads)
# in TensorFlow-CPU, JAX-CPU and Moira, on ML-1M and Gowalla (LightGCN splits).
#
#   benches/peers/run.sh [--quick]     (from any directory)
#
# --quick: ML-1M only, 2 timed epochs. Otherwise ML-1M with 5 and Gowalla with 2 timed
# epochs (a Gowalla run takes 1-2 minutes per Python peer on a quiet 2-core machine, 4-5 loaded).
# Env: MOIRA_SHARED_DATA (default <repo>/../shared/data), THREADS (default 2),
#      PEERS (default "tf jax moira"), REPEAT (runs of each implementation per dataset,
#      interleaved; default 1; the table shows the median).
# Each run's JSON line (with peak_rss_kib from /usr/bin/time) is appended to
# benches/peers/out/results-<time>.jsonl (git-ignored); Moira's files go to out/moira-*/.
# Last line printed: moira_vs_best_peer=<ratio> (Moira users/s over the best peer's, the
# geometric mean over the datasets), or moira_vs_best_peer=n/a when a side did not run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${MOIRA_SHARED_DATA:-$root/../shared/data}"
threads="${THREADS:-2}"
peers="${PEERS:-tf jax moira}"
repeat="${REPEAT:-1}"

quick=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument '$arg' (usage: run.sh [--quick])" >&2; exit 2 ;;
    esac
done

# name, timed epochs
if (( quick )); then
    datasets=("ml-1m-lightgcnpp 2")
else
    datasets=("ml-1m-lightgcnpp 5" "gowalla-lightgcnpp 2")
fi
for d in "${datasets[@]}"; do
    f="$data/${d%% *}/train.txt"
    [[ -f "$f" ]] || { echo "run.sh: missing $f (set MOIRA_SHARED_DATA)" >&2; exit 1; }
done

if [[ ! -x /usr/bin/time ]]; then
    echo "run.sh: installing GNU time (apt package 'time')" >&2
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y -qq time >&2; else sudo apt-get install -y -qq time >&2; fi
fi

"$here/setup.sh"
py="$here/.venv/bin/python"
if [[ " $peers " == *" moira "* ]]; then
    (cd "$root" && cargo build --release -p moira-tools --bins --quiet)
fi
bin="$root/target/release"

# Pin to the first $threads cores so that no library can use more.
pin=()
if command -v taskset >/dev/null && (( $(nproc) >= threads )); then
    pin=(taskset -c "0-$((threads - 1))")
fi

mkdir -p "$here/out"
results="$here/out/results-$(date +%Y%m%d-%H%M%S).jsonl"
: > "$results"
uptime_before="$(uptime)"
echo "run.sh: $(nproc) cores; uptime before:$uptime_before; results in $results" >&2

# Runs one benchmark command under /usr/bin/time (unless it is the moira_json function,
# which times the trainer itself); keeps its last stdout line if it is a JSON object, with
# the peak RSS (KiB) added.
rss="$here/out/.rss"
record() {
    local line timer=(/usr/bin/time -f %M -o "$rss") load
    load="$(cut -d' ' -f1 /proc/loadavg)"
    [[ "$1" == moira_json ]] && timer=()
    if line="$("${timer[@]}" "$@" | tail -n 1)" && [[ "$line" == "{"* ]]; then
        line="${line%\}}, \"peak_rss_kib\": $(tail -n 1 "$rss"), \"load1_before\": $load}"
        echo "$line" >> "$results"
        echo "$line"
    else
        echo "run.sh: failed: $*" >&2
        return 1
    fi
}

# Moira: converts train.txt (lists) to NetCDF with the features index 0..I-1 (I = max item
# id + 1 over train/valid/test, the peers' catalogue), exact width (no padding to 128), and
# trains moira-ae200.json on it with input = target. Prints one JSON line like the peers'.
moira_json() {
    local name="$1" train="$2" epochs="$3" dir="$here/out/moira-$1" f items
    local folder; folder="$(dirname "$train")"
    mkdir -p "$dir"
    items="$(for f in "$folder/train.txt" "$folder/valid.txt" "$folder/test.txt"; do
                 [[ -f "$f" ]] && cat "$f"; done |
             awk '{for (i = 2; i <= NF; i++) if ($i + 0 > m) m = $i + 0} END {print m + 1}')"
    awk -v n="$items" 'BEGIN {for (i = 0; i < n; i++) printf "%d\t%d\n", i, i}' > "$dir/features.idx"
    rm -f "$dir/samples.idx" "$dir/input.nc" "$dir/net.nc" "$dir/net.metrics.jsonl"
    "$bin/converter" --format lists -d input -i "$train" -o "$dir/input.nc" \
        -f "$dir/features.idx" -s "$dir/samples.idx" --exact-width
    /usr/bin/time -f %M -o "$rss" "${pin[@]}" "$bin/trainer" "$here/moira-ae200.json" -i "$dir/input.nc" -o "$dir/input.nc" \
        -n "$dir/net.nc" --force -b 500 -e $((epochs + 1)) --optimizer adam --alpha 0.001 \
        --mu 0.9 --mu1 0.999 --lambda 0 --threads "$threads" 2> "$dir/trainer.log"
    "$py" - "$dir/net.metrics.jsonl" "$dir/trainer.log" "$name" "$items" "$threads" \
        "$(git -C "$root" rev-parse --short HEAD)" <<'PY'
import json, re, statistics, sys
log, tlog, name, items, threads, rev = sys.argv[1:]
ep = [json.loads(l) for l in open(log) if l.strip()]
timed = ep[1:]  # epoch 0 is the warm-up
est = re.search(r"(\d+) examples; .*memory estimate ([\d.]+) MiB", open(tlog).read())
print(json.dumps({
    "peer": "moira", "dataset": name,
    "users_per_s": round(statistics.median(e["examples_per_s"] for e in timed), 1),
    "epochs": len(timed), "loss": round(timed[-1]["loss"], 4),
    "losses": [round(e["loss"], 2) for e in ep],
    "epoch_s": [round(e["seconds"], 3) for e in timed],
    "users": int(est.group(1)), "items": int(items), "hidden": 200, "batch": 500,
    "optimizer": "adam", "lr": 0.001, "threads": int(threads),
    "mem_estimate_mib": float(est.group(2)), "version": rev}))
PY
}

for d in "${datasets[@]}"; do
    name="${d%% *}"
    epochs="${d##* }"
    train="$data/$name/train.txt"
    for ((r = 0; r < repeat; r++)); do
        for peer in $peers; do
            case "$peer" in
                tf|jax) record "${pin[@]}" "$py" "$here/${peer}_ae.py" --data "$train" \
                            --dataset "$name" --epochs "$epochs" --threads "$threads" ;;
                moira) record moira_json "$name" "$train" "$epochs" ;;
                *) echo "run.sh: unknown peer '$peer' in PEERS" >&2; exit 2 ;;
            esac
        done
    done
done

uptime_after="$(uptime)"
"$py" - "$results" "$uptime_before" "$uptime_after" <<'PY'
import json, math, statistics, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
runs = defaultdict(list)
for r in rows:
    runs[(r["dataset"], r["peer"])].append(r)
names = {"tensorflow": "TensorFlow", "jax": "JAX", "moira": "Moira"}
datasets = list(dict.fromkeys(r["dataset"] for r in rows))
print()
print(f"{'implementation':<15}{'dataset':<20}{'users/s':>10}{'GFLOP/s':>9}{'loss':>10}"
      f"{'peak RSS MiB':>14}  runs: users/s (1-min load before)")
ratios = []
for d in datasets:
    ups = {}
    for p in names:
        rs = runs.get((d, p))
        if not rs:
            continue
        u = statistics.median(r["users_per_s"] for r in rs)
        ups[p] = u
        gflops = 6 * rs[0]["hidden"] * rs[0]["items"] * u / 1e9
        rss = max(r["peak_rss_kib"] for r in rs) / 1024
        extra = f", estimate {rs[0]['mem_estimate_mib']:.0f} MiB" if "mem_estimate_mib" in rs[0] else ""
        print(f"{names[p]:<15}{d:<20}{u:>10,.0f}{gflops:>9.1f}{rs[-1]['loss']:>10.2f}{rss:>14.0f}"
              f"  {', '.join(format(r['users_per_s'], ',.0f') + ' (' + str(r['load1_before']) + ')' for r in rs)}{extra}")
    best = max((ups[p] for p in ("tensorflow", "jax") if p in ups), default=None)
    if "moira" in ups and best:
        ratios.append(ups["moira"] / best)
        print(f"{'':<15}{d:<20}moira / best peer = {ratios[-1]:.2f}")
print("loss: cross-entropy summed over the I output units, per user, mean over the last"
      " epoch's batches (before each update)")
print(f"uptime before:{sys.argv[2]}")
print(f"uptime after: {sys.argv[3]}")
if ratios and len(ratios) == len(datasets):
    print(f"moira_vs_best_peer={math.exp(sum(map(math.log, ratios)) / len(ratios)):.3f}")
else:
    print("moira_vs_best_peer=n/a")
PY
