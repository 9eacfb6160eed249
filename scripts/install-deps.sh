#!/usr/bin/env bash
# Installs the system packages Moira needs to build and test (Debian 12, as root or with sudo).
# Idempotent: packages already present are skipped quickly.
set -euo pipefail
pkgs=(libopenmpi-dev openmpi-bin libclang-dev libnetcdf-dev libhdf5-dev netcdf-bin pkg-config python3-venv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "error: cargo (Rust stable) is required: https://rustup.rs" >&2; exit 1; }
# NVRTC (CUDA's run-time compiler, no GPU needed) from PyPI, so that the tests compile every
# CUDA kernel of cuda/*.cu to PTX (scripts/test.sh puts it on LD_LIBRARY_PATH). Pinned to 13.0:
# newer NVRTC emits PTX the GPU machine's driver (CUDA 13.0) rejects. Optional: without it the
# compile test says "skipped".
nvrtc_dir="${MOIRA_NVRTC_DIR:-$HOME/.cache/moira/cu13}"
if [ ! -e "$nvrtc_dir/lib/libnvrtc.so.13" ]; then
  if python3 -m venv "$nvrtc_dir/venv" >/dev/null 2>&1 &&
     "$nvrtc_dir/venv/bin/pip" install -q --disable-pip-version-check nvidia-cuda-nvrtc==13.0.88; then
    lib="$(find "$nvrtc_dir/venv" -path '*nvidia/cu13/lib' -type d | head -1)"
    ln -sfn "$lib" "$nvrtc_dir/lib"
  else
    echo "warning: could not install NVRTC from PyPI; the CUDA kernel compile test will be skipped" >&2
  fi
fi
