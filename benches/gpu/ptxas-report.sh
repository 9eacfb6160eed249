#!/usr/bin/env bash
# Per-kernel resource report from ptxas, without a GPU: compiles cuda/*.cu to PTX exactly as the
# engine does (NVRTC, the engine's options; examples/dump_ptx.rs), assembles it with
# `ptxas -v --warn-on-spills` for the H100 (sm_90) and prints a markdown table, one row per
# kernel, sorted by name. Run from anywhere:
#
#   bash benches/gpu/ptxas-report.sh [ARCH]      (ARCH: default sm_90)
#
# Needs NVRTC 13 (scripts/install-deps.sh installs it under ~/.cache/moira/cu13), cargo,
# python3 with venv (only to fetch ptxas once) and readelf (binutils). ptxas comes from PyPI's
# nvidia-cuda-nvcc wheel, pinned to NVRTC's release (13.0.88), installed once under
# ~/.cache/moira/cu13-ptxas; set PTXAS=/path/to/ptxas to use another one.
# The PTX, the cubin and ptxas's log are kept in work-out/ptxas/.
set -euo pipefail
cd "$(dirname "$0")/../.."

arch="${1:-sm_90}"
nvrtc_lib="${MOIRA_NVRTC_DIR:-$HOME/.cache/moira/cu13}/lib"
ptxas_dir="${MOIRA_PTXAS_DIR:-$HOME/.cache/moira/cu13-ptxas}"
ptxas_version="${MOIRA_PTXAS_VERSION:-13.0.88}"
out="work-out/ptxas"

die() {
  echo "ptxas-report: error: $*" >&2
  exit 1
}

for tool in cargo readelf awk; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed"
done
[ -e "$nvrtc_lib/libnvrtc.so.13" ] ||
  die "NVRTC 13 not found in $nvrtc_lib: run scripts/install-deps.sh (or set MOIRA_NVRTC_DIR)"

# ptxas: $PTXAS, else the copy under $ptxas_dir, installed from PyPI if missing. Only the
# binary is needed (it links nothing of CUDA), so the wheel's dependencies are skipped.
if [ -z "${PTXAS:-}" ]; then
  PTXAS="$ptxas_dir/bin/ptxas"
  if ! "$PTXAS" --version >/dev/null 2>&1; then
    echo "ptxas-report: installing ptxas (nvidia-cuda-nvcc==$ptxas_version) into $ptxas_dir" >&2
    command -v python3 >/dev/null || die "python3 is needed to install ptxas from PyPI"
    [ -x "$ptxas_dir/venv/bin/pip" ] || python3 -m venv "$ptxas_dir/venv" ||
      die "could not create a Python venv in $ptxas_dir/venv (install python3-venv)"
    "$ptxas_dir/venv/bin/pip" install -q --disable-pip-version-check --no-deps \
      "nvidia-cuda-nvcc==$ptxas_version" ||
      die "could not install nvidia-cuda-nvcc==$ptxas_version from PyPI"
    found="$(find "$ptxas_dir/venv" -path '*/nvidia/*/bin/ptxas' -type f | head -1)"
    [ -n "$found" ] || die "the nvidia-cuda-nvcc wheel has no bin/ptxas"
    mkdir -p "$ptxas_dir/bin"
    ln -sfn "$found" "$PTXAS"
    "$PTXAS" --version >/dev/null || die "$PTXAS does not run"
  fi
fi
command -v "$PTXAS" >/dev/null || die "PTXAS=$PTXAS is not executable"

mkdir -p "$out"
ptx="$out/moira-$arch.ptx"
cubin="$out/moira-$arch.cubin"
log="$out/ptxas-$arch.log"

LD_LIBRARY_PATH="$nvrtc_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  cargo run -q --release --features cuda --example dump_ptx -- "$ptx" "$arch" ||
  die "building or running examples/dump_ptx.rs failed"
"$PTXAS" -arch="$arch" -v --warn-on-spills "$ptx" -o "$cubin" >"$log" 2>&1 ||
  { cat "$log" >&2; die "ptxas failed (log: $log)"; }

# ptxas 13's -v prints no cmem figures any more: the constant banks are read from the cubin
# (.nv.constant0.K: kernel parameters + the driver's area; .nv.constant2.K: compiler constants).
consts="$(readelf -SW "$cubin" 2>/dev/null | awk '
  function hex(s,   i, n) {
    n = 0; s = tolower(s)
    for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
    return n
  }
  { for (i = 1; i <= NF; i++) if ($i ~ /^\.nv\.constant[0-9]+\./) {
      name = $i; sub(/^\.nv\.constant/, "", name); bank = name; sub(/\..*/, "", bank)
      sub(/^[0-9]+\./, "", name)
      print name, bank, hex($(i + 4))
    } }')"

ptxas_ver="$("$PTXAS" --version | sed -n 's/.*release \([0-9.]*\), V\([0-9.]*\).*/\2/p')"
nvrtc_ver="$(sed -n 's#^// Cuda compilation tools, release [0-9.]*, V\([0-9.]*\).*#\1#p' "$ptx")"
echo "### ptxas resource usage, $arch (ptxas ${ptxas_ver:-?}, PTX from NVRTC ${nvrtc_ver:-?})"
echo
{ printf '%s\n' "$consts" | sed 's/^/C /'; sed 's/^/L /' "$log"; } | awk '
  $1 == "C" { if ($3 == 0) c0[$2] = $4; else if ($3 == 2) c2[$2] = $4; else cx[$2] = cx[$2] " + " $4 " (c" $3 ")"; next }
  { sub(/^L /, "") }
  /Compiling entry function/ { k = $0; sub(/^[^'\'']*'\''/, "", k); sub(/'\''.*/, "", k); names[k] = 1; cur = k; next }
  /Function properties for/ { p = $NF; next }
  /bytes stack frame/ && p == cur { stack[cur] = $1; sst[cur] = $5; sld[cur] = $9; next }
  /Used [0-9]+ registers/ {
    for (i = 1; i <= NF; i++) {
      if ($(i + 1) ~ /^registers/) regs[cur] = $i
      if ($(i + 1) == "bytes" && $(i + 2) ~ /^smem/) smem[cur] = $i
    }
    next
  }
  END {
    print "| kernel | registers | spill stores | spill loads | stack frame | shared memory (static) | constant |"
    print "|---|--:|--:|--:|--:|--:|--:|"
    for (k in names) {
      c = (k in c0 ? c0[k] : 0) (k in c2 ? " + " c2[k] " (c2)" : "") cx[k]
      printf "| %s | %s | %s | %s | %s | %s | %s |\n", k, regs[k], sst[k] + 0, sld[k] + 0, stack[k] + 0, smem[k] + 0, c
    }
  }' | { read -r h1; read -r h2; echo "$h1"; echo "$h2"; LC_ALL=C sort; }
echo
echo "Registers per thread; spills and stack frame in bytes per thread; shared memory in bytes per"
echo "block, static only (without the 1 KiB the system reserves per block); constant in bytes: bank 0"
echo "(the parameters + the driver's area), + bank 2 (compiler constants) where used."
echo "ptxas log: $log"

n_entries="$(grep -c '\.entry ' "$ptx" || true)"
n_rows="$(grep -c 'Compiling entry function' "$log" || true)"
[ "$n_entries" = "$n_rows" ] || die "the PTX has $n_entries entries but ptxas reported $n_rows"
if grep -q 'ptxas warning' "$log"; then
  echo
  echo "ptxas warnings:"
  grep 'ptxas warning' "$log" | sed 's/^/  /'
fi
