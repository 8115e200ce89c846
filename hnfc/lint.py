"""Lint: where a model goes wrong numerically, and what would fix it. Changes nothing.

In: a module or function, example inputs, declared input ranges, options (as `hnfc.optimize`).
Out: a `LintResult` with one `Finding` per node worth a look, most severe first. It sits on top
of the pipeline (its egraph and verify stages, run on the sound ranges, give the fixes) and of
the analysis (ranges, costs).

Kinds of finding:

- "hazard": on ranges propagated soundly from the declared input ranges, the node can overflow
  its dtype, meet a domain edge (log of 0, division by a range holding 0, sqrt of negatives), or
  underflow into one; or a constant does not fit its dtype (overflows to inf, underflows to 0).
  Always failing.
- "grad-hazard": the forward value is fine but the derivative the backward graph computes at
  this node is not (sqrt at exactly 0: an infinite slope, inf * 0 = NaN upstream); from the op
  entry's `grad_hazard` on the same sound ranges, at nodes gradients reach. Also, on programs
  of up to VERIFY_NODES nodes, found by running the real backward (autograd of the lowered
  program) on the declared bounds, 0, alternating bounds and the example: a node whose own
  vector-Jacobian product is not finite while the gradient reaching it and the forward are (ops
  without a rule: acos at ±1, ...). Failing (turn off with `backward=False`).
- "unknown": an op hnfc has no range rule for (an opaque kernel) feeds a division, log, sqrt,
  exp or a negative power, and the argument's range (cut to its dtype's finite values) does not
  already keep the op off its pole and overflow. Failing.
- "fixable": the optimizer found a verified, more stable form for the node; failing when its
  predicted bits lost exceed `max_bits` and its error reaches the outputs (below).
- "candidate": the e-graph found a more stable form that was not verified (large programs are
  linted without verification) or that verification did not measure better on these inputs. A
  suggestion, not a failure (failing only with `strict=True`): nothing shows the outputs gain.
- "ill-conditioned": predicted to lose more than `max_bits` bits and no rewrite helps (a sum or
  matmul that can cancel). A note; failing only with `strict=True`.

Ranges. Hazards are judged on the sound ranges: declared input ranges (inputs without one take the
range their example and sampled values span, widened by `margin`), parameters' actual values, and
each op's interval rule. Observed ranges (the values on the example and sampled inputs) only rank
and explain (a hazard the samples also hit says so); they never hide one. A value computed by an
op without a range rule is unknown, and so is anything whose range it makes infinite.

Effect on the outputs. A fixable node over `max_bits` (with `strict`, also candidates and
ill-conditioned nodes) is measured: the outputs' bits of error against a float64 run, with and
without the node's own value replaced by its float64 value. When fixing the node changes no
output by half a bit on any input set, its lost bits do not reach the outputs and the finding is
a note ("absorbed").

Each finding names the user's source line (`program.meta["sources"]`, recorded by the frontend),
what goes wrong, an input that triggers it where one among the tried ones does (the declared
bounds filled everywhere, 0, alternating bounds, the sampled sets; checked by running the model,
and for gradient hazards by running backward), and the fix: the rewrite hnfc applies, or a
suggestion.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Mapping

import torch

from hnfc.foundation.dtypes import to_torch
from hnfc.ir.program import ancestors


@dataclasses.dataclass(frozen=True)
class Finding:
    kind: str  # "hazard" | "grad-hazard" | "unknown" | "fixable" | "candidate" | "ill-conditioned"
    value: int  # SSA value id in the traced program
    op: str
    bits: float  # predicted bits lost at the node (>= 1000 for a hazard)
    reason: str  # what goes wrong
    expr: str  # the node as an expression
    fix: str | None = None  # the rewrite hnfc applies, or a suggestion
    rules: tuple[str, ...] = ()
    source: str | None = None  # the user's line: "file:line: code"
    trigger: str | None = None  # an input that triggers it (checked by running), if one was found
    effect: float | None = None  # bits the outputs gain when this node is exact (None: not measured)
    observed: bool = False  # the example/sampled inputs already reach the hazard
    origin: str | None = None  # where an infinite value the hazard meets is written (its source line)


FAILING_ALWAYS = ("hazard", "grad-hazard", "unknown")
ORDER = {"hazard": 0, "grad-hazard": 1, "unknown": 2, "fixable": 3, "candidate": 4, "ill-conditioned": 5}
# Programs with more nodes than this are linted without verifying rewrites (pass verify=True to force it).
VERIFY_NODES = 300
# Below this many bits of change in every output, a node's lost bits do not reach the outputs.
ABSORBED_BITS = 0.5


@dataclasses.dataclass
class LintResult:
    findings: list[Finding]
    max_bits: float
    strict: bool
    report: Any = None  # the egraph and verify stages' Report (the rewrites hnfc would apply)
    times: dict = dataclasses.field(default_factory=dict)

    @property
    def failing(self) -> list[Finding]:
        out = []
        for f in self.findings:
            if f.kind in FAILING_ALWAYS:
                out.append(f)
            elif f.bits > self.max_bits and (f.kind == "fixable" or self.strict):
                if f.effect is None or f.effect >= ABSORBED_BITS or self.strict:
                    out.append(f)
        return out

    @property
    def ok(self) -> bool:
        return not self.failing

    def to_dict(self) -> dict:
        return {
            "max_bits": self.max_bits,
            "strict": self.strict,
            "ok": self.ok,
            "failing": len(self.failing),
            "findings": [dataclasses.asdict(f) for f in self.findings],
        }


_GENERIC_FIX = {
    "sub": "cancellation: compute the difference in a stable form, or in higher precision",
    "add": "cancellation of mixed-sign terms: reorder or compute in higher precision",
    "sum": "cancellation in a reduction: accumulate in float64, or subtract a mean first",
    "mean": "cancellation in a reduction: accumulate in float64",
    "matmul": "cancellation in a dot product: accumulate in higher precision if it matters",
    "addmm": "cancellation in a dot product: accumulate in higher precision if it matters",
    "mm": "cancellation in a dot product: accumulate in higher precision if it matters",
    "bmm": "cancellation in a dot product: accumulate in higher precision if it matters",
}
_HAZARD_FIX = {
    "exp": "exp overflows: subtract a max first (softmax/logsumexp), use softplus/logaddexp, or clamp the argument",
    "log": "log reaches 0: use log_softmax / logsigmoid / log1p / BCE-with-logits on logits, or clamp(min=eps) (an eps that survives the dtype)",
    "div": "the divisor can be 0: add an eps that survives the dtype or clamp(min=eps); for x / |x| use F.normalize(x, eps=...)",
    "sqrt": "sqrt argument can be negative or 0: clamp(min=0) rounding-negative values; for a norm, use torch.linalg.vector_norm",
    "rsqrt": "rsqrt of 0: add eps inside (var + eps)",
    "reciprocal": "1/x at 0: add an eps that survives the dtype or clamp",
    "pow": "a negative power of 0, or a fractional power of a negative: clamp the base",
    "const": "the constant does not fit the dtype: use torch.finfo(dtype).min/max (hnfc's legalize pass does this for masks)",
    "full": "the constant does not fit the dtype: use torch.finfo(dtype).min/max (hnfc's legalize pass does this for masks)",
    "binary_cross_entropy": "probabilities that round to 0 or 1: pass logits to F.binary_cross_entropy_with_logits",
}
_GRAD_FIX = {
    "sqrt": "the derivative of sqrt is infinite at 0: use torch.linalg.vector_norm (its backward is 0 at 0) or sqrt(x + eps)",
    "pow": "a fractional power has an infinite derivative at 0: add eps to the base",
    "log": "the derivative 1/x overflows the dtype near 0: clamp the argument away from 0",
    "div": "the derivative -x/y² overflows where y is tiny: keep the divisor away from 0",
    "abs": "abs has a kink at 0 (its gradient there is 0): fine unless you divide by it",
}
_SINGULAR_CONSUMERS = {  # op -> argument positions where an unknown value can hit a pole/overflow
    "div": (1,), "reciprocal": (0,), "rsqrt": (0,), "log": (0,), "log2": (0,), "log10": (0,), "log1p": (0,),
    "sqrt": (0,), "exp": (0,), "exp2": (0,), "pow": (0,),
}


def _fix_text(op: str, kind: str, reason: str) -> str:
    if kind == "hazard":
        return _HAZARD_FIX.get(op) or ("overflow: rescale (subtract a max, work in log space) or use a wider dtype" if "overflow" in reason
                                       else "domain edge: keep the argument away from it (clamp, eps) or use the fused op")
    if kind == "grad-hazard":
        return _GRAD_FIX.get(op, "the derivative is not finite at the range's edge: keep the argument away from it")
    if kind == "unknown":
        return "declare a range for the inputs, or bound the value (clamp) before this op"
    return _GENERIC_FIX.get(op, "ill-conditioned here: narrow the declared input range or compute in higher precision")


def _why(reason: str, rw) -> str:
    parts = [reason] if reason else []
    before, after = getattr(rw, "before_mean", None), getattr(rw, "after_mean", None)
    if before is not None and after is not None:
        parts.append(f"measured {before:.2f} -> {after:.2f} bits (mean) with the fix")
    if not getattr(rw, "accepted", True):
        parts.append("not verified better on these inputs" + (f": {rw.reason}" if getattr(rw, "reason", "") else ""))
    return "; ".join(parts) or "rewrite found"


# -- sound ranges, unknown values, constants, gradients ------------------------------------------------------


def _unknown_values(program, ranges) -> list[bool]:
    """Per value: computed by an op without a range rule, or made infinite by such a value."""
    out: list[bool] = []
    for i, n in enumerate(program.nodes):
        od = n.opdef
        if od.kind == "leaf" or not _is_float(n.type):
            out.append(False)
        elif od.interval is None or ranges[i].is_whole:  # no rule, or a rule that could not bound it
            out.append(True)
        else:
            iv = ranges[i]
            out.append(any(a is not None and out[a] for a in n.args) and not (math.isfinite(iv.lo) and math.isfinite(iv.hi)))
    return out


def _pole_excluded(program, i, unknown, ranges) -> bool:
    """Node i cannot meet its pole or overflow whatever finite values its unknown arguments take
    inside their ranges (rsqrt of mean(x²) + eps: the range [eps, inf] is infinite because x is
    unknown, but it keeps rsqrt away from 0): the op's own hazard check, with each unknown
    argument's range cut to its dtype's finite values, finds nothing."""
    from hnfc import analysis
    from hnfc.foundation.dtypes import DTYPES
    from hnfc.foundation.intervals import Interval

    n = program.nodes[i]
    args = []
    for a in n.args:
        if a is None:
            args.append(None)
            continue
        iv, t = ranges[a], program.nodes[a].type
        if unknown[a] and _is_float(t):
            top = DTYPES[t.dtype].max
            iv = iv.intersect(Interval(-top, top)) or iv
        args.append(iv)
    ts = [None if a is None else program.nodes[a].type for a in n.args]
    return analysis.node_cost(n.opdef, args, n.attr, None, n.type, ts).hazard is None


def _is_float(t) -> bool:
    from hnfc.foundation.dtypes import DTYPES
    from hnfc.foundation.types import TensorType

    return isinstance(t, TensorType) and DTYPES[t.dtype].is_float


def _constant_issue(node) -> str | None:
    """A constant that overflows its float dtype (to inf) or underflows it (a nonzero value to 0)."""
    from hnfc.foundation.dtypes import DTYPES
    from hnfc.precision.legalize import overflows

    if node.op not in ("const", "full"):
        return None
    at = node.attr
    value, dtype = at.get("value"), at.get("dtype")
    if dtype not in DTYPES or not DTYPES[dtype].is_float or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if overflows(value, dtype):
        return f"constant {value:g} overflows {dtype} (max {DTYPES[dtype].max:.4g}): it becomes {'-' if value < 0 else '+'}inf"
    d = DTYPES[dtype]
    smallest = d.tiny * 2.0 ** -d.mantissa  # the smallest subnormal
    if value != 0 and math.isfinite(value) and abs(value) < smallest / 2:
        return f"constant {value:g} underflows {dtype} (smallest {smallest:.3g}): it becomes 0"
    return None


def _grad_reach(program) -> list[bool]:
    """Per value: gradients flow back through it (float inputs, parameters that require grad, and
    what is computed from them, up to a detach)."""
    out: list[bool] = []
    for n in program.nodes:
        if n.op == "input":
            out.append(_is_float(n.type))
        elif n.op == "param":
            v = program.params.get(n.attr["name"])
            out.append(_is_float(n.type) and bool(getattr(v, "requires_grad", False)))
        elif n.op == "detach" or not _is_float(n.type):
            out.append(False)
        else:
            out.append(any(a is not None and out[a] for a in n.args))
    return out


def _grad_hazard(program, i, ranges) -> str | None:
    from hnfc.foundation.types import TensorType
    from hnfc.ops.core import full_attrs

    n = program.nodes[i]
    fn = getattr(n.opdef, "grad_hazard", None)
    if fn is None:
        return None
    ts = [None if a is None else program.nodes[a].type for a in n.args]
    held = [None if a is None else ranges[a].in_dtype(t.dtype if isinstance(t, TensorType) else n.type.dtype) for a, t in zip(n.args, ts)]
    return fn(held, full_attrs(n.opdef, n.attr), n.type, ts)


# -- running: triggers and effects ---------------------------------------------------------------------------------------


def _candidates(program, flat, domains, sets) -> list[tuple[str, list[torch.Tensor]]]:
    """Input sets to try, each with a description: bounds everywhere, 0, alternating, samples."""
    names = program.input_names
    out: list[tuple[str, list[torch.Tensor]]] = []

    def filled(how: str):
        xs, parts = [], []
        for name, x, dom in zip(names, flat, domains):
            if dom is None or not x.is_floating_point():
                xs.append(x)
                continue
            lo, hi = dom
            if how == "lo":
                v, text = torch.full_like(x, lo), f"{name} = {lo:g} everywhere"
            elif how == "hi":
                v, text = torch.full_like(x, hi), f"{name} = {hi:g} everywhere"
            elif how == "zero":
                z = min(max(0.0, lo), hi)
                v, text = torch.full_like(x, z), f"{name} = {z:g} everywhere"
            else:
                alt = torch.arange(x.numel()).reshape(x.shape) % 2 == 0
                v, text = torch.where(alt, torch.full_like(x, lo), torch.full_like(x, hi)), f"{name} alternating {lo:g}, {hi:g}"
            xs.append(v)
            parts.append(text)
        return ", ".join(parts) or "the example inputs", xs

    for how in ("hi", "lo", "zero", "alt"):
        out.append(filled(how))
    for k, s in enumerate(sets):
        out.append(("the example inputs" if k == 0 else f"sampled input set {k}", list(s)))
    return out


def _input_spans(program, sets) -> dict[int, tuple[float, float]]:
    """(min, max) of each float input over the example and sampled sets (NaNs ignored)."""
    out: dict[int, tuple[float, float]] = {}
    for i, k in zip(program.inputs, range(len(program.inputs))):
        vals = [s[k] for s in sets if k < len(s) and isinstance(s[k], torch.Tensor) and s[k].is_floating_point() and s[k].numel()]
        vals = [v[~torch.isnan(v)] for v in vals]
        vals = [v for v in vals if v.numel()]
        if vals:
            out[i] = (min(float(v.min()) for v in vals), max(float(v.max()) for v in vals))
    return out


def _nonfinite(t: torch.Tensor | None) -> bool:
    return t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all())


def _forward_triggers(run_nodes, ids, candidates) -> dict[int, str]:
    """Per node id: the first candidate input on which its value is not finite (one run per candidate)."""
    out: dict[int, str] = {}
    for text, xs in candidates:
        if len(out) == len(ids):
            break
        try:
            vals = run_nodes(xs)
        except Exception:  # an input that the model rejects (a shape check): try the next
            continue
        for i, v in zip(ids, vals):
            if i not in out and _nonfinite(v):
                out[i] = f"{text} gives {_describe(v)} here"
    return out


def _describe(v: torch.Tensor) -> str:
    if torch.isnan(v).any():
        return "NaN"
    if torch.isinf(v).any():
        return "inf"
    return f"values in [{float(v.min()):.3g}, {float(v.max()):.3g}]"


def _backward_trigger(lowered, candidates, params) -> str | None:
    """The first candidate whose backward gives a non-finite gradient where the forward outputs
    are finite (checked by running autograd on the lowered program)."""
    for text, xs in candidates:
        leaves = [x.detach().clone().requires_grad_(True) if x.is_floating_point() else x for x in xs]
        try:
            with torch.enable_grad():
                outs = lowered(*leaves)
                outs = [o for o in (outs if isinstance(outs, (list, tuple)) else [outs]) if o.is_floating_point() and o.requires_grad]
                if not outs or any(_nonfinite(o) for o in outs):
                    continue
                total = sum(o.sum() for o in outs)
                grads = torch.autograd.grad(total, [x for x in leaves if x.requires_grad] + params, allow_unused=True)
        except Exception:
            continue
        if any(_nonfinite(g) for g in grads):
            return f"{text}: outputs finite, gradient {'NaN' if any(g is not None and torch.isnan(g).any() for g in grads) else 'inf'}"
    return None


def _backward_culprits(program, candidates) -> dict[int, str]:
    """Per forward node: a tried input on which the outputs are finite but the real backward
    (autograd of the lowered program) is not, and this node's own derivative is where it starts:
    the gradient arriving at the node is finite, its vector-Jacobian product with the node's
    arguments is not. Catches derivative hazards of ops without a `grad_hazard` rule (acos at
    ±1, atan2 at 0, ...)."""
    from hnfc.runtime.lowering import lower
    from hnfc.runtime.run import flat as flat_program

    reach = _grad_reach(program)
    outs = list(program.outputs)
    ids = [i for i in sorted(ancestors(program, outs)) if reach[i] and program.nodes[i].opdef.kind != "leaf"]
    lowered = lower(flat_program(program, outs + ids))
    params = [p for p in lowered.parameters() if p.requires_grad]
    found: dict[int, str] = {}
    for text, xs in candidates:
        leaves = [x.detach().clone().requires_grad_(True) if x.is_floating_point() else x for x in xs]
        try:
            with torch.enable_grad():
                vals = list(lowered(*leaves))
                got, inter = vals[: len(outs)], dict(zip(ids, vals[len(outs):]))
                got = [o for o in got if o.is_floating_point() and o.requires_grad]
                if not got or any(_nonfinite(o) for o in got):
                    continue  # a forward hazard, reported as such
                total = sum(o.sum() for o in got)
                wrt = [x for x in leaves if x.requires_grad] + params
                grads = torch.autograd.grad(total, wrt, allow_unused=True, retain_graph=True)
                if not any(_nonfinite(g) for g in grads):
                    continue
                live = [i for i in ids if inter[i].requires_grad]
                arriving = dict(zip(live, torch.autograd.grad(total, [inter[i] for i in live], allow_unused=True, retain_graph=True)))
                by_input = dict(zip(program.inputs, leaves))
                for i in live:
                    g = arriving[i]
                    args = [t for a in program.nodes[i].args if a is not None for t in [inter.get(a, by_input.get(a))] if t is not None and t.requires_grad]
                    if i in found or g is None or _nonfinite(g) or not args:
                        continue
                    vjp = torch.autograd.grad(inter[i], args, grad_outputs=g, allow_unused=True, retain_graph=True)
                    if any(_nonfinite(v) for v in vjp):
                        found[i] = f"{text}: outputs finite, gradient {'NaN' if any(v is not None and torch.isnan(v).any() for v in vjp) else 'inf'} from this node's derivative"
        except Exception:  # an input the model rejects, or an op autograd cannot differentiate
            continue
    return found


def _output_effect(program, i, input_sets) -> float | None:
    """Bits of error the outputs lose because of node `i` (max over outputs and sets): outputs vs
    a float64 run, with and without node i's value replaced by its float64 value."""
    from hnfc.ir.program import Builder
    from hnfc.numerics.metric import bits_error
    from hnfc.runtime.lowering import lower
    from hnfc.runtime.run import flat as flat_program

    outs = list(program.outputs)
    f64 = {j: "f64" for j, n in enumerate(program.nodes) if _is_float(n.type) and n.opdef.kind != "leaf"}
    wide = lower(flat_program(program, outs + [i]), dtypes=f64)
    plain = lower(flat_program(program, outs))
    b, remap = Builder(), {}
    for j, n in enumerate(program.nodes):
        if j == i:
            remap[j] = b.input("__hnfc_exact", n.type)
        else:
            remap[j] = b.add(n.op, [None if a is None else remap[a] for a in n.args], n.attr, n.type)
    injected = b.build([remap[o] for o in outs], program.params, {k: v for k, v in program.meta.items() if k not in ("in_spec", "out_spec")})
    fed = lower(injected)
    order = [remap[j] if j != i else None for j in program.inputs]
    best = 0.0
    with torch.no_grad():
        for xs in input_sets:
            ref = list(wide(*xs))
            exact_i = ref[-1].to(to_torch(program.nodes[i].type.dtype))
            got = list(plain(*xs))
            pos = {vid: k for k, vid in enumerate(injected.inputs)}
            args: list[Any] = [None] * len(injected.inputs)
            for x, j in zip(xs, order):
                args[pos[j]] = x
            args[pos[remap[i]]] = exact_i
            fixed = list(fed(*args))
            for o, g, fx_, r in zip(outs, got, fixed, ref[:-1]):
                if not g.is_floating_point():
                    continue
                before = float(bits_error(g, r.double()).mean())
                after = float(bits_error(fx_, r.double()).mean())
                best = max(best, before - after)
    return best



