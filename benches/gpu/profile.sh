#!/usr/bin/env bash
# Per-kernel GPU time of Moira's training step (Nsight Compute), on the GPU machine after
# benches/gpu/pack.sh here:  device run (carry .gpu):  bash benches/gpu/profile.sh [--tf32]
# Profiles a window of kernel launches in the middle of an epoch of networks/deep-recommender.json
# on a generated ML-20M-shaped dataset, and prints the GPU time per kernel name per step
# (a step is one minibatch: forward, loss, backward, update). NET, BATCH and TRAIN_ARGS pick
# another network (default: networks/deep-recommender.json, 256, none), e.g.
#   NET=networks/ae-200.json BATCH=500 TRAIN_ARGS="--optimizer adam --alpha 0.001" bash benches/gpu/profile.sh
# MOIRA_CUDA_NEW_KERNELS=1 profiles with every optional path of the CUDA backend on.
set -uo pipefail
root="$(pwd)"
out="${OUT:-$root/gpu-out}"
mkdir -p "$out"
work="$(mktemp -d)"
tar -C "$work" -xJf "$root/.gpu/bundle.tar.xz"
cudalibs=""
for d in /usr/local/cuda/lib64 $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13", "lib") for p in nvidia.__path__))' 2>/dev/null); do
    [[ -d "$d" ]] && cudalibs="$cudalibs:$d"
done
run() { env LD_LIBRARY_PATH="$work/lib$cudalibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; }
d="$work/data"; mkdir -p "$d"
run "$work/bin/generate-data" --preset ml20m --format text --output "$d/ml20m.txt" >/dev/null 2>&1
run "$work/bin/converter" -d input -i "$d/ml20m.txt" -o "$d/input.nc" -f "$d/features" -s "$d/samples" -c >/dev/null 2>&1
run "$work/bin/converter" -d output -i "$d/ml20m.txt" -o "$d/output.nc" -f "$d/features" -s "$d/samples" >/dev/null 2>&1
skip="${SKIP:-3000}"; count="${COUNT:-400}"
# SHARDED=R profiles examples/sharded_gpu.rs (R ranks as threads) instead of the trainer.
if [[ -n "${SHARDED:-}" ]]; then
    cmd=("$work/bin/sharded_gpu" "${NET:-networks/deep-recommender.json}" "$d/input.nc" "$d/output.nc" "$SHARDED" 1 "${BATCH:-256}")
else
    cmd=("$work/bin/trainer" "${NET:-networks/deep-recommender.json}" -i "$d/input.nc" -o "$d/output.nc"
         -n "$d/p.nc" --force -b "${BATCH:-256}" -e 1 --device cuda ${TRAIN_ARGS:-} "$@")
fi

# NCU_ARGS: more ncu flags (e.g. "--clock-control none" to leave the clocks alone; the
# recorded profiles in NOTES.md used ncu's default, clocks locked to base).
run ncu ${NCU_ARGS:-} --launch-skip "$skip" --launch-count "$count" --metrics gpu__time_duration.sum --csv \
    "${cmd[@]}" >"$out/ncu.csv" 2>"$out/ncu.err"
echo "ncu exit $?"
python3 - "$out/ncu.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]
ki, vi, ui = head.index("Kernel Name"), head.index("Metric Value"), head.index("Metric Unit")
tot = collections.defaultdict(float); cnt = collections.Counter()
for r in rows[1:]:
    v = float(r[vi].replace(",", ""))
    v = v / 1000.0 if r[ui] == "nsecond" else v * (1000.0 if r[ui] == "msecond" else 1.0)
    name = r[ki].split("(")[0][:60]
    tot[name] += v; cnt[name] += 1
steps = max(1, cnt.get("sparse_weight_gradient", 1))
print(f"{'kernel':<62}{'launches/step':>14}{'us/step':>10}")
for name, t in sorted(tot.items(), key=lambda x: -x[1]):
    print(f"{name:<62}{cnt[name]/steps:>14.1f}{t/steps:>10.1f}")
print(f"{'total':<62}{'':>14}{sum(tot.values())/steps:>10.1f}")
PY
