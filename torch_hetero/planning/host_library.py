"""The host's choices about its convolution library (oneDNN), made on the ATen graph before
lowering and priced by the cost model; each is stated in the plan (``Plan.notes``) or on the
call it makes (the extern's note, in the schedule and ``explain()``).

0. ``convolutions_as_gemm``: a 1x1 convolution of a 1x1 map (squeeze-and-excitation's two
   layers) is a GEMM, and runs as one (MKL, a few µs) instead of a convolution call (ATen's
   unvectorized fallback, or a fused oneDNN call that creates its primitive each time: about
   60 µs, measured); its activation joins our next kernel.
1. ``plan_layout``: channels-last (NHWC, oneDNN's own layout) from the first 2-d convolution
   to the last, converted only at the graph's edges — when the convolutions' time saved at
   the host's measured NCHW/NHWC ratio and NCHW efficiency (``DeviceProfile``'s
   ``channels_last_speedup`` and ``convolution_efficiency``: calibration) exceeds the
   activations' conversions cost.  A conversion is a ``clone`` in channels-last before each
   convolution whose input (or weight, unless a frozen constant) is not already so; after the graph's
   metadata is propagated again, every op downstream follows its inputs' layout (pointwise
   kernels vectorize along the channels), and the conversions of tensors already
   channels-last are dropped.  Outputs are converted back to the strides eager gives them.
   Where the graph stays NCHW, a convolution whose input is channels-last anyway (ConvNeXt's
   permuted LayerNorm) still gets its weight converted by our kernel: ATen would copy it
   into the input's format on every call, by a strided copy several times slower.
2. ``fuse_epilogues``: a convolution's epilogue — an activation (relu, hardtanh/ReLU6, gelu,
   sigmoid, tanh, silu), or a residual add of a tensor in the output's layout optionally
   followed by relu — applied by the library as post-ops (``lowering/onednn.py``) where the
   convolution's output is read by nothing else.  The separate pass it saves (reading and
   writing the output, one launch) is priced by the cost model and stated; the post-op is
   applied in registers, so the fused call never prices higher and is always taken.
3. ``prepack_weights``: in a frozen graph (constant weights, static shapes), each 2-d
   convolution's weight reordered once into oneDNN's blocked layout for its (channels-last)
   input shape, and each linear layer's (``addmm``/``mm`` by a constant, transposed or stored
   [in, out] as GPT-2's) packed once for MKL's GEMM."""
from __future__ import annotations

import math

import torch
from torch._subclasses.fake_tensor import FakeTensor

from ..device_models import DeviceProfile
from ..lowering.onednn import (CONVOLUTION_BINARY, CONVOLUTION_UNARY, NOTE, ONEDNN, PACKED_LINEAR,
                               REORDER_LINEAR_WEIGHT, REORDER_WEIGHT, weight_position)
from .cost_model import MemoryModel, estimate_memory_op

aten = torch.ops.aten
CONVOLUTION = aten.convolution.default
TO_CHANNELS_LAST = "channels-last conversion"   # the meta tag of a conversion this pass inserts
EXPLICIT_STRIDES = (aten.as_strided.default, aten.as_strided_scatter.default, aten.as_strided_copy.default)

# ATen op → (oneDNN post-op name, its scalars from the op's arguments, its algorithm)
_UNARY = {
    aten.relu.default: lambda node: ("relu", [], ""),
    aten.hardtanh.default: lambda node: ("hardtanh", [_arg(node, 1, "min_val", -1.0), _arg(node, 2, "max_val", 1.0)], ""),
    aten.clamp.default: lambda node: ("hardtanh", [node.args[1], node.args[2]], "")
    if len(node.args) == 3 and all(isinstance(a, (int, float)) for a in node.args[1:]) else None,
    aten.gelu.default: lambda node: ("gelu", [], node.kwargs.get("approximate", "none")),
    aten.sigmoid.default: lambda node: ("sigmoid", [], ""),
    aten.tanh.default: lambda node: ("tanh", [], ""),
}


def _arg(node, position: int, name: str, default):
    return node.args[position] if len(node.args) > position else node.kwargs.get(name, default)


def applies(profile: DeviceProfile) -> bool:
    """The host's library passes run for a C++ target whose convolution library is oneDNN."""
    return ONEDNN and profile.target.host_threads and "oneDNN" in profile.target.convolution


