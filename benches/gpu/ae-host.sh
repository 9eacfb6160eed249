set -u
root=$(pwd); work=$(mktemp -d); tar -C "$work" -xJf .gpu/bundle.tar.xz
cudalibs=""; for d in /usr/local/cuda/lib64 $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, "cu13", "lib") for p in nvidia.__path__))' 2>/dev/null); do [[ -d "$d" ]] && cudalibs="$cudalibs:$d"; done
run() { env LD_LIBRARY_PATH="$work/lib$cudalibs" "$@"; }
d=$work/data; mkdir -p $d
run $work/bin/generate-data --preset ml20m --format text --output $d/ml20m.txt >/dev/null 2>&1
run $work/bin/converter -d input -i $d/ml20m.txt -o $d/input.nc -f $d/features -s $d/samples -c >/dev/null 2>&1
run $work/bin/converter -d output -i $d/ml20m.txt -o $d/output.nc -f $d/features -s $d/samples >/dev/null 2>&1
for flag in "" --tf32; do
RUST_LOG=debug run $work/bin/trainer networks/ae-200.json -i $d/input.nc -o $d/output.nc -n $d/a.nc --force -b 500 -e 3 --optimizer adam --alpha 0.001 --device cuda $flag 2>&1 | grep -E "epoch [12]"
done
python3 - <<'PY'
import torch, time
for tf in (False, True):
    torch.backends.cuda.matmul.allow_tf32 = tf
    a = torch.randn(8192, 8192, device="cuda"); b = torch.randn(8192, 8192, device="cuda")
    for _ in range(3): a @ b
    torch.cuda.synchronize(); t = time.perf_counter(); n = 20
    for _ in range(n): a @ b
    torch.cuda.synchronize(); dt = (time.perf_counter() - t) / n
    print(f"gemm 8192^3 tf32={tf}: {2*8192**3/dt/1e12:.1f} TFLOP/s")
x = torch.empty(256*1024*1024, dtype=torch.uint8, device="cuda"); y = torch.empty_like(x)
for _ in range(3): y.copy_(x)
torch.cuda.synchronize(); t = time.perf_counter()
for _ in range(20): y.copy_(x)
torch.cuda.synchronize(); dt = (time.perf_counter() - t) / 20
print(f"d2d copy 256 MiB: {2*x.numel()/dt/1e12:.2f} TB/s (read+write)")
PY
