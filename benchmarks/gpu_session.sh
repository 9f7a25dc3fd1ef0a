#!/usr/bin/env bash
# The GPU checks, as one script for a session that is lent a GPU (about 10 minutes):
# the `gpu` tests (generated Triton run natively, the correctness suite), hetero vs Inductor vs
# eager on model blocks in fp32/bf16/fp16, and the cost model's accuracy against the GPU's profile.
#   bash benchmarks/gpu_session.sh [profile]      (profile: h100 by default; h200, a100, mi300x)
set -u
profile="${1:-h100}"
python -m pytest -q -p no:logging -m gpu -x tests/test_triton.py 2>&1 | tail -20
python benchmarks/backends.py --gpu --dtypes fp32,bf16,fp16 --rounds 20
python benchmarks/cost_model_accuracy.py --device "$profile" --repeats 20 | tail -20
