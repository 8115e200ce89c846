"""Range analysis over IR programs: an `Interval` per value.

In: a `Program`, declared input ranges, observed ranges. Out: `ranges(...)`, a list with one
`Interval` per value id; `interval_of_node(...)` for one node (the e-graph calls it per e-node);
`sample_ranges(...)`, observed ranges of a small program on inputs sampled from declared domains.

Where ranges come from:

- inputs: `input_ranges` (by input position or name; sound, they are the domain the user
  promises), else `observed` (widened by `margin`), else everything their dtype holds;
- parameters: their actual values (min and max of the tensor in `program.params`);
- every other value: its op's interval transfer function (`OpDef.interval`) applied to its
  arguments' intervals (sound), then, where an observed range is given for it, narrowed to the
  widened observed range. Observed ranges are not sound (they are measured on a few inputs), so
  this is a policy, not a proof: an observed range replaces the propagated one where the
  propagated one is wider, bound by bound, as calibration does in quantization tools. Pure
  propagation is sound but loses correlations (`sqrt(x+1) - sqrt(x)` on [1, 1e6] propagates to
  an interval holding 0; the true values lie in [5e-4, 0.42]) and blows up through deep networks;
  observations keep it honest. Observations must cover the declared domain (sample it, extremes
  included, as `sample_ranges` and verification inputs do) or they hide what the domain reaches
  (an exp that overflows only at the domain's edge). If an observation misses the propagated
  interval altogether, the propagated one is kept.

`widen_observed` widens an observed (lo, hi) by `margin` times its width (times its magnitude
when the width is 0), never across 0: a bound that would cross 0 is divided by (1 + margin)
instead (a positive range stays positive, at the same scale), and a bound at 0 stays at 0.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from hnfc import ops
from hnfc.foundation.intervals import INF, Interval, dtype_range
from hnfc.foundation.dtypes import DTYPES
from hnfc.ops.core import OpDef, full_attrs
from hnfc.foundation.types import TensorType


def interval_of_node(op: str | OpDef, arg_intervals: Sequence, attrs: Mapping | None, out_type: Any, arg_types: Sequence | None = None) -> Interval:
    """The interval of one node's value from its arguments' intervals.

    `arg_intervals`: an Interval (or (lo, hi)) per argument; None at an optional position means
    the argument is omitted, None elsewhere means unknown (the whole line). Pass Interval.whole()
    for a present optional argument whose range is unknown. `arg_types` (TensorTypes) give
    reductions their element counts and products their contracted size; without them those
    ops fall back to sign-only bounds. Ops without a transfer function give the whole line.
    """
    opdef = op if isinstance(op, OpDef) else ops.get(op)
    if opdef.interval is None or not isinstance(out_type, (TensorType, type(None))):
        return Interval.whole()
    at = full_attrs(opdef, attrs or {})
    args = _args(opdef, arg_intervals)
    ts = list(arg_types) if arg_types is not None else [None] * len(args)
    iv = opdef.interval(args, at, out_type, ts)
    if iv is None:
        return Interval.whole()
    if isinstance(out_type, TensorType) and out_type.dtype == "bool":
        iv = iv.intersect(Interval(0.0, 1.0)) or Interval(0.0, 1.0)
    return iv


def _args(opdef: OpDef, arg_intervals: Sequence) -> list[Interval | None]:
    out: list[Interval | None] = []
    for i, a in enumerate(arg_intervals):
        if a is None:
            out.append(None if i in opdef.optional else Interval.whole())
        else:
            out.append(Interval.of(a))
    return out


def widen_observed(observed: Any, margin: float = 0.1) -> Interval | None:
    """An observed (lo, hi) widened by `margin` (see the module doc); None when it is NaN."""
    if isinstance(observed, Interval):
        lo, hi = observed.lo, observed.hi
    else:
        lo, hi = float(observed[0]), float(observed[1])
    if lo != lo or hi != hi or lo > hi:
        return None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Interval(lo, hi)  # an infinite bound (a -inf mask, say) is as wide as it gets
    w = hi - lo
    d = margin * (w if w > 0 else max(abs(lo), abs(hi)))
    nlo, nhi = lo - d, hi + d
    if lo > 0 and nlo <= 0:
        nlo = lo / (1 + margin)
    elif lo == 0:
        nlo = 0.0
    if hi < 0 and nhi >= 0:
        nhi = hi / (1 + margin)
    elif hi == 0:
        nhi = 0.0
    return Interval(min(nlo, lo), max(nhi, hi))


def _tighten(propagated: Interval, observed: Interval) -> Interval:
    # An infinite observed bound is the float program's overflow, not the real value's range
    # (x*y observed at +inf is 1e400 in the reals): it narrows nothing. Keeping it would give the
    # value's e-class the range [inf, inf], and every equivalent form of it the same hazard.
    # Likewise a value observed only as 0 where the propagated range is not just 0 is an
    # underflow (e^-1000 is 0 in float32, not in the reals): it may not become a bound.
    zero = observed.lo == 0 and observed.hi == 0
    olo = -INF if observed.lo in (INF, -INF) or (zero and propagated.lo < 0) else observed.lo
    ohi = INF if observed.hi in (INF, -INF) or (zero and propagated.hi > 0) else observed.hi
    lo, hi = max(propagated.lo, olo), min(propagated.hi, ohi)
    return Interval(lo, hi) if lo <= hi else propagated


def param_interval(value: Any) -> Interval | None:
    """[min, max] of a parameter's value (one pass); None when empty, non-numeric or holding NaN."""
    if value is None:
        return None
    try:
        if hasattr(value, "aminmax"):  # a torch tensor (no torch import needed): one pass over it
            lo, hi = (float(v) for v in value.detach().aminmax())
        else:
            value = value if hasattr(value, "min") else np.asarray(value, dtype=float)
            lo, hi = float(value.min()), float(value.max())
    except (ValueError, RuntimeError, TypeError):  # empty or non-numeric
        return None
    if lo != lo or hi != hi:
        return None
    return Interval(lo, hi)


