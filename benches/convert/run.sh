#!/usr/bin/env bash
# Converter benchmark: DSSTNE text -> NetCDF on a MovieLens-20M-shaped file
# (138,493 users x 26,744 items, 20,000,263 entries, ~330 MB of text).
#
#   benches/convert/run.sh [RUNS]      (from any directory; RUNS default 5)
#
# Builds the workspace (release), generates target/bench-data/ml20m.txt with
# `generate-data --preset ml20m` (reused if present), then converts it RUNS times in
# indicator mode and RUNS times in analog mode (values = the timestamps), each run from
# scratch (-c: new features index, new samples index), timed end to end with
# /usr/bin/time -f '%e %M' (wall seconds, peak RSS KiB). Prints a table of medians and, as
# its last line, convert_entries_per_s=<median over the indicator runs>.
# A floor for context: `cat FILE > /dev/null` (reading the text from the page cache).
# Targets (issue): >= 2,000,000 entries/s end to end on the 2-core machine; peak RSS < 3x
# the output file size.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
runs="${1:-5}"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "usage: run.sh [RUNS]" >&2; exit 2; }
entries=20000263

if [[ ! -x /usr/bin/time ]]; then
    echo "run.sh: installing GNU time (apt package 'time')" >&2
    if [[ $(id -u) -eq 0 ]]; then apt-get install -y -qq time >&2; else sudo apt-get install -y -qq time >&2; fi
fi

(cd "$root" && cargo build --release --workspace --quiet)
bin="$root/target/release"
dir="$root/target/bench-data"
mkdir -p "$dir"
txt="$dir/ml20m.txt"
if [[ ! -s "$txt" ]]; then
    "$bin/generate-data" --preset ml20m -o "$txt"
fi
work="$(mktemp -d "$dir/convert.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "run.sh: $(nproc) cores; uptime before:$(uptime)" >&2
echo "run.sh: input $txt ($(stat -c %s "$txt") bytes, $entries entries), $runs runs per mode" >&2

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

cat "$txt" > /dev/null  # warm the page cache once
floor_s=()
for ((r = 0; r < runs; r++)); do
    floor_s+=("$( { /usr/bin/time -f '%e' cat "$txt" > /dev/null; } 2>&1 | tail -n 1)")
done

declare -A med_eps med_rss size
for mode in indicator analog; do
    secs=(); rss=()
    for ((r = 1; r <= runs; r++)); do
        rm -f "$work"/*
        out="$( { /usr/bin/time -f '%e %M' "$bin/converter" -d input -i "$txt" -o "$work/out.nc" \
                   -f "$work/features.idx" -s "$work/samples.idx" -c -t "$mode"; } 2>&1 )" || {
            echo "$out" >&2; echo "run.sh: converter failed" >&2; exit 1; }
        read -r s m <<< "$(tail -n 1 <<< "$out")"
        secs+=("$s"); rss+=("$m")
        echo "run.sh: $mode run $r: ${s} s, peak RSS ${m} KiB, $(awk -v e=$entries -v s="$s" 'BEGIN{printf "%.0f", e/s}') entries/s" >&2
    done
    size[$mode]="$(stat -c %s "$work/out.nc")"
    med_s="$(printf '%s\n' "${secs[@]}" | median)"
    med_eps[$mode]="$(awk -v e=$entries -v s="$med_s" 'BEGIN{printf "%.0f", e/s}')"
    med_rss[$mode]="$(printf '%s\n' "${rss[@]}" | median)"
done
floor="$(printf '%s\n' "${floor_s[@]}" | median)"

echo
printf '%-10s %16s %14s %16s %14s\n' mode "entries/s (med)" "peak RSS MiB" "output MiB" "RSS/output"
for mode in indicator analog; do
    awk -v m="$mode" -v e="${med_eps[$mode]}" -v r="${med_rss[$mode]}" -v o="${size[$mode]}" \
        'BEGIN{printf "%-10s %16.0f %14.1f %16.1f %14.2f\n", m, e, r/1024, o/1048576, r*1024/o}'
done
awk -v e=$entries -v s="$floor" 'BEGIN{ if (s > 0) printf "%-10s %16.0f   (cat > /dev/null, %s s)\n", "read floor", e/s, s; else printf "%-10s %16s   (cat > /dev/null, < 0.01 s)\n", "read floor", "-" }'
echo "uptime after:$(uptime)"
echo "convert_entries_per_s=${med_eps[indicator]}"