# ---------------------------------------------------------------- 0. GEMMs
def convolutions_as_gemm(gm: torch.fx.GraphModule) -> tuple:
    """(graph, note): ``gm`` (a copy if changed) with each convolution that is a GEMM — a kernel
    the size of its map (1x1 over 1x1, or VGG's 7x7 head over 7x7: one output pixel), unpadded,
    one group — written as ``addmm``/``mm`` over the flattened map, and how many."""
    found = [n for n in gm.graph.nodes if _is_gemm(n)]
    if not found:
        return gm, ""
    graph = torch.fx.Graph()
    graph.output(graph.graph_copy(gm.graph, {}))
    for conv in [n for n in graph.nodes if _is_gemm(n)]:
        x, weight, bias = conv.args[:3]
        batch, outputs = x.meta["val"].shape[0], weight.meta["val"].shape[0]
        channels = math.prod(x.meta["val"].shape[1:])
        with graph.inserting_before(conv):
            rows = graph.call_function(aten.view.default, (x, [batch, channels]))
            columns = graph.call_function(aten.t.default, (graph.call_function(aten.view.default, (weight, [outputs, channels])),))
            product = graph.call_function(aten.addmm.default, (bias, rows, columns)) if bias is not None \
                else graph.call_function(aten.mm.default, (rows, columns))
            out = graph.call_function(aten.view.default, (product, [batch, outputs, 1, 1]))
        conv.replace_all_uses_with(out)
        graph.erase_node(conv)
    _propagate(graph)
    return torch.fx.GraphModule(gm, graph), f"{len(found)} convolutions with kernels the size of their maps run as GEMMs"


def _is_gemm(node) -> bool:
    if not _is_2d_convolution(node):
        return False
    x, weight = node.args[0].meta["val"], node.args[1].meta["val"]
    padding, dilation, groups = node.args[4], node.args[5], node.args[8]
    return tuple(x.shape[2:]) == tuple(weight.shape[2:]) and groups == 1 and not any(padding) \
        and all(d == 1 for d in dilation) and weight.is_contiguous() and x.is_contiguous() \
        and not any(isinstance(s, torch.SymInt) for s in x.shape)


# ---------------------------------------------------------------- 1. layout
def plan_layout(gm: torch.fx.GraphModule, profile: DeviceProfile) -> tuple:
    """(graph, note): ``gm`` itself and "" where nothing is decided (no 2-d convolution), else
    the chosen graph — a channels-last copy, or ``gm`` — and the reason."""
    convolutions = [n for n in gm.graph.nodes if _is_2d_convolution(n)]
    if not convolutions:
        return gm, ""
    speedup = profile.channels_last_speedup or 1.0
    conv_us = sum(_convolution_us(n, profile) for n in convolutions)
    saved_us = conv_us * (1 - 1 / speedup)
    what = (f"{len(convolutions)} convolutions, est. {conv_us:.0f} µs in NCHW, "
            f"{speedup:.2f}x faster in channels-last (measured)")
    if saved_us <= 0:
        return gm, f"layout: NCHW ({what})"
    converted = _channels_last(gm)
    if converted is None:
        return gm, f"layout: NCHW (a view in the graph needs NCHW strides; {what})"
    candidate, conversions = converted
    cost_us = sum(_pass_us(meta, profile) for meta in conversions)
    if cost_us >= saved_us:
        return _weights_follow_inputs(gm), (f"layout: NCHW ({what}: saves {saved_us:.0f} µs, converting costs "
                                            f"{cost_us:.0f} µs)")
    return candidate, (f"layout: channels-last ({what}: saves {saved_us:.0f} µs; converting {len(conversions)} "
                       f"activations at the edges costs {cost_us:.0f} µs)")


def _is_2d_convolution(node) -> bool:
    """A float32 2-d convolution, not transposed, with no empty tensor (oneDNN takes none:
    symbolic sizes are never 0, Dynamo specializes those)."""
    if not (node.op == "call_function" and node.target is CONVOLUTION and not node.args[6]
            and isinstance(node.meta.get("val"), torch.Tensor) and node.meta["val"].dim() == 4
            and node.meta["val"].dtype == torch.float32):
        return False
    tensors = (node.meta["val"], node.args[0].meta.get("val"), node.args[1].meta.get("val"))
    return all(isinstance(t, torch.Tensor) and 0 not in t.shape for t in tensors)


