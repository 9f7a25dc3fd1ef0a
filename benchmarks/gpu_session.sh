#!/usr/bin/env bash
# The GPU checks, as one script for a session that is lent a GPU (about 7 minutes; each step has
# its own time limit, so a slow step cannot eat the next one's): the `gpu` tests (generated Triton
# run natively, the correctness suite); our matmul template vs cuBLAS over a bf16 shape sweep and
# SDPA with the attention library removed vs flash SDPA (benchmarks/gpu_kernels.py); the model
# suite on the GPU for the profile against Inductor; hetero vs Inductor vs eager on model blocks;
# the cost model's accuracy against the GPU's profile. One markdown file gathers the tables:
# benchmarks/results/gpu_session.md; everything printed also goes to benchmarks/results/gpu_session.log.
#   bash benchmarks/gpu_session.sh [profile]            (profile: h100 by default; h200, a100, mi300x)
#   bash benchmarks/gpu_session.sh [profile] --dry-run  (no GPU: the harnesses' CPU paths only)
# Steps can be picked (a rerun after a fix): STEPS="tests kernels" bash benchmarks/gpu_session.sh h200
set -u
profile="${1:-h100}"
results="benchmarks/results"
steps="${STEPS:-tests kernels suite backends costs}"
mkdir -p "$results"
export PYTHONUNBUFFERED=1
if [ "${2:-}" = "--dry-run" ]; then
    python benchmarks/gpu_kernels.py --profile "$profile" --dry-run --out "$results/gpu_kernels.dry.md" &&
    python benchmarks/suite.py --help > /dev/null && echo "dry run: the harnesses work on the CPU"
    exit
fi
step() { case " $steps " in *" $1 "*) return 0;; *) return 1;; esac; }
{
    step tests && timeout 150 python -m pytest -q -p no:logging -m gpu -n 12 -rf --tb=short tests/test_triton.py 2>&1 | tee "$results/gpu_tests.log" | tail -40
    step kernels && timeout 100 python benchmarks/gpu_kernels.py --profile "$profile" --out "$results/gpu_kernels.md"
    step suite && timeout 100 python benchmarks/suite.py --gpu "$profile" --models gpt2,mlp --rounds 10 \
        --tiny-calls 50 --out "$results/gpu_suite" > /dev/null
    step backends && timeout 45 python benchmarks/backends.py --gpu --dtypes fp32,bf16 --rounds 10
    step costs && timeout 45 python benchmarks/cost_model_accuracy.py --device "$profile" --repeats 10 | tail -20
} 2>&1 | tee "$results/gpu_session.log"
{
    echo "# GPU session: $(python -c 'import torch; print(torch.cuda.get_device_name())'), $profile profile"
    echo
    cat "$results/gpu_kernels.md" 2>/dev/null || echo "(gpu_kernels.py wrote no table)"
    echo
    echo "## Model suite on the GPU: hetero ($profile) vs Inductor"
    echo
    cat "$results/gpu_suite/suite.md" 2>/dev/null || echo "(suite.py --gpu wrote no table)"
} > "$results/gpu_session.md"
echo "wrote $results/gpu_session.md"