# -- lint -------------------------------------------------------------------------------------------------------------------------


def lint(model_or_fn, example_inputs, *, input_ranges: Mapping | None = None, rules: Iterable | None = None,
         max_bits: float = 8.0, strict: bool = False, backward: bool = True, measure_effect: bool = True, **options) -> LintResult:
    """Find the nodes of `model_or_fn` that go wrong numerically (see the module doc); changes nothing."""
    import time

    from hnfc import analysis
    from hnfc.foundation.config import Config
    from hnfc.frontend.contract import check_examples
    from hnfc.frontend.tracing import trace
    from hnfc.rewrites.gate import checked
    from hnfc.ir.expr import format_expr
    from hnfc.pipeline import _input_positions, find_rewrites
    from hnfc.runtime import verification_inputs
    from hnfc.runtime.lowering import lower
    from hnfc.runtime.run import flat as flat_program, input_domains

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    config = Config.from_options(options)
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    check_examples(example_inputs)
    rules = checked(rules, trust=config.trust_rules) if rules is not None else None  # unsound user rules: an error
    program = trace(model_or_fn, tuple(example_inputs))
    if "verify" not in options and len(program.nodes) > VERIFY_NODES:
        # verifying each rewrite against mpmath costs minutes on a transformer (whole weight
        # matrices go through the reference); lint then lists the rewrites as unverified candidates
        config = dataclasses.replace(config, verify=False, measure_outputs=False, samples=config.samples if "samples" in options else min(config.samples, 1))
    flat = list(torch.utils._pytree.tree_leaves(list(example_inputs)))
    ranges_in = _input_positions(program, input_ranges)
    sets = verification_inputs(program, flat, ranges_in, config)
    times["trace"] = time.perf_counter() - t0
    # Sound ranges: inputs without a declared range take their observed span (the example is the
    # only domain the user gave); everything else is propagated, never narrowed by observation.
    # (Whether the example and sampled inputs reach a hazard is checked by running them: triggers.)
    obs_inputs = _input_spans(program, sets)
    sound = analysis.ranges(program, ranges_in, observed=obs_inputs, margin=config.margin)
    t1 = time.perf_counter()
    # The rewrites are searched and judged on the same sound ranges (the optimizer's observation
    # pass, every intermediate as an output on every input set, and its later stages would only
    # cost time: on GPT-2 small they are most of it)
    try:
        report = find_rewrites(program, flat, sets, sound, input_ranges=ranges_in, rules=rules, config=config)
    except Exception as e:  # noqa: BLE001 -- the fixes are an extra: hazards are found without them
        from hnfc.report.records import Report

        report = Report(nodes_before=len(program.nodes))
        report.warnings.append(f"the rewrite search failed ({type(e).__name__}: {str(e)[:200]}): findings come without hnfc's fixes")
    times["optimize"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    times["ranges"] = t1 - t0 - times["trace"]

    sources = dict(program.meta.get("sources", {}))
    fixes: dict[int, Any] = {}
    kinds: dict[int, str] = {}
    for kind, found in (("candidate", getattr(report, "rewrites_refused", ())), ("fixable" if config.verify else "candidate", report.rewrites)):
        for rw in found:
            kinds[id(rw)] = kind
            for v in rw.values:
                fixes[v] = rw

    def expr(i):
        return format_expr(program, i, depth=3)

    findings: list[Finding] = []
    seen_fix: set[int] = set()
    hazard_at: set[int] = set()
    unknown = _unknown_values(program, sound)
    for i, op, cond, bits, reason in analysis.explain(program, sound):
        # an op without a range rule has the whole line as its range: that is "unknown" (below), not an overflow
        # (and an overflow of a range that is infinite only because an argument is unknown is
        # unknown too: reported where it meets a pole)
        hazard = reason.startswith("hazard:") and program.nodes[i].opdef.interval is not None
        if hazard and "overflow" in reason and any(a is not None and (unknown[a] or sound[a].is_whole) for a in program.nodes[i].args):
            hazard = False
            reason = ""
        rw = fixes.get(i)
        if hazard:
            hazard_at.add(i)
            observed_too = False  # set below when the example or a sampled input triggers it
            why = reason
            fix = f"{rw.before}  ->  {rw.after}" if rw is not None else _fix_text(op, "hazard", reason)
            if rw is not None:
                seen_fix.add(id(rw))
            findings.append(Finding("hazard", i, op, bits, why, expr(i), fix, tuple(rw.rules) if rw else (), sources.get(i), observed=observed_too))
        elif rw is not None:
            seen_fix.add(id(rw))
            findings.append(Finding(kinds[id(rw)], i, op, bits, _why(reason, rw), expr(i), f"{rw.before}  ->  {rw.after}", tuple(rw.rules), sources.get(i)))
        elif bits > max_bits:
            findings.append(Finding("ill-conditioned", i, op, bits, reason, expr(i), _fix_text(op, "ill-conditioned", reason), source=sources.get(i)))
    for rw in [*report.rewrites, *getattr(report, "rewrites_refused", ())]:  # nodes the cost model did not itemize
        if id(rw) not in seen_fix and rw.values:
            v = rw.values[-1]
            findings.append(Finding(kinds[id(rw)], v, program.nodes[v].op, 0.0, _why("", rw), expr(v), f"{rw.before}  ->  {rw.after}", tuple(rw.rules), sources.get(v)))

    live = sorted(ancestors(program, program.outputs))
    # constants that do not fit their dtype
    for i in live:
        issue = _constant_issue(program.nodes[i])
        if issue is not None and i not in hazard_at:
            users = [u for u in live if i in program.nodes[u].args]
            at = users[0] if users else i
            hazard_at.add(i)
            findings.append(Finding("hazard", i, program.nodes[i].op, analysis.HAZARD_BITS, issue, expr(at), _fix_text("const", "hazard", issue), source=sources.get(at) or sources.get(i)))
    # unknown values reaching a pole
    for i in live:
        n = program.nodes[i]
        if n.op == "pow" and float(n.attr.get("exponent", 2.0)) >= 0 and float(n.attr.get("exponent", 2.0)).is_integer():
            continue  # a non-negative integer power has no pole
        for pos in _SINGULAR_CONSUMERS.get(n.op, ()):
            if pos < len(n.args) and n.args[pos] is not None and unknown[n.args[pos]] and i not in hazard_at and not _pole_excluded(program, i, unknown, sound):
                src = program.nodes[n.args[pos]]
                what = src.attr.get("target", src.op) if src.op == "opaque" else src.op
                findings.append(Finding("unknown", i, n.op, 0.0, f"argument {pos} comes from {what}, whose range is unknown (an op without a range rule on the way): nothing shows {n.op} stays away from its pole/overflow",
                                        expr(i), _fix_text(n.op, "unknown", ""), source=sources.get(i)))
                hazard_at.add(i)
                break
    # derivative hazards, at nodes gradients reach
    if backward:
        reach = _grad_reach(program)
        for i in live:
            if i in hazard_at or not reach[i]:
                continue
            g = _grad_hazard(program, i, sound)
            if g is not None:
                findings.append(Finding("grad-hazard", i, program.nodes[i].op, analysis.HAZARD_BITS, g, expr(i), _fix_text(program.nodes[i].op, "grad-hazard", g), source=sources.get(i)))

    # an infinity a hazard meets is usually written by the user (a mask of -inf, -float("-inf")):
    # name where
    findings = [_with_origin(program, f, sources) if f.kind == "hazard" and "inf" in f.reason and f.op not in ("const", "full") else f for f in findings]

    # triggers (checked by running) and effects on the outputs
    domains = input_domains(program, flat, ranges_in)
    cands = _candidates(program, flat, domains, sets)
    t3 = time.perf_counter()
    need = [f for f in findings if f.kind in ("hazard", "unknown")]
    if need:
        ids = sorted({f.value for f in need})
        try:
            run_nodes = lower(flat_program(program, ids))
            trig = _forward_triggers(lambda xs: list(run_nodes(*xs)), ids, cands)
            sampled = {i for i, text in trig.items() if text.startswith(("the example", "sampled"))}
            findings = [dataclasses.replace(f, trigger=trig.get(f.value), observed=f.value in sampled,
                                            reason=f.reason if f.value in sampled or f.kind != "hazard" else f.reason + " (beyond the example and sampled inputs: at the declared range's edge)")
                        if f.kind in ("hazard", "unknown") else f for f in findings]
        except Exception:  # running is for the explanation; the finding stands without it
            pass
    if any(f.kind == "grad-hazard" for f in findings):
        try:
            lowered = lower(flat_program(program))
            params = [p for p in lowered.parameters() if p.requires_grad]
            trig = _backward_trigger(lowered, cands, params)
            findings = [dataclasses.replace(f, trigger=trig) if f.kind == "grad-hazard" else f for f in findings]
        except Exception:
            pass
    if backward and len(program.nodes) <= VERIFY_NODES:  # the real backward, run (one pass per input set; small programs)
        try:
            culprits = _backward_culprits(program, cands[:5])  # the bounds, 0, alternating, the example: where derivatives blow up
        except Exception:
            culprits = {}
        have = {f.value: k for k, f in enumerate(findings) if f.kind in ("hazard", "grad-hazard", "unknown")}
        for i, text in sorted(culprits.items()):
            if i in have:
                f = findings[have[i]]
                if f.kind == "grad-hazard" and f.trigger is None:
                    findings[have[i]] = dataclasses.replace(f, trigger=text)
                continue
            op = program.nodes[i].op
            why = f"the derivative of {op} is not finite on a tried input where the forward is (found by running the backward)"
            findings.append(Finding("grad-hazard", i, op, analysis.HAZARD_BITS, why, expr(i), _fix_text(op, "grad-hazard", why), source=sources.get(i), trigger=text, observed=True))
    times["triggers"] = time.perf_counter() - t3
    if measure_effect:
        # only where it decides a failure: candidates and ill-conditioned nodes are notes unless strict
        judged = [f for f in findings if f.kind in (("fixable", "candidate", "ill-conditioned") if strict else ("fixable",)) and f.bits > max_bits][:12]
        for f in judged:
            try:
                eff = _output_effect(program, f.value, sets)
            except Exception:
                continue
            k = findings.index(f)
            note = f"; fixing it changes the outputs by {eff:.2f} bits" + (" (absorbed: a note)" if eff < ABSORBED_BITS else "")
            findings[k] = dataclasses.replace(f, effect=eff, reason=f.reason + note)
    findings.sort(key=lambda f: (ORDER[f.kind], -f.bits, f.value))
    times["lint"] = time.perf_counter() - t2
    return LintResult(findings, float(max_bits), strict, report, times)


def _with_origin(program, f: Finding, sources) -> Finding:
    """`f` with the nearest infinite constant upstream of its node named (origin, reason)."""
    seen, todo = set(), [f.value]
    while todo:
        i = todo.pop(0)
        if i in seen:
            continue
        seen.add(i)
        n = program.nodes[i]
        v = n.attr.get("value") if n.op in ("const", "full") else None
        if isinstance(v, float) and math.isinf(v) and i != f.value:
            where = sources.get(i) or next((sources[u] for u in sorted(seen) if u in sources and i in program.nodes[u].args), None)
            return dataclasses.replace(f, origin=where, reason=f.reason + f"; the {v:+g} is written at {where or 'a constant'}")
        todo.extend(a for a in n.args if a is not None)
    return f


__all__ = ["Finding", "LintResult", "lint"]