def _convolution_us(node, profile) -> float:
    """A convolution's time in NCHW: its roofline — its FLOPs at the fp32 peak or its tensors at
    DRAM bandwidth, whichever is longer (a depthwise one is memory-bound) — at the library's
    measured efficiency."""
    out, x, weight = node.meta["val"], node.args[0].meta["val"], node.args[1].meta["val"]
    flops = 2.0 * _hint(out.numel()) * math.prod(_hint(s) for s in weight.shape[1:])
    nbytes = sum(_hint(t.numel()) * t.element_size() for t in (out, x, weight))
    roofline = max(flops / profile.peak_flops("fp32", matrix=False), nbytes / (profile.dram_gbps * 1e9))
    return roofline / (profile.convolution_efficiency or 1.0) * 1e6


def _hint(value) -> int:
    return int(value.node.hint) if isinstance(value, torch.SymInt) else int(value)


def _pass_us(meta, profile) -> float:
    """A copy of ``meta``'s bytes (read and write) by a generated kernel, its source where the
    previous call left it (in cache when it fits: the steady state of a model run in a loop)."""
    nbytes = _hint(meta.numel()) * meta.element_size()
    memory = MemoryModel(profile, inputs={"in": nbytes})
    return estimate_memory_op({"in": nbytes}, {"out": nbytes}, 0.0, profile, memory).time_us


def _channels_last(gm):
    """(a channels-last copy of ``gm``, the metas of the tensors converted), or None where the
    graph's metadata cannot be propagated in the new layout (a ``view`` needing NCHW strides)."""
    graph = torch.fx.Graph()
    graph.output(graph.graph_copy(gm.graph, {}))
    output = graph.find_nodes(op="output")[0]
    eager = [a.meta.get("val") if isinstance(a, torch.fx.Node) else None for a in output.args[0]]
    eager_values = {node: node.meta.get("val") for node in graph.nodes}
    for conv in [n for n in graph.nodes if _is_2d_convolution(n)]:
        # the input, and a weight that is no constant (a frozen one is prepacked instead): ATen
        # reorders an NCHW weight for a channels-last input on every call
        for position in (0, 1) if conv.args[1].op != "get_attr" else (0,):
            with graph.inserting_before(conv):
                clone = graph.call_function(aten.clone.default, (conv.args[position],),
                                            {"memory_format": torch.channels_last})
            clone.meta[TO_CHANNELS_LAST] = True
            args = list(conv.args)
            args[position] = clone
            conv.args = tuple(args)
    try:
        _propagate(graph)
    except Exception:   # noqa: BLE001 - a shape or view error of the new layout: keep NCHW
        return None
    restored = _restore_explicit_strides(graph, eager_values)
    if restored is None:
        return None
    conversions = restored
    for node in list(graph.nodes):
        if node.meta.get(TO_CHANNELS_LAST):
            source = node.args[0].meta["val"]
            if source.is_contiguous(memory_format=torch.channels_last):
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
            elif all(user.args[1] is not node for user in node.users):
                # an activation; a weight's conversion is not priced: in NCHW too the library
                # reorders the weight on every call, into its blocked layout
                conversions.append(source)
    outputs = list(output.args[0])
    for position, (value, before) in enumerate(zip(outputs, eager)):
        if not isinstance(before, torch.Tensor) or value.meta["val"].stride() == before.stride():
            continue
        if not before.is_contiguous():
            return None
        with graph.inserting_before(output):
            back = graph.call_function(aten.clone.default, (value,), {"memory_format": torch.contiguous_format})
        back.meta["val"] = before
        conversions.append(before)
        outputs[position] = back
    output.args = (tuple(outputs),) + output.args[1:]
    graph.eliminate_dead_code()
    return torch.fx.GraphModule(gm, graph), conversions


