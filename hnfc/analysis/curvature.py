"""The cost model: predicted bits lost per node and per program (the extraction objective).

In: an op (or IR program), argument and output intervals, types. Out: `node_cost` / `node_bits`
(one node; the e-graph calls it per e-node), `program_bits` (a program: the sum over its live
nodes, each counted once), `explain` (the same, itemized for reports), `predict` (the
whole-program `Prediction`: hazards, unbounded nodes, bits; see the end of this docstring).

Bits lost at a node (DESIGN.md, "Curvature: the extraction objective"):

    bits = min(first + second, W) + hazard
    first  = max(0, log2 cond)          cond: the op's relative condition number, sup over the box
                                        (typical where the result changes sign: ops/formulas.py)
    second = log2(1 + cond · u / 2)     the second-order term (below)
    hazard = HAZARD_BITS if the node can overflow, meet a domain edge, or underflow into one

- cond is `OpDef.cond` (formulas in hnfc/ops/formulas.py): how much the node amplifies the relative
  error its arguments carry. "Bits lost" measures that amplification in the node's own units: a
  well-conditioned node (cond ≤ 1) loses nothing beyond its rounding; `to` and shape ops have
  cond 1 and cost 0.
- second: the second-order Taylor term of the relative error. With δ = u (unit roundoff of the
  node's dtype) and the second-order relative coefficient bounded by cond² (exact for xᵖ and
  exp, an upper bound for log), the error is cond·δ·(1 + cond·δ/2). It is negligible unless
  cond·u approaches 1, i.e. unless the input box comes within a rounding error of a point where
  the op is singular or cancels: it is small unless the box is wide relative to the curvature
  scale, as the HNF precision bound says.
- W = the storage width of the node's dtype (32 for f32): a relative error ≥ 1 has lost every bit
  the format holds, so an unbounded cond (a result that can be 0 while its inputs are not,
  `exp(x) - 1` near 0) costs W, not infinity. Integer and bool results cost 0.
- Exact arguments: a pointwise op (one rounding) whose arguments are all exact (inputs,
  parameters, representable constants, and exact functions of them: neg, abs, max, shape ops)
  is correctly rounded up to an ulp or two: first-order bits 0 (`x - y` of two inputs is one
  rounding, however close x and y are). With some arguments exact, only the others' terms count
  (`wrt`). The same holds for the few other ops in ONE_ROUNDING (amax, var, std, rms_norm, to;
  var and std below float64 only, where torch accumulates in double).
  Sums, products, softmax-like ops and layer norm round many times internally, so their cond
  counts regardless. `node_bits` assumes every argument inexact unless told (`exact_args`).
- Accumulation: torch computes reductions, softmax-like and normalization kernels and matrix
  products of f16/bf16 data in float32 (opmath) and rounds once. On exact arguments such a
  node's own roundings are f32's, so its cond applies to u_f32, not u_bf16: bits =
  log2(cond · u_f32/u_d) (softmax of exact bf16 logits in [-100, 100]: cond 200, 0 bf16 bits,
  as measured). Inexact arguments carry errors in their own dtype: no discount.
- hazard (HAZARD_BITS, large but finite so totals still compare): (a) the output interval reaches
  the dtype's overflow threshold (max + half an ulp: round to nearest sends anything below it to
  max, so -max + a logit is finite) while every argument is inside its own range (the node itself
  overflows: exp of [-100, 100] in f32); (b) `OpDef.hazard`: log/log1p/log2 of a range reaching
  its domain edge, division or reciprocal or rsqrt or negative powers of a range holding 0, sqrt
  of negatives, variance over ≤ correction elements, batch norm's var + eps ≤ 0; (c) underflow
  where it matters: hazard checks see the arguments as their dtype holds them, so a positive
  range whose lower end is below the dtype's smallest normal reads as reaching 0 (log(exp(x)) for
  x down to -200 in f32, a softmax denominator that underflows). An argument whose range is
  unknown (the whole line) is not a hazard: unknown is not known-bad.

The whole-program prediction (`predict`, what reports print and what a rewrite must improve):
one number capped at the width says nothing once a single node is unbounded (a log_softmax whose
result range reaches 0 has an unbounded relative cond; the old total was then "32 -> 32" whatever
else a rewrite fixed). So the prediction is itemized, `Prediction(hazards, unbounded, bits)`:
the number of hazard nodes, the number of other nodes whose counted cond is unbounded, and the
bits of all remaining nodes summed without a cap. Each part is a count or a sum over nodes, so
removing one hazard lowers `hazards` by one however many other nodes are bad, and a fix of a
finite-cond node lowers `bits` however many unbounded nodes remain. Predictions compare in that
order (a hazard outweighs any finite loss; an unbounded node outweighs bits), and `gain_over`
asks for a strict improvement. `predicted_bits` (the capped total, one figure per program) stays
for the cost-vs-measured rank correlation of bench/stability.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


from hnfc import ops
from hnfc.foundation.intervals import Interval
from hnfc.analysis.propagate import _args, interval_of_node
from hnfc.ir.program import ancestors
from hnfc.foundation.dtypes import DTYPES
from hnfc.ops.core import OpDef, full_attrs
from hnfc.foundation.types import TensorType

HAZARD_BITS = 1000.0

# Ops whose result is exact when their (value) arguments are: no rounding happens.
# amax/amin select one of their arguments' elements (x - amax(x) of exact x is one rounding).
EXACT_OPS = frozenset({"neg", "abs", "relu", "maximum", "minimum", "clamp", "where", "detach", "getitem", "amax", "amin"})

# Non-pointwise ops whose kernels are accurate to a few ulps on exact arguments, so that, like a
# pointwise op, they lose nothing unless their arguments carry error: max/min select; torch's
# two-pass variance (and std, its root) only shifts the deviations by the mean's rounding, a
# second-order effect; rms_norm is well conditioned throughout. (Not sum/mean: their partial sums are rounded and the
# cancellation amplifies that; not softmax/logsumexp/layer_norm: x - max, m + log Σ and x - mean
# are rounded inside the kernel.)
ONE_ROUNDING = frozenset({"to", "amax", "amin", "var", "std", "rms_norm"})
# ... but torch's CPU var/std are that accurate only where they accumulate in a wider type (float
# and narrower: in double). In float64 the kernel is a one-pass update that loses about half the
# bits of its cond (13 bits at mean/σ = 1e5, where a hand-written two-pass mean((x - m)²) loses 0).
WIDER_ACCUMULATION = frozenset({"var", "std"})


def _rounds_once(op: OpDef, dtype) -> bool:
    if op.name in WIDER_ACCUMULATION:
        return dtype is not None and dtype.name != "f64"
    return op.kind == "pointwise" or op.name in ONE_ROUNDING

# Kernels that accumulate f16/bf16 data in float32 (torch's opmath / acc_type: reductions,
# softmax-like and normalization kernels, matrix products) and round once to the output dtype.
ACCUMULATING_KINDS = frozenset({"reduction", "nn", "linalg"})
ACCUMULATOR = DTYPES["f32"]


@dataclass(frozen=True)
class NodeCost:
    cond: float  # relative condition number over the box (inf: unbounded)
    bits: float  # predicted bits lost at this node
    reason: str  # why it costs what it costs ("" when it costs nothing)
    hazard: str | None = None
    unbounded: bool = False  # the counted cond is unbounded: `bits` is the width cap


def overflow_threshold(d) -> float:
    """The least magnitude a float dtype rounds to infinity: its max plus half an ulp there (round
    to nearest sends [max, max + ulp/2) to max: an additive mask of -max plus a logit is finite)."""
    return d.max + 2.0 ** (math.frexp(d.max)[1] - 1 - d.mantissa)


def _dtype(t: Any):
    return DTYPES.get(t.dtype) if isinstance(t, TensorType) else None


def node_cost(
    op: str | OpDef,
    arg_intervals: Sequence,
    attrs: Mapping | None,
    out_interval: Interval | None = None,
    out_type: Any = None,
    arg_types: Sequence | None = None,
    exact_args: Sequence[bool] | None = None,
) -> NodeCost:
    """Predicted bits lost at one node (see the module doc), with its cond and the reason.

    Arguments as for `interval_of_node`; `out_interval` None is computed from the arguments.
    `exact_args`: per argument, whether its value is exact (None: none is).
    """
    opdef = op if isinstance(op, OpDef) else ops.get(op)
    if opdef.kind == "leaf":
        return NodeCost(0.0, 0.0, "")
    at = full_attrs(opdef, attrs or {})
    args = _args(opdef, arg_intervals)
    ts = list(arg_types) if arg_types is not None else [None] * len(args)
    if out_interval is None:
        out_interval = interval_of_node(opdef, args, at, out_type, ts)
    d = _dtype(out_type)
    if d is None or not d.is_float:
        return NodeCost(1.0, 0.0, "")
    reasons: list[str] = []

    # hazards
    hazard = None
    if opdef.hazard is not None:
        held = [None if a is None else a.in_dtype(t.dtype if isinstance(t, TensorType) else d.name) for a, t in zip(args, ts)]
        hazard = opdef.hazard(held, at, out_type, ts)
    if hazard is None and (out_interval.hi >= overflow_threshold(d) or out_interval.lo <= -overflow_threshold(d)):
        inside = all(a is None or a.mag <= (_dtype(t) or d).max or not (_dtype(t) or d).is_float for a, t in zip(args, ts))
        if inside:
            hazard = f"overflow: range {out_interval} exceeds the {d.name} maximum {d.max:.4g}"

    # first and second order
    wrt = None
    if exact_args is not None and _rounds_once(opdef, d):
        wrt = {i for i, (a, e) in enumerate(zip(args, exact_args)) if a is not None and not e}
    c = 1.0 if opdef.cond is None else float(opdef.cond(args, at, out_interval, out_type, ts, None))
    c_counted = c if wrt is None else (0.0 if not wrt else float(opdef.cond(args, at, out_interval, out_type, ts, wrt)))
    if c != c:
        c = math.inf
    if c_counted != c_counted:
        c_counted = math.inf
    cap = float(d.bits)
    # the unit the node's own roundings are made in, relative to its dtype's (see "Accumulation")
    unit = 1.0
    if wrt is None and opdef.kind in ACCUMULATING_KINDS and exact_args is not None and all(e for a, e in zip(args, exact_args) if a is not None):
        unit = min(1.0, ACCUMULATOR.eps / d.eps)
    if c_counted == 0:
        bits = 0.0
    elif math.isinf(c_counted):
        bits = cap
    else:
        c_unit = c_counted * unit
        bits = min(max(0.0, math.log2(c_unit)) + math.log2(1 + c_unit * d.eps / 2), cap)
    if wrt is not None and not wrt:
        if c > 2:
            reasons.append(f"cond {c:.3g} on exact arguments: one rounding")
    elif bits >= 0.05:
        if math.isinf(c_counted):
            reasons.append(f"cond unbounded (result range {out_interval} reaches 0 or a singularity): every bit may be lost")
        else:
            reasons.append(f"cond {c_counted:.3g}")
    if hazard is not None:
        bits += HAZARD_BITS
        reasons.insert(0, f"hazard: {hazard}")
    return NodeCost(c, bits, "; ".join(reasons), hazard, math.isinf(c_counted))


def node_bits(
    op: str | OpDef,
    arg_intervals: Sequence,
    attrs: Mapping | None,
    out_interval: Interval | None = None,
    out_type: Any = None,
    arg_types: Sequence | None = None,
    exact_args: Sequence[bool] | None = None,
) -> float:
    """Predicted bits lost at one node: `node_cost(...).bits`."""
    return node_cost(op, arg_intervals, attrs, out_interval, out_type, arg_types, exact_args).bits


def _representable(value: Any, dtype: str) -> bool:
    d = DTYPES.get(dtype)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    if d is None:
        return False
    if d.kind == "bool":
        return v in (0.0, 1.0)
    if d.kind == "int":
        return v.is_integer()
    if not d.is_float:
        return False
    if v == 0 or math.isinf(v) or v != v:
        return True
    if d.name == "f64":
        return True
    if abs(v) > d.max or abs(v) < d.tiny:
        return False
    m, _ = math.frexp(v)
    return (m * 2.0**d.mantissa).is_integer()


def is_exact_node(op: str | OpDef, attrs: Mapping | None, arg_exact: Sequence[bool], out_type: Any = None, arg_types: Sequence | None = None) -> bool:
    """Whether a node's value is exact (no rounding error) given whether its arguments' are."""
    opdef = op if isinstance(op, OpDef) else ops.get(op)
    name = opdef.name
    if name in ("input", "param"):
        return True
    if name in ("const", "full"):
        at = full_attrs(opdef, attrs or {})
        return _representable(at["value"], at["dtype"])
    if name == "where":
        return len(arg_exact) == 3 and bool(arg_exact[1]) and bool(arg_exact[2])
    if name == "to":
        d_out = _dtype(out_type)
        src = arg_types[0] if arg_types else None
        d_in = _dtype(src)
        if not arg_exact or not arg_exact[0] or d_out is None:
            return False
        if not d_out.is_float:
            return True
        return d_in is not None and (not d_in.is_float or (d_in.mantissa <= d_out.mantissa and d_in.max <= d_out.max))
    if name in EXACT_OPS or opdef.kind == "shape":
        return all(arg_exact)
    return False


def exact_values(program, inexact_inputs: Sequence[bool] = ()) -> list[bool]:
    """Per value id: whether the program computes it exactly. `inexact_inputs`: per input
    position, True where that input already carries error (a site fed a computed value)."""
    out: list[bool] = []
    position = {v: k for k, v in enumerate(program.inputs)}
    for i, n in enumerate(program.nodes):
        args = [a for a in n.args if a is not None]
        ok = is_exact_node(n.opdef, n.attr, [out[a] for a in args], n.type, [program.nodes[a].type for a in args])
        k = position.get(i)
        out.append(ok and not (k is not None and k < len(inexact_inputs) and inexact_inputs[k]))
    return out


def _costs(program, ranges, exact: bool, inexact_inputs: Sequence[bool] = ()) -> dict[int, NodeCost]:
    if ranges is None:
        from hnfc.analysis.propagate import ranges as propagate

        ranges = propagate(program)
    ex = exact_values(program, inexact_inputs) if exact else None
    out: dict[int, NodeCost] = {}
    for i in sorted(ancestors(program, program.outputs)):
        n = program.nodes[i]
        args = [None if a is None else ranges[a] for a in n.args]
        ts = [None if a is None else program.nodes[a].type for a in n.args]
        ea = None if ex is None else [True if a is None else ex[a] for a in n.args]
        out[i] = node_cost(n.opdef, args, n.attr, ranges[i], n.type, ts, ea)
    return out


def program_bits(program, ranges: Sequence[Interval] | None = None, *, exact: bool = True) -> tuple[float, list[float]]:
    """(total, per value id) predicted bits lost: node costs summed over the live nodes, each once.

    `ranges`: from `hnfc.analysis.ranges` (None: propagate with no declared ranges). `exact`:
    track which values are exact (see the module doc); False treats every argument as inexact.
    """
    costs = _costs(program, ranges, exact)
    per = [0.0] * len(program.nodes)
    for i, c in costs.items():
        per[i] = c.bits
    return float(sum(per)), per


def explain(program, ranges: Sequence[Interval] | None = None, *, exact: bool = True) -> list[tuple[int, str, float, float, str]]:
    """(value id, op, cond, bits, reason) for each live computed node, in program order."""
    costs = _costs(program, ranges, exact)
    return [(i, program.nodes[i].op, c.cond, c.bits, c.reason) for i, c in costs.items() if program.nodes[i].opdef.kind != "leaf"]


@dataclass(frozen=True)
class Prediction:
    """A program's predicted loss, itemized so that it moves when one hazard goes (module doc,
    "The whole-program prediction"). Compared by `key`: fewer hazards first, then fewer nodes of
    unbounded cond, then fewer bits."""

    hazards: int  # nodes that can overflow, meet a domain edge, or underflow into one
    unbounded: int  # other nodes whose relative cond is unbounded on the box (each may lose every bit)
    bits: float  # predicted bits lost, summed (uncapped) over the remaining nodes
    outputs: tuple[float, ...] = ()  # per output: its cone's summed bits, capped at its width
    capped: float = 0.0  # every node's bits summed, capped at the widest output's width (`predicted_bits`)

    def key(self) -> tuple[int, int, float]:
        return (self.hazards, self.unbounded, self.bits)

    def gain_over(self, other: "Prediction", min_bits: float = 0.05) -> bool:
        """Whether this prediction is better than `other`'s, in `key` order: fewer hazards; else
        as many and fewer unbounded nodes; else the same counts and at least `min_bits` fewer bits."""
        if self.hazards != other.hazards:
            return self.hazards < other.hazards
        if self.unbounded != other.unbounded:
            return self.unbounded < other.unbounded
        return self.bits <= other.bits - min_bits

    def as_dict(self) -> dict:
        return {"hazards": self.hazards, "unbounded": self.unbounded, "bits": self.bits, "outputs": list(self.outputs)}

    def __str__(self) -> str:
        return describe_prediction(self.as_dict())


def describe_prediction(p: dict) -> str:
    """'1 hazard, 2 unbounded, 3.1 bits' (the report's wording; `Prediction.as_dict` form)."""
    h, u = p.get("hazards", 0), p.get("unbounded", 0)
    return f"{h} hazard{'' if h == 1 else 's'}, {u} unbounded, {p.get('bits', 0.0):.1f} bits"


def predict(program, ranges: Sequence[Interval] | None = None, *, inexact_inputs: Sequence[bool] = ()) -> Prediction:
    """The program's `Prediction`: hazards and unbounded nodes counted, the other nodes' bits
    summed, each live node once; per output, the old single figure (`predicted_bits` of its cone).
    `inexact_inputs` as for `exact_values` (a verification site fed computed values)."""
    costs = _costs(program, ranges, True, inexact_inputs)
    hazards = sum(1 for c in costs.values() if c.hazard is not None)
    unbounded = sum(1 for c in costs.values() if c.hazard is None and c.unbounded)
    bits = sum(c.bits for c in costs.values() if c.hazard is None and not c.unbounded)
    outs = []
    for o in program.outputs:
        t = program.nodes[o].type
        cone = sum(costs[i].bits for i in ancestors(program, [o]) if i in costs)
        outs.append(min(cone, float(DTYPES[t.dtype].bits)) if isinstance(t, TensorType) and t.dtype in DTYPES else cone)
    total = float(sum(c.bits for c in costs.values()))
    widths = [DTYPES[program.nodes[o].type.dtype].bits for o in program.outputs if isinstance(program.nodes[o].type, TensorType)]
    capped = min(total, max(widths)) if widths else total
    return Prediction(hazards, unbounded, float(bits), tuple(float(b) for b in outs), capped)


__all__ = ["EXACT_OPS", "HAZARD_BITS", "ONE_ROUNDING", "NodeCost", "Prediction", "describe_prediction", "exact_values", "explain", "is_exact_node", "node_bits", "node_cost", "predict", "program_bits"]


def predicted_bits(program, ranges=None) -> float:
    """Predicted bits lost by the program's outputs: the summed node costs, capped at the widest
    output format's width, as the bits-of-error metric caps (no output can lose more)."""
    return predict(program, ranges).capped