def _declared(program, input_ranges) -> dict[int, Interval]:
    """Declared input ranges by value id; keys are input positions or names."""
    if not input_ranges:
        return {}
    inputs = program.inputs
    names = program.input_names
    items = enumerate(input_ranges) if isinstance(input_ranges, (list, tuple)) else input_ranges.items()
    out: dict[int, Interval] = {}
    for key, rng in items:
        if rng is None:
            continue
        if isinstance(key, str):
            if key not in names:
                raise ValueError(f"input_ranges: no input named {key!r} (inputs: {list(names)})")
            pos = names.index(key)
        else:
            pos = int(key)
            if not 0 <= pos < len(inputs):
                raise ValueError(f"input_ranges: no input at position {key} (the program has {len(inputs)})")
        out[inputs[pos]] = Interval.of(rng)
    return out


def ranges(program, input_ranges: Mapping | Sequence | None = None, *, observed: Mapping[int, Any] | None = None, margin: float = 0.1,
           params: Mapping[str, Interval | None] | None = None) -> list[Interval]:
    """An Interval per value id of `program` (see the module doc for the sources and policy).

    `input_ranges`: input position or name -> (lo, hi) (or a list by position). `observed`: value
    id -> (lo, hi) measured on inputs, widened by `margin` before use. `params`: `param_interval`
    of parameters by name, where the caller has it already (a pass over a large embedding costs).
    """
    declared = _declared(program, input_ranges)
    obs: dict[int, Interval] = {}
    for vid, rng in (observed or {}).items():
        w = widen_observed(rng, margin)
        if w is not None:
            obs[int(vid)] = w
    out: list[Interval] = []
    # Values computed from an observed overflow (±inf where the propagated range is not just ±inf)
    # were not observed on the real function: their observations narrow nothing.
    broken: set[int] = set()
    for i, n in enumerate(program.nodes):
        t = n.type
        if not isinstance(t, TensorType):
            out.append(Interval.whole())
            continue
        if n.op == "input":
            iv = declared.get(i) or obs.get(i) or dtype_range(t.dtype)
        elif n.op == "param":
            name = n.attr["name"]
            known = params.get(name, False) if params is not None else False
            iv = (param_interval(program.params.get(name)) if known is False else known) or obs.get(i) or dtype_range(t.dtype)
        else:
            args = [None if a is None else out[a] for a in n.args]
            arg_types = [None if a is None else program.nodes[a].type for a in n.args]
            if n.op == "mul" and len(n.args) == 2 and n.args[0] == n.args[1]:
                # x * x is a square (>= 0), which independent operands would not show
                iv = interval_of_node("pow", args[:1], {"exponent": 2.0}, t, arg_types[:1])
            else:
                iv = interval_of_node(n.opdef, args, n.attr, t, arg_types)
            if _divides_by_own_norm(program, n) or _divides_by_own_max(program, n):
                iv = iv.intersect(Interval(-1.0, 1.0)) or iv  # |a_i| <= ||a||: F.normalize's x / max(||x||, eps)
            floor = _floor(program, n)
            if floor is not None and args[1] is not None and args[2] is not None:
                iv = floored_where(args[1], args[2], floor)
            rms = _own_rms_bound(program, n, out)
            if rms is not None:
                iv = iv.intersect(Interval(-rms, rms)) or iv  # a_i² <= n·mean(a²): an RMS norm written out
            if any(a in broken for a in n.args if a is not None):
                broken.add(i)
            elif i in obs:
                o = obs[i]
                if (o.lo == INF or o.hi == -INF or o.hi == INF or o.lo == -INF) and not (iv.lo == iv.hi and iv.lo in (INF, -INF)):
                    broken.add(i)
                iv = _tighten(iv, o)
        out.append(iv)
    return out