def _restore_explicit_strides(graph: torch.fx.Graph, eager_values: dict):
    """Each ``as_strided`` (how functionalization writes a ``split`` or ``chunk`` of a tensor
    later mutated or returned) reading a tensor whose layout changed reads it converted back
    to its eager layout: its strides are absolute, traced for the NCHW storage, and would read
    the channels-last one at the wrong places.  The eager metas of the tensors so converted,
    or None where one was not a dense NCHW tensor (no conversion reproduces its storage): the
    graph stays NCHW."""
    converted: dict = {}   # source -> its conversion back, one per tensor
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in EXPLICIT_STRIDES:
            continue
        for source in [a for a in node.args if isinstance(a, torch.fx.Node)]:
            before = eager_values.get(source)
            if _same_layout(before, source.meta.get("val")):
                continue
            if not (isinstance(before, torch.Tensor) and before.is_contiguous() and before.storage_offset() == 0):
                return None
            if source not in converted:
                with graph.inserting_after(source):
                    converted[source] = graph.call_function(aten.clone.default, (source,),
                                                            {"memory_format": torch.contiguous_format})
                converted[source].meta["val"] = before
            node.replace_input_with(source, converted[source])
    return [eager_values[source] for source in converted]


def _weights_follow_inputs(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``gm`` (a copy if changed) where each 2-d convolution reading a channels-last input
    reads its weight (no constant) converted to channels-last by a kernel of ours."""
    def follows(conv) -> bool:
        x, weight = conv.args[0].meta["val"], conv.args[1]
        return weight.op != "get_attr" and not x.is_contiguous() \
            and x.is_contiguous(memory_format=torch.channels_last) \
            and not weight.meta["val"].is_contiguous(memory_format=torch.channels_last)
    if not any(follows(conv) for conv in gm.graph.nodes if _is_2d_convolution(conv)):
        return gm
    graph = torch.fx.Graph()
    graph.output(graph.graph_copy(gm.graph, {}))
    mode = _fake_mode(graph)
    for conv in [n for n in graph.nodes if _is_2d_convolution(n) and follows(n)]:
        weight = conv.args[1]
        with graph.inserting_before(conv):
            clone = graph.call_function(aten.clone.default, (weight,), {"memory_format": torch.channels_last})
        with mode:
            clone.meta["val"] = weight.meta["val"].clone(memory_format=torch.channels_last)
        conv.args = (conv.args[0], clone, *conv.args[2:])
    return torch.fx.GraphModule(gm, graph)


def _fake_mode(graph: torch.fx.Graph):
    values = [n.meta.get("val") for n in graph.nodes if n.op in ("placeholder", "get_attr")]
    mode = torch._guards.detect_fake_mode([v for v in values if isinstance(v, FakeTensor)])
    if mode is None:
        raise RuntimeError("no fake tensor mode to propagate the graph's metadata in")
    return mode


def _propagate(graph: torch.fx.Graph) -> None:
    """Each op's traced value computed again from its inputs' (fake tensors, the graph's own
    fake mode) where one of them changed, or it has none (a new op): the strides of a new
    layout flow through the graph.  Ops on parameters alone (a batch norm's per-channel
    scale) keep theirs: about a third of a CNN's ops, each a fake-tensor dispatch."""
    mode = _fake_mode(graph)

    def fake(node):
        value = node.meta.get("val")
        if isinstance(value, torch.Tensor) and not isinstance(value, FakeTensor):
            value = mode.from_tensor(value, static_shapes=True)
        return value
    changed: set = set()
    with mode:
        for node in graph.nodes:
            if node.op != "call_function" or ("val" in node.meta and changed.isdisjoint(node.all_input_nodes)):
                continue
            args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), fake)
            value = node.target(*args, **kwargs)
            if not _same_layout(node.meta.get("val"), value):
                changed.add(node)
            node.meta["val"] = value


def _same_layout(old, new) -> bool:
    """Equal sizes, strides, offsets and dtypes (tensors, or tuples of them)."""
    if isinstance(old, (tuple, list)) and isinstance(new, (tuple, list)):
        return len(old) == len(new) and all(_same_layout(a, b) for a, b in zip(old, new))
    if isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor):
        return (old.shape, old.stride(), old.storage_offset(), old.dtype) == \
            (new.shape, new.stride(), new.storage_offset(), new.dtype)
    return old is None and new is None


