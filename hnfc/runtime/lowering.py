"""Lowering: IR program -> executable `torch.fx.GraphModule`.

In: a `Program` (with parameter values). Out: a GraphModule that runs in eager, supports
autograd, and records on every call node `meta["custom"] = {"hnf_op": ..., "hnf_dtype": ...}`.
Each node becomes the torch call its op-table entry emits; scalar constants are passed inline
as Python numbers where torch takes them (so `x * 0.1` stays exactly that) and as 0-d tensors of
their dtype where it wants a Tensor. View ops with several users are emitted once per user, as
eager code does, so autograd accumulates gradients in eager's order (bit-exact gradients).
Views and dtype casts are emitted as Tensor methods (`x.reshape(s)`, `x.to(torch.bfloat16)`:
`METHODS`), the same aten ops reached through torch's C++ method bindings instead of a Python
`OpOverload` call each: on small models eager time is per-call overhead, and a mixed-precision
program has many of both. For the same reason a float cast is the dtype's method (`x.bfloat16()`,
`x.float()`: `to` without an argument to parse), the op table's calls go through the public torch
builtin of the op's name (`torch.addmm`, `torch._C._nn.gelu`: `public_callable`) without keywords
equal to their defaults, `addmm(b, x, Wᵀ)` on a parameter is torch's own `linear(x, W, b)`
(`_linear_folds`), and a flat calling convention (tensor arguments, a tensor or a tuple of
them returned) is generated without pytree's flatten and unflatten.
Parameters are registered under their original dotted names, sharing storage with the tensors the
program holds, so training the lowered module trains the original parameters. A program traced
from nested arguments (`meta["in_spec"]`/`["out_spec"]`) gives a module with the same calling
convention; otherwise forward takes the inputs flat and returns a tuple. The module follows
`.to(device)` / `.cuda()`: the device its constants and factory calls were traced on moves with
its parameters (a module optimized on CPU runs on a GPU after `.to("cuda")`).
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
import torch.fx as fx
from torch.utils import _pytree as pytree

from hnfc.foundation.dtypes import to_torch
from hnfc.ir.casts import with_dtypes
from hnfc.ir.program import Program
from hnfc.ops import AsTensor, Call, DeviceArg, DeviceStr, DTypeArg, Scalar, TorchAttr
from hnfc.foundation.types import TensorType


class LoweringError(RuntimeError):
    pass


# Shape ops that torch runs as views (or cheap reshapes): lowering emits them at each use.
VIEW_OPS = frozenset({"reshape", "permute", "transpose", "expand", "unsqueeze", "squeeze", "slice", "select"})
# views that are the identity when the result has its argument's type (no call is emitted)
IDENTITY_VIEWS = frozenset({"expand", "reshape"})
# aten target -> the Tensor method that dispatches to it with the same positional arguments (module
# doc); `to` is added for a cast that changes a float dtype (`_method`)
METHODS = {
    "aten.reshape.default": "reshape",
    "aten.permute.default": "permute",
    "aten.transpose.int": "transpose",
    "aten.expand.default": "expand",
    "aten.unsqueeze.default": "unsqueeze",
    "aten.squeeze.dims": "squeeze",
    "aten.select.int": "select",
}
# float dtype -> the Tensor method that is `to(dtype)` (torch documents `x.bfloat16()` as
# `x.to(torch.bfloat16)`): no dtype argument to parse, about half the time of `to` a call
CAST_METHODS = {"bf16": "bfloat16", "f16": "half", "f32": "float", "f64": "double"}


# Where the public torch builtin of an aten op's name is found (torch.addmm, torch._C._nn.gelu)
_PUBLIC_HOMES = (torch._C._VariableFunctions, torch._C._nn)


def public_callable(target):
    """The public torch builtin that runs the OpOverload `target` (torch.addmm for
    aten.addmm.default), or None. It is the same kernel through torch's C++ argument parser,
    which picks the overload from the arguments, instead of a Python `OpOverload.__call__`: 1-3 µs
    less per call (on small models eager time is per-call overhead). Not for ops tagged
    nondeterministic_seeded (hnfc.runtime.run reads their schema: dropout_p); which overload the
    builtin dispatches is checked for every op-table example (tests/test_lowering_calls.py)."""
    if not isinstance(target, torch._ops.OpOverload) or torch.Tag.nondeterministic_seeded in target.tags:
        return None
    name = target._schema.name.split("::")[-1]
    for home in _PUBLIC_HOMES:
        fn = getattr(home, name, None)
        if fn is None or type(fn).__name__ != "builtin_function_or_method":
            continue
        # the generated code names it by its qualified name (`torch.split`); that name must be
        # this builtin, not a Python wrapper of the same name (torch.split, torch.norm)
        first, *path = fx.node._get_qualified_name(fn).split(".")
        named: Any = torch if first == "torch" else None
        for part in path:
            named = getattr(named, part, None)
        return fn if named is fn else None
    return None


SCALAR_TENSOR = torch.ops.aten.scalar_tensor.default  # a constant a Tensor argument takes (through its builtin)


def _without_defaults(target, kwargs: dict) -> dict:
    """kwargs less those equal to the schema's default (`addmm(..., beta=1, alpha=1)`): each
    keyword costs the argument parser time, and leaving a default out is the same call."""
    defaults = {a.name: a.default_value for a in target._schema.arguments if a.has_default_value()}
    return {k: v for k, v in kwargs.items() if not (k in defaults and type(v) is type(defaults[k]) and v == defaults[k])}


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


def _numbers_as_tensors(base_name: str) -> bool:
    check = getattr(torch._C, "_should_allow_numbers_as_tensors", None)
    if check is not None:
        return bool(check(base_name))
    return base_name in {"add", "sub", "mul", "div", "true_divide", "floor_divide"}


def _tensors_where_tensors_go(target, args, kwargs: dict, scalar_tensor):
    """Constants reach emits as inline `Scalar`s; one an op passes to a Tensor argument
    (exp(const), expand(const), cat([const, x])) is materialized as a 0-d tensor instead."""
    if not isinstance(target, torch._ops.OpOverload) or _numbers_as_tensors(target._schema.name.split("::")[-1]):
        return args, kwargs  # add, sub, mul, div take Python numbers as "wrapped number" tensors
    schema_args = target._schema.arguments
    positional = [a for a in schema_args if not a.kwarg_only]
    by_name = {a.name: a for a in schema_args}

    def fix(value, arg):
        if arg is None or "Tensor" not in str(arg.type):
            return value
        if isinstance(value, Scalar):
            return scalar_tensor(value)
        if isinstance(value, (list, tuple)):
            return type(value)(scalar_tensor(v) if isinstance(v, Scalar) else v for v in value)
        return value

    args = tuple(fix(v, positional[k] if k < len(positional) else None) for k, v in enumerate(args))
    kwargs = {k: fix(v, by_name.get(k)) for k, v in kwargs.items()}
    return args, kwargs


def identifier(name: str, taken: set[str], prefix: str = "x") -> str:
    """`name` as a Python identifier not in `taken` (which it joins): fx placeholder names."""
    base = "".join(c if c.isalnum() or c == "_" else "_" for c in name) or prefix
    if base[0].isdigit():
        base = f"{prefix}_{base}"
    out, k = base, 1
    while out in taken:
        out, k = f"{base}_{k}", k + 1
    taken.add(out)
    return out


def lower(program: Program, *, dtypes: dict[int, str] | None = None) -> fx.GraphModule:
    """Build the GraphModule for `program`.

    `dtypes` optionally maps value ids to the dtype a node should run in: float compute nodes
    whose own type differs are run in it, with casts inserted (hnfc.ir.casts.with_dtypes); every
    node records the dtype it runs in.
    """
    # cast emission (precision stage): a requested dtype other than a compute node's own is
    # realized by hnfc.ir.casts.with_dtypes (casts as `to` nodes); nodes then record their types
    if dtypes and any(isinstance(program.nodes[i].type, TensorType) and program.nodes[i].type.dtype != d for i, d in dtypes.items()):
        program, _ = with_dtypes(program, dtypes)
        dtypes = None
    device = program.meta.get("device", torch.device("cpu"))
    root = torch.nn.Module()
    graph = fx.Graph()
    env: dict[int, Any] = {}  # value id -> fx.Node, or Scalar for inline constants
    taken: set[str] = set()

    def materialize(v: AsTensor) -> fx.Node:
        return graph.call_function(public_callable(SCALAR_TENSOR) or SCALAR_TENSOR, (v.value,), {"dtype": to_torch(v.dtype), "device": device})

    const_dtype: dict[int, str] = {}  # id of a const's Scalar -> its dtype

    def scalar_tensor(v: Scalar) -> fx.Node:
        return materialize(AsTensor(v.value, const_dtype.get(id(v), "f32")))

    def as_node(i: int) -> fx.Node:
        if i in per_use:
            return emit(i)
        v = env[i]
        if isinstance(v, Scalar):
            n = program.nodes[i]
            env[i] = materialize(AsTensor(v.value, n.type.dtype))
        return env[i]

    # A view op with several users is emitted once per user, right before it, as eager code
    # does (`linear` on a 3-D input views it again for every projection). Hash-consing merged
    # those views; emitting one shared view would make autograd sum the users' gradients before
    # adding the others, in a different order than eager, and gradients would differ by an ulp.
    uses = [0] * len(program.nodes)
    for n in program.nodes:
        for a in set(n.args):
            if a is not None:
                uses[a] += 1
    for o in program.outputs:
        uses[o] += 1
    per_use = {i for i, n in enumerate(program.nodes) if n.op in VIEW_OPS and uses[i] > 1}
    folds = _linear_folds(program, uses)  # addmm id -> (weight id, the chain it replaces)
    folded = {c for _, chain in folds.values() for c in chain}

    def emit(i: int) -> fx.Node:
        node = program.nodes[i]
        if i in folds:
            return emit_linear(i, *folds[i])
        fresh: dict[int, Any] = {}  # one copy of a per-use view per user, even if used twice
        args = [None if a is None else fresh[a] if a in fresh else fresh.setdefault(a, arg(a)) for a in node.args]
        if node.op in IDENTITY_VIEWS and isinstance(args[0], fx.Node) and program.nodes[node.args[0]].type == node.type:
            return args[0]  # to the shape it has: no call (matmul's decomposition leaves these)
        call: Call = node.opdef.emit(args, node.attr, node.type)
        target = resolve_target(call.target)
        call_args, call_kwargs = _tensors_where_tensors_go(target, call.args, dict(call.kwargs), scalar_tensor)
        call_args = resolve_value(call_args, device, materialize)
        call_kwargs = {k: resolve_value(v, device, materialize) for k, v in call_kwargs.items()}
        method = _method(program, node, call, call_args, call_kwargs)
        # public builtins for the op table's own calls (every one checked against its overload
        # by tests/test_lowering_calls.py); an opaque call keeps the overload it was traced as
        public = None if method or node.opdef.opaque else public_callable(target)
        if public is not None:
            fx_node = graph.call_function(public, tuple(call_args), _without_defaults(target, call_kwargs))
        else:
            fx_node = graph.call_method(*method) if method else graph.call_function(target, tuple(call_args), call_kwargs)
        if call.index is not None:
            fx_node = graph.call_function(operator.getitem, (fx_node, call.index))
        if isinstance(node.type, TensorType):
            dt = (dtypes or {}).get(i, node.type.dtype)
            fx_node.meta["custom"] = {"hnf_op": node.op, "hnf_dtype": str(to_torch(dt)).removeprefix("torch.")}
        return fx_node

    def emit_linear(i: int, w: int, chain: tuple[int, ...]) -> fx.Node:
        """addmm(b, x, [to](transpose(W))) as linear(x, [to](W), b): `_linear_folds`."""
        node = program.nodes[i]
        bias, x, _ = node.args
        weight = env[w]
        cast = next((c for c in chain if program.nodes[c].op == "to"), None)
        if cast is not None:
            weight = graph.call_method(CAST_METHODS[program.nodes[cast].type.dtype], (weight,))
            weight.meta["custom"] = {"hnf_op": "to", "hnf_dtype": str(to_torch(program.nodes[cast].type.dtype)).removeprefix("torch.")}
        fx_node = graph.call_function(LINEAR, (arg(x), weight, arg(bias)))
        dt = (dtypes or {}).get(i, node.type.dtype)
        fx_node.meta["custom"] = {"hnf_op": node.op, "hnf_dtype": str(to_torch(dt)).removeprefix("torch.")}
        return fx_node

    def arg(a: int):
        return emit(a) if a in per_use else env[a]

    for i, node in enumerate(program.nodes):
        if node.op == "input":
            env[i] = graph.placeholder(identifier(node.attr["name"], taken))
            continue
        if node.op == "param":
            name = node.attr["name"]
            if name not in program.params:
                raise LoweringError(f"%{i}: no value for parameter {name!r}")
            env[i] = graph.get_attr(_set_nested(root, name, program.params[name]))
            continue
        if node.op == "const":
            env[i] = Scalar(node.attr["value"])
            const_dtype[id(env[i])] = node.type.dtype
            continue
        if i not in per_use and i not in folded:
            env[i] = emit(i)

    outs = [as_node(o) for o in program.outputs]
    out_spec = program.meta.get("out_spec")
    in_spec = program.meta.get("in_spec")
    if in_spec is not None and out_spec is not None:
        # forward takes the original (possibly nested) arguments, one name per top-level argument
        names = [n for n in program.meta.get("arg_names", ()) if n.isidentifier() and n != "self"]
        if len(names) != in_spec.num_children or len(set(names)) != len(names):
            names = [f"arg{i}" for i in range(in_spec.num_children)]
        plain = _plain_output(in_spec, out_spec, outs)
        if plain is not None:
            # every argument a leaf and the result one or a tuple/list of them: the same calling
            # convention without pytree's flatten and unflatten (several µs a call)
            for node, name in zip(graph.find_nodes(op="placeholder"), names):
                node.name = node.target = name
            graph.output(plain)
        else:
            graph.output(outs)
            graph._codegen = fx.graph._PyTreeCodeGen(fx.graph._PyTreeInfo(names, in_spec, out_spec))
    else:
        graph.output(tuple(outs))
    graph.lint()
    gm = HnfModule(root, graph, class_name="HnfModule")
    gm.device = torch.device(device)
    return gm


LINEAR = torch._C._nn.linear  # F.linear's builtin


def _linear_folds(program: Program, uses: list[int]) -> dict[int, tuple[int, tuple[int, ...]]]:
    """addmm nodes to emit as `linear`: addmm(b, x, W^T) with beta = alpha = 1, a 2-D x and W a
    2-D contiguous parameter, possibly cast after the transpose (`to(transpose(W))`, as the
    precision stage leaves it). torch's linear on a 2-D input with a bias *is*
    `addmm(bias, input, weight.t())`, and casting W before or after the transpose gives the same
    strides (a dense tensor keeps its layout through `to`), so it is the same kernel on the same
    operands: one call instead of three. Only where the transpose, the cast and W itself have no
    other reader (a tied weight's gradients keep eager's accumulation order). Returns addmm id ->
    (W's id, the transpose and cast nodes it replaces)."""
    out: dict[int, tuple[int, tuple[int, ...]]] = {}
    nodes = program.nodes
    for i, n in enumerate(nodes):
        if n.op != "addmm" or n.attr.get("beta") != 1 or n.attr.get("alpha") != 1 or None in n.args:
            continue
        bias, x, m = n.args
        chain: list[int] = []
        if nodes[m].op == "to" and uses[m] == 1 and nodes[m].type.dtype != nodes[nodes[m].args[0]].type.dtype and nodes[m].type.dtype in CAST_METHODS:
            chain.append(m)
            m = nodes[m].args[0]
        if nodes[m].op != "transpose" or uses[m] != 1 or nodes[bias].op == "const":
            continue
        chain.append(m)
        w = nodes[m].args[0]
        wt, xt = nodes[w].type, nodes[x].type
        if not (isinstance(wt, TensorType) and isinstance(xt, TensorType) and wt.rank == 2 and xt.rank == 2):
            continue
        if {nodes[m].attr["dim0"] % 2, nodes[m].attr["dim1"] % 2} != {0, 1}:
            continue
        value = program.params.get(nodes[w].attr.get("name")) if nodes[w].op == "param" else None
        if value is None or uses[w] != 1 or not value.is_contiguous():
            continue
        out[i] = (w, tuple(chain))
    return out


def _plain_output(in_spec: pytree.TreeSpec, out_spec: pytree.TreeSpec, outs: list):
    """What forward returns when pytree would only pass things through: every top-level argument
    a leaf (one placeholder each, in order) and the result a leaf, a tuple or a list of leaves
    (the output node's argument); else None."""
    if in_spec.type not in (list, tuple) or not all(c.is_leaf() for c in in_spec.children()):
        return None
    if out_spec.is_leaf():
        return outs[0] if len(outs) == 1 else None
    if out_spec.type in (list, tuple) and all(c.is_leaf() for c in out_spec.children()) and out_spec.num_children == len(outs):
        return out_spec.type(outs)
    return None


def _method(program: Program, node, call: Call, args, kwargs) -> tuple[str, tuple] | None:
    """(method name, arguments) when `call` has a Tensor-method form (`METHODS`), else None. A
    cast is one only where it changes the dtype (`Tensor.to` returns its argument unchanged when
    the dtype already matches, where `_to_copy` copies)."""
    if call.index is not None or not args or not isinstance(args[0], fx.Node):
        return None
    if call.target == "aten._to_copy.default" and set(kwargs) == {"dtype"} and len(args) == 1:
        src = program.nodes[node.args[0]].type
        if isinstance(src, TensorType) and src.dtype != node.type.dtype:
            named = CAST_METHODS.get(node.type.dtype)
            return (named, (args[0],)) if named else ("to", (args[0], kwargs["dtype"]))
        return None
    name = METHODS.get(call.target)
    return (name, tuple(args)) if name is not None and not kwargs else None


class HnfModule(fx.GraphModule):
    """A lowered program. `device` is where its constants and factory calls are made; moving the
    module (`.to`, `.cuda`, `.cpu`) moves them too, since the graph names the device literally."""

    def _apply(self, fn, recurse=True):
        moved = super()._apply(fn, recurse)
        here = getattr(self, "device", None)
        if here is None:
            return moved
        there = fn(torch.empty(0, device=here)).device  # where `fn` sends a tensor of ours
        if there != here:
            for node in self.graph.nodes:
                node.args, node.kwargs = fx.node.map_aggregate((node.args, node.kwargs), lambda v: there if isinstance(v, torch.device) else v)
            self.device = there
            self.recompile()
        return moved

    def __deepcopy__(self, memo):
        # GraphModule's own deepcopy rebuilds from the graph and drops attributes it does not know
        twin = super().__deepcopy__(memo)
        for name in ("device", "report", "program"):
            if name in self.__dict__:
                setattr(twin, name, copy.deepcopy(self.__dict__[name], memo))
        return twin

    def __reduce__(self):
        # GraphModule pickles as a plain GraphModule; rebuild ours around it so a loaded module
        # still follows `.to(device)` and keeps its report and program
        kept = {name: self.__dict__[name] for name in ("device", "report", "program") if name in self.__dict__}
        return (_rebuild_hnf_module, (super().__reduce__(), kept))


def _rebuild_hnf_module(graph_module_reduction, kept: dict) -> HnfModule:
    rebuild, args = graph_module_reduction
    plain = rebuild(*args)
    module = HnfModule(plain, plain.graph, class_name="HnfModule")
    module.__dict__.update(kept)
    return module


def flat_spec(example_inputs) -> tuple[list, pytree.TreeSpec]:
    """Flatten call arguments the way the lowered module will receive them."""
    return pytree.tree_flatten(list(example_inputs))


__all__ = ["HnfModule", "LoweringError", "flat_spec", "lower", "resolve_target", "resolve_value"]
