"""ATen op → IR lowerings, one function per op, registered in :data:`LOWERINGS`.

Look here for where an op is lowered: ``pointwise.py`` (elementwise math), ``reductions.py``,
``views.py`` (index remapping), ``indexing.py`` (cat, pad, gather, index, embedding),
``creation.py`` (full, arange...), ``special.py`` (Bessel, gamma family, polynomials), ``scatter.py`` (index_put, scatter), ``pooling.py`` (average pooling), ``extern.py`` (matmul and attention as ATen calls), ``quantized_matmul.py`` (fp8 ``_scaled_mm``, int8 ``_int_mm`` and weight-only int8), ``convolution.py`` (an ATen call, or generated: implicit GEMM, depthwise), ``onednn.py`` (the
host's convolutions with library post-ops).  An op with no
entry runs through the ATen fallback (``GraphLowering.fallback``) and is reported."""
from .registry import LOWERINGS, register_lowering  # noqa: F401
from . import convolution, creation, extern, indexing, onednn, pointwise, pooling, reductions, quantized_matmul, scatter, special, views  # noqa: F401,E402