# ---------------------------------------------------------------- 2. epilogues
def fuse_epilogues(gm: torch.fx.GraphModule, profile: DeviceProfile) -> torch.fx.GraphModule:
    """``gm`` (a copy if changed) with each convolution whose epilogue the library can apply
    replaced by the fused call, its reason in the node's meta (``lowering.onednn.NOTE``)."""
    if not any(_epilogue(n) for n in gm.graph.nodes if _is_2d_convolution(n)):
        return gm
    graph = torch.fx.Graph()
    graph.output(graph.graph_copy(gm.graph, {}))
    for conv in [n for n in graph.nodes if _is_2d_convolution(n)]:
        found = _epilogue(conv)
        if found is None:
            continue
        last, other, unary, names = found
        x, weight, bias, stride, padding, dilation, _, _, groups = conv.args
        attr, scalars, algorithm = unary or ("none", [], "")
        with graph.inserting_before(last):
            if other is None:
                fused = graph.call_function(CONVOLUTION_UNARY, (x, weight, bias, list(padding), list(stride),
                                                                list(dilation), groups, attr, scalars, algorithm))
            else:
                fused = graph.call_function(CONVOLUTION_BINARY, (
                    x, other, weight, bias, list(padding), list(stride), list(dilation), groups, "add", None,
                    unary[0] if unary else None, unary[1] if unary else [], unary[2] or None if unary else None))
        fused.meta.update(last.meta)
        fused.meta[NOTE] = _reason(names, last.meta["val"], profile)
        last.replace_all_uses_with(fused)
    graph.eliminate_dead_code()
    return torch.fx.GraphModule(gm, graph)


def _epilogue(conv):
    """(last node, residual or None, unary post-op or None, the ops' names) of the epilogue
    the library can take after ``conv``, or None."""
    out = conv.meta["val"]
    if len(conv.users) == 1:
        user = next(iter(conv.users))
        unary = _unary(user, conv)
        if unary is not None:
            return user, None, unary, [str(user.target.overloadpacket).removeprefix("aten.")]
        if user.op == "call_function" and user.target is aten.add.Tensor and user.kwargs.get("alpha", 1) == 1 \
                and len(user.args) == 2 and all(isinstance(a, torch.fx.Node) for a in user.args):
            other = user.args[1] if user.args[0] is conv else user.args[0]
            value = other.meta.get("val")
            if other is conv or not isinstance(value, torch.Tensor) or value.shape != out.shape \
                    or value.dtype != out.dtype or value.stride() != out.stride() \
                    or user.meta["val"].stride() != out.stride():
                return None
            after = next(iter(user.users)) if len(user.users) == 1 else None
            if after is not None and after.op == "call_function" and after.target is aten.relu.default:
                return after, other, ("relu", [], ""), ["add", "relu"]
            return user, other, None, ["add"]
    silu = _silu(conv)
    return None if silu is None else (silu, None, ("swish", [], ""), ["silu"])


def _unary(node, source):
    if node.op != "call_function" or node.target not in _UNARY or node.args[0] is not source:
        return None
    return _UNARY[node.target](node)


def _silu(conv):
    """The ``mul(x, sigmoid(x))`` (silu as decomposed) reading ``conv`` twice, else None."""
    if len(conv.users) != 2:
        return None
    sigmoid = next((u for u in conv.users if u.op == "call_function" and u.target is aten.sigmoid.default), None)
    if sigmoid is None or len(sigmoid.users) != 1:
        return None
    mul = next(iter(sigmoid.users))
    if mul.op == "call_function" and mul.target is aten.mul.Tensor and set(mul.args) == {conv, sigmoid} \
            and set(conv.users) == {sigmoid, mul}:
        return mul
    return None


def _reason(names: list, meta, profile) -> str:
    return (f"{' + '.join(names)} as oneDNN post-ops: saves a pass over the output "
            f"(est. {_pass_us(meta, profile):.1f} µs)")


