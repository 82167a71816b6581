#!/usr/bin/env bash
# Create ./.venv once: a CPU build of torch (unless torch is already there), then spikedistill
# in editable mode. `scripts/setup.sh --test` adds the test tools and SpikingJelly (for the
# equivalence tests; installed without its heavy dependencies). SPIKEDISTILL_CUDA=1: torch from
# the package index as it comes (the CUDA build on Linux), not the CPU wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }
# CPU wheels: the default PyPI torch for Linux is the multi-GB CUDA build, and PyPI's
# torchvision is built for it. The CPU index is used only when it answers (offline mirrors
# would make pip retry every package).
CPU_INDEX=https://download.pytorch.org/whl/cpu
cpu_index=()
if "$PY" -c "import urllib.request as u; u.urlopen('$CPU_INDEX/', timeout=5)" 2>/dev/null; then
  cpu_index=(--extra-index-url "$CPU_INDEX")
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
  if [ -n "${SPIKEDISTILL_CUDA:-}" ]; then cpu_index=(); fi
  pip_install "${TORCH_SPEC:-torch==2.13.0}" "${cpu_index[@]}"
fi
# keep the torch that is there: an extra asking for a newer torchvision must not swap it for
# another torch (on PyPI, a multi-GB CUDA build)
keep_torch=$(mktemp)
trap 'rm -f "$keep_torch"' EXIT
"$PY" -c "import torch; print('torch==' + torch.__version__)" >"$keep_torch"
# a CPU torch takes its torchvision from the CPU index too (PyPI's does not load beside it)
grep -q '+cpu' "$keep_torch" || cpu_index=()
if [ "${1:-}" = "--test" ]; then
  pip_install -c "$keep_torch" -e ".[dev]" "${cpu_index[@]}"
  "$PY" -c "import spikingjelly" 2>/dev/null || pip_install --no-deps "spikingjelly>=0.0.0.0.14"
else
  pip_install -e .
fi
