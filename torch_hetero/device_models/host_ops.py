"""The ops the host cost model prices per element instead of as plain vector arithmetic, by
name: what ``kernel_analysis`` counts, ``host_microbench`` measures and the ``cpu`` profile
holds (``DeviceProfile.vector_op_ns`` / ``scalar_op_ns`` / ``vector_inf_op_ns``)."""

# the transcendental ops, each measured: libm calls and the prelude's functions (codegen/cpp_prelude.h)
TRANSCENDENTAL_PRICED = ("exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sigmoid", "sin", "cos",
                         "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "erf",
                         "erfc", "pow", "atan2", "lgamma", "gelu", "gelu_grad")
# the prelude's own inline functions: no call, so they vectorize in masked branches too
INLINE = frozenset({"erf", "gelu", "gelu_grad"})
# a division by a value that changes along the loop (by a fixed one it is a multiply), a select,
# and one plain arithmetic op (add, multiply, compare...; per op, not per element): the sgemm
# FLOP/s is no measure of it (a generated loop has no fused multiply-adds, -ffp-contract=off,
# and a scalar one a twelfth of it, measured on a Xeon)
ARITH = "arith"
# one element of a row reduction's loop, its load included: a float sum, and a max/min with its
# NaN flag (codegen.cpp): each step waits on the last one's accumulator, so it is the combine's
# latency, not its throughput, that counts
REDUCTION_STEPS = {"sum": "sum_step", "prod": "sum_step", "max": "max_step", "min": "max_step"}
VECTOR_PRICED = TRANSCENDENTAL_PRICED + ("truediv", "where", ARITH, "sum_step", "max_step")
# and one step of a serial reduction chain (arg-reductions, any/all), which never vectorizes
SCALAR_PRICED = VECTOR_PRICED + ("serial_combine",)
# libm calls on an argument that may be infinite (a masked softmax's -inf): a vector variant
# hands infinite lanes to a scalar fallback, 10x its usual time per element on exp
INFINITE_PRICED = tuple(op for op in TRANSCENDENTAL_PRICED if op not in INLINE)
