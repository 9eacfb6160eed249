#!/usr/bin/env bash
# Builds everything the GPU machine runs (it has no Rust toolchain) and packs it into
# .gpu/bundle.tar.xz (git-ignored), with the shared libraries the binaries need beyond glibc:
#   - release binaries with CUDA: trainer, predictor, converter, generate-data;
#   - the CUDA test executables (tests/cuda_parity.rs, cuda_topk.rs, cuda_training.rs,
#     cuda_kernel_variants.rs, fused_output.rs, the library's unit tests with the NVRTC compile
#     check), built with the `ci` profile;
# then `benches/gpu/run.sh` runs there (carry `.gpu` with the device tool).
#
#   benches/gpu/pack.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
out="$root/.gpu"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out" "$stage/bin" "$stage/tests" "$stage/lib"

cargo build --release --features cuda -p moira-tools -p moira-datagen --bins --quiet
for b in trainer predictor converter generate-data; do
    cp "target/release/$b" "$stage/bin/"
done
cargo build --release --features cuda --example gpu_topk --example sharded_gpu --quiet
cp target/release/examples/gpu_topk target/release/examples/sharded_gpu "$stage/bin/"

# Test executables: their paths from cargo's JSON messages.
cargo test --profile ci --features cuda --no-run --message-format=json \
    --lib --test cuda_parity --test cuda_topk --test cuda_training --test cuda_kernel_variants \
    --test fused_output 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])
' | while read -r name exe; do cp "$exe" "$stage/tests/$name"; done

strip "$stage"/bin/* "$stage"/tests/*
# The real data tests/fused_output.rs reads (the GPU machine has no ../shared).
mkdir -p "$stage/shared-data"
cp "$root/../shared/data/ml-1m-lightgcnpp/train.txt" "$stage/shared-data/ml1m-train.txt"
# The quality mode's splits (benches/quality/run.sh DATA=...).
for set in ml1m:ml-1m-lightgcnpp gowalla:gowalla-lightgcnpp; do
    mkdir -p "$stage/shared-data/${set%%:*}"
    cp "$root/../shared/data/${set#*:}"/{train,valid,test}.txt "$stage/shared-data/${set%%:*}/"
done
# Shared libraries beyond the C runtime (NetCDF, HDF5 and theirs).
ldd "$stage/bin/trainer" | awk '/=> \// {print $3}' |
    grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s)\.so' |
    xargs -I{} cp -L {} "$stage/lib/"
tar -C "$stage" -cJf "$out/bundle.tar.xz.tmp" bin tests lib shared-data
mv "$out/bundle.tar.xz.tmp" "$out/bundle.tar.xz"
ls -la "$out/bundle.tar.xz"
