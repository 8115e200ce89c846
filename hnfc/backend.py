"""The torch.compile backend "hnf": `torch.compile(model, backend="hnf", options={...})`.

In: the GraphModule dynamo hands a backend and its flat example inputs (parameters lifted to
placeholders). Out: a callable taking exactly those inputs. The graph is traced to the IR
(`trace_graph_module`), optimized (`optimize_program`: rewrites verified against mpmath), lowered
back to an aten GraphModule whose placeholders are gm's placeholders in order (parameters
included, so gradients reach the real parameters), and then

- handed to inductor (`compile_fx`, with `emulate_precision_casts` patched on so the casts the
  precision stage chose are honoured, forward and backward, and train-mode dropout's
  `bernoulli.p` drawn as inductor draws its own masks, see `_decompositions`), the default; or
- returned as is (`options={"inductor": False}`): eager aten, autograd included.

Rewriting happens before autograd: aot_autograd / eager autograd derive the backward from the
rewritten forward.

The backend is registered by name through the entry point group `torch_dynamo_backends`
(pyproject.toml), so `torch.compile(m, backend="hnf")` works without importing hnfc. It is a
plain function on purpose: also decorating it with `register_backend` breaks the lookup.

Options (`options={...}`): the backend's own keys
    inductor: bool = True         hand the rewritten graph to inductor
    input_ranges: {key: (lo, hi)} declared input domains; a key is a name (`"x"` matches dynamo's
                                  placeholder `L_x_`) or a position among the graph's tensor
                                  inputs (parameters not counted); names absent from a graph
                                  (after a graph break) are skipped there
    rules: pack spec              extra rules (`hnfc.rewrites.packs.resolve`: Rules, a module,
                                  "pkg.mod:attr", an installed pack name)
and every `hnfc.foundation.config.Config` field (max_nodes, verify, samples, ...). An unknown option is an
error (raised at the first call, as torch.compile reports backend errors). One default differs
from `hnfc.optimize`: `measure_outputs=False`, so compile time pays for the local verification
of each rewrite but not for whole outputs through the mpmath reference.

Never break the user's model: any failure inside hnfc (a graph the frontend cannot hold,
symbolic shapes, an optimizer or lowering error, inductor refusing the rewritten graph) runs the
original graph instead (through inductor when `inductor` is on), with one `HnfcWarning` saying why.
"""

from __future__ import annotations

import dataclasses
import re
import time
import warnings
from typing import Any, Callable, Mapping, Sequence

import torch.fx as fx
from torch.utils import _pytree as pytree

from hnfc.graph_cache import graph_key, load_graph, store_graph

BACKEND_OPTIONS = ("inductor", "input_ranges", "rules")


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    inductor: bool = True
    input_ranges: Mapping | None = None
    rules: Any = None
    config: Any = None  # hnfc.foundation.config.Config


def parse_options(options: Mapping[str, Any] | None) -> BackendOptions:
    """Split `options={...}` into the backend's own keys and a `Config` (unknown keys: ValueError)."""
    from hnfc.foundation.config import Config

    options = dict(options or {})
    own = {k: options.pop(k) for k in BACKEND_OPTIONS if k in options}
    # compile time: whole outputs through the mpmath reference take seconds on a transformer,
    # while every rewrite is still verified locally; `measure_outputs=True` brings them back
    options.setdefault("measure_outputs", False)
    try:
        config = Config.from_options(options)
    except ValueError as e:
        known = sorted({f.name for f in dataclasses.fields(Config)} | set(BACKEND_OPTIONS))
        if "unknown hnfc option" in str(e):
            unknown = sorted(set(options) - {f.name for f in dataclasses.fields(Config)})
            raise ValueError(f"unknown hnf backend option(s) {unknown}; known options: {known}") from None
        raise
    inductor = own.get("inductor", True)
    if not isinstance(inductor, bool):
        raise ValueError(f"hnf backend option 'inductor' must be True or False, not {inductor!r}")
    ranges = own.get("input_ranges")
    if ranges is not None and not isinstance(ranges, Mapping):
        raise ValueError(f"hnf backend option 'input_ranges' must map input names or positions to (lo, hi), not {type(ranges).__name__}")
    from hnfc.rewrites.gate import checked

    rules = checked(own["rules"], trust=config.trust_rules) if own.get("rules") is not None else None  # unsound rules: an error here
    return BackendOptions(inductor=inductor, input_ranges=ranges, rules=rules, config=config)


