"""The host measured: C++ loops shaped like generated kernels (``host_microbench``, built with
``codegen``'s ops and ``runtime``'s compiler) time what the ``cpu`` profile's cost model prices.
A tool above the compiler, not profile data: ``torch_hetero/__init__.py`` hands ``calibrate.load``
to ``device_models.host``, which builds the profile from the figures."""
