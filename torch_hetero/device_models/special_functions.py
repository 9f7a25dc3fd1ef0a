"""Special functions (Bessel, gamma family, orthogonal polynomials), by ``ops`` name.

The host C++ target calls ATen's own header-only implementations (``ATen/native/Math.h``, the
code eager's CPU kernels run), so results match eager's.  Triton targets call libdevice where
it has the function; elsewhere the op has no native kernel on that target: the lowering
refuses it and it runs through the ATen fallback, reported as portability debt."""
from __future__ import annotations

ATEN_MATH_HEADER = "ATen/native/Math.h"

CPP = {
    "i0": "calc_i0", "i0e": "calc_i0e", "i1": "calc_i1", "i1e": "calc_i1e", "erfcx": "calc_erfcx",
    "ndtri": "calc_ndtri", "log_ndtr": "calc_log_ndtr", "erfinv": "calc_erfinv",
    "digamma": "calc_digamma", "trigamma": "trigamma", "polygamma": "calc_polygamma",
    "zeta": "zeta", "igamma": "calc_igamma", "igammac": "calc_igammac",
    "bessel_j0": "bessel_j0_forward", "bessel_j1": "bessel_j1_forward",
    "bessel_y0": "bessel_y0_forward", "bessel_y1": "bessel_y1_forward",
    "modified_bessel_i0": "modified_bessel_i0_forward", "modified_bessel_i1": "modified_bessel_i1_forward",
    "modified_bessel_k0": "modified_bessel_k0_forward", "modified_bessel_k1": "modified_bessel_k1_forward",
    "scaled_modified_bessel_k0": "scaled_modified_bessel_k0_forward",
    "scaled_modified_bessel_k1": "scaled_modified_bessel_k1_forward",
    "spherical_bessel_j0": "spherical_bessel_j0_forward", "airy_ai": "airy_ai_forward",
    **{f"{kind}_polynomial_{letter}": f"{kind}_polynomial_{letter}_forward"
       for kind, letters in (("chebyshev", "tuvw"), ("shifted_chebyshev", "tuvw"), ("hermite", ("h", "he")),
                             ("laguerre", "l"), ("legendre", "p"))
       for letter in letters},
}

LIBDEVICE = {
    "i0": "cyl_bessel_i0", "modified_bessel_i0": "cyl_bessel_i0", "i1": "cyl_bessel_i1",
    "modified_bessel_i1": "cyl_bessel_i1", "bessel_j0": "j0", "bessel_j1": "j1", "bessel_y0": "y0",
    "bessel_y1": "y1", "erfinv": "erfinv", "erfcx": "erfcx",
}


# Target.special_functions → the functions that library has
LIBRARIES = {"aten_math": CPP, "libdevice": LIBDEVICE}


def native_on(target, name: str) -> bool:
    """Does ``target`` (a device_models.target.Target) implement special function ``name``?"""
    return name in LIBRARIES[target.special_functions]
