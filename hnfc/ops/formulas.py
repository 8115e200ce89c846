"""Range and cost formulas of the op table, shared part: interval transfer functions, condition numbers, hazards.

Each op entry names its bundle (`**pointwise_bounds.EXP`, from the `*_bounds.py` module beside its
family), which fills three optional `OpDef` fields:

- `interval(args, attrs, out_type, arg_types) -> Interval`: encloses every element's exact real
  value (the op's `ref`, NaN excluded) when every argument element lies in its interval.
  `args` holds an `Interval` per argument (callers pass the whole line for unknown ones) and None
  for an omitted optional argument; `arg_types` the arguments' TensorTypes (None when unknown:
  reductions then fall back to sign-only bounds).
- `cond(args, attrs, out, out_type, arg_types, wrt=None) -> float`: the first-order relative
  condition number Σᵢ |uᵢ ∂f/∂uᵢ| / |f|, bounded over the input box (sup), ≥ 0, possibly inf.
  `out` is the output interval (the caller's, which may be tighter than `interval`'s: observed
  ranges, e-class intersection). `wrt`, when given, is the set of argument positions whose errors
  count (the others are exact); ops of one rounding use it, others sum over every argument.
- `hazard(args, attrs, out_type, arg_types) -> str | None`: why the op can produce NaN or ±inf
  from finite arguments (log of ≤ 0, division by an interval holding 0, ...), else None. `args`
  are then the arguments as their dtype holds them (`Interval.in_dtype`: underflow reads as 0).
  An argument whose interval is the whole line is unknown, not a hazard.

Formulas (per op; "mag"/"mig" = max/min |x| over an interval, out = the output interval):

    a ± b        (|a|+|b|)/|a±b| ≤ (mag a + mag b)/mig out; 1 without cancellation (same signs);
                 with opposite signs also ≤ 1 + 2·min(mag a, mag b)/mig out
    a·b, a/b     1 per argument whose error counts (sum: 2): the relative errors of factors add
    exp x        mag x          log x   1/min|log x|      log1p x  |x/((1+x) log1p x)| at lo
    expm1 x      |x eˣ/expm1 x|, increasing: at hi       sqrt, rsqrt ½      xᵖ |p|
    sin, cos     |x cot x|, |x tan x|: endpoints (valley-shaped between poles), inf across a pole
    sinh, cosh   |x coth x|, |x tanh x|: increasing in |x|, at mag x     hypot  1 (x²/h² + y²/h²)
    tanh         2m/sinh 2m at m = mig x      erf  2m e^(-m²)/(√π erf m) at mig    sigmoid |x|σ(-x)
    softplus     |t σ(t)/softplus t|, t = βx  logsigmoid |x σ(-x)/log σ(x)|   gelu |1 + xφ(x)/Φ(x)|;
                 approximate='tanh' also e^(2|z|) at the lowest z: torch's kernel cancels in 1 + tanh z
    sum, mean    1 for sign-definite x, else n·mag x/mig out (mean: mag x/mig out); see "Sign changes"
    var          2·rms(x)/σ (Cauchy–Schwarz) ≤ 2 mag x/√(lo(out)·(n-c)/n);  std: half of var's
    logsumexp    Σpᵢ|xᵢ|/|lse| ≤ mag x/mig out
    softmax      |xᵢ|(1-pᵢ) + Σⱼ≠ᵢ|xⱼ|pⱼ ≤ 2 mag x (1 - lo out)
    log_softmax  the math ≤ 2 mag x; torch's kernel (xᵢ - m) - log Σ cancels where yᵢ ≈ 0:
                 max(2 mag x, (width x + log n)/mig out)
    layer_norm   heuristic, not a bound: the x - mean cancellation measured against the row's
                 spread, estimated as half x's width (floored at √eps): 1 + 2 mag x/spread, times
                 the bias add's cond for ŷ·w + b (the affine costs what the separate ops cost)
    rms_norm     1 + ms/(ms+eps) ≤ 2, +1 for w's own error (none when w is exact, as for a mul)
    batch_norm   1 + (mag x + mag mean)/√(lo var + eps) + ½ (+1 for w): x - mean against the
                 normalized scale (running var is known, so this one is a bound per element scale)
    matmul       per factor: Σ|aᵢbᵢ|/|Σaᵢbᵢ| ≤ k·mag a·mag b/mig out (1 when products are sign-definite)
    sdpa         convex combination of v rows: (1 or mag v/mig out) + 2·L·width(v)/mig out,
                 L = |scale|·d·mag q·mag k bounds the logits
    shape ops, to, detach, where, max/min/clamp/relu/abs/neg: 1 (no new rounding: 0 bits)

Sign changes. Where the result interval changes sign inside the box (lo < 0 < hi, finite) the sup
of Σ|terms|/|result| is infinite at the root, but a root that is crossed (not approached from one
side) is met only on a thin set of inputs, and no rewrite removes it: the relative error there is
a property of the data (normwise error is the meaningful measure). So add/sub with a term that
changes sign, sum, mean, matmul/addmm/linear and sdpa divide by the result's typical magnitude,
exp E ln|v| for v uniform on the result interval (`_typical_mag`: mean bits lost are E log2 cond),
and take each |term| at its mean E|v| (a sum of many |terms| concentrates at count × mean); layer
norm's x - mean likewise. This is an estimate, not a bound. Kept at the sup: a ± b of two
sign-definite terms of opposite signs (exp(x) - exp(-x), E[x²] - E[x]², sqrt(x+1) - sqrt(x): the
terms coincide where they cancel, on whole neighbourhoods, and rewrites exist), results that reach
0 from one side ([0, h]: 1 - σ(z)), unknown (infinite) ranges, and the log family.

The cost model (hnfc.analysis.curvature) charges log2(cond) bits. Pointwise ops and the few in
curvature.ONE_ROUNDING (to, amax, amin, var, std, rms_norm: kernels accurate on exact inputs) cost
nothing when all their arguments are exact; the others round many times internally (a sum's
partial sums, softmax's x - max), so their cond applies to their own rounding errors too.
Products: δ(ab) = δa + δb to first order, so the sum over arguments (2) is the amplification:
about 1 bit for a product of two inexact factors, 0 when one factor is exact.

This module sits in the op table layer: it imports only hnfc.foundation.intervals (a leaf) and
hnfc.ops.core; no torch.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from hnfc.foundation.intervals import INF, TRANS_ULPS, Interval, down, mul_down, mul_up, up
from hnfc.ops.core import norm_dims

SQRT2 = math.sqrt(2.0)
SQRT2PI = math.sqrt(2.0 * math.pi)
TWO_PI = 2.0 * math.pi
COMPOUND_ULPS = 8  # a formula of a few libm calls and float operations

# -- safe scalar functions (defined at ±inf, no OverflowError) ---------------------------------------


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return INF


def _expm1(x: float) -> float:
    try:
        return math.expm1(x)
    except OverflowError:
        return INF


def _log(x: float) -> float:
    return -INF if x == 0 else math.log(x)


def _log1p(x: float) -> float:
    return -INF if x == -1 else math.log1p(x)


def _log2(x: float) -> float:
    return -INF if x == 0 else math.log2(x)


def _rsqrt(x: float) -> float:
    if x == 0:
        return INF
    return 1.0 / math.sqrt(x)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + _exp(-x))
    e = _exp(x)
    return e / (1.0 + e)


def _softplus(t: float) -> float:
    if t == INF:
        return INF
    if t == -INF:
        return 0.0
    return max(t, 0.0) + math.log1p(_exp(-abs(t)))


def _logsigmoid(x: float) -> float:
    return -_softplus(-x)


def _gelu(x: float) -> float:
    if x == -INF:
        return 0.0
    if x == INF:
        return INF
    return x * math.erfc(-x / SQRT2) / 2


def _silu(x: float) -> float:
    if x == -INF:
        return 0.0
    return x if x == INF else x * _sigmoid(x)


_GELU_K = math.sqrt(2.0 / math.pi)


def _gelu_tanh(x: float) -> float:
    # x/2 (1 + tanh z) = x σ(2z): no cancellation for negative x
    if x == -INF:
        return 0.0
    if x == INF:
        return INF
    try:
        z = _GELU_K * (x + 0.044715 * x**3)
    except OverflowError:
        z = math.copysign(INF, x)
    return x * _sigmoid(2 * z)


def _pow(x: float, p: float) -> float:
    """x ** p for the reference's cases (x >= 0 or integer p), with 0 ** negative = inf."""
    if x == 0:
        return INF if p < 0 else (0.0 if p > 0 else 1.0)  # as r_pow: 0 ** negative = +inf
    try:
        return math.pow(x, p)
    except OverflowError:
        if x < 0 and float(p).is_integer() and int(p) % 2:
            return -INF
        return INF
    except ValueError:
        return math.nan