def _resolve_rules(spec) -> tuple | None:
    if spec is None:
        return None
    try:
        from hnfc.rewrites.packs import resolve
    except ImportError:  # packs not available: accept an iterable of Rules
        return tuple(spec)
    return resolve(spec)


def _user_name(placeholder: str) -> str:
    """Dynamo's placeholder name for a user argument: L_x_ -> x, L_kwargs_input_ids_ -> input_ids."""
    m = re.fullmatch(r"L_(?:kwargs_|args_\d+_)?(.+?)_?", placeholder)
    return m.group(1) if m else placeholder


def _graph_ranges(program, input_ranges: Mapping | None) -> dict[int, tuple[float, float]]:
    """User-facing input_ranges keys -> positions among this graph's program inputs."""
    out: dict[int, tuple[float, float]] = {}
    if not input_ranges:
        return out
    names = list(program.input_names)
    for key, rng in input_ranges.items():
        if isinstance(key, int) and not isinstance(key, bool):
            if 0 <= key < len(names):
                out[key] = rng
            continue
        for pos, n in enumerate(names):
            if key == n or key == _user_name(n):
                out[pos] = rng
    return out


def _with_placeholders(lowered: fx.GraphModule, gm: fx.GraphModule, program) -> fx.GraphModule:
    """The lowered module, called like `gm`: one placeholder per gm placeholder, in order (the
    parameters dynamo lifted become placeholders again instead of attributes), and gm's output
    structure."""
    from hnfc.runtime.lowering import identifier

    roles = program.meta["graph_inputs"]
    graph = lowered.graph
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    get_attrs = {n.target: n for n in graph.nodes if n.op == "get_attr"}

    first = next(iter(graph.nodes))
    new: list[fx.Node] = []
    k = 0
    taken = {n.name for n in graph.nodes}
    with graph.inserting_before(first):
        for kind, name in roles:
            if kind == "input":
                node = inputs[k]
                k += 1
            else:
                node = graph.placeholder(identifier(name, taken, prefix="p"))
            new.append(node)
    if k != len(inputs):
        raise RuntimeError(f"internal: lowered module has {len(inputs)} inputs, the graph {k}")
    # placeholders must come first and in gm's order
    for node in reversed(new):
        first = next(iter(graph.nodes))
        if node is not first:
            first.prepend(node)
    # parameters: replace get_attr reads by the placeholders (the attribute names follow the
    # param names; lowering sanitized them the same way for every node that reads them)
    param_nodes = {name: n for (kind, name), n in zip(roles, new) if kind == "param"}
    for target, node in list(get_attrs.items()):
        name = _param_name_of(target, param_nodes, program)
        if name is not None:
            node.replace_all_uses_with(param_nodes[name])
            graph.erase_node(node)
    # output structure: gm's
    out_node = next(n for n in graph.nodes if n.op == "output")
    gm_out = next(n for n in gm.graph.nodes if n.op == "output")
    flat, spec = pytree.tree_flatten(gm_out.args[0])
    leaves = list(pytree.tree_leaves(out_node.args[0]))
    if len(leaves) != len(flat):
        raise RuntimeError(f"internal: {len(leaves)} outputs lowered for {len(flat)} graph outputs")
    out_node.args = (pytree.tree_unflatten(leaves, spec),)
    graph._codegen = fx.graph.CodeGen()
    graph.lint()
    result = fx.GraphModule(lowered, graph, class_name="HnfGraph")
    return result


def _param_name_of(target: str, param_nodes: Mapping[str, fx.Node], program) -> str | None:
    """The parameter name a get_attr target stands for (lowering's `_set_nested` path)."""
    for name in param_nodes:
        if name == target or _attr_path(name) == target:
            return name
    return None


def _attr_path(name: str) -> str:
    *path, leaf = name.split(".")
    safe = [p if p.isidentifier() else f"m_{p}" for p in path]
    leaf = leaf if leaf.isidentifier() else f"t_{leaf}"
    return ".".join(safe + [leaf])


