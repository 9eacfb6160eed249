#!/usr/bin/env bash
# Converter benchmark, Parquet input: a MovieLens-20M-shaped interaction log (138,493 users x
# 26,744 items, 20,000,263 rows of userId, movieId, rating, timestamp) as one Parquet file the
# way pyarrow/pandas write it (snappy, row groups of 1 Mi rows), converted to NetCDF.
#
#   benches/convert/parquet.sh [RUNS]      (from any directory; RUNS default 5)
#
# Builds converter and generate-data (release), generates target/bench-data/ml20m.csv with
# `generate-data --preset ml20m --format csv` and writes target/bench-data/ml20m.parquet from
# it with pyarrow (both reused if present; pyarrow from the test virtualenv $MOIRA_PY_VENV,
# default ~/.cache/moira/py, installed there if missing). Then converts RUNS times each:
# Parquet indicator, Parquet analog (values = ratings), and the same data as CSV (indicator),
# each run from scratch (-c), timed end to end with /usr/bin/time -f '%e %M' (wall seconds,
# peak RSS KiB). Prints a table of medians and, as its last line,
# convert_parquet_entries_per_s=<median over the Parquet indicator runs>.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
runs="${1:-5}"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "usage: parquet.sh [RUNS]" >&2; exit 2; }
entries=20000263

if [[ ! -x /usr/bin/time ]]; then
    echo "parquet.sh: installing GNU time (apt package 'time')" >&2
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y -qq time >&2; else sudo apt-get install -y -qq time >&2; fi
fi

(cd "$root" && cargo build --release -p moira-tools --bin converter --quiet \
    && cargo build --release -p moira-datagen --bin generate-data --quiet)
bin="$root/target/release"
dir="$root/target/bench-data"
mkdir -p "$dir"
csv="$dir/ml20m.csv"
pq="$dir/ml20m.parquet"
if [[ ! -s "$csv" ]]; then
    "$bin/generate-data" --preset ml20m --format csv -o "$csv"
fi
if [[ ! -s "$pq" ]]; then
    venv="${MOIRA_PY_VENV:-$HOME/.cache/moira/py}"
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -c 'import pyarrow' 2>/dev/null \
        || "$venv/bin/pip" install -q --disable-pip-version-check pyarrow
    "$venv/bin/python" - "$csv" "$pq" <<'EOF'
import sys
import pyarrow.csv as pc
import pyarrow.parquet as pq
t = pc.read_csv(sys.argv[1])
pq.write_table(t, sys.argv[2] + ".tmp", compression="snappy", row_group_size=1 << 20)
import os
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
print(f"parquet.sh: {t.num_rows} rows, schema {t.schema.types}", file=sys.stderr)
EOF
fi
work="$(mktemp -d "$dir/convert-parquet.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "parquet.sh: $(nproc) cores; uptime before:$(uptime)" >&2
echo "parquet.sh: input $pq ($(stat -c %s "$pq") bytes), $csv ($(stat -c %s "$csv") bytes), $runs runs per mode" >&2

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
pq_flags=(--format parquet -i "$pq" --user-column userId --item-column movieId)
declare -A med_eps med_rss size
for mode in parquet-indicator parquet-analog csv-indicator; do
    case "$mode" in
        parquet-indicator) flags=("${pq_flags[@]}" -t indicator) ;;
        parquet-analog) flags=("${pq_flags[@]}" --value-column rating -t analog) ;;
        csv-indicator) flags=(--format csv -i "$csv" -t indicator) ;;
    esac
    secs=(); rss=()
    for ((r = 1; r <= runs; r++)); do
        rm -f "$work"/*
        out="$( { /usr/bin/time -f '%e %M' "$bin/converter" -d input "${flags[@]}" -o "$work/out.nc" \
                   -f "$work/features.idx" -s "$work/samples.idx" -c; } 2>&1 )" || {
            echo "$out" >&2; echo "parquet.sh: converter failed" >&2; exit 1; }
        read -r s m <<< "$(tail -n 1 <<< "$out")"
        secs+=("$s"); rss+=("$m")
        echo "parquet.sh: $mode run $r: ${s} s, peak RSS ${m} KiB, $(awk -v e=$entries -v s="$s" 'BEGIN{printf "%.0f", e/s}') entries/s" >&2
    done
    size[$mode]="$(stat -c %s "$work/out.nc")"
    med_s="$(printf '%s\n' "${secs[@]}" | median)"
    med_eps[$mode]="$(awk -v e=$entries -v s="$med_s" 'BEGIN{printf "%.0f", e/s}')"
    med_rss[$mode]="$(printf '%s\n' "${rss[@]}" | median)"
done

echo
printf '%-18s %16s %14s %16s %14s\n' mode "entries/s (med)" "peak RSS MiB" "output MiB" "RSS/output"
for mode in parquet-indicator parquet-analog csv-indicator; do
    awk -v m="$mode" -v e="${med_eps[$mode]}" -v r="${med_rss[$mode]}" -v o="${size[$mode]}" \
        'BEGIN{printf "%-18s %16.0f %14.1f %16.1f %14.2f\n", m, e, r/1024, o/1048576, r*1024/o}'
done
echo "input: parquet $(stat -c %s "$pq") B, csv $(stat -c %s "$csv") B"
echo "uptime after:$(uptime)"
echo "convert_parquet_entries_per_s=${med_eps[parquet-indicator]}"
