"""Frontend: PyTorch -> IR.

In: an `nn.Module` or function with example inputs, or the GraphModule dynamo hands a backend.
Out: a `Program`. The model is traced to a functionalized aten graph (make_fx over
torch.func.functionalize, parameters lifted to inputs) with a decomposition table we choose,
then each aten node becomes the op-table entry that claims it (`hnfc.ops.ALIASES`), an
identity (clone, alias...), or an `opaque` node that records the call so it still runs.
Values keep aten's exact operations, so lowering the program reproduces eager bit for bit.

Entry points: `trace(model_or_fn, example_inputs)` and `trace_graph_module(gm, example_inputs)`
(the torch.compile backend path). What the IR cannot hold raises `FrontendError` with the reason:
mutating an input or buffer, non-tensor inputs or outputs, data-dependent control flow, custom
autograd Functions, symbolic shapes from dynamo. Ops run with grad mode off (`torch.no_grad()`
blocks) are followed by a `detach` where gradients could otherwise flow.
"""

from __future__ import annotations

import contextlib
import inspect
import linecache
import os
import sys
import operator
from typing import Any, Callable, Mapping

import torch
import torch.fx as fx
from torch.fx.experimental.proxy_tensor import get_proxy_mode, make_fx
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils import _pytree as pytree

from hnfc import ops
from hnfc.foundation.dtypes import from_torch
from hnfc.frontend.contract import InputError, check_types
from hnfc.frontend.kernels import KeepKernels
from hnfc.ir.program import Builder, Program
from hnfc.foundation.types import TensorType, TupleType


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