# ---------------------------------------------------------------- 3. prepacked weights
def prepack_weights(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``gm`` (a copy where it holds constants) in which each 2-d convolution of a constant
    weight and a static input shape takes the weight reordered into oneDNN's blocked layout
    for that shape (an opaque constant); one without post-ops becomes the fused call without
    any, which takes the packed weight."""
    if not gm.graph.find_nodes(op="get_attr"):
        return gm
    graph = torch.fx.Graph()
    graph.output(graph.graph_copy(gm.graph, {}))
    gm = torch.fx.GraphModule(gm, graph)
    for node in list(gm.graph.nodes):
        if _is_2d_convolution(node) and _packable(gm, node, 1):
            x, weight, bias, stride, padding, dilation, _, _, groups = node.args
            with gm.graph.inserting_before(node):
                fused = gm.graph.call_function(CONVOLUTION_UNARY, (x, weight, bias, list(padding), list(stride),
                                                                   list(dilation), groups, "none", [], ""))
            fused.meta.update(node.meta)
            fused.meta[NOTE] = "oneDNN with the weight prepacked"
            node.replace_all_uses_with(fused)
            gm.graph.erase_node(node)
            node = fused
        if node.op != "call_function" or node.target not in (CONVOLUTION_UNARY, CONVOLUTION_BINARY):
            continue
        position = weight_position(node.target)
        if not _packable(gm, node, position):
            continue
        weight, x = node.args[position], node.args[0].meta["val"]
        padding, stride, dilation, groups = node.args[position + 2:position + 6]
        with torch.utils._python_dispatch._disable_current_modes():
            packed = REORDER_WEIGHT(getattr(gm, weight.target), padding, stride, dilation, groups, list(x.shape))
        name = f"{weight.target}_packed_{node.name}"
        gm.register_buffer(name, packed, persistent=False)
        with gm.graph.inserting_before(node):
            constant = gm.graph.get_attr(name)
        args = list(node.args)
        args[position] = constant
        node.args = tuple(args)
    if PACKED_LINEAR is not None:
        for node in list(gm.graph.nodes):
            _pack_linear(gm, node)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


def _pack_linear(gm, node) -> None:
    """``addmm(bias, x, b)`` / ``mm(x, b)`` of a constant float32 ``b`` [K, N] and an ``x``
    [M, K] of static M → MKL's GEMM on ``w = b.T`` [N, K] packed for M rows.  ``b`` is a
    linear layer's weight transposed (a view), or a weight stored [K, N] (GPT-2's ``Conv1D``),
    whose transpose is copied once, contiguous, for the packing."""
    if node.op != "call_function" or node.target not in (aten.addmm.default, aten.mm.default) or node.kwargs:
        return
    bias, x, operand = (None, *node.args) if node.target is aten.mm.default else node.args
    x_meta, out = x.meta.get("val"), node.meta.get("val")
    if not (isinstance(operand, torch.fx.Node) and operand.op == "get_attr") or out.dtype != torch.float32 \
            or isinstance(x_meta.shape[0], torch.SymInt) or not x_meta.is_contiguous() or not out.is_contiguous():
        return
    rows = int(x_meta.shape[0])
    with torch.utils._python_dispatch._disable_current_modes(), torch.no_grad():   # real tensors, in fake mode
        weight = getattr(gm, operand.target).detach()
        if weight.is_mkldnn or weight.dtype != torch.float32:
            return
        weight = weight.t().contiguous()   # [N, K]
        if bias is not None and not (isinstance(bias, torch.fx.Node) and bias.op == "get_attr"
                                     and tuple(getattr(gm, bias.target).shape) == (weight.shape[0],)):
            return
        packed = REORDER_LINEAR_WEIGHT(weight, rows)
    name = f"{operand.target}_mkl_packed_{node.name}"
    gm.register_buffer(name, packed, persistent=False)
    gm.register_buffer(f"{name}_weight", weight, persistent=False)
    with gm.graph.inserting_before(node):
        packed_node, weight_node = gm.graph.get_attr(name), gm.graph.get_attr(f"{name}_weight")
        linear = gm.graph.call_function(PACKED_LINEAR, (x, packed_node, weight_node, bias, rows))
    linear.meta.update(node.meta)
    linear.meta[NOTE] = "MKL with the weight packed"
    node.replace_all_uses_with(linear)
    gm.graph.erase_node(node)


def _packable(gm, node, position: int) -> bool:
    """A constant dense weight at ``position`` and a channels-last input of static shape (on a
    prepacked weight oneDNN writes channels-last whatever its input: the traced strides hold
    only there)."""
    weight, x = node.args[position], node.args[0].meta.get("val")
    return isinstance(weight, torch.fx.Node) and weight.op == "get_attr" and not getattr(gm, weight.target).is_mkldnn \
        and isinstance(x, torch.Tensor) and not any(isinstance(s, torch.SymInt) for s in x.shape) \
        and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
