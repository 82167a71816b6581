#!/usr/bin/env bash
# The device check (issue 23): on one CUDA GPU, in under 8 minutes, with only the repository and
# the package index. Writes everything under benchmarks/results/gpu/ (OUT=... to change):
#   env.txt       the machine, torch, CUDA, triton
#   tests.txt     pytest -m gpu (backends on CUDA vs the reference, fused units, Rate-BP, AMP,
#                 train.compile, torchrun)
#   bench_*       spikedistill bench, resnet19 B=32 T=1,2,4,8, one file set per neuron backend
#   mnist.txt     the MNIST SNN baseline trained to completion (MNIST_DIR: its IDX files)
# Without a CUDA device it checks its own set-up and skips the GPU parts (exit 0). SpikingJelly
# runs its cupy backend where cupy imports, else torch.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
MNIST_DIR=${MNIST_DIR:-data/mnist}
mkdir -p "$OUT"
status=0
step() { echo "== $*"; }

step "environment"
# A machine whose python3 has torch (a CUDA image) is used as it is, offline; else a .venv
# with a CUDA build of torch from the package index (SPIKEDISTILL_CUDA: not the CPU wheels).
# Wheels of missing packages (e.g. spikingjelly) can wait in .whl/: installed without network.
PY=${PYTHON:-}
if [ -z "$PY" ] && python3 -c "import torch" 2>/dev/null; then
  PY=python3
elif [ -z "$PY" ]; then
  SPIKEDISTILL_CUDA=1 TORCH_SPEC=${TORCH_SPEC:-torch} bash scripts/setup.sh --test
  PY=.venv/bin/python
fi
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
CLI=("$PY" -m spikedistill.cli)
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
            'available', torch.cuda.is_available())"
  "$PY" -c "import triton; print('triton', triton.__version__)" 2>/dev/null || echo "no triton"
} | tee "$OUT/env.txt"
if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no CUDA device: the GPU tests, bench and training are skipped"
  "$PY" -m pytest -m gpu -n 0 -q -p no:cacheprovider tests/test_gpu.py -rs | tail -3
  exit 0
fi

step "GPU tests"
"$PY" -m pytest -m gpu -n 0 -q -p no:cacheprovider -rs 2>&1 | tee "$OUT/tests.txt" \
  || status=1

step "bench: resnet19, B=32, T=1 2 4 8"
for backend in triton compile torch; do
  timeout 300 "${CLI[@]}" bench --model resnet19 --batch 32 --T 1 2 4 8 --reps 5 \
    --device cuda --backend "$backend" --variants limit bptt rate spikingjelly \
    --out "$OUT/bench_resnet19_cuda_$backend" || status=1
done

step "MNIST SNN baseline"
if [ -e "$MNIST_DIR/train-images-idx3-ubyte" ] || [ -e "$MNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  rm -rf "$OUT/mnist_run"
  timeout 300 "${CLI[@]}" train configs/mnist/snn_baseline.yaml train.device=cuda \
    --data-dir "$MNIST_DIR" --out "$OUT/mnist_run" 2>&1 | tee "$OUT/mnist.txt" || status=1
  "$PY" - "$OUT/mnist_run" <<'EOF' | tee -a "$OUT/mnist.txt"
import json, sys
m = json.load(open(f"{sys.argv[1]}/metrics.json"))
seconds = sum(r["seconds"] for r in m["history"])
images = 60000 * len(m["history"])
print(f"best top-1 {m['best_top1']:.2f}%, {images / seconds:.0f} training images/s")
EOF
else
  echo "no MNIST under $MNIST_DIR (set MNIST_DIR): training skipped" | tee "$OUT/mnist.txt"
fi
exit $status