def _divides_by_own_norm(program, n) -> bool:
    """`a / b` where b is a's own vector norm (keepdim, p >= 1) through expand or clamp(min >= 0):
    each |a_i| is at most the norm of the slice holding it, so the quotient lies in [-1, 1]."""
    if n.op != "div" or len(n.args) != 2 or n.args[1] is None:
        return False
    b = program.nodes[n.args[1]]
    while b.op in ("expand", "clamp"):
        if b.op == "clamp" and (b.attr.get("max") is not None or not isinstance(b.attr.get("min"), (int, float)) or b.attr["min"] < 0):
            return False
        b = program.nodes[b.args[0]]
    return b.op == "vector_norm" and b.args[0] == n.args[0] and bool(b.attr.get("keepdim")) and float(b.attr.get("ord", 2.0)) >= 1


def floored_where(a: Interval, b: Interval, c: float) -> Interval:
    """The range of where(b < c, a, b): b where it is taken is at least c (a safely scaled norm's
    divisor, never 0 or subnormal), which interval arithmetic's hull of a and b does not see."""
    return a if b.hi < c else a.hull(Interval(max(b.lo, c), b.hi))


def _floor(program, n) -> float | None:
    """c for `where(lt(b, other=c), a, b)`, else None."""
    if n.op != "where" or len(n.args) != 3 or None in n.args:
        return None
    cond = program.nodes[n.args[0]]
    return float(cond.attr["other"]) if cond.op == "lt" and cond.args[0] == n.args[2] else None


def _is_own_max(program, m: int, a: int) -> bool:
    node = program.nodes[m]
    return node.op == "amax" and bool(node.attr.get("keepdim")) and program.nodes[node.args[0]].op == "abs" and program.nodes[node.args[0]].args[0] == a


