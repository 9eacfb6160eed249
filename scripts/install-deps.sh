#!/usr/bin/env bash
# Installs the system packages Moira needs to build and test (Debian 12, as root or with sudo).
# Idempotent: packages already present are skipped quickly.
set -euo pipefail
pkgs=(libopenmpi-dev openmpi-bin libclang-dev libnetcdf-dev libhdf5-dev netcdf-bin pkg-config)
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
