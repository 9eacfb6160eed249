#!/usr/bin/env bash
# Runs on the GPU machine, from the repository root, after benches/gpu/pack.sh here:
#   device run (carry .gpu):  bash benches/gpu/run.sh [tests|bench|sanitizer|all|mpi|quality|exact]
# tests: the CUDA parity and training tests, and the optional paths (engine/backend/cuda's
#        CudaChoices) against the default ones; then the parity and training tests again with
#        every optional path on (MOIRA_CUDA_NEW_KERNELS=1).
# sanitizer: compute-sanitizer memcheck and racecheck on the parity and top-K tests (last in
#        `all`, each bounded by SANITIZER_TIMEOUT seconds).
# bench: DSSTNE's MovieLens-20M benchmark network (networks/deep-recommender.json: 27K -> 3 x
#        1024 sigmoid, dropout 0.5 -> 27K, SMCE, batch 256) on a generated ML-20M-shaped
#        dataset, Moira (--device cuda, FP32 and TF32) against PyTorch (torch.sparse input,
#        FP32 and TF32) on the same GPU; median epoch time after a warm-up epoch. Each Moira
#        run twice: default paths, then every optional path on (names *-new-*; NEW="0" or
#        "1" runs one). Also I -> 200 -> I (networks/ae-200.json) with Adam and with plain SGD.
# mpi: the multi-rank GPU path: networks/deep-recommender.json alone and under `mpirun -np 2`
#        with both ranks on the one GPU (the machine's Open MPI; the bundle's copies of its
#        libraries are set aside), same seed: loss per epoch and epoch time of each.
# quality: benches/quality/run.sh on the GPU with the bundle's binaries, for QUALITY_SET
#        (default gowalla): the denoising linear autoencoder (networks/ml1m-dlae.json, the
#        ML-1M recipe; on Gowalla 1.68 G weights, 27 GB with Adam's moments: beyond the 24 GB
#        CPU machine) tuned on valid (DECAYS, EPOCHS, PATIENCE) and measured once on test;
#        popularity and EASE only with BASELINES=1 and scipy there. Results and logs (not the
#        models) in $OUT/quality-SET/ (results.jsonl), the table at the end of
#        $OUT/quality-SET.log.
# exact: exact sums on the GPU (never run yet): networks/ml1m-multdae.json on the ML-1M
#        training lists, Adam, 2 epochs, --exact-chunk 125 (EXACT_CHUNK), alone and under
#        `mpirun -np 2` and `-np 3 --parallel data` with every rank on the one GPU; the three
#        model files must be byte-identical (`cmp`; a difference fails the mode), with the
#        epoch times of each. EXACT_DEVICE=cpu dry-runs it on the CPU.
# Logs and JSON lines go to $OUT (or ./gpu-out). Last line: moira_vs_pytorch=<ratio>.
set -uo pipefail
mode="${1:-all}"
root="$(pwd)"
out="${OUT:-$root/gpu-out}"
mkdir -p "$out"
work="$(mktemp -d)"
tar -C "$work" -xJf "$root/.gpu/bundle.tar.xz"
# CUDA libraries (NVRTC, cuBLAS): the toolkit's, or PyTorch's wheels.
cudalibs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13", "lib") for p in nvidia.__path__))' 2>/dev/null); do
    [[ -d "$d" ]] && cudalibs="$cudalibs:$d"