def _ratio(num: float, den: float) -> float:
    """num / den for condition numbers: 0 when nothing can be amplified, inf when den reaches 0."""
    if num == 0:
        return 0.0
    if den == 0 or math.isinf(num):
        return INF
    return num / den


def _typical_mag(x: Interval) -> float:
    """exp(E ln|v|) for v uniform on a finite x: the geometric-mean magnitude (0 for [0, 0])."""
    lo, hi = x.lo, x.hi
    if hi <= lo:
        return abs(lo)

    def integral(v: float) -> float:  # ∫_0^v ln t dt, v ≥ 0
        return 0.0 if v == 0 else v * (math.log(v) - 1.0)

    if lo >= 0:
        total = integral(hi) - integral(lo)
    elif hi <= 0:
        total = integral(-lo) - integral(-hi)
    else:
        total = integral(-lo) + integral(hi)
    return math.exp(total / (hi - lo))


def _mean_mag(x: Interval) -> float:
    """E|v| for v uniform on a finite x (mag when x is infinite)."""
    if not x.is_finite:
        return x.mag
    if x.lo < 0 < x.hi:
        return (x.lo * x.lo + x.hi * x.hi) / (2 * (x.hi - x.lo))
    return (abs(x.lo) + abs(x.hi)) / 2


def _changes_sign(r: Interval | None) -> bool:
    """Whether a finite r changes sign inside (the typical-magnitude case of _result_mag)."""
    return r is not None and r.lo < 0 < r.hi and r.is_finite


