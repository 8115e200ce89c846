"""Frontend: PyTorch -> IR.

In: an `nn.Module` or function with example inputs, or the GraphModule dynamo hands a backend.
Out: a `Program`. The model is traced to a functionalized aten graph (make_fx over
torch.func.functionalize, parameters lifted to inputs) with a decomposition table we choose,
then each aten node becomes the op-table entry that claims it (`hnfc.ops.ALIASES`), an
identity (clone, alias...), or an `opaque` node that records the call so it still runs.
Values keep aten's exact operations, so lowering the program reproduces eager bit for bit.
"""

from __future__ import annotations

import contextlib
import inspect
import operator
from typing import Any, Callable, Mapping

import torch
import torch.fx as fx
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils import _pytree as pytree

from hnfc import ops
from hnfc.dtypes import from_torch
from hnfc.ir.program import Builder, Program
from hnfc.types import TensorType, TupleType


class FrontendError(RuntimeError):
    """The model cannot be brought into the IR; the message says why (and what to do)."""


# Ops we model stay whole because make_fx only decomposes what is in this table; CompositeImplicit
# ops (linear, matmul, softmax.int...) still decompose as eager would run them, which keeps the
# round trip exact. Extend it to see through ops the op table does not know.
DEFAULT_DECOMPOSITIONS: Mapping[Any, Callable] = {}


def _tensor_type(val) -> TensorType | None:
    if not isinstance(val, torch.Tensor):
        return None
    shape = tuple(d if isinstance(d, int) else str(d) for d in val.shape)
    return TensorType(shape, from_torch(val.dtype))


def _value_type(node: fx.Node):
    val = node.meta.get("val", node.meta.get("example_value"))
    if isinstance(val, (tuple, list)):
        return TupleType(tuple(_tensor_type(v) for v in val))
    t = _tensor_type(val)
    if t is None:
        raise FrontendError(f"node {node.format_node()} produces a non-tensor value ({type(val).__name__}); hnfc handles tensor programs only")
    return t


