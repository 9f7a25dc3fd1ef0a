"""torch_hetero: a torch.compile backend that compiles for heterogeneous accelerators.

``torch.compile(model, backend="hetero")``; ``torch_hetero.explain(fn, *args)`` for a report
of kernels, fused ops and fallbacks; ``torch_hetero.audit(model, *inputs, devices=[...])`` to
compare device profiles on a model; ``torch_hetero.plan(model, *inputs, devices=[...], mode="serve")``
to rank deployments (device, count, dtype, batch, parallelism); ``torch_hetero.list_devices()``
for the profiles."""
from .calibration import calibrate as _calibrate
from .device_models import get_profile, list_devices
from .device_models import host as _host
from .errors import HeteroCompileError, PlanError, ProfileError
from .tools.audit import Audit, FormatAudit, audit, audit_formats
from .tools.planner import DeploymentPlan, plan
from .tools.report import Report, explain

__all__ = ["audit", "Audit", "audit_formats", "FormatAudit", "explain", "Report", "plan", "DeploymentPlan",
           "HeteroCompileError", "PlanError", "ProfileError", "get_profile", "list_devices"]
__version__ = "0.1.0"

# the host profile's measured figures come from the calibration, a layer above the profiles
_host.use_calibration(_calibrate.load)
