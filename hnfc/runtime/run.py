"""Running IR programs on inputs: the lowered program as a function, observed value ranges, and the
input sets every judge runs on (the examples plus samples inside the declared domains).

In: a `Program` and input tensors. Out: output tensors, per-value (min, max), input sets.
It sits just above lowering, below verify and precision: judging a rewrite means running it.
"""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType
from typing import Sequence

import torch

from hnfc.analysis import param_interval
from hnfc.foundation.config import Config
from hnfc.foundation.dtypes import DTYPES
from hnfc.foundation.types import TensorType
from hnfc.ops.core import norm_dims
from hnfc.ir.program import Program
from hnfc.numerics.metric import sample_inputs
from hnfc.runtime.lowering import lower


def flat(program: Program, outputs: Sequence[int] | None = None) -> Program:
    """The same program called with flat tensors and returning a flat tuple."""
    meta = {k: v for k, v in program.meta.items() if k not in ("in_spec", "out_spec")}
    return dataclasses.replace(
        program,
        outputs=tuple(program.outputs if outputs is None else outputs),
        meta=MappingProxyType(meta),
    )


_RANDOM = ("rand", "bernoulli", "dropout", "normal", "uniform", "multinomial", "randperm", "exponential")


def _impure(node) -> bool:
    # random ops stay even when unused: removing one would shift the random stream of the others
    if _no_dropout(node):
        return False
    return node.is_impure() or any(w in str(node.target) for w in _RANDOM)


def _no_dropout(node) -> bool:
    """An op random only through a `dropout_p` argument (scaled_dot_product_attention: torch
    tags it nondeterministic_seeded, so fx keeps every one) called with dropout_p 0: pure, and
    the prefix before a captured value need not run the attention layers after it."""
    schema = getattr(node.target, "_schema", None) if node.op == "call_function" else None
    names = [a.name for a in schema.arguments] if schema is not None else []
    if "dropout_p" not in names:
        return False
    k = names.index("dropout_p")
    p = node.kwargs["dropout_p"] if "dropout_p" in node.kwargs else node.args[k] if k < len(node.args) else schema.arguments[k].default_value
    return isinstance(p, (int, float)) and p == 0