def _normalized_args(target, node: fx.Node) -> dict[str, Any]:
    schema = target._schema
    out: dict[str, Any] = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(node.args) and not arg.kwarg_only:
            out[arg.name] = node.args[i]
        elif arg.name in node.kwargs:
            out[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
    return out


def _encode_template(v, tensors: list[fx.Node]):
    """Record an opaque call's arguments as IR attribute literals."""
    if isinstance(v, fx.Node):
        tensors.append(v)
        return ("$arg", len(tensors) - 1)
    if isinstance(v, torch.dtype):
        return ("$dtype", from_torch(v))
    if isinstance(v, torch.device):
        return ("$device", str(v))
    if isinstance(v, (torch.layout, torch.memory_format)):
        return ("$torch", str(v).removeprefix("torch."))
    if isinstance(v, (list, tuple)):
        return tuple(_encode_template(x, tensors) for x in v)
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise FrontendError(f"cannot record argument {v!r} of type {type(v).__name__}")


class _Converter:
    """Walks an aten-level fx graph and emits IR nodes."""

    def __init__(self, gm: fx.GraphModule, device: torch.device) -> None:
        self.gm = gm
        self.device = device
        self.b = Builder()
        self.env: dict[fx.Node, Any] = {}  # fx node -> IR id (or tuple marker for multi-outputs)

    def value(self, n):
        if isinstance(n, fx.Node):
            return self.env[n]
        return n

    def const_for(self, value, out_type) -> int:
        dtype = out_type.dtype if isinstance(out_type, TensorType) else "f32"
        return self.b.const(value, dtype)

    def ir_arg(self, a, out_type):
        if isinstance(a, ops.V):
            return a.id
        if a is None:
            return None
        if isinstance(a, (bool, int, float)):
            return self.const_for(a, out_type)
        raise FrontendError(f"unexpected argument {a!r}")

    def as_v(self, v):
        if isinstance(v, fx.Node):
            i = self.env[v]
            if not isinstance(i, int):
                raise FrontendError(f"{v.name} is not a single tensor")
            return ops.V(i, self.b.type_of(i))
        if isinstance(v, (list, tuple)):
            return [self.as_v(x) for x in v]
        return v

    def call(self, node: fx.Node) -> None:
        target = node.target
        if target is operator.getitem:
            src, index = node.args
            v = self.env[src]
            if isinstance(v, _Selected):
                if index != v.index:
                    raise FrontendError(f"internal: output {index} of {src.name} used but only {v.index} mapped")
                self.env[node] = v.id
            else:
                self.env[node] = self.b.add("getitem", [v], {"index": index})
            return
        if not isinstance(target, torch._ops.OpOverload):
            raise FrontendError(f"unsupported call {node.format_node()} (only aten ops are expected after tracing)")
        name = f"aten.{target.__name__}" if not str(target).startswith("aten.") else str(target)
        args = _normalized_args(target, node)
        if name in ops.IDENTITY_TARGETS:
            self.env[node] = self.env[args[next(iter(args))]]
            return
        if target._schema.is_mutable:
            target, name = self.functional_twin(node, target, name)
            args = _normalized_args(target, node)
        out_type = _value_type(node)
        claimed = ops.ALIASES.get(name)
        if claimed is not None:
            opdef, alias = claimed
            if alias.output is None or all(u.target is operator.getitem and u.args[1] == alias.output for u in node.users):
                converted = alias.convert({**{k: self.as_v(v) for k, v in args.items()}, "$out": _pick(out_type, alias.output), "$device": self.device})
                if converted is not None:
                    ir_args, attrs = converted
                    item_type = _pick(out_type, alias.output)
                    vid = self.b.add(opdef.name, [self.ir_arg(a, item_type) for a in ir_args], attrs, item_type)
                    self.env[node] = vid if alias.output is None else _Selected(vid, alias.output)
                    return
        tensors: list[fx.Node] = []
        template = _encode_template(tuple(node.args), tensors)
        kwargs = tuple((k, _encode_template(v, tensors)) for k, v in node.kwargs.items())
        self.env[node] = self.b.add("opaque", [self.env[t] for t in tensors], {"target": name, "args": template, "kwargs": kwargs}, out_type)


    def functional_twin(self, node: fx.Node, target, name: str):
        """An in-place op functionalization left behind (F.rms_norm's add_) -> its out-of-place twin.

        Only sound when nothing else reads the mutated tensor; mutating inputs or buffers
        (input.add_, BatchNorm in training mode) is refused with the reason.
        """
        mutated = node.args[0] if node.args else None
        base = target._schema.name.split("::")[1]
        if not (isinstance(mutated, fx.Node) and mutated.op != "placeholder" and base.endswith("_") and len(mutated.users) == 1):
            what = mutated.target if isinstance(mutated, fx.Node) and mutated.op == "placeholder" else "a tensor"
            raise FrontendError(
                f"the model mutates {what} in place ({name}); hnfc needs a pure function: "
                "do not mutate inputs or buffers (call model.eval() for BatchNorm)"
            )
        twin = getattr(getattr(torch.ops.aten, base[:-1]), target._overloadname)
        return twin, str(twin)


class _Selected:
    """An fx node returning a tuple whose item `index` is the IR value `id`."""

    def __init__(self, id: int, index: int) -> None:
        self.id, self.index = id, index


def _pick(t, index):
    return t if index is None or not isinstance(t, TupleType) else t.items[index]


def graph_to_program(gm: fx.GraphModule, *, input_names: list[str], param_names: list[str], params: dict[str, torch.Tensor], meta: dict) -> Program:
    """Convert a functionalized aten graph whose first placeholders are `param_names`."""
    conv = _Converter(gm, meta.get("device", torch.device("cpu")))
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(param_names) + len(input_names):
        raise FrontendError(f"traced graph has {len(placeholders)} inputs, expected {len(param_names) + len(input_names)}")
    outputs: list[int] = []
    all_params = dict(params)
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            k = placeholders.index(n)
            t = _value_type(n)
            if k < len(param_names):
                conv.env[n] = conv.b.param(param_names[k], t)
            else:
                conv.env[n] = conv.b.input(input_names[k - len(param_names)], t)
        elif n.op == "get_attr":
            value = getattr(gm, n.target)
            all_params[n.target] = value
            conv.env[n] = conv.b.param(n.target, _tensor_type(value))
        elif n.op == "call_function":
            conv.call(n)
        elif n.op == "output":
            for o in pytree.tree_leaves(n.args[0]):
                if not isinstance(o, fx.Node) or not isinstance(conv.env.get(o), int):
                    raise FrontendError(f"output {o} is not a tensor value")
                outputs.append(conv.env[o])
        else:
            raise FrontendError(f"unsupported graph node {n.format_node()}")
    return conv.b.build(outputs, all_params, meta)


def _input_names(fn, args) -> list[str]:
    try:
        sig = inspect.signature(fn.forward if isinstance(fn, torch.nn.Module) else fn)
        bound = sig.bind(*args).arguments
    except (TypeError, ValueError):
        bound = {f"input{i}": a for i, a in enumerate(args)}
    names = []
    for key, value in bound.items():
        leaves = pytree.tree_leaves(value)
        names += [key] if len(leaves) == 1 else [f"{key}_{i}" for i in range(len(leaves))]
    return names


@contextlib.contextmanager
def _compiling():
    """Tell libraries we are compiling, as torch.export does: transformers then builds its masks
    with tensor ops instead of branching on tensor values, which tracing cannot follow."""
    old = torch.compiler._is_compiling_flag
    torch.compiler._is_compiling_flag = True
    try:
        yield
    finally:
        torch.compiler._is_compiling_flag = old


def trace(model_or_fn, example_inputs, *, decompositions: Mapping | None = None) -> Program:
    """Trace a module or function on example inputs into an IR program.

    Parameters and buffers become `param` nodes holding the module's own tensors; every other
    tensor argument is an `input`. Raises FrontendError with the reason when tracing fails.
    """
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    example_inputs = tuple(example_inputs)
    flat_inputs, in_spec = pytree.tree_flatten(list(example_inputs))
    if not all(isinstance(x, torch.Tensor) for x in flat_inputs):
        raise FrontendError("example inputs must be tensors (or nested lists/tuples/dicts of tensors)")
    module = model_or_fn if isinstance(model_or_fn, torch.nn.Module) else None
    named = {}
    if module is not None:
        named = dict(module.named_parameters())
        named.update(dict(module.named_buffers()))
    param_names = list(named)
    out_spec_box: list = []

    def flat_fn(*flat):
        ps, xs = flat[: len(param_names)], flat[len(param_names) :]
        args = pytree.tree_unflatten(list(xs), in_spec)
        if module is not None:
            out = torch.func.functional_call(module, dict(zip(param_names, ps)), tuple(args))
        else:
            out = model_or_fn(*args)
        leaves, spec = pytree.tree_flatten(out)
        out_spec_box[:] = [spec]
        if not all(isinstance(x, torch.Tensor) for x in leaves):
            raise FrontendError(f"the model returns non-tensor values ({sorted({type(x).__name__ for x in leaves if not isinstance(x, torch.Tensor)})})")
        return leaves

    table = DEFAULT_DECOMPOSITIONS if decompositions is None else decompositions
    try:
        with _compiling():
            gm = make_fx(torch.func.functionalize(flat_fn, remove="mutations"), decomposition_table=dict(table), tracing_mode="fake")(
                *named.values(), *flat_inputs
            )
    except FrontendError:
        raise
    except Exception as e:
        raise FrontendError(f"tracing failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    gm.graph.eliminate_dead_code()  # autograd's saved `detach`es and unused results
    device = flat_inputs[0].device if flat_inputs else next(iter(named.values())).device if named else torch.device("cpu")
    meta = {"in_spec": in_spec, "out_spec": out_spec_box[0], "device": device, "source": type(model_or_fn).__name__}
    return graph_to_program(gm, input_names=_input_names(model_or_fn, example_inputs), param_names=param_names, params=named, meta=meta)
