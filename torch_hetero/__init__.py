"""torch_hetero: a torch.compile backend that compiles for heterogeneous accelerators.

``torch.compile(model, backend="hetero")``; ``torch_hetero.explain(fn, *args)`` for a report
of kernels, fused ops and fallbacks."""
from .errors import HeteroCompileError
from .report import Report, explain

__all__ = ["explain", "Report", "HeteroCompileError"]
__version__ = "0.1.0"
