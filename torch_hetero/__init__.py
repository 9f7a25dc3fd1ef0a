"""torch_hetero: a torch.compile backend that compiles for heterogeneous accelerators.

``torch.compile(model, backend="hetero")``; ``torch_hetero.explain(fn, *args)`` for a report
of kernels, fused ops and fallbacks; ``torch_hetero.list_devices()`` for the device profiles."""
from .device_models import get_profile, list_devices
from .errors import HeteroCompileError, ProfileError
from .report import Report, explain

__all__ = ["explain", "Report", "HeteroCompileError", "ProfileError", "get_profile", "list_devices"]
__version__ = "0.1.0"
