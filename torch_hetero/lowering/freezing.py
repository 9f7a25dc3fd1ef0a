"""Frozen inference (``options={"freeze": True}``): the module's parameters and buffers become
constants of the inference graph, and the graph is simplified with what is then known.

Assumption, as Inductor's ``freezing=True``: parameters and buffers do not change after the first
call.  The values are read once, at compile time; a module whose weights change afterwards (an
optimizer step, ``load_state_dict``, an in-place edit) keeps computing with the old ones until
it is compiled again (``torch._dynamo.reset()``, or a fresh ``torch.compile``).  Calling the
compiled graph with other parameter tensors (another instance of the module) raises
(``backend._frozen``).  Training graphs are never frozen.

Passes, in order, each on an FX graph of ATen ops, each leaving the graph's outputs as they were:

1. ``freeze``: the placeholders of parameters and buffers → ``get_attr`` constants;
2. ``fold_constants``: an op whose inputs are all constants is run once, here, and its result is
   a new constant (the per-channel views and ``rsqrt(var + eps)`` of a batch norm, a linear's
   transposed weight) — except the conversion of a quantized constant (int8, uint8, fp8) to a
   wider type: the weight stays quantized in memory, read by a matmul that converts it as it
   loads (ATen's int8 kernel on the host, the template's operand loads on Triton targets);
3. ``fold_affine_into_convolution``: a per-output-channel ``mul``/``div``/``add``/``sub`` by
   constants after a convolution with constant weights (inference batch norm after constant
   folding: ``(y - mean) · invstd · weight + bias``) becomes the convolution's weight and bias.

``fold_padding`` (a zero ``constant_pad_nd`` read only by convolutions → their padding) needs no
constants and runs on every graph (``compiler.compile_graph``)."""
from __future__ import annotations

import operator

import torch

from ..dtypes import FLOAT8

aten = torch.ops.aten
CONVOLUTION = aten.convolution.default
# ops folded with a constant into the convolution: y → y·scale + shift per output channel
_AFFINE = {aten.mul.Tensor, aten.div.Tensor, aten.add.Tensor, aten.sub.Tensor}
# a folded constant may be at most this many times the size of the constants it is made from
# (folding expand/full-like ops would copy a broadcast into memory)
MAX_GROWTH = 4


def freeze(gm: torch.fx.GraphModule, values: dict) -> torch.fx.GraphModule:
    """A copy of ``gm`` whose placeholders at the positions ``values`` names (placeholder
    index → tensor) are constants holding those tensors, simplified by passes 2 and 3."""
    graph = torch.fx.Graph()
    graph.output(graph.graph_copy(gm.graph, {}))
    module = torch.fx.GraphModule(gm, graph)
    for index, node in enumerate(graph.find_nodes(op="placeholder")):
        if index in values:
            _replace_by_constant(module, node, values[index], f"_frozen_param{index}")
    # AOTAutograd compiles inside its fake tensor mode: the folding computes on real tensors
    with torch.utils._python_dispatch._disable_current_modes(), torch.no_grad():
        fold_constants(module)
        fold_affine_into_convolution(module)
    graph.eliminate_dead_code()
    module.recompile()
    return module


def _replace_by_constant(gm: torch.fx.GraphModule, node: torch.fx.Node, value: torch.Tensor, name: str) -> None:
    gm.register_buffer(name, value, persistent=False)
    with gm.graph.inserting_before(node):
        constant = gm.graph.get_attr(name)
    constant.meta.update(node.meta)
    node.replace_all_uses_with(constant)
    gm.graph.erase_node(node)


def _constant_value(gm, arg):
    return getattr(gm, arg.target) if isinstance(arg, torch.fx.Node) and arg.op == "get_attr" else None


def fold_constants(gm: torch.fx.GraphModule) -> None:
    """Each op reading only constants (and plain arguments) computed now, in graph order."""
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload) \
                or node.target is operator.getitem or _impure(node.target):
            continue
        inputs = node.all_input_nodes
        if not inputs or any(n.op != "get_attr" for n in inputs):
            continue
        if not isinstance(node.meta.get("val"), torch.Tensor) or _widens_quantized(node):
            continue
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: getattr(gm, n.target))
        meta = node.meta["val"]
        if meta.numel() > MAX_GROWTH * max(1, sum(getattr(gm, n.target).numel() for n in inputs)):
            continue
        value = node.target(*args, **kwargs)
        _replace_by_constant(gm, node, value, f"_folded{count}")
        count += 1


def _widens_quantized(node) -> bool:
    """Is ``node`` a conversion of an int8, uint8 or fp8 tensor to a wider type?"""
    if node.target not in (aten._to_copy.default, torch.ops.prims.convert_element_type.default):
        return False
    source = node.args[0].meta.get("val")
    narrow = isinstance(source, torch.Tensor) and (source.dtype in (torch.int8, torch.uint8) or source.dtype in FLOAT8)
    return narrow and node.meta["val"].dtype.itemsize > source.dtype.itemsize


def _impure(op) -> bool:
    """Random, in-place or out= ops: not computed ahead of time."""
    schema = op._schema
    return op._overloadpacket in _RANDOM or any(a.alias_info is not None and a.alias_info.is_write
                                                 for a in schema.arguments)


_RANDOM = {aten.rand, aten.randn, aten.randint, aten.bernoulli, aten.normal, aten.uniform,
           aten.native_dropout, aten.rand_like, aten.randn_like, aten.randperm}


