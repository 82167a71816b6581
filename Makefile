# Quick start: `make demo` runs the embedded default, `make test` runs the test suite.
# Both create ./.venv on first use (CPU torch unless torch is already installed there).
PY := .venv/bin/python

.PHONY: demo test lint bench gpu-check

demo:
	bash scripts/setup.sh
	.venv/bin/spikedistill demo

test:
	bash scripts/setup.sh --test
	$(PY) -m pytest

lint:
	bash scripts/setup.sh --test
	.venv/bin/ruff check src tests benchmarks scripts
	.venv/bin/ruff format --check src tests benchmarks scripts
	.venv/bin/lint-imports

bench:
	bash scripts/setup.sh --test
	$(PY) -m spikedistill.cli bench --model resnet19 --T 1 2 4 8 --batch 16 --reps 3 --backend cpp --variants limit bptt bptt_checkpoint rate spikingjelly --out benchmarks/results/bench_resnet19_cpu_cpp

gpu-check:  # on a CUDA machine: GPU tests, bench, MNIST run -> benchmarks/results/gpu/
	bash scripts/gpu_check.sh