def rewrite_graph(gm: fx.GraphModule, example_inputs: Sequence, opts: BackendOptions):
    """gm -> (rewritten GraphModule called like gm, report). Raises on any failure.

    With `config.cache` the result is looked up first in the graph cache (`graph_key`,
    hnfc/graph_cache: a hit skips tracing and every stage, `rewritten.cache_hit` is True) and
    stored there after a run that raised no HnfcWarning."""
    from hnfc.frontend.tracing import trace_graph_module
    from hnfc.pipeline import HnfcWarning, optimize_program
    from hnfc.runtime.lowering import lower

    rules = _resolve_rules(opts.rules)
    key = graph_key(gm, example_inputs, opts, rules) if opts.config.cache else None
    hit = full = None
    started = time.perf_counter()
    if key is not None and key.maybe_stored():
        full = key.full()
        hit = load_graph(full, example_inputs)
    elif key is not None:
        full = key.full_async()  # a sure miss: the tensors are hashed while the pipeline runs
    if hit is not None:
        result, report = hit
        # the stored run's stage times are not what this compile paid
        report = dataclasses.replace(report, times={"graph_cache": time.perf_counter() - started})
    else:
        program = trace_graph_module(gm, example_inputs)
        inputs = [x for (kind, _), x in zip(program.meta["graph_inputs"], example_inputs) if kind == "input"]
        ranges = _graph_ranges(program, opts.input_ranges)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result, report = optimize_program(program, inputs, input_ranges=ranges, rules=rules, config=opts.config)
        for w in caught:  # shown as they would have been; a run that warned is not kept
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if full is not None and not any(issubclass(w.category, HnfcWarning) for w in caught):
            store_graph(full if isinstance(full, str) else full.result(), result, report, example_inputs)
    lowered = lower(result)
    rewritten = _with_placeholders(lowered, gm, result)
    rewritten.report = report
    rewritten.program = result
    rewritten.cache_hit = hit is not None
    return rewritten, report


def _bernoulli_p(self, p=0.5, *, generator=None):
    """aten.bernoulli.p as inductor's own dropout draws its mask: uniform noise below p."""
    import torch

    if generator is not None:
        return NotImplemented
    return (torch.rand_like(self, dtype=torch.float32) < p).to(self.dtype)


def _decompositions() -> dict:
    """Inductor's decomposition table, plus `aten.bernoulli.p` as random noise compared to p.

    Why: a traced train-mode dropout is `bernoulli.p(empty_like(h), 1 - p)` (what aten's CPU
    dropout does, functionalized). Inductor lowers bernoulli.p on CPU as an in-place fallback on a
    clone of its input, and fuses the clone (an empty buffer) with the mask's consumers (the
    `/ (1 - p)` and `* h`) into one kernel that runs before the fallback fills the buffer: the
    mask read is uninitialized memory, and the loss is NaN (torch 2.13; `backend="inductor"`
    never meets this, since it decomposes dropout itself into `rand_like(h) < 1 - p`, which is
    the form given here). Masks then come from inductor's random stream, as with
    `backend="inductor"`: same distribution, not eager's bits."""
    import torch
    from torch._inductor.decomposition import select_decomp_table

    table = dict(select_decomp_table())
    table[torch.ops.aten.bernoulli.p] = _bernoulli_p
    return table


def _inductor(gm: fx.GraphModule, example_inputs):
    from torch._inductor.compile_fx import compile_fx

    return compile_fx(gm, list(example_inputs), config_patches={"emulate_precision_casts": True}, decompositions=_decompositions())


def _warn(msg: str) -> None:
    from hnfc.pipeline import HnfcWarning

    warnings.warn(msg, HnfcWarning, stacklevel=2)


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(e).__name__}: {first[:300]}"


def hnf_backend(gm: fx.GraphModule, example_inputs, **kwargs) -> Callable:
    """torch.compile backend "hnf" (see the module doc). `kwargs["options"]` holds the options."""
    opts = parse_options(kwargs.get("options"))  # the user's mistakes are errors, not fallbacks
    example_inputs = list(example_inputs)
    original = gm
    try:
        rewritten, report = rewrite_graph(gm, example_inputs, opts)
    except Exception as e:  # never break the user's model
        _warn(f"hnf backend could not optimize this graph ({_why(e)}); the original graph runs{' through inductor' if opts.inductor else ''}")
        return _inductor(original, example_inputs) if opts.inductor else original.forward
    if not opts.inductor:
        return rewritten
    try:
        return _inductor(rewritten, example_inputs)
    except Exception as e:
        _warn(f"inductor could not compile the rewritten graph ({_why(e)}); the original graph runs through inductor")
        return _inductor(original, example_inputs)


__all__ = ["BACKEND_OPTIONS", "BackendOptions", "hnf_backend", "parse_options", "rewrite_graph"]