def fold_affine_into_convolution(gm: torch.fx.GraphModule) -> None:
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target is CONVOLUTION:
            _fold_affine(gm, node)


def _fold_affine(gm, conv: torch.fx.Node) -> None:
    x, weight, bias, stride, padding, dilation, transposed, output_padding, groups = conv.args
    w, b = _constant_value(gm, weight), _constant_value(gm, bias)
    meta = conv.meta.get("val")
    if transposed or w is None or (bias is not None and b is None) or not isinstance(meta, torch.Tensor) \
            or not meta.dtype.is_floating_point:
        return
    channels = meta.shape[1]
    scale = torch.ones(channels, dtype=torch.float64)
    shift = torch.zeros(channels, dtype=torch.float64)
    last, node = conv, conv
    while len(node.users) == 1:
        user = next(iter(node.users))
        per_channel = _per_channel(gm, user, node, meta)
        if per_channel is None:
            break
        op, value = per_channel
        if op is aten.mul.Tensor:
            scale, shift = scale * value, shift * value
        elif op is aten.div.Tensor:
            scale, shift = scale / value, shift / value
        elif op is aten.add.Tensor:
            shift = shift + value
        else:
            shift = shift - value
        last = node = user
    if last is conv:
        return
    view = [channels] + [1] * (w.dim() - 1)
    new_weight = (w.double() * scale.view(view)).to(w.dtype)
    new_bias = ((b.double() if b is not None else torch.zeros(channels, dtype=torch.float64)) * scale + shift).to(w.dtype)
    name = f"_affine_folded{sum(1 for n in gm.graph.nodes if n.op == 'get_attr')}"
    gm.register_buffer(f"{name}_weight", new_weight, persistent=False)
    gm.register_buffer(f"{name}_bias", new_bias, persistent=False)
    with gm.graph.inserting_before(last):
        weight_node, bias_node = gm.graph.get_attr(f"{name}_weight"), gm.graph.get_attr(f"{name}_bias")
        weight_node.meta["val"], bias_node.meta["val"] = new_weight, new_bias
        fused = gm.graph.call_function(CONVOLUTION, (x, weight_node, bias_node, stride, padding, dilation,
                                                     transposed, output_padding, groups))
    fused.meta.update(last.meta)
    last.replace_all_uses_with(fused)


def _per_channel(gm, user: torch.fx.Node, source: torch.fx.Node, meta):
    """(op, per-channel float64 values) when ``user`` is ``source`` (op) a constant broadcast
    along the channels (one value per output channel, or one for all), same dtype and shape;
    else None."""
    if user.op != "call_function" or user.target not in _AFFINE or user.kwargs.get("alpha", 1) != 1:
        return None
    if len(user.args) != 2 or user.args[0] is not source or user.args[1] is source:
        return None
    out = user.meta.get("val")
    if not isinstance(out, torch.Tensor) or out.dtype != meta.dtype or tuple(out.shape) != tuple(meta.shape):
        return None
    other = user.args[1]
    value = _constant_value(gm, other) if isinstance(other, torch.fx.Node) else (
        torch.tensor(float(other)) if isinstance(other, (int, float)) and not isinstance(other, bool) else None)
    if value is None or value.dim() > meta.dim():
        return None
    shape = [1] * (meta.dim() - value.dim()) + list(value.shape)
    if any(size != 1 for position, size in enumerate(shape) if position != 1):
        return None
    return user.target, value.double().reshape(-1).expand(meta.shape[1]).clone()


def fold_padding(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``gm`` (a copy if changed) where a zero ``constant_pad_nd``, symmetric in each padded
    spatial dim, read only as convolutions' input, is folded into their padding."""
    found = [node for node in gm.graph.nodes if _foldable_pad(node)]
    if not found:
        return gm
    graph = torch.fx.Graph()
    graph.output(graph.graph_copy(gm.graph, {}))
    for pad in [node for node in graph.nodes if _foldable_pad(node)]:
        x, amounts = pad.args[0], pad.args[1]
        for conv in list(pad.users):
            spatial, padding = _spatial_padding(conv)
            extra = [amounts[2 * (spatial - 1 - d)] if 2 * (spatial - 1 - d) < len(amounts) else 0
                     for d in range(spatial)]
            args = list(conv.args)
            args[0], args[4] = x, [p + e for p, e in zip(padding, extra)]
            conv.args = tuple(args)
    graph.eliminate_dead_code()
    return torch.fx.GraphModule(gm, graph)


def _foldable_pad(node: torch.fx.Node) -> bool:
    if node.op != "call_function" or node.target is not aten.constant_pad_nd.default:
        return False
    amounts = node.args[1]
    value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0)
    if value != 0 or not node.users or not all(isinstance(a, int) and a >= 0 for a in amounts):
        return False
    for conv in node.users:
        if conv.op != "call_function" or conv.target is not CONVOLUTION or conv.args[0] is not node \
                or conv.args[6] or any(a is node for a in conv.args[1:]):
            return False
        if len(amounts) > 2 * _spatial_padding(conv)[0]:
            return False
    return all(amounts[i] == amounts[i + 1] for i in range(0, len(amounts), 2))


def _spatial_padding(conv: torch.fx.Node) -> tuple:
    """(spatial dims, padding per spatial dim) of a convolution node."""
    spatial = conv.args[1].meta["val"].dim() - 2
    padding = list(conv.args[4])
    return spatial, padding * spatial if len(padding) == 1 else padding
