#!/usr/bin/env bash
# Creates benches/peers/.venv with the pinned TensorFlow-CPU, JAX-CPU and numpy of
# requirements.txt (+ constraints.txt). Does nothing when the venv is already up to date.
# Env: PYTHON (default python3; TensorFlow 2.21 wants Python 3.10-3.13).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
py="${PYTHON:-python3}"
want="$(cat "$here/requirements.txt" "$here/constraints.txt" | sha256sum | cut -d' ' -f1)"
stamp="$venv/.requirements.sha256"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
if ! "$py" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 13)))'; then
    echo "setup.sh: $py is $("$py" --version 2>&1); TensorFlow 2.21 needs Python 3.10-3.13 (set PYTHON=...)" >&2
    exit 1
fi
echo "setup.sh: creating $venv (tensorflow-cpu, jax[cpu], numpy from PyPI)..." >&2
if ! "$py" -m venv "$venv"; then
    echo "setup.sh: '$py -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
    exit 1
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" -c "$here/constraints.txt"
versions="$(TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" -c 'import tensorflow as tf, jax, numpy; print("tensorflow", tf.__version__, "jax", jax.__version__, "numpy", numpy.__version__)' 2>/dev/null)"
echo "setup.sh: installed $versions" >&2
echo "$want" > "$stamp"
