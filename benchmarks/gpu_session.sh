#!/usr/bin/env bash
# The GPU checks, as one script for a session that is lent a GPU (about 8 minutes):
# the `gpu` tests (generated Triton run natively, the correctness suite); our matmul template vs
# cuBLAS over a bf16 shape sweep and SDPA with the attention library removed vs flash SDPA
# (benchmarks/gpu_kernels.py); the model suite on the GPU for the profile against Inductor; hetero
# vs Inductor vs eager on model blocks; the cost model's accuracy against the GPU's profile.
# One markdown file gathers the tables: benchmarks/results/gpu_session.md.
#   bash benchmarks/gpu_session.sh [profile]            (profile: h100 by default; h200, a100, mi300x)
#   bash benchmarks/gpu_session.sh [profile] --dry-run  (no GPU: the harnesses' CPU paths only)
set -u
profile="${1:-h100}"
results="benchmarks/results"
mkdir -p "$results"
if [ "${2:-}" = "--dry-run" ]; then
    python benchmarks/gpu_kernels.py --profile "$profile" --dry-run --out "$results/gpu_kernels.dry.md" &&
    python benchmarks/suite.py --help > /dev/null && echo "dry run: the harnesses work on the CPU"
    exit
fi
python -m pytest -q -p no:logging -m gpu -x tests/test_triton.py 2>&1 | tail -20
timeout 200 python benchmarks/gpu_kernels.py --profile "$profile" --out "$results/gpu_kernels.md"
timeout 200 python benchmarks/suite.py --gpu "$profile" --models gpt2,llama,vit,mlp --rounds 10 \
    --tiny-calls 50 --out "$results/gpu_suite" > /dev/null
python benchmarks/backends.py --gpu --dtypes fp32,bf16 --rounds 10
python benchmarks/cost_model_accuracy.py --device "$profile" --repeats 10 | tail -20
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