def _divides_by_own_max(program, n) -> bool:
    """`a / M` or `a / where(M < c, k, M)` with k >= c, M = amax(abs(a), keepdim): each |a_i| is at
    most M, and where M < c the quotient is a_i / k with |a_i| < c <= k (a safely scaled norm)."""
    if n.op != "div" or len(n.args) != 2 or None in n.args:
        return False
    a, d = n.args
    if _is_own_max(program, d, a):
        return True
    w = program.nodes[d]
    c = _floor(program, w)
    k = program.nodes[w.args[1]] if c is not None else None
    return k is not None and k.op == "const" and isinstance(k.attr.get("value"), (int, float)) and k.attr["value"] >= c and _is_own_max(program, w.args[2], a)


def _strip(program, i: int, ops: tuple[str, ...]) -> int:
    while program.nodes[i].op in ops and program.nodes[i].args and program.nodes[i].args[0] is not None:
        i = program.nodes[i].args[0]
    return i


def _own_rms_bound(program, n, out) -> float | None:
    """`a * rsqrt(mean(a², dims, keepdim) + c)` or `a / sqrt(mean(a², ...) + c)` with c >= 0 (an RMS
    norm written out, as LLaMA-family models do, through expand and dtype casts): each a_i² is at
    most count·mean(a²), so |result| <= sqrt(count), count the number of elements averaged. The
    bound is widened for the rounding of the mean (count·u relative, at least 1%). None when `n`
    is not of this form."""
    if len(n.args) != 2 or None in n.args or n.op not in ("mul", "div"):
        return None
    pairs = [(n.args[0], n.args[1])] if n.op == "div" else [(n.args[0], n.args[1]), (n.args[1], n.args[0])]
    root = "sqrt" if n.op == "div" else "rsqrt"
    casts = ("expand", "to")
    for a, r in pairs:
        r = _strip(program, r, casts)
        if program.nodes[r].op != root:
            continue
        y = program.nodes[_strip(program, program.nodes[r].args[0], casts)]
        if y.op != "add" or len(y.args) != 2 or None in y.args:
            continue
        for m_id, c_id in ((y.args[0], y.args[1]), (y.args[1], y.args[0])):
            m = program.nodes[_strip(program, m_id, casts)]
            if m.op != "mean" or not m.attr.get("keepdim") or out[c_id].lo < 0:
                continue
            sq = program.nodes[m.args[0]]
            if sq.op == "pow" and float(sq.attr.get("exponent", 0)) == 2.0:
                base = sq.args[0]
            elif sq.op == "mul" and len(sq.args) == 2 and sq.args[0] == sq.args[1]:
                base = sq.args[0]
            else:
                continue
            if _strip(program, base, ("to",)) != _strip(program, a, ("to",)):
                continue
            shape = getattr(program.nodes[m.args[0]].type, "shape", None)
            dims = m.attr.get("dim")
            if shape is None:
                continue
            dims = range(len(shape)) if dims is None or dims == () else [d % len(shape) for d in dims]
            sizes = [shape[d] for d in dims]
            if not all(isinstance(k, int) for k in sizes):
                continue
            count = math.prod(sizes)
            dtype = getattr(m.type, "dtype", "f32")
            u = DTYPES[dtype].eps if dtype in DTYPES and DTYPES[dtype].is_float else 2.0**-24
            return math.sqrt(max(count, 1)) * (1 + max(0.01, 4 * (count + 4) * u))
    return None


# -- sampled observation (small programs) ----------------------------------------------------------


def _sample(rng: np.random.Generator, lo: float, hi: float, size: int, batch: int) -> np.ndarray:
    """Values in [lo, hi]: the bounds (each element lo or hi at random: extremes without constant
    rows, whose variance would be 0), then half uniform and half log-uniform in magnitude."""
    if batch < 2:
        return np.where(rng.random(size) < 0.5, lo, hi)
    u = rng.uniform(lo, hi, size)
    mlo, mhi = Interval(lo, hi).mig, Interval(lo, hi).mag
    if mhi > 0 and math.isfinite(mhi):
        floor = max(mlo, mhi * 1e-30, 1e-300)
        mags = np.exp(rng.uniform(math.log(floor), math.log(mhi), size))
        if lo >= 0:
            signs = np.ones(size)
        elif hi <= 0:
            signs = -np.ones(size)
        else:
            signs = rng.choice([-1.0, 1.0], size)
        v = np.clip(signs * mags, lo, hi)
        pick = rng.random(size) < 0.5
        u = np.where(pick, v, u)
    return u