class _NoGradRecorder(TorchDispatchMode):
    """Marks the graph nodes traced while grad mode was off (`torch.no_grad()` blocks, dynamo's
    `_set_grad_enabled(False)`): `node.meta["hnf_no_grad"] = True`. The aten graph itself does not
    say, and the program must cut autograd there (a `detach`) or gradients would flow where eager
    lets none. Pushed inside make_fx, so it sees each op before the proxy mode records it."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        mode = get_proxy_mode()
        graph = mode.tracer.graph if mode is not None else None
        last = graph._root.prev if graph is not None else None
        no_grad = not torch.is_grad_enabled()
        out = func(*args, **kwargs)
        if graph is not None:
            n = last.next
            source = _user_frame() if n is not graph._root else None
            while n is not graph._root:
                if no_grad:
                    n.meta["hnf_no_grad"] = True
                n.meta.setdefault("hnf_source", source)  # the user's line (lint names it)
                n = n.next
        return out


_LIBRARY_DIRS = tuple(os.path.dirname(m.__file__) + os.sep for m in (torch, ops) if getattr(m, "__file__", None))
_HNFC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _user_frame() -> str | None:
    """'file:line: code' of the innermost caller outside torch and hnfc (None when there is none)."""
    f = sys._getframe(2)
    while f is not None:
        name = f.f_code.co_filename
        if not (name.startswith(_LIBRARY_DIRS) or name.startswith(_HNFC_DIR) or name.startswith("<frozen")):
            line = linecache.getline(name, f.f_lineno).strip()
            return f"{name}:{f.f_lineno}" + (f": {line}" if line else "")
        f = f.f_back
    return None


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
                    ids = [self.ir_arg(a, item_type) for a in ir_args]
                    vid = self.b.add(opdef.name, ids, _gqa_attrs(opdef.name, ids, attrs, self.b), item_type)
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
        leaf = isinstance(mutated, fx.Node) and mutated.op in ("placeholder", "get_attr")
        if leaf or not (isinstance(mutated, fx.Node) and base.endswith("_") and len(mutated.users) == 1):
            what = "a tensor"
            if leaf and isinstance(self.env.get(mutated), int):
                ir = self.b.nodes[self.env[mutated]]
                what = f"{'input' if ir.op == 'input' else 'parameter/buffer'} {ir.attr['name']!r}"
            if any(k in what for k in ("running_mean", "running_var", "num_batches_tracked")):
                raise FrontendError(
                    f"the model mutates {what} in place ({name}): batch norm in training mode updates its running statistics; "
                    "hnfc.optimize traces a pure function: optimize the model in eval mode (model.eval()), "
                    "or train through torch.compile(model, backend='hnf'), where such a graph runs unchanged"
                )
            raise FrontendError(
                f"the model mutates {what} in place ({name}); hnfc needs a pure function: "
                "do not mutate inputs or buffers (call model.eval() for BatchNorm)"
            )
        twin = _out_of_place(target, base[:-1])
        if twin is None:
            raise FrontendError(f"the model calls the in-place op {name}, which has no out-of-place twin hnfc can use instead")
        return twin, str(twin)


def _out_of_place(target, base: str):
    """The overload of aten.<base> taking the same arguments as in-place `target`
    (bernoulli_.float -> bernoulli.p, div_.Scalar -> div.Scalar), or None."""
    packet = getattr(torch.ops.aten, base, None)
    if packet is None:
        return None

    def signature(schema):
        return [(a.name, str(a.type), a.kwarg_only) for a in schema.arguments]

    want = signature(target._schema)
    names = [target._overloadname] + [o for o in packet.overloads() if o != target._overloadname]
    for ov in names:
        try:
            cand = getattr(packet, ov)
        except AttributeError:
            continue
        if not cand._schema.is_mutable and signature(cand._schema) == want:
            return cand
    return None


def _gqa_attrs(op: str, ids, attrs, b) -> dict:
    """aten's CPU flash attention (`_scaled_dot_product_flash_attention_for_cpu`) takes fewer key/
    value heads than query heads (grouped-query attention, what transformers passes with a
    DynamicCache) without an `enable_gqa` argument: the IR's sdpa says it explicitly, or its
    lowering (aten.scaled_dot_product_attention) rejects the shapes."""
    if op != "scaled_dot_product_attention" or attrs.get("enable_gqa") or None in ids[:2]:
        return attrs
    q, k = b.type_of(ids[0]), b.type_of(ids[1])
    if q.rank >= 3 and k.rank >= 3 and q.shape[-3] != k.shape[-3]:
        return {**attrs, "enable_gqa": True}
    return attrs


class _Selected:
    """An fx node returning a tuple whose item `index` is the IR value `id`."""

    def __init__(self, id: int, index: int) -> None:
        self.id, self.index = id, index


def _is_float(t) -> bool:
    return isinstance(t, TensorType) and t.dtype in ("f16", "bf16", "f32", "f64")


def _pick(t, index):
    return t if index is None or not isinstance(t, TupleType) else t.items[index]


def graph_to_program(
    gm: fx.GraphModule,
    *,
    input_names: list[str] | None = None,
    param_names: list[str] | None = None,
    params: Mapping[str, torch.Tensor] | None = None,
    meta: dict,
    roles: list[tuple[str, str]] | None = None,
) -> Program:
    """Convert a functionalized aten graph to a program.

    The placeholders are, in order, `param_names` then `input_names`; or, given `roles`, one
    ("param" | "input", name) per placeholder. Parameter values come from `params` (by name);
    tensor constants the graph holds (`get_attr`) become parameters too.
    """
    if roles is None:
        roles = [("param", n) for n in param_names or []] + [("input", n) for n in input_names or []]
    conv = _Converter(gm, meta.get("device", torch.device("cpu")))
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(roles):
        raise FrontendError(f"traced graph has {len(placeholders)} inputs, expected {len(roles)}")
    role_of = dict(zip(placeholders, roles))
    outputs: list[int] = []
    all_params = dict(params or {})
    # value id -> the user's source line of the first aten node that produced it (lint names it)
    sources: dict[int, str] = {}
    # Whether gradients can reach a value: float inputs, parameters that require grad, and what
    # is computed from them. A value computed with grad mode off that gradients could reach gets
    # a `detach` before any grad-mode user sees it.
    grad: dict[fx.Node, bool] = {}
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            kind, name = role_of[n]
            t = _value_type(n)
            conv.env[n] = conv.b.param(name, t) if kind == "param" else conv.b.input(name, t)
            value = all_params.get(name) if kind == "param" else None
            grad[n] = _is_float(t) and (kind == "input" or bool(getattr(value, "requires_grad", False)))
        elif n.op == "get_attr":
            value = getattr(gm, n.target)
            if not isinstance(value, torch.Tensor):
                raise FrontendError(f"graph attribute {n.target} is a {type(value).__name__}, not a tensor")
            all_params[n.target] = value
            conv.env[n] = conv.b.param(n.target, _tensor_type(value))
            grad[n] = value.requires_grad
        elif n.op == "call_function":
            conv.call(n)
            grad[n] = any(grad.get(a, False) for a in n.all_input_nodes)
            v = conv.env[n]
            vid = v.id if isinstance(v, _Selected) else v
            if n.meta.get("hnf_source") and isinstance(vid, int):
                sources.setdefault(vid, n.meta["hnf_source"])
            if n.meta.get("hnf_no_grad") and grad[n] and isinstance(v, int) and _is_float(conv.b.type_of(v)):
                if any(not u.meta.get("hnf_no_grad") for u in n.users):  # incl. the output node
                    conv.env[n] = conv.b.add("detach", [v])
                    grad[n] = False
        elif n.op == "output":
            for o in pytree.tree_leaves(n.args[0]):
                if not isinstance(o, fx.Node) or not isinstance(conv.env.get(o), int):
                    raise FrontendError(f"output {o!r} is not a tensor value; hnfc handles tensor outputs only")
                outputs.append(conv.env[o])
        else:
            raise FrontendError(f"unsupported graph node {n.format_node()}")
    if sources:
        meta = {**meta, "sources": sources}
    return conv.b.build(outputs, all_params, meta)


def _bound_args(fn, args) -> dict[str, Any]:
    """Arguments by parameter name (input0, input1... when the signature says nothing)."""
    try:
        sig = inspect.signature(fn.forward if isinstance(fn, torch.nn.Module) else fn)
        bound = sig.bind(*args).arguments
    except (TypeError, ValueError):
        bound = {}
    if len(bound) != len(args):  # *args in the signature
        bound = {f"input{i}": a for i, a in enumerate(args)}
    return dict(bound)


def _input_names(fn, args) -> list[str]:
    bound = _bound_args(fn, args)
    names = []
    for key, value in bound.items():
        leaves = pytree.tree_leaves(value)
        names += [key] if len(leaves) == 1 else [f"{key}_{i}" for i in range(len(leaves))]
    return names


def _is_cache(x) -> bool:
    """A key/value cache object (transformers' `Cache` and its subclasses: DynamicCache, ...)."""
    return any(c.__name__ == "Cache" and c.__module__.startswith("transformers") for c in type(x).__mro__)


def _drop_caches(out):
    """The model's outputs with key/value caches replaced by None, and one note per cache.

    A cache is a Python object holding tensors that generation feeds back to the next call; a
    traced program returns tensors. For accuracy the cache adds nothing (its tensors are the
    keys and values the attention already computed), so the optimized model returns None where
    the model returned a cache (as the model does with use_cache=False) and the report says so."""
    pairs, _ = pytree.tree_flatten_with_path(out)
    found = [(path, x) for path, x in pairs if _is_cache(x)]
    if not found:
        return out, []
    out = pytree.tree_map(lambda x: None if _is_cache(x) else x, out)
    notes = [
        f"output {_path_text(path)!r} is a {type(x).__name__} (a key/value cache): the optimized model returns None there "
        "(as with use_cache=False); run the original model where generation needs the cache"
        for path, x in found
    ]
    return out, notes


def _path_text(path) -> str:
    keys = [getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path]
    return ".".join(str(k) for k in keys) or "value"


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
    for k, x in enumerate(flat_inputs):
        if not isinstance(x, torch.Tensor):
            raise FrontendError(
                f"example input {_input_names(model_or_fn, example_inputs)[k]!r} is {type(x).__name__} {x!r:.40}, not a tensor; "
                "hnfc traces tensor inputs only (bind other arguments with a closure or functools.partial)"
            )
    module = model_or_fn if isinstance(model_or_fn, torch.nn.Module) else None
    named = {}
    if module is not None:
        named = dict(module.named_parameters())
        named.update(dict(module.named_buffers()))
    param_names = list(named)
    out_spec_box: list = []
    notes_box: list = []

    def flat_fn(*flat):
        ps, xs = flat[: len(param_names)], flat[len(param_names) :]
        args = pytree.tree_unflatten(list(xs), in_spec)
        with _NoGradRecorder(), KeepKernels():
            if module is not None:
                out = torch.func.functional_call(module, dict(zip(param_names, ps)), tuple(args))
            else:
                out = model_or_fn(*args)
        out, dropped = _drop_caches(out)
        notes_box[:] = dropped
        leaves, spec = pytree.tree_flatten(out)
        out_spec_box[:] = [spec]
        if not all(isinstance(x, torch.Tensor) for x in leaves):
            raise FrontendError(f"the model returns non-tensor values ({sorted({type(x).__name__ for x in leaves if not isinstance(x, torch.Tensor)})})")
        return leaves

    # Tracing maps one tensor object to one placeholder: an example tensor passed twice (or a
    # parameter passed as an input) would make the program read one input for both. Trace copies.
    seen = {id(t) for t in named.values()}
    trace_inputs = []
    for x in flat_inputs:
        if id(x) in seen:
            x = x.detach().clone()
        seen.add(id(x))
        trace_inputs.append(x)

    table = DEFAULT_DECOMPOSITIONS if decompositions is None else decompositions
    try:
        with _compiling(), torch.enable_grad():  # only the model's own no_grad blocks count
            gm = make_fx(
                torch.func.functionalize(flat_fn, remove="mutations"),
                decomposition_table=dict(table),
                tracing_mode="fake",
                _allow_non_fake_inputs=True,  # functions may close over real tensors: they become constants
            )(*named.values(), *trace_inputs)
    except FrontendError:
        raise
    except Exception as e:
        if "DataDependent" in type(e).__name__:
            raise FrontendError(
                "the model branches on a tensor's values (data-dependent control flow, e.g. `if x.sum() > 0:`), "
                "which one traced program cannot hold: compile it with torch.compile(model, backend='hnf'), which "
                "optimizes each graph between the branches, or write the branch with torch.where or torch.cond "
                f"({type(e).__name__}: {_first_line(e, 120)})"
            ) from e
        raise FrontendError(f"tracing failed: {type(e).__name__}: {_first_line(e)}") from e
    gm.graph.eliminate_dead_code()  # autograd's saved `detach`es and unused results
    device = flat_inputs[0].device if flat_inputs else next(iter(named.values())).device if named else torch.device("cpu")
    meta = {
        "in_spec": in_spec,
        "out_spec": out_spec_box[0],
        "arg_names": list(_bound_args(model_or_fn, example_inputs)),
        "device": device,
        "source": type(model_or_fn).__name__,
    }
    if notes_box:
        meta["notes"] = tuple(notes_box)
    program = graph_to_program(gm, input_names=_input_names(model_or_fn, example_inputs), param_names=param_names, params=named, meta=meta)
    try:  # fake tensors skip some of torch's checks (addmm takes mixed dtypes): the op table's type rules do not
        check_types(program)
    except InputError as e:
        raise FrontendError(str(e)) from None
    return program


# ---------------------------------------------------------------------------------------------
# The torch.compile backend path


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = str(e).split("ViewAndMutationMeta")[0].strip()
    text = text.splitlines()[0] if text else ""
    return text if len(text) <= limit else text[:limit] + "..."


def _is_symbolic(x) -> bool:
    if isinstance(x, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return True
    return isinstance(x, torch.Tensor) and any(not isinstance(d, int) for d in x.shape)


def _placeholder_role(node: fx.Node, example) -> tuple[str, str]:
    """Dynamo lifts parameters and buffers to placeholders (L_self_modules_fc_parameters_weight_)."""
    name = str(node.target)
    lifted = "_parameters_" in name or "_buffers_" in name
    return ("param" if isinstance(example, torch.nn.Parameter) or lifted else "input", name)


def _trace_with(fake_mode, run, fakes, table, gm) -> fx.GraphModule:
    """make_fx(functionalize(run)) under `fake_mode`, else aot export (see trace_graph_module)."""
    traced = None
    try:
        with fake_mode, torch.enable_grad():
            traced = make_fx(torch.func.functionalize(run, remove="mutations"), decomposition_table=table, _allow_non_fake_inputs=True)(*fakes)
    except Exception as e:
        first_error = e
    if traced is None:
        # aot export traces under no_grad: it cannot see grad-mode regions, so it is only
        # used for graphs without them.
        grad_mode = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is torch._C._set_grad_enabled]
        if grad_mode:
            raise FrontendError(f"tracing the graph failed: {type(first_error).__name__}: {_first_line(first_error)}") from first_error
        try:
            from torch._functorch.aot_autograd import aot_export_joint_simple

            with fake_mode:
                traced = aot_export_joint_simple(gm, fakes, trace_joint=False, decompositions=table)
        except Exception as e:
            raise FrontendError(
                f"tracing the graph failed: {type(first_error).__name__}: {_first_line(first_error)} "
                f"(aot export too: {type(e).__name__}: {_first_line(e)})"
            ) from first_error
    return traced


def trace_graph_module(gm: fx.GraphModule, example_inputs, *, decompositions: Mapping | None = None) -> Program:
    """The GraphModule dynamo hands a torch.compile backend -> IR program.

    Every placeholder of `gm` is a program leaf, in order: parameters and buffers dynamo lifted
    to placeholders become `param` nodes holding the example tensor, the rest `input` nodes.
    `program.meta["graph_inputs"]` lists ("param" | "input", placeholder name) per placeholder,
    so a backend can call the lowered module (which takes the inputs only) from gm's arguments.
    Outputs are gm's, flat, as a tuple.

    The graph is functionalized to aten with make_fx(functionalize(gm)) under the fake mode of
    the example inputs (as `trace` does: it sees grad-mode regions and gives views of inputs
    back as values); when that fails, `aot_export_joint_simple` is tried (it refuses input
    mutation and outputs aliasing inputs, and cannot see grad-mode regions). Symbolic shapes
    (dynamic=True) are not supported yet and raise FrontendError, as does any other failure.
    """
    from torch._guards import detect_fake_mode
    from torch._subclasses.fake_tensor import FakeTensorMode

    example_inputs = list(example_inputs)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(example_inputs):
        raise FrontendError(f"the graph has {len(placeholders)} placeholders but {len(example_inputs)} example inputs were given")
    recorded = [n.meta.get("example_value", n.meta.get("val")) for n in placeholders]
    for n, x, v in zip(placeholders, example_inputs, recorded):
        if _is_symbolic(x) or _is_symbolic(v):
            raise FrontendError(
                f"symbolic shapes are not supported yet (placeholder {n.target} is {x!r}); "
                "compile with dynamic=False, or let the original graph run"
            )
        if not isinstance(x, torch.Tensor):
            raise FrontendError(f"placeholder {n.target} is a {type(x).__name__}, not a tensor; hnfc handles tensor inputs only")

    fake_mode = detect_fake_mode(example_inputs) or detect_fake_mode([v for v in recorded if v is not None]) or FakeTensorMode()
    fakes: list = []
    for x, v in zip(example_inputs, recorded):
        if isinstance(v, torch.Tensor) and getattr(v, "fake_mode", None) is fake_mode and not any(v is f for f in fakes):
            fakes.append(v)
        else:  # one fake per placeholder, even for a tensor passed twice
            fakes.append(fake_mode.from_tensor(x if not any(x is y for y in example_inputs[: len(fakes)]) else x.detach().clone(), static_shapes=True))
    table = dict(DEFAULT_DECOMPOSITIONS if decompositions is None else decompositions)

    def run(*xs):
        with _NoGradRecorder(), KeepKernels():
            return gm(*xs)

    allow_real = fake_mode.allow_non_fake_inputs
    fake_mode.allow_non_fake_inputs = True  # tensors gm holds as attributes (symbolic_trace) are constants
    try:
        traced = _trace_with(fake_mode, run, fakes, table, gm)
    finally:
        fake_mode.allow_non_fake_inputs = allow_real
    for n in list(traced.graph.nodes):
        if n.op == "call_function" and n.target is torch.ops.aten._assert_tensor_metadata.default:
            traced.graph.erase_node(n)
    traced.graph.eliminate_dead_code()
    traced.recompile()

    roles = [_placeholder_role(n, x) for n, x in zip(placeholders, example_inputs)]
    params = {name: x for (kind, name), x in zip(roles, example_inputs) if kind == "param"}
    devices = [x.device for x in example_inputs]
    meta = {"graph_inputs": roles, "device": devices[0] if devices else torch.device("cpu"), "source": "dynamo"}
    return graph_to_program(traced, roles=roles, params=params, meta=meta)
