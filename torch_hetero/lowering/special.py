"""Special-function lowerings (``torch.special``, i0, digamma, polygamma, igamma, erfinv):
elementwise, computed in the (floating) output dtype.  Which targets implement which function
is ``device_models.special_functions``' table; on the others the op falls back to ATen."""
from __future__ import annotations

import torch

from ..device_models.special_functions import native_on
from ..virtualized import current_graph, ops
from .common import make_pointwise, meta_val
from .registry import register_lowering

aten = torch.ops.aten

_UNARY = {
    aten.i0: "i0", aten.special_i0e: "i0e", aten.special_i1: "i1", aten.special_i1e: "i1e",
    aten.special_erfcx: "erfcx", aten.special_ndtri: "ndtri", aten.special_log_ndtr: "log_ndtr",
    aten.erfinv: "erfinv", aten.digamma: "digamma", aten.special_airy_ai: "airy_ai",
    aten.special_spherical_bessel_j0: "spherical_bessel_j0",
    **{getattr(aten, f"special_{name}"): name for name in (
        "bessel_j0", "bessel_j1", "bessel_y0", "bessel_y1", "modified_bessel_i0", "modified_bessel_i1",
        "modified_bessel_k0", "modified_bessel_k1", "scaled_modified_bessel_k0", "scaled_modified_bessel_k1")},
}
_BINARY = {
    aten.special_zeta: "zeta", aten.igamma: "igamma", aten.igammac: "igammac",
    **{getattr(aten, f"special_{kind}_polynomial_{letter}"): f"{kind}_polynomial_{letter}"
       for kind, letters in (("chebyshev", "tuvw"), ("shifted_chebyshev", "tuvw"), ("hermite", ("h", "he")),
                             ("laguerre", "l"), ("legendre", "p"))
       for letter in letters},
}


def _require(name: str) -> None:
    target = current_graph().target
    if not native_on(target, name):
        raise NotImplementedError(f"{name} is not in the target's special functions ({target.special_functions})")


def _special(name):
    def lower(*inputs):
        _require(name)
        return make_pointwise(getattr(ops, name), list(inputs), meta_val().dtype)
    return lower


for _op, _name in {**_UNARY, **_BINARY}.items():
    register_lowering(_op)(_special(_name))


@register_lowering(aten.polygamma)
def polygamma(n, x):
    """n = 0 and 1 are digamma and trigamma, as in ATen's kernel (the series needs n >= 2)."""
    name = {0: "digamma", 1: "trigamma"}.get(n, "polygamma")
    _require(name)
    if name == "polygamma":
        return make_pointwise(lambda v: ops.polygamma(v, n), [x], meta_val().dtype)
    return make_pointwise(getattr(ops, name), [x], meta_val().dtype)