done
export MOIRA_LD="$work/lib$cudalibs"
run() { env LD_LIBRARY_PATH="$MOIRA_LD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; }
# The bundle's copy of the real data tests/fused_output.rs reads.
export MOIRA_ML1M_TRAIN="$work/shared-data/ml1m-train.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"

status=0
if [[ "$mode" == tests || "$mode" == all ]]; then
    for t in moira cuda_parity cuda_topk cuda_training cuda_kernel_variants fused_output; do
        echo "== $t"
        run "$work/tests/$t" --test-threads 1 2>&1 | tee "$out/test-$t.log" | grep -E "^test |test result|panicked|relative error|skipped" || true
        [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
    done
    # The parity and training tests again with the kernels awaiting their first GPU run on
    # in every backend (MOIRA_CUDA_NEW_KERNELS=1; engine/backend/cuda/backend.rs).
    for t in cuda_parity cuda_training; do
        echo "== $t, MOIRA_CUDA_NEW_KERNELS=1"
        MOIRA_CUDA_NEW_KERNELS=1 run "$work/tests/$t" --test-threads 1 2>&1 | tee "$out/test-$t-new.log" | grep -E "^test |test result|panicked|relative error|skipped" || true
        [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
    done
fi

if [[ "$mode" == quality ]]; then
    set_name="${QUALITY_SET:-gowalla}"
    run env BIN="$work/bin" DATA="$work/shared-data/$set_name" DEVICE="${QUALITY_DEVICE:-cuda}" PYTHON=python3 \
        OUT_DIR="$work/quality-$set_name" THREADS=16 NETS="${NETS:-networks/ml1m-dlae.json}" \
        DECAYS="${DECAYS:-0.001}" EPOCHS="${EPOCHS:-50}" PATIENCE="${PATIENCE:-4}" \
        BASELINES="${BASELINES:-0}" bash benches/quality/run.sh "$set_name" 2>&1 |
        tee "$out/quality-$set_name.log"
    status=${PIPESTATUS[0]}
    # The results and logs come back; the models (6.7 GB on Gowalla) stay.
    (cd "$work/quality-$set_name" && find . -name '*.jsonl' -o -name '*.log' -o -name '*.txt' |
        tar -cf - -T - | tar -C "$out" --transform "s,^\.,quality-$set_name," -xf -)
fi
if [[ "$mode" == mpi ]]; then
    d="$work/data"; mkdir -p "$d"
    run "$work/bin/generate-data" --preset ml20m --format text --output "$d/ml20m.txt" 2>&1 | tail -1
    run "$work/bin/converter" -d input -i "$d/ml20m.txt" -o "$d/input.nc" -f "$d/features" -s "$d/samples" -c 2>&1 | tail -1
    run "$work/bin/converter" -d output -i "$d/ml20m.txt" -o "$d/output.nc" -f "$d/features" -s "$d/samples" 2>&1 | tail -1
    mkdir -p "$work/lib-nompi"
    for f in "$work"/lib/*; do
        case "$(basename "$f")" in libmpi*|libopen-*|libhwloc*|libevent*|libpmix*|libfabric*|libucx*|libuc[pst]*) ;; *) cp "$f" "$work/lib-nompi/";; esac
    done
    nompi="$work/lib-nompi$cudalibs"
    epochs="${EPOCHS:-3}"
    targs=(networks/deep-recommender.json -i "$d/input.nc" -o "$d/output.nc" --force -b 256 -e "$epochs" --device "${DEVICE:-cuda}")
    echo "== alone"
    env LD_LIBRARY_PATH="$nompi" RUST_LOG="${RUST_LOG:-info}" "$work/bin/trainer" "${targs[@]}" -n "$d/alone.nc" 2>&1 | grep -E "epoch|trained|error"
    # MPIRUN_ARGS: more launcher flags (e.g. "--bind-to none"); MPS=1 starts the CUDA MPS
    # daemon first so that the two ranks' kernels share the GPU instead of time-slicing.
    # PARALLEL: the --parallel modes to run (default "model"; e.g. "model data hybrid tune").
    if [[ "${MPS:-0}" == 1 ]]; then nvidia-cuda-mps-control -d && echo "MPS on"; fi
    for parallel in ${PARALLEL:-model}; do
        echo "== mpirun -np 2, one GPU, --parallel $parallel"
        mpirun --allow-run-as-root --oversubscribe -np 2 ${MPIRUN_ARGS:-} -x LD_LIBRARY_PATH="$nompi" -x RUST_LOG="${RUST_LOG:-info}" \
            "$work/bin/trainer" "${targs[@]}" --parallel "$parallel" -n "$d/np2-$parallel.nc" 2>&1 \
            | grep -E "epoch|trained|error|shard plan|rank|tune|-> "
        [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
    done
    if [[ "${MPS:-0}" == 1 ]]; then echo quit | nvidia-cuda-mps-control; fi
    echo "== the same ranks as threads of one process (one CUDA context, examples/sharded_gpu.rs)"
    for r in 1 2; do
        env LD_LIBRARY_PATH="$nompi" "$work/bin/sharded_gpu" networks/deep-recommender.json \
            "$d/input.nc" "$d/output.nc" "$r" "$epochs" 256
    done
fi

if [[ "$mode" == exact ]]; then
    d="$work/data-exact"; mkdir -p "$d"
    for set in input output; do
        extra=(); [[ $set == input ]] && extra=(-c)
        run "$work/bin/converter" --format lists -d "$set" -i "$work/shared-data/ml1m-train.txt" \
            -o "$d/$set.nc" -f "$d/features" -s "$d/samples" "${extra[@]}" 2>&1 | tail -1
    done
    mkdir -p "$work/lib-nompi"
    for f in "$work"/lib/*; do
        case "$(basename "$f")" in libmpi*|libopen-*|libhwloc*|libevent*|libpmix*|libfabric*|libucx*|libuc[pst]*) ;; *) cp "$f" "$work/lib-nompi/";; esac
    done
    nompi="$work/lib-nompi$cudalibs"
    targs=(networks/ml1m-multdae.json -i "$d/input.nc" -o "$d/output.nc" --force -b 500 -e 2
           --optimizer adam --alpha 0.001 --device "${EXACT_DEVICE:-cuda}" --exact-chunk "${EXACT_CHUNK:-125}")
    echo "== exact sums, alone"
    env LD_LIBRARY_PATH="$nompi" "$work/bin/trainer" "${targs[@]}" -n "$d/np1.nc" 2>&1 \
        | tee "$out/exact-np1.log" | grep -E "epoch|trained|error"
    for np in 2 3; do
        echo "== exact sums, mpirun -np $np --parallel data, one GPU"
        mpirun --allow-run-as-root --oversubscribe -np "$np" -x LD_LIBRARY_PATH="$nompi" \
            "$work/bin/trainer" "${targs[@]}" --parallel data -n "$d/np$np.nc" 2>&1 \
            | tee "$out/exact-np$np.log" | grep -E "epoch|trained|error|rank 0"
        if cmp "$d/np1.nc" "$d/np$np.nc"; then echo "exact_np${np}_identical=1"; else echo "exact_np${np}_identical=0"; status=1; fi
    done
fi

if [[ "$mode" == bench || "$mode" == all ]]; then
    d="$work/data"
    mkdir -p "$d"
    epochs="${EPOCHS:-4}"
    run "$work/bin/generate-data" --preset ml20m --format text --output "$d/ml20m.txt" 2>&1 | tail -1
    run "$work/bin/converter" -d input -i "$d/ml20m.txt" -o "$d/input.nc" -f "$d/features" -s "$d/samples" -c 2>&1 | tail -1
    run "$work/bin/converter" -d output -i "$d/ml20m.txt" -o "$d/output.nc" -f "$d/features" -s "$d/samples" 2>&1 | tail -1
    # NEW="0 1" (default): each Moira run without and with the kernels awaiting their first
    # GPU run (MOIRA_CUDA_NEW_KERNELS); the runs with them are named *-new-*.
    for new in ${NEW:-0 1}; do
        tag=""; [[ $new == 1 ]] && tag="-new"
        echo "== moira$tag"
        for prec in fp32 tf32; do
            flag=""; [[ $prec == tf32 ]] && flag="--tf32"
            MOIRA_CUDA_NEW_KERNELS=$new RUST_LOG=${RUST_LOG:-debug} run "$work/bin/trainer" networks/deep-recommender.json -i "$d/input.nc" -o "$d/output.nc" \
                -n "$d/moira$tag-$prec.nc" --force -b 256 -e "$epochs" --device cuda $flag \
                --metrics-log "$out/moira$tag-$prec.jsonl" 2>&1 | grep -E "epoch|trained|examples;" | tail -8
        done
        echo "== I -> 200 -> I$tag (networks/ae-200.json, batch 500, Adam; speed of light in benches/gpu/NOTES.md)"
        for prec in fp32 tf32; do
            flag=""; [[ $prec == tf32 ]] && flag="--tf32"
            MOIRA_CUDA_NEW_KERNELS=$new RUST_LOG=${RUST_LOG:-debug} run "$work/bin/trainer" networks/ae-200.json -i "$d/input.nc" -o "$d/output.nc" \
                -n "$d/ae200$tag-$prec.nc" --force -b 500 -e "$epochs" --optimizer adam --alpha 0.001 \
                --device cuda $flag --metrics-log "$out/ae200$tag-$prec.jsonl" 2>&1 | grep -E "epoch [12]" | tail -4
            # Plain SGD (DSSTNE's default optimizer): the update fused into the gradient products.
            MOIRA_CUDA_NEW_KERNELS=$new RUST_LOG=${RUST_LOG:-debug} run "$work/bin/trainer" networks/ae-200.json -i "$d/input.nc" -o "$d/output.nc" \
                -n "$d/ae200sgd$tag-$prec.nc" --force -b 500 -e "$epochs" --optimizer sgd --alpha 0.05 \
                --device cuda $flag --metrics-log "$out/ae200sgd$tag-$prec.jsonl" 2>&1 | grep -E "epoch [12]" | tail -4
        done
    done
    echo "== predictor (ML-20M shape, the fp32 model, top-10 and top-100, own items excluded)"
    for dev in cuda cpu; do
        for k in 10 100; do
            run "$work/bin/predictor" -n "$d/moira-fp32.nc" -r "$d/input.nc" -k $k -s "$d/recs-$dev-$k" \
                -b 1024 --device $dev --quiet 2>&1 | grep -E "samples/s" | sed "s/^/$dev k=$k: /"
        done
    done
    echo "== top-k (100,000 x 27,278, K=100, scores on the GPU)"
    run "$work/bin/gpu_topk" | tee "$out/topk.json"
    python3 "$root/benches/gpu/torch_topk.py" | tee -a "$out/topk.json"
    echo "== pytorch"
    for prec in fp32 tf32; do
        flag=""; [[ $prec == tf32 ]] && flag="--tf32"
        python3 "$root/benches/gpu/torch_ref.py" --data "$d/input.nc" --epochs "$epochs" $flag \
            --name "pytorch-$prec" | tee "$out/pytorch-$prec.jsonl"
    done
    python3 - "$out" <<'PY'
import json, statistics, sys, glob, os
out = sys.argv[1]
rows = {}
for f in sorted(glob.glob(os.path.join(out, "*.jsonl"))):
    name = os.path.basename(f)[:-6]
    eps = [json.loads(l) for l in open(f) if l.strip().startswith("{")]
    eps = [e for e in eps if "seconds" in e]
    if len(eps) < 2:
        continue
    secs = [e["seconds"] for e in eps[1:]]
    rows[name] = (statistics.median(secs), eps[-1].get("loss"), eps[0].get("loss"))
print(f"{'impl':<16}{'median epoch s':>16}{'loss ep1':>12}{'loss last':>12}")
for k, (s, last, first) in rows.items():
    print(f"{k:<16}{s:>16.3f}{first:>12.3f}{last:>12.3f}")
for moira in ("moira", "moira-new"):
    for prec in ("fp32", "tf32"):
        m, t = rows.get(f"{moira}-{prec}"), rows.get(f"pytorch-{prec}")
        if m and t:
            print(f"{moira}_vs_pytorch_{prec}={t[0] / m[0]:.2f}")
m, t = rows.get("moira-fp32"), rows.get("pytorch-fp32")
print(f"moira_vs_pytorch={t[0] / m[0]:.2f}" if m and t else "moira_vs_pytorch=n/a")
PY
fi
if [[ "$mode" == sanitizer || "$mode" == all ]]; then
    if command -v compute-sanitizer >/dev/null; then
        for tool in memcheck racecheck; do
            for t in cuda_parity cuda_topk cuda_kernel_variants; do
                echo "== compute-sanitizer --tool $tool $t"
                run timeout "${SANITIZER_TIMEOUT:-150}" compute-sanitizer --tool "$tool" --error-exitcode 9 "$work/tests/$t" --test-threads 1 \
                    >"$out/sanitizer-$tool-$t.log" 2>&1
                rc=$?
                tail -3 "$out/sanitizer-$tool-$t.log"
                echo "$tool $t exit $rc"
                [[ $rc -eq 0 ]] || status=1
            done
        done
    fi
fi
exit $status
