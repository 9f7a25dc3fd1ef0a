"""The ``hetero`` TorchDynamo backend: AOTAutograd with our decompositions, then our compiler
for the forward, backward and inference graphs.

Registered through the ``torch_dynamo_backends`` entry point (see pyproject.toml), so
``torch.compile(model, backend="hetero")`` works without importing this package."""
from __future__ import annotations

import contextlib
import threading
import time
import warnings

import torch
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func
from torch._functorch.partitioners import min_cut_rematerialization_partition

from . import aot_cache, logs
from . import options as options_mod
from .compiler import EagerGraph, compile_graph
from .decompositions import decomposition_table
from .errors import GraphFallbackWarning, HeteroCompileError, one_line

_collectors = threading.local()


@contextlib.contextmanager
def collect_compiled_graphs(cached: bool = False):
    """Collects (graph kind, CompiledGraph, profile name) for every graph compiled inside the
    block, and (graph kind, EagerGraph, profile name) for every graph that ran eagerly.  Graphs
    are compiled afresh, so that all of them are collected (reports, tests), unless ``cached``:
    then AOTAutograd's cache may hold them (``aot_cache``), and a graph it loads is not compiled
    and not collected (timing a warm compile)."""
    previous = getattr(_collectors, "sink", None), getattr(_collectors, "cached", True)
    sink: list = []
    _collectors.sink, _collectors.cached = sink, cached
    try:
        yield sink
    finally:
        _collectors.sink, _collectors.cached = previous


def hetero_backend(gm: torch.fx.GraphModule, example_inputs, options=None, mode=None):
    logs.register()
    opts = options_mod.resolve(options, mode)
    sink = getattr(_collectors, "sink", None)
    # a frozen graph holds the parameters' values: not for AOTAutograd's cache (nor is Inductor's)
    cache = opts.aot_cache and not opts.freeze and getattr(_collectors, "cached", True) and aot_cache.available()

    def compiler_for(kind):
        def compile_fn(graph_module, _example_inputs):
            if kind == "inference" and opts.freeze:
                return _frozen(graph_module, example_inputs, opts, sink)
            return _compile_or_fall_back(graph_module, kind, opts, sink)
        return aot_cache.serializable(compile_fn) if cache else compile_fn

    backend = aot_autograd(fw_compiler=compiler_for("forward"), bw_compiler=compiler_for("backward"),
                           inference_compiler=compiler_for("inference"),
                           decompositions=decomposition_table(opts.profile.target.float64_statistics),
                           partition_fn=min_cut_rematerialization_partition)
    with aot_cache.caching(opts) if cache else contextlib.nullcontext():
        return backend(gm, example_inputs)


def _frozen(gm, example_inputs, opts, sink):
    """The inference graph compiled with the module's parameters and buffers as constants
    (``lowering/freezing.py``): AOTAutograd's static inputs that the graph does not mutate, taken
    from Dynamo's real example inputs (AOTAutograd's are fake).  The call takes the full
    argument list and passes on the rest; called with other parameter tensors (another instance
    of the module) it raises rather than compute with the frozen ones."""
    from .lowering.freezing import freeze
    metadata = torch._guards.TracingContext.get().fw_metadata
    placeholders = gm.graph.find_nodes(op="placeholder")
    if len(placeholders) != len(example_inputs):   # AOTAutograd added inputs (RNG state, effects)
        return _compile_or_fall_back(gm, "inference", opts, sink)
    viewed = {out.base_idx for out in metadata.output_info if out.base_idx is not None}   # an output aliases it
    frozen = {i: example_inputs[i] for i in metadata.static_input_indices
              if not metadata.input_info[i].mutates_data and not metadata.input_info[i].mutates_metadata
              and i not in viewed and isinstance(example_inputs[i], torch.Tensor)}
    if not frozen:
        return _compile_or_fall_back(gm, "inference", opts, sink)
    compiled = _compile_or_fall_back(freeze(gm, frozen), "inference", opts, sink)   # eagerly: still frozen
    kept = [i for i in range(len(placeholders)) if i not in frozen]
    first, first_value = next(iter(frozen.items()))

    def call(args):
        if args[first] is not first_value and any(args[i].data_ptr() != v.data_ptr() for i, v in frozen.items()):
            raise HeteroCompileError("a graph compiled with freeze=True was called with other parameters than it "
                                     "froze (another instance of the module?): compile that module separately "
                                     "or call torch._dynamo.reset() first")
        rest = [args[i] for i in kept]
        args.clear()
        return compiled(rest)
    call._boxed_call = True
    return call


def _compile_or_fall_back(gm, kind: str, opts, sink):
    """The compiled graph; on any failure, the graph itself (run eagerly) with one warning
    naming the cause, or in strict mode a ``HeteroCompileError`` with the full text."""
    start = time.perf_counter()
    try:
        # whole-graph estimates are for reports: plain compiles skip them
        compiled = compile_graph(gm, opts, name=kind, estimate=sink is not None)
    except Exception as error:
        if opts.strict:
            raise HeteroCompileError(f"torch_hetero could not compile the {kind} graph: {error}") from error
        target = str(opts.device)  # not opts.profile: loading it may be what failed
        if sink is not None:
            sink.append((kind, EagerGraph.of(gm, error, time.perf_counter() - start), target))
        logs.ran_eagerly(kind, error, target)
        warnings.warn(f"torch_hetero could not compile the {kind} graph ({one_line(error)}); running it "
                      'eagerly. TORCH_LOGS="torch_hetero" logs the full error; options={"strict": True} '
                      "raises it instead.", GraphFallbackWarning, stacklevel=2)
        return make_boxed_func(gm.forward)
    if sink is not None:
        sink.append((kind, compiled, opts.profile.name))
    logs.compiled(kind, compiled, opts.profile.name)
    return compiled
