#!/usr/bin/env bash
# Runs on the GPU machine after benches/gpu/pack.sh here: each optional CUDA path
# (engine/backend/cuda/choices.rs) alone against none and all, in alternating rounds, on
# DSSTNE's benchmark network (networks/deep-recommender.json, ML-20M shape, batch 256, SGD;
# FP32 and TF32) and on I -> 200 -> I (networks/ae-200.json, batch 500, SGD, FP32); prints
# each configuration's median epoch after the first over the rounds, and its ratio to none.
#   device run (carry .gpu):  bash benches/gpu/paths.sh [ROUNDS] [EPOCHS]
set -uo pipefail
rounds="${1:-2}"; epochs="${2:-3}"
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
paths="0 fused_output split_sparse_gradient spmm_quads pinned_uploads 1"
for r in $(seq "$rounds"); do
    for p in $paths; do
        for bench in dr-fp32 dr-tf32 ae200-fp32; do
            case $bench in
                dr-*) net=networks/deep-recommender.json; b=256; extra=() ;;
                ae200-*) net=networks/ae-200.json; b=500; extra=(--alpha 0.05) ;;
            esac
            [[ $bench == *tf32 ]] && extra+=(--tf32)
            MOIRA_CUDA_NEW_KERNELS=$p "$work/bin/trainer" "$net" -i "$d/input.nc" -o "$d/output.nc" \
                -n "$d/m.nc" --force -b $b -e "$epochs" --device cuda "${extra[@]}" \
                --metrics-log "$d/$bench-$p-$r.jsonl" >/dev/null 2>&1 || echo "$bench $p round $r failed"
        done
    done
done
python3 - "$d" "$rounds" "$paths" <<'PY'
import json, statistics, sys
d, rounds, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
for bench in ("dr-fp32", "dr-tf32", "ae200-fp32"):
    med, loss = {}, {}
    for p in paths:
        secs = []
        for r in range(1, rounds + 1):
            eps = [json.loads(l) for l in open(f"{d}/{bench}-{p}-{r}.jsonl")]
            secs += [e["seconds"] for e in eps[1:]]
            loss[p] = eps[-1]["loss"]
        med[p] = statistics.median(secs)
    for p in paths:
        name = {"0": "none", "1": "all"}.get(p, p)
        print(f"{bench:<11} {name:<22} {med[p]:.4f} s  x{med[p] / med['0']:.3f}  loss {loss[p]:.6f}")
PY
