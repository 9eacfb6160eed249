#!/usr/bin/env bash
# The Python package's tests (scripts/test.sh runs this after the Rust tests): builds the
# wheel from ./python (`pip wheel ./python`, maturin, the `ci` profile the Rust tests use, into
# target/wheels/), installs it into a virtualenv (numpy, scipy, pytest, pyarrow and maturin from PyPI;
# $MOIRA_PY_VENV, default ~/.cache/moira/py, reused when present) and runs pytest on
# python/tests against the command-line tools of target/ci. The last line is pytest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${MOIRA_PY_VENV:-$HOME/.cache/moira/py}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
export PATH="$venv/bin:$PATH"
pip install -q --disable-pip-version-check numpy scipy pytest pyarrow 'maturin>=1.9.4,<2'
# The tools the round-trip tests run, from the same source as the package.
cargo build --profile ci -p moira-tools --bins --quiet
rm -rf target/wheels
MATURIN_PEP517_ARGS="--profile ci" pip wheel -q --disable-pip-version-check --no-build-isolation \
  --no-deps -w target/wheels ./python
pip install -q --disable-pip-version-check --force-reinstall --no-deps target/wheels/moira-*.whl
MOIRA_BIN_DIR="$PWD/target/ci" pytest -q -p no:cacheprovider python/tests "$@"
