#!/usr/bin/env bash
# The device check (issue 23): on one CUDA GPU, with only the repository (and, offline, wheels
# in .whl/). Writes everything under benchmarks/results/gpu/ (OUT=...; relative paths in OUT,
# MNIST_DIR and BUNDLE are taken from the repository's root):
#   env.txt       the machine, torch, CUDA, triton
#   tests.txt     pytest -m gpu (backends on CUDA vs the reference, fused units, Rate-BP, AMP,
#                 train.compile, DDP over nccl with and without SyncBatchNorm, torchrun)
#   bench_*       spikedistill bench, resnet19 B=32 T=8,4,2,1 (the targets' points first; each
#                 point is written when done): every variant on the triton backend, then the
#                 ANN limit and BPTT on compile and torch
#   mnist.txt     the MNIST SNN baseline trained to completion (MNIST_DIR: its IDX files)
# BUNDLE=FILE.tgz also packs OUT (checkpoints left out) into one file, after every step (a
# run stopped from outside keeps what it finished). Each step has its own time limit (530 s in
# all), so one slow step cannot use up the others' time.
# Python: PYTHON=..., else python3 if it has torch, else a .venv made by scripts/setup.sh (pip,
# torch from the package index). Without a CUDA device it checks its own set-up and skips the
# GPU parts (exit 0); a GPU that this torch cannot use (a CPU build) is an error (exit 1).
# --rehearse runs every step on the CPU at toy sizes (Triton left out): the flags, the
# environment and the outputs, checked before device time is spent; its numbers mean nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
MNIST_DIR=${MNIST_DIR:-data/mnist}
if [ "${1:-}" = "--rehearse" ]; then
  DEVICE=cpu
  BACKENDS=(torch compile)
  MODEL=convnet3
  BENCH=(--options '{"width": 4}' --size 12 --in-channels 1 --batch 2 --T 2 1 --reps 1)
  TRAIN=(train.epochs=1 data.train_subset=200 data.batch_size=50 data.eval_batch_size=500)
  LIMITS=(120 60 150 120)  # seconds: tests, first bench, each other bench, training
else
  DEVICE=cuda
  BACKENDS=(triton compile torch)
  MODEL=resnet19
  BENCH=(--batch 32 --T 8 4 2 1 --reps 20)
  TRAIN=()
  LIMITS=(200 135 60 75)
fi
mkdir -p "$OUT"
status=0
pack() {
  if [ -n "${BUNDLE:-}" ]; then tar -czf "$BUNDLE" --exclude='*.pt' -C "$OUT" .; fi
}
step() { pack; echo "== [${SECONDS} s] $*"; }

step "environment"
# A machine whose python3 has torch (a CUDA image) is used as it is, offline; else a .venv
# with a CUDA build of torch from the package index (SPIKEDISTILL_CUDA: not the CPU wheels).
# Wheels of missing packages (spikingjelly, loguru) can wait in .whl/: installed offline.
PY=${PYTHON:-}
if [ -z "$PY" ] && python3 -c "import torch" 2>/dev/null; then
  PY=python3
elif [ -z "$PY" ]; then
  SPIKEDISTILL_CUDA=1 TORCH_SPEC=${TORCH_SPEC:-torch} bash scripts/setup.sh --test
  PY=.venv/bin/python
fi
if compgen -G ".whl/*.whl" >/dev/null; then
  site=$(mktemp -d)
  "$PY" -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl \
    && export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
CLI=("$PY" -m spikedistill.cli)
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
            'available', torch.cuda.is_available())"
  "$PY" -c "import triton; print('triton', triton.__version__)" 2>/dev/null || echo "no triton"
  "$PY" -c "import spikingjelly.activation_based" 2>/dev/null && echo "spikingjelly imports" \
    || echo "no spikingjelly: the bench has no SpikingJelly rows"
} | tee "$OUT/env.txt"
if [ "$DEVICE" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"
then
  if nvidia-smi -L 2>/dev/null | grep -q GPU; then
    echo "a GPU is here but $PY's torch cannot use it (a CPU build?): nothing was checked" \
      | tee -a "$OUT/env.txt"
    pack
    exit 1
  fi
  echo "no CUDA device: the GPU tests, bench and training are skipped" | tee -a "$OUT/env.txt"
  "$PY" -m pytest -m gpu -n 0 -q -p no:cacheprovider tests/test_gpu.py -rs | tail -3
  exit 0
fi

step "GPU tests"
timeout "${LIMITS[0]}" "$PY" -m pytest -m gpu -n 0 -v -p no:cacheprovider -rs --durations=0 \
  tests/test_gpu.py 2>&1 | tee "$OUT/tests.txt" || status=1

step "bench: $MODEL ${BENCH[*]}"
variants=(limit bptt rate spikingjelly)
limit=${LIMITS[1]}
for backend in "${BACKENDS[@]}"; do
  timeout "$limit" "${CLI[@]}" bench --model "$MODEL" "${BENCH[@]}" --device "$DEVICE" \
    --backend "$backend" --variants "${variants[@]}" --out "$OUT/bench_${MODEL}_${DEVICE}_$backend" \
    || status=1
  variants=(limit bptt)  # the other backends: their BPTT against the same limit
  limit=${LIMITS[2]}
done

step "MNIST SNN baseline"
if [ -e "$MNIST_DIR/train-images-idx3-ubyte" ] || [ -e "$MNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  rm -rf "$OUT/mnist_run"
  timeout "${LIMITS[3]}" "${CLI[@]}" train configs/mnist/snn_baseline.yaml "train.device=$DEVICE" \
    "${TRAIN[@]}" --data-dir "$MNIST_DIR" --out "$OUT/mnist_run" 2>&1 | tee "$OUT/mnist.txt" \
    || status=1
  "$PY" - "$OUT/mnist_run" <<'EOF' | tee -a "$OUT/mnist.txt"
import json, sys, yaml
run = sys.argv[1]
m = json.load(open(f"{run}/metrics.json"))
images = yaml.safe_load(open(f"{run}/config.yaml"))["data"]["train_subset"] or 60000
seconds = sum(r["seconds"] for r in m["history"])
print(f"best top-1 {m['best_top1']:.2f}% after {len(m['history'])} epochs,"
      f" {images * len(m['history']) / seconds:.0f} training images/s")
EOF
else
  echo "no MNIST under $MNIST_DIR (set MNIST_DIR): training skipped" | tee "$OUT/mnist.txt"
fi

step "done (status $status)"
exit $status
