"""Planning a lowered graph: each kernel's cost analysis (``kernel_analysis``), its time on a
profile (``cost_model``), fusion into loop nests (``fusion``, ``loop_nest``), tiles and block
sizes (``tiling``), the schedule and memory plan (``scheduler``) and the whole graph's estimates
(``estimates``).  Above the IR and the lowering, below code generation: it reads profiles and
capabilities and emits no code."""