def runner(program: Program):
    """The program lowered once, as a function of flat inputs returning a list (no autograd).
    Only what the outputs need runs (capturing a few early values does not run the whole model)."""
    lowered = lower(flat(program))
    if lowered.graph.eliminate_dead_code(is_impure_node=_impure):  # lower() generated the code once; again only if it changed
        lowered.recompile()

    def run(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        with torch.no_grad():
            return list(lowered(*inputs))

    return run


# The range stage at scale (issue 13): an input set is observed on at most this many float
# elements; a larger program is run on rows of it (`row_plan`), the rest of its ranges propagated.
OBSERVE_ELEMENTS = 2_000_000
# Values an observation pass may keep for the judge's capture (`Capture`), over all input sets:
# a program's last values first, so what is missing is a prefix (cheap to run again).
KEEP_BYTES = 256 * 2**20


def observe(program: Program, input_sets: Sequence[Sequence[torch.Tensor]], *, budget: int = OBSERVE_ELEMENTS, seed: int = 0,
            kept: list | None = None, keep_bytes: int = KEEP_BYTES, params: dict | None = None) -> dict[int, tuple[float, float]]:
    """(min, max) of float values of the program over all input sets (NaNs ignored).

    Bounded: when the program's float values hold more than `budget` elements per input set and
    `row_plan` finds a cut, each set runs on `k` rows of the inputs' leading axis instead (the
    rows holding each input's largest and smallest element first, then rows drawn at random with
    a fixed seed), and only the values that stay row by row functions of those rows are observed
    (the others get no observation: the range analysis propagates theirs soundly from their
    arguments' ranges). Every value is observed otherwise.

    `kept`: a list that receives one {value id -> tensor} per input set, the values this pass
    computed whole that the judge would capture again (`Capture`): the input-dependent float
    values, the program's last ones first, within `keep_bytes` over all sets. Left empty when
    the pass ran on rows (those are not the values the program takes on the whole set).

    `params`: a dict that receives `param_interval` of each float parameter observed, by name,
    for `hnfc.analysis.ranges(..., params=...)`: one pass over each parameter serves both (an
    embedding table is the largest value of a language model)."""
    ids = [i for i, n in enumerate(program.nodes) if isinstance(n.type, TensorType) and DTYPES[n.type.dtype].is_float and n.op != "const"]
    out: dict[int, tuple[float, float]] = {}
    if not ids:
        return out
    plan = row_plan(program, budget) if _elements(program, ids) > budget else None
    if plan is None:
        run, ids_run, cut = runner(flat(program, ids)), ids, None
    else:
        cut_program, env, cut, k = plan
        ids = [i for i in ids if i in env]
        run, ids_run = runner(flat(cut_program, [env[i] for i in ids])), ids
    # Each value is scanned once per input set at most: a value that does not depend on the inputs
    # (parameters, their transposes) is the same in every set, and a view of an observed value
    # (`same_values`: reshape, transpose, ...) has its argument's range.
    varying = _input_dependent(program)
    observed = set(ids)
    copies = {i: program.nodes[i].args[0] for i in ids if program.nodes[i].opdef.same_values and program.nodes[i].args[0] in observed
              and program.nodes[program.nodes[i].args[0]].type.dtype == program.nodes[i].type.dtype
              and not program.nodes[i].type.is_symbolic and math.prod(program.nodes[i].type.shape)}
    keep = _to_keep(program, ids, varying, keep_bytes // max(len(input_sets), 1)) if kept is not None and cut is None else set()
    for j, inputs in enumerate(input_sets):
        if cut is not None:
            rows = _extreme_rows([inputs[p] for p in cut], k, seed + j)
            inputs = [x.index_select(0, rows) if p in cut else x for p, x in enumerate(inputs)]
        values = run(inputs)
        if keep:
            kept.append({i: v for i, v in zip(ids_run, values) if i in keep})
        for i, v in zip(ids_run, values):
            if i in copies or (j and i not in varying):
                continue
            if params is not None and program.nodes[i].op == "param":
                name = program.nodes[i].attr["name"]
                known = params[name] = param_interval(program.params.get(name))
                if known is not None:  # its min and max (no NaN): what the lines below find
                    out[i] = (known.lo, known.hi)
                    continue
            v = v.detach()
            if not v.numel():
                continue
            lo, hi = (float(t) for t in torch.aminmax(v))  # one pass; NaN if any element is
            if lo != lo or hi != hi:
                v = v[~torch.isnan(v)]
                if not v.numel():
                    continue
                lo, hi = (float(t) for t in torch.aminmax(v))
            out[i] = (min(lo, out[i][0]), max(hi, out[i][1])) if i in out else (lo, hi)
        values = v = None  # before the next set runs: one set's values alive at a time
    for i in sorted(copies):  # in program order: a view of a view follows its source
        if copies[i] in out:
            out[i] = out[copies[i]]
    return out


def _to_keep(program: Program, ids: Sequence[int], varying: set[int], per_set: int) -> set[int]:
    """The input-dependent values among `ids` to keep, last first, within `per_set` bytes (a view,
    `same_values`, shares its argument's memory and counts nothing)."""
    keep: set[int] = set()
    for i in sorted(ids, reverse=True):
        t = program.nodes[i].type
        if i not in varying or t.is_symbolic:
            continue
        size = 0 if program.nodes[i].opdef.same_values else math.prod(t.shape) * DTYPES[t.dtype].bits // 8
        if size > per_set:
            break
        per_set -= size
        keep.add(i)
    return keep


class Capture:
    """The original program's values on every input set, each computed once for the judge: its
    later rounds (a refusal re-extracts a region) ask again for frontiers they already have, and
    an observation pass may hand over what it computed (`observe(..., kept=...)`). Only missing
    values cost a run, of the prefix they need (`runner` drops the rest)."""

    def __init__(self, program: Program, input_sets, kept: Sequence[dict] | None = None) -> None:
        self.program, self.input_sets = program, input_sets
        self.values: list[dict[int, torch.Tensor]] = [dict(k) for k in kept] if kept else [{} for _ in input_sets]
        if len(self.values) != len(input_sets):
            raise ValueError(f"Capture: {len(self.values)} kept sets for {len(input_sets)} input sets")
        self.runs = 0  # program runs made here (one per input set per batch of missing values)

    def get(self, wanted: Sequence[int]) -> list[dict[int, torch.Tensor]]:
        """{value -> tensor} per input set, for the values `wanted`."""
        missing = sorted({v for v in wanted if any(v not in store for store in self.values)})
        if missing:
            run = runner(flat(self.program, missing))
            for store, inputs in zip(self.values, self.input_sets):
                store.update(zip(missing, run(inputs)))
                self.runs += 1
        return [{v: store[v] for v in wanted} for store in self.values]


def _input_dependent(program: Program) -> set[int]:
    """Values computed from some program input (the others are the same on every input set)."""
    dep: set[int] = set(program.inputs)
    for i, n in enumerate(program.nodes):
        if n.op == "opaque" or any(a is not None and a in dep for a in n.args):
            dep.add(i)  # an opaque op may be random: observed on every set
    return dep


def _elements(program: Program, ids) -> int:
    return sum(math.prod(program.nodes[i].type.shape) for i in ids if not program.nodes[i].type.is_symbolic)


def row_plan(program: Program, budget: int):
    """The program on `k` rows of the inputs' longest leading axis (N), so that its float values
    hold about `budget` elements: (cut program, {value id -> its id there} for the values that
    stay row-local, input positions cut, k); None when no cut applies.

    A value stays row-local when each of its rows is a function of the same row of the cut inputs
    (or of no cut input at all), so its values on k rows are values it takes on the whole: its
    type is the original's with N replaced by k on axis 0, every argument that depends on a cut
    input is row-local, and its op does not combine rows (`_combines_rows`). Anything else (a
    sum over the rows, a loss, an opaque call, a value after one) is left out."""
    from hnfc.ir.program import Builder, IRError

    inputs = program.inputs
    lead = [program.nodes[i].type.shape[0] if isinstance(program.nodes[i].type, TensorType) and program.nodes[i].type.rank and not program.nodes[i].type.is_symbolic else 0 for i in inputs]
    n = max(lead, default=0)
    ids = [i for i, nd in enumerate(program.nodes) if isinstance(nd.type, TensorType) and DTYPES[nd.type.dtype].is_float and nd.op != "const"]
    total = _elements(program, ids)
    k = max(1, min(n, budget * n // max(total, 1)))
    if n < 2 or k >= n:
        return None
    cut = [p for p, d in enumerate(lead) if d == n]
    cut_ids = {inputs[p] for p in cut}
    b, env, local, depends = Builder(), {}, set(), set()
    try:
        for i, nd in enumerate(program.nodes):
            if i in cut_ids:
                env[i] = b.add("input", (), nd.attr, TensorType((k, *nd.type.shape[1:]), nd.type.dtype))
                depends.add(i)
                local.add(i)
                continue
            if nd.op in ("input", "param", "const"):
                env[i] = b.add(nd.op, (), nd.attr, nd.type)
                continue
            dep = [a for a in nd.args if a is not None and a in depends]
            # a value of no cut input keeps its type (an opaque op's is given, not inferred)
            env[i] = b.add(nd.op, [None if a is None else env[a] for a in nd.args], nd.attr, None if dep else nd.type)
            if not dep:
                continue
            depends.add(i)
            t, new = nd.type, b.type_of(env[i])
            if (isinstance(t, TensorType) and t.rank and t.shape[0] == n and new == TensorType((k, *t.shape[1:]), t.dtype)
                    and all(a in local for a in dep) and not _combines_rows(program, nd, dep)):
                local.add(i)
    except IRError:
        return None
    cut_program = b.build([env[o] for o in program.outputs], program.params)
    return cut_program, {i: env[i] for i in range(len(program.nodes)) if i not in depends or i in local}, cut, k


def _combines_rows(program: Program, node, dep: list[int]) -> bool:
    """Whether some element of `node` may depend on several rows (axis 0) of its arguments that
    depend on the cut inputs (`dep`); conservative: unknown ops combine."""
    op, kind, at = node.op, node.opdef.kind, node.attr
    rank = node.type.rank
    if kind in ("pointwise", "shape") or op in ("to", "detach"):
        return False  # elementwise, or a rearrangement: each output row comes from one input row (shape-checked)
    if kind == "reduction" or op in ("softmax", "log_softmax"):
        arg_rank = program.nodes[node.args[0]].type.rank
        return 0 in norm_dims(at.get("dim"), arg_rank)
    if op in ("layer_norm", "rms_norm"):
        return at["normalized_ndim"] >= rank
    if op == "embedding":
        return node.args[0] in dep  # rows of a weight picked by the indices: the weight must not be cut
    if kind == "linalg":
        # each result row sums over the last axis of the contraction argument: only it may be cut
        return any(a != node.args[node.opdef.contraction] for a in dep) or rank < 2
    if op == "scaled_dot_product_attention":
        return rank < 3  # axis 0 is a batch axis only above rank 2
    return True


def input_domains(program: Program, example_inputs: Sequence[torch.Tensor], input_ranges: dict[int, tuple[float, float]]) -> list:
    """The declared range of each input, else the range its example values span."""
    out = []
    for k, x in enumerate(example_inputs):
        if k in input_ranges:
            out.append(tuple(input_ranges[k]))
        elif x.numel() == 0 or x.is_complex():
            out.append(None)
        else:
            lo, hi = float(x.min()), float(x.max())
            out.append((lo - 1, hi + 1) if lo == hi and x.is_floating_point() else (lo, hi))
    return out


# A program is heavy when one pass over an input set computes more float elements than this
# (the values that depend on the inputs: parameters cost no pass) and rows cannot be cut.
HEAVY_ELEMENTS = 16_000_000


def heavy(program: Program, budget: int = HEAVY_ELEMENTS) -> bool:
    """Whether one run of the program on an input set computes more than `budget` input-dependent
    float elements even on rows (`row_plan` finds no cut: a batch of one, or rows that do not
    stay apart): every pass over an input set then costs a whole model's run."""
    varying = _input_dependent(program)
    ids = [i for i, n in enumerate(program.nodes) if i in varying and isinstance(n.type, TensorType) and DTYPES[n.type.dtype].is_float and n.op != "const"]
    return _elements(program, ids) > budget and row_plan(program, OBSERVE_ELEMENTS) is None


def _kinds(types: Sequence) -> int:
    """How many different distributions `sample_inputs` draws these inputs from: "value" and
    "bits" for a float input; one for integers and bools (uniform integers in both modes)."""
    return 2 if any(isinstance(t, TensorType) and DTYPES[t.dtype].is_float for t in types) else 1


def verification_inputs(program: Program, example_inputs, input_ranges, config: Config) -> list[list[torch.Tensor]]:
    """The example inputs, then `config.samples` sets drawn from the inputs' domains (half
    uniform in value, half uniform over bit patterns: `sample_inputs`). A heavy program (`heavy`:
    every pass over an input set runs the whole model) draws one set per distinct distribution
    instead (`_kinds`, at most `config.samples`): the passes over these sets are most of its
    range stage and of the judge's capture."""
    types = [program.nodes[i].type for i in program.inputs]
    domains = input_domains(program, example_inputs, input_ranges)
    sets = [list(example_inputs)]
    samples = min(config.samples, _kinds(types)) if config.samples and heavy(program) else config.samples
    half = (samples + 1) // 2
    # A bounded sample (issue 13): at most SAMPLE_ROWS distinct leading rows are drawn per input,
    # then repeated to the input's size (every element still lies in the declared domain).
    small = [_capped(t) for t in types]
    drawn = sample_inputs(small, domains, half, mode="value", seed=config.seed)
    drawn += sample_inputs(small, domains, samples - half, mode="bits", seed=config.seed + 1)
    sets += [[_tiled(x, t) for x, t in zip(s, types)] for s in drawn]
    return [list(s) for s in sets]


def _extreme_rows(values: Sequence[torch.Tensor], k: int, seed: int) -> torch.Tensor:
    """k distinct rows (axis 0, sorted): each value's rows holding its largest and smallest
    element (a row holding NaN/inf first), then rows drawn uniformly at random with a fixed seed.
    One pass over each value (a min and max per row)."""
    n = values[0].shape[0]
    chosen: list[int] = []
    for v in values:
        r = v.detach().reshape(n, -1)
        if not r.numel():
            continue
        if r.dtype == torch.bool:
            r = r.to(torch.int8)
        lo, hi = torch.aminmax(r, dim=1)  # a row holding NaN gives NaN here
        if r.is_floating_point():
            bad = ~(torch.isfinite(lo) & torch.isfinite(hi))
            if bad.any():
                chosen.append(int(bad.nonzero()[0, 0]))
                lo, hi = torch.nan_to_num(lo, 0.0, 0.0, 0.0), torch.nan_to_num(hi, 0.0, 0.0, 0.0)
        chosen += [int(hi.argmax()), int(lo.argmin())]
    chosen = list(dict.fromkeys(chosen))[:k]
    if len(chosen) < k:
        taken = torch.zeros(n, dtype=torch.bool)
        taken[chosen] = True
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        chosen += perm[~taken[perm]][: k - len(chosen)].tolist()
    return torch.tensor(sorted(chosen), dtype=torch.long)


SAMPLE_ROWS = 4096  # distinct leading rows drawn per sampled input


def _capped(t: TensorType) -> TensorType:
    if isinstance(t, TensorType) and not t.is_symbolic and t.rank and t.shape[0] > SAMPLE_ROWS:
        return TensorType((SAMPLE_ROWS, *t.shape[1:]), t.dtype)
    return t


def _tiled(x: torch.Tensor, t: TensorType) -> torch.Tensor:
    if not isinstance(t, TensorType) or t.is_symbolic or x.dim() == 0 or x.shape[0] == t.shape[0]:
        return x
    reps = -(-t.shape[0] // x.shape[0])
    return x.repeat(reps, *([1] * (x.dim() - 1)))[: t.shape[0]].contiguous()