def _term_mag(x: Interval, typical: bool) -> float:
    """|term| in the numerator Σ|terms|: its max, or, where the result's typical magnitude is the
    denominator, its mean (a sum of many |terms| concentrates at the count times the mean)."""
    return _mean_mag(x) if typical else x.mag


def _result_mag(r: Interval) -> float:
    """The |result| a relative condition number Σ|terms|/|result| divides by (see the module doc,
    "Sign changes"): the least |value| (mig) of a sign-definite result; the typical |value| of a
    finite result that changes sign inside the box, where only a thin set of inputs comes near
    the root."""
    if _changes_sign(r):
        return _typical_mag(r)
    return r.mig


# -- interval helpers --------------------------------------------------------------------------


def _iv(lo: float, hi: float, ulps: int = TRANS_ULPS, clip: tuple[float, float] = (-INF, INF)) -> Interval:
    """[lo, hi] widened `ulps` outward and clipped to a known codomain."""
    lo = max(down(lo, ulps), clip[0])
    hi = min(up(hi, ulps), clip[1])
    return Interval(lo, max(lo, hi))


def _rel_down(v: float, k: float) -> float:
    """v lowered by k ulps relative to |v| (k may be large: the error of an inexact exp argument)."""
    return down(v - abs(v) * k * 2.0**-52, 2) if math.isfinite(v) else v


def _rel_up(v: float, k: float) -> float:
    return up(v + abs(v) * k * 2.0**-52, 2) if math.isfinite(v) else v


def _inc(fn: Callable[[float], float], x: Interval, *, ulps=TRANS_ULPS, clip=(-INF, INF), zero_at=None) -> Interval:
    """Image of x under an increasing fn; `zero_at`: fn vanishes there, so signs carry over."""
    out = _iv(fn(x.lo), fn(x.hi), ulps, clip)
    lo, hi = out.lo, out.hi
    if zero_at is not None:
        if x.lo >= zero_at:
            lo = max(lo, 0.0)
        if x.hi <= zero_at:
            hi = min(hi, 0.0)
    return Interval(lo, max(lo, hi))


def _dec(fn: Callable[[float], float], x: Interval, *, ulps=TRANS_ULPS, clip=(-INF, INF)) -> Interval:
    return _iv(fn(x.hi), fn(x.lo), ulps, clip)


def _nonneg_part(x: Interval) -> Interval | None:
    """x ∩ [0, inf) (the domain of sqrt and fractional powers), None when empty."""
    if x.hi < 0:
        return None
    return Interval(max(x.lo, 0.0), x.hi)


def _count(t: Any, dim) -> int | None:
    """Number of elements a reduction over `dim` combines, None when unknown or symbolic."""
    if t is None or not hasattr(t, "shape"):
        return None
    axes = norm_dims(dim, t.rank)
    n = 1
    for i in axes:
        d = t.shape[i]
        if not isinstance(d, int):
            return None
        n *= d
    return n


def _prod(shape) -> int | None:
    n = 1
    for d in shape:
        if not isinstance(d, int):
            return None
        n *= d
    return n


def _ts(ts, i):
    return ts[i] if ts is not None and i < len(ts) else None


def _scale_count(n: int | None, x: Interval) -> Interval:
    """{Σ of n values in x}: [n·lo, n·hi]; sign-only when n is unknown."""
    if n is None:
        return Interval(0.0 if x.lo >= 0 else -INF, 0.0 if x.hi <= 0 else INF)
    return Interval(mul_down(float(n), x.lo), mul_up(float(n), x.hi))


def _bundle(interval=None, cond=None, hazard=None) -> dict:
    return {"interval": interval, "cond": cond, "hazard": hazard}


def _one(*_a, **_k) -> float:
    return 1.0


def _zero(*_a, **_k) -> float:
    return 0.0


def _identity(a, at, t, ts) -> Interval:
    return a[0]


def _whole(a, at, t, ts) -> Interval:
    return Interval.whole()


def _unknown(x: Interval | None) -> bool:
    return x is None or x.is_whole


