"""Lowering: IR program -> executable `torch.fx.GraphModule`.

In: a `Program` (with parameter values). Out: a GraphModule that runs in eager, supports
autograd, and records on every call node `meta["custom"] = {"hnf_op": ..., "hnf_dtype": ...}`.
Each node becomes the torch call its op-table entry emits; scalar constants are passed inline
as Python numbers where torch takes them (so `x * 0.1` stays exactly that). Parameters are
registered under their original dotted names, sharing storage with the tensors the program
holds, so training the lowered module trains the original parameters.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
from torch.utils import _pytree as pytree

from hnfc import ops
from hnfc.dtypes import to_torch
from hnfc.ir.program import Program
from hnfc.ops import AsTensor, Call, DeviceArg, DeviceStr, DTypeArg, Scalar, TorchAttr
from hnfc.types import TensorType


class LoweringError(RuntimeError):
    pass


def resolve_target(target: str):
    """"aten.log1p.default" -> torch.ops.aten.log1p.default; "getitem" -> operator.getitem."""
    if target == "getitem":
        return operator.getitem
    obj: Any = torch.ops
    for part in target.split("."):
        try:
            obj = getattr(obj, part)
        except (AttributeError, RuntimeError):
            raise LoweringError(f"no torch op {target!r}") from None
    return obj


def resolve_value(v, device, materialize):
    """Replace the op table's markers inside call arguments by torch objects."""
    if isinstance(v, Scalar):
        return v.value
    if isinstance(v, AsTensor):
        return materialize(v)
    if isinstance(v, DTypeArg):
        return to_torch(v.name)
    if isinstance(v, DeviceArg):
        return device
    if isinstance(v, DeviceStr):
        return torch.device(v.name)
    if isinstance(v, TorchAttr):
        return getattr(torch, v.name)
    if isinstance(v, (list, tuple)):
        return type(v)(resolve_value(x, device, materialize) for x in v)
    return v


def _set_nested(root: torch.nn.Module, name: str, value: torch.Tensor) -> str:
    """Register `value` at dotted `name` (creating submodules); returns the attribute path."""
    *path, leaf = name.split(".")
    safe_path = [p if p.isidentifier() else f"m_{p}" for p in path]
    mod = root
    for p in safe_path:
        if not hasattr(mod, p):
            mod.add_module(p, torch.nn.Module())
        mod = getattr(mod, p)
    leaf = leaf if leaf.isidentifier() else f"t_{leaf}"
    if isinstance(value, torch.nn.Parameter):
        mod.register_parameter(leaf, value)
    else:
        mod.register_buffer(leaf, value)
    return ".".join(safe_path + [leaf])


def _placeholder_name(name: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "x"
    if base[0].isdigit():
        base = "x_" + base
    out, k = base, 1
    while out in taken:
        out, k = f"{base}_{k}", k + 1
    taken.add(out)
    return out


def lower(program: Program, *, dtypes: dict[int, str] | None = None) -> fx.GraphModule:
    """Build the GraphModule for `program`.

    `dtypes` optionally maps value ids to the dtype the node should be recorded with (the
    precision stage fills it); by default each node's own type is recorded.
    """
    device = program.meta.get("device", torch.device("cpu"))
    root = torch.nn.Module()
    graph = fx.Graph()
    env: dict[int, Any] = {}  # value id -> fx.Node, or Scalar for inline constants
    taken: set[str] = set()

    def materialize(v: AsTensor) -> fx.Node:
        return graph.call_function(torch.ops.aten.scalar_tensor.default, (v.value,), {"dtype": to_torch(v.dtype), "device": device})

    def as_node(i: int) -> fx.Node:
        v = env[i]
        if isinstance(v, Scalar):
            n = program.nodes[i]
            env[i] = materialize(AsTensor(v.value, n.type.dtype))
        return env[i]

    for i, node in enumerate(program.nodes):
        if node.op == "input":
            env[i] = graph.placeholder(_placeholder_name(node.attr["name"], taken))
            continue
        if node.op == "param":
            name = node.attr["name"]
            if name not in program.params:
                raise LoweringError(f"%{i}: no value for parameter {name!r}")
            env[i] = graph.get_attr(_set_nested(root, name, program.params[name]))
            continue
        if node.op == "const":
            env[i] = Scalar(node.attr["value"])
            continue
        args = [None if a is None else env[a] for a in node.args]
        call: Call = node.opdef.emit(args, node.attr, node.type)
        call_args = resolve_value(call.args, device, materialize)
        call_kwargs = {k: resolve_value(v, device, materialize) for k, v in call.kwargs.items()}
        fx_node = graph.call_function(resolve_target(call.target), tuple(call_args), call_kwargs)
        if call.index is not None:
            fx_node = graph.call_function(operator.getitem, (fx_node, call.index))
        if isinstance(node.type, TensorType):
            dt = (dtypes or {}).get(i, node.type.dtype)
            fx_node.meta["custom"] = {"hnf_op": node.op, "hnf_dtype": str(to_torch(dt)).removeprefix("torch.")}
        env[i] = fx_node

    outs = [as_node(o) for o in program.outputs]
    out_spec = program.meta.get("out_spec")
    in_spec = program.meta.get("in_spec")
    graph.output(tuple(outs) if out_spec is None or in_spec is None else outs)
    if in_spec is not None and out_spec is not None:
        names = [n.name for n in graph.nodes if n.op == "placeholder"]
        graph._codegen = fx.graph._PyTreeCodeGen(fx.graph._PyTreeInfo(names, in_spec, out_spec))
    graph.lint()
    return fx.GraphModule(root, graph, class_name="HnfModule")


def flat_spec(example_inputs) -> tuple[list, pytree.TreeSpec]:
    """Flatten call arguments the way the lowered module will receive them."""
    return pytree.tree_flatten(list(example_inputs))


__all__ = ["LoweringError", "flat_spec", "lower", "resolve_target", "resolve_value", "ops"]