def _round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "f32":
        return values.astype(np.float32).astype(np.float64)
    if dtype == "f16":
        return values.astype(np.float16).astype(np.float64)
    if dtype == "bool":
        return (values != 0).astype(np.float64)
    if DTYPES.get(dtype) is not None and DTYPES[dtype].kind == "int":
        return np.round(values)
    return values


def sample_ranges(program, input_ranges: Mapping | Sequence, *, n: int = 512, seed: int = 0, prec: int = 53) -> dict[int, tuple[float, float]]:
    """Observed (min, max) of every value on inputs sampled from the declared ranges.

    Evaluates the op table's mpmath meanings at `prec` bits (53: float64-like), so it suits small
    programs (the stability suite, calibration); large models are observed by running them (see
    hnfc.verify.judge.observe). About `n` samples in all (batches of one program evaluation each); in
    the first two batches every input element sits at its lower or upper bound. Every input needs
    a declared range (bool inputs default to {0, 1}).
    Values downstream of ops without a reference (opaque) are not observed.
    """
    import mpmath

    from hnfc.ops.core import obj

    declared = _declared(program, input_ranges)
    for i in program.inputs:
        if i not in declared and isinstance(program.nodes[i].type, TensorType) and program.nodes[i].type.dtype == "bool":
            declared[i] = Interval(0.0, 1.0)
        if i not in declared:
            raise ValueError(f"sample_ranges: input {program.nodes[i].attr['name']!r} has no declared range")
    numel = max(1, min((program.nodes[i].type.numel for i in program.inputs), default=1))
    batches = max(2, math.ceil(n / numel))
    rng = np.random.default_rng(seed)
    lo = [math.inf] * len(program.nodes)
    hi = [-math.inf] * len(program.nodes)
    params = {}
    for i, node in enumerate(program.nodes):
        if node.op == "param" and node.attr["name"] in program.params:
            v = program.params[node.attr["name"]]
            arr = np.asarray(v.tolist() if hasattr(v, "tolist") else v, dtype=float)
            params[i] = obj(np.frompyfunc(mpmath.mpf, 1, 1)(arr)) if arr.ndim else obj(mpmath.mpf(float(arr)))
    with mpmath.workprec(prec):
        for b in range(batches):
            vals: list[Any] = [None] * len(program.nodes)
            for i, node in enumerate(program.nodes):
                t = node.type
                if node.op == "input":
                    iv = declared[i]
                    x = _round_to(_sample(rng, iv.lo, iv.hi, t.numel, b), t.dtype).reshape(t.shape)
                    vals[i] = obj(np.frompyfunc(mpmath.mpf, 1, 1)(x)) if x.ndim else obj(mpmath.mpf(float(x)))
                elif node.op == "param":
                    vals[i] = params.get(i)
                elif node.opdef.ref is None or any(a is not None and vals[a] is None for a in node.args):
                    vals[i] = None
                else:
                    args = [None if a is None else vals[a] for a in node.args]
                    vals[i] = obj(node.opdef.ref(args, node.attr, t))
                if vals[i] is None or not isinstance(t, TensorType):
                    continue
                fl = np.array([float(v) for v in np.asarray(vals[i]).flat], dtype=float)
                fl = fl[~np.isnan(fl)]
                if fl.size:
                    lo[i] = min(lo[i], float(fl.min()))
                    hi[i] = max(hi[i], float(fl.max()))
    return {i: (lo[i], hi[i]) for i in range(len(program.nodes)) if lo[i] <= hi[i]}


__all__ = ["INF", "floored_where", "interval_of_node", "param_interval", "ranges", "sample_ranges", "widen_observed"]
