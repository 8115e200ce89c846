"""Range and cost formulas of the op table: interval transfer functions, condition numbers, hazards.

Each op entry names its bundle (`**bounds.EXP`), which fills three optional `OpDef` fields:

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

This module sits in the op table layer: it imports only hnfc.analysis.intervals (a leaf) and
hnfc.ops.core; no torch.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from hnfc.dtypes import DTYPES
from hnfc.analysis.intervals import INF, TRANS_ULPS, Interval, add_down, add_up, down, hull_all, mul_down, mul_up, up
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


# -- elementwise: arithmetic -------------------------------------------------------------------


def _addsub_cond(x: Interval, y: Interval, out: Interval | None, wrt) -> float:
    """(|x|+|y|)/|x+y| over the box; y is already negated for a subtraction."""
    sel = {0, 1} if wrt is None else set(wrt)
    mx = x.mag if 0 in sel else 0.0
    my = y.mag if 1 in sel else 0.0
    if mx == 0 and my == 0:
        return 0.0
    if (x.is_nonneg and y.is_nonneg) or (x.is_nonpos and y.is_nonpos):
        return 1.0  # no cancellation: |x|+|y| = |x+y|
    r = x + y
    if out is not None:
        r = r.intersect(out) or out
    if (x.is_nonneg and y.is_nonpos) or (x.is_nonpos and y.is_nonneg):
        m = r.mig  # two sign-definite terms of opposite signs: where they coincide, all is lost
    else:
        m = _result_mag(r)  # a term changes sign: the result's root is crossed, not approached
        if _changes_sign(r):
            mx = _mean_mag(x) if 0 in sel else 0.0
            my = _mean_mag(y) if 1 in sel else 0.0
    bound = _ratio(mx + my, m)
    if (x.is_nonneg and y.is_nonpos) or (x.is_nonpos and y.is_nonneg):
        # opposite signs: |x| + |y| = 2 min(|x|,|y|) + |x+y|, and each |.| ≤ min + |x+y|
        k = 2.0 if len(sel & {0, 1}) == 2 else 1.0
        bound = min(bound, 1.0 + _ratio(k * min(x.mag, y.mag), m))
    return bound


def _cond_add(a, at, out, t, ts, wrt=None):
    return _addsub_cond(a[0], a[1], out, wrt)


def _cond_sub(a, at, out, t, ts, wrt=None):
    return _addsub_cond(a[0], -a[1], out, wrt)


def _cond_per_arg(k: int) -> Callable:
    """1 per argument whose error counts (mul, div)."""

    def cond(a, at, out, t, ts, wrt=None):
        return float(k if wrt is None else len(set(wrt) & set(range(k))))

    return cond


def _hz_div(a, at, t, ts):
    b = a[1]
    if not _unknown(b) and b.contains_zero:
        return f"division by a value in {b} (reaches 0)"
    return None


def _hz_recip(a, at, t, ts):
    x = a[0]
    if not _unknown(x) and x.contains_zero:
        return f"reciprocal of a value in {x} (reaches 0)"
    return None


ADD = _bundle(lambda a, at, t, ts: a[0] + a[1], _cond_add)
SUB = _bundle(lambda a, at, t, ts: a[0] - a[1], _cond_sub)
MUL = _bundle(lambda a, at, t, ts: a[0] * a[1], _cond_per_arg(2))
DIV = _bundle(lambda a, at, t, ts: a[0] / a[1], _cond_per_arg(2), _hz_div)
NEG = _bundle(lambda a, at, t, ts: -a[0], _one)
RECIPROCAL = _bundle(lambda a, at, t, ts: a[0].recip(), _one, _hz_recip)
ABS = _bundle(lambda a, at, t, ts: abs(a[0]), _one)
SQUARE = _bundle(lambda a, at, t, ts: a[0].sqr(), lambda a, at, out, t, ts, wrt=None: 2.0)
RELU = _bundle(lambda a, at, t, ts: a[0].clip(0.0, INF), lambda a, at, out, t, ts, wrt=None: 1.0 if a[0].hi > 0 else 0.0)


# -- pow ---------------------------------------------------------------------------------------


def _iv_pow(a, at, t, ts):
    x = a[0]
    p = float(at["exponent"])
    if p == 0:
        return Interval(1.0, 1.0)
    if p == 1:
        return x
    if p.is_integer():
        n = int(p)
        if n > 0:
            if n % 2 == 0:
                m = abs(x)
                return _iv(_pow(m.lo, p), _pow(m.hi, p), clip=(0.0, INF))
            return _inc(lambda v: _pow(v, p), x, zero_at=0.0)
        # negative integer exponent: 1 / x^|n|
        if n % 2 == 0:
            m = abs(x)
            return _iv(_pow(m.hi, p), _pow(m.lo, p), clip=(0.0, INF))
        if x.lo > 0 or x.hi < 0:
            return _iv(_pow(x.hi, p), _pow(x.lo, p), clip=(0.0, INF) if x.lo > 0 else (-INF, 0.0))
        if x.lo == 0 and x.hi == 0:
            return Interval(INF, INF)
        if x.lo == 0:
            return Interval(max(down(_pow(x.hi, p), TRANS_ULPS), 0.0), INF)
        if x.hi == 0:
            return Interval(-INF, INF)  # 1/(-0) reads as +inf in the reference, -inf in IEEE
        return Interval.whole()
    # fractional exponent: defined for x >= 0 only (NaN below)
    x = _nonneg_part(x)
    if x is None:
        return Interval.whole()
    if p > 0:
        return _inc(lambda v: _pow(v, p), x, clip=(0.0, INF))
    return _dec(lambda v: _pow(v, p), x, clip=(0.0, INF))


def _hz_pow(a, at, t, ts):
    x, p = a[0], float(at["exponent"])
    if _unknown(x):
        return None
    if p < 0 and x.contains_zero:
        return f"x^{p:g} with x in {x} (reaches 0)"
    if not p.is_integer() and x.lo < 0:
        return f"x^{p:g} with x in {x} (negative base: NaN)"
    return None


POW = _bundle(_iv_pow, lambda a, at, out, t, ts, wrt=None: abs(float(at["exponent"])), _hz_pow)


# -- exp / log family --------------------------------------------------------------------------


def _cond_expm1(a, at, out, t, ts, wrt=None):
    # h(x) = x e^x / expm1(x) = x / (1 - e^-x): increasing on R, h(0) = 1, h(-inf) = 0
    x = a[0].hi
    if x == 0:
        return 1.0
    if x == INF:
        return INF
    if x == -INF:
        return 0.0
    d = -_expm1(-x)
    return 0.0 if math.isinf(d) else x / d


def _min_abs_log(x: Interval, log=math.log) -> float:
    """min |log v| over v in x ∩ (0, inf)."""
    lo, hi = max(x.lo, 0.0), x.hi
    if hi <= 0:
        return INF
    if lo <= 1.0 <= hi:
        return 0.0
    if hi < 1.0:
        return abs(log(hi))
    return log(lo)


def _cond_log(a, at, out, t, ts, wrt=None):
    m = _min_abs_log(a[0])
    return INF if m == 0 else 1.0 / m


def _cond_log1p(a, at, out, t, ts, wrt=None):
    # g(x) = x / ((1+x) log1p x): decreasing on (-1, inf), g(0) = 1, g(-1) = inf
    x = max(a[0].lo, -1.0)
    if x == -1.0:
        return INF
    if x == 0:
        return 1.0
    if x == INF:
        return 0.0
    return abs(x / ((1.0 + x) * math.log1p(x)))


def _hz_log(edge: float, name: str):
    def hz(a, at, t, ts):
        x = a[0]
        if not _unknown(x) and x.lo <= edge:
            return f"{name} of a value in {x} (reaches {edge:g})"
        return None

    return hz


def _iv_log_like(fn, edge):
    def iv(a, at, t, ts):
        x = a[0]
        if x.hi < edge:
            return Interval.whole()  # NaN everywhere
        x = Interval(max(x.lo, edge), x.hi)
        return _inc(fn, x, zero_at=edge + 1.0)  # log and log2 vanish at 1, log1p at 0

    return iv


EXP = _bundle(lambda a, at, t, ts: _inc(_exp, a[0], clip=(0.0, INF)), lambda a, at, out, t, ts, wrt=None: a[0].mag)
EXPM1 = _bundle(lambda a, at, t, ts: _inc(_expm1, a[0], clip=(-1.0, INF), zero_at=0.0), _cond_expm1)
LOG = _bundle(_iv_log_like(_log, 0.0), _cond_log, _hz_log(0.0, "log"))
LOG2 = _bundle(_iv_log_like(_log2, 0.0), _cond_log, _hz_log(0.0, "log2"))
LOG1P = _bundle(_iv_log_like(_log1p, -1.0), _cond_log1p, _hz_log(-1.0, "log1p"))


def _iv_sqrt(a, at, t, ts):
    x = _nonneg_part(a[0])
    if x is None:
        return Interval.whole()
    return _inc(math.sqrt, x, ulps=1, clip=(0.0, INF))


def _iv_rsqrt(a, at, t, ts):
    x = _nonneg_part(a[0])
    if x is None:
        return Interval.whole()
    return _dec(_rsqrt, x, clip=(0.0, INF))


def _hz_sqrt(a, at, t, ts):
    x = a[0]
    if not _unknown(x) and x.lo < 0:
        return f"sqrt of a value in {x} (negative: NaN)"
    return None


def _hz_rsqrt(a, at, t, ts):
    x = a[0]
    if not _unknown(x) and x.lo <= 0:
        return f"rsqrt of a value in {x} (reaches 0)"
    return None


_HALF = lambda a, at, out, t, ts, wrt=None: 0.5  # noqa: E731
SQRT = _bundle(_iv_sqrt, _HALF, _hz_sqrt)
RSQRT = _bundle(_iv_rsqrt, _HALF, _hz_rsqrt)


# -- bounded smooth functions ------------------------------------------------------------------


def _cond_tanh(a, at, out, t, ts, wrt=None):
    # |x|(1 - tanh² x)/|tanh x| = 2|x|/sinh(2|x|): decreasing in |x|, 1 at 0
    m = a[0].mig
    if m == 0:
        return 1.0
    if m > 350:
        return 0.0
    return 2 * m / math.sinh(2 * m)


def _cond_sigmoid(a, at, out, t, ts, wrt=None):
    # |x|(1 - σ(x)) = |x| σ(-x): grows like |x| for x < 0; at most 0.27846 (x = 1.27846) for x > 0
    x = a[0]
    v = 0.0
    if x.lo < 0:
        v = INF if x.lo == -INF else -x.lo * _sigmoid(-x.lo)
    if x.hi > 0:
        v = max(v, 0.2785)
    return v


def _cond_erf(a, at, out, t, ts, wrt=None):
    # |x erf'(x)/erf(x)| = 2|x| e^(-x²)/(√π erf|x|): decreasing in |x|, 1 at 0
    m = a[0].mig
    if m == 0:
        return 1.0
    if m > 30:
        return 0.0
    return 2 * m * math.exp(-m * m) / (math.sqrt(math.pi) * math.erf(m))


def _cond_sinh(a, at, out, t, ts, wrt=None):
    # |x cosh x / sinh x| = |x coth x|: even, increasing in |x|, 1 at 0
    m = a[0].mag
    if m == 0:
        return 1.0
    if m > 350:
        return m
    return m / math.tanh(m)


def _cond_cosh(a, at, out, t, ts, wrt=None):
    # |x sinh x / cosh x| = |x tanh x|: even, increasing in |x|, 0 at 0
    m = a[0].mag
    return m if m > 350 else m * math.tanh(m)


def _sinh(x: float) -> float:
    try:
        return math.sinh(x)
    except OverflowError:
        return math.copysign(INF, x)


def _cosh(x: float) -> float:
    try:
        return math.cosh(x)
    except OverflowError:
        return INF


def _iv_cosh(a, at, t, ts):
    x = a[0]
    return _iv(_cosh(x.mig), _cosh(x.mag), clip=(1.0, INF))


def _iv_hypot(a, at, t, ts):
    x, y = abs(a[0]), abs(a[1])
    return _iv(math.hypot(x.lo, y.lo), math.hypot(x.hi, y.hi), clip=(0.0, INF))


def _cond_hypot(a, at, out, t, ts, wrt=None):
    # Σ|uᵢ ∂h/∂uᵢ|/h = (x² + y²)/h² = 1; one argument alone: x²/h² ≤ 1
    return 1.0


TANH = _bundle(lambda a, at, t, ts: _inc(math.tanh, a[0], clip=(-1.0, 1.0), zero_at=0.0), _cond_tanh)
SIGMOID = _bundle(lambda a, at, t, ts: _inc(_sigmoid, a[0], ulps=COMPOUND_ULPS, clip=(0.0, 1.0)), _cond_sigmoid)
SINH = _bundle(lambda a, at, t, ts: _inc(_sinh, a[0], zero_at=0.0), _cond_sinh)
COSH = _bundle(_iv_cosh, _cond_cosh)
HYPOT = _bundle(_iv_hypot, _cond_hypot)


def _logaddexp(u: float, v: float) -> float:
    m = max(u, v)
    if m == -INF or m == INF:
        return m
    return m + math.log1p(math.exp(-abs(u - v)))


def _iv_logaddexp(a, at, t, ts):
    x, y = a  # increasing in both arguments
    return _iv(_logaddexp(x.lo, y.lo), _logaddexp(x.hi, y.hi))


def _cond_logaddexp(a, at, out, t, ts, wrt=None):
    # (p|u| + q|v|)/|log(e^u + e^v)| with p + q = 1, as logsumexp over two values
    out = out or _iv_logaddexp(a, at, t, ts)
    return _ratio(max(a[0].mag, a[1].mag), out.mig)


LOGADDEXP = _bundle(_iv_logaddexp, _cond_logaddexp)
ERF = _bundle(lambda a, at, t, ts: _inc(math.erf, a[0], clip=(-1.0, 1.0), zero_at=0.0), _cond_erf)


def _hits(x: Interval, a: float, period: float) -> bool:
    """Whether x (finite) contains a + k·period for some integer k, conservatively."""
    tol = 1e-12 * (1.0 + x.mag)
    k = math.floor((x.hi + tol - a) / period)
    return a + k * period >= x.lo - tol


def _iv_trig(fn, max_at: float, min_at: float):
    def iv(a, at, t, ts):
        x = a[0]
        if not x.is_finite or x.width >= TWO_PI or x.mag > 1e15:
            return Interval(-1.0, 1.0)
        v0, v1 = fn(x.lo), fn(x.hi)
        lo, hi = down(min(v0, v1), TRANS_ULPS), up(max(v0, v1), TRANS_ULPS)
        if _hits(x, max_at, TWO_PI):
            hi = 1.0
        if _hits(x, min_at, TWO_PI):
            lo = -1.0
        if fn is math.sin:  # keep the sign where it is known: sin >= 0 on [0, π], <= 0 on [-π, 0]
            if 0 <= x.lo and x.hi <= 3.14159:
                lo = max(lo, 0.0)
            if -3.14159 <= x.lo and x.hi <= 0:
                hi = min(hi, 0.0)
        return Interval(max(lo, -1.0), min(hi, 1.0))

    return iv


def _crosses(x: Interval, offset: float, skip_zero: bool) -> bool:
    """Whether x contains offset + kπ (k integer; k = 0 excluded when skip_zero)."""
    tol = 1e-12 * (1.0 + x.mag)
    k0 = math.ceil((x.lo - tol - offset) / math.pi)
    k1 = math.floor((x.hi + tol - offset) / math.pi)
    if k1 < k0:
        return False
    return not (skip_zero and k0 == 0 and k1 == 0)


def _cond_sin(a, at, out, t, ts, wrt=None):
    # |x cot x|: 1 at 0 (local max), valley-shaped between consecutive nonzero multiples of π
    x = a[0]
    if not x.is_finite or _crosses(x, 0.0, skip_zero=True):
        return INF

    def g(v):
        s = math.sin(v)
        return 1.0 if v == 0 else (INF if s == 0 else abs(v * math.cos(v) / s))

    return max(g(x.lo), g(x.hi), 1.0 if x.contains_zero else 0.0)


def _cond_cos(a, at, out, t, ts, wrt=None):
    # |x tan x|: valley-shaped between consecutive odd multiples of π/2, inf at them
    x = a[0]
    if not x.is_finite or _crosses(x, math.pi / 2, skip_zero=False):
        return INF

    def g(v):
        c = math.cos(v)
        return INF if c == 0 else abs(v * math.sin(v) / c)

    return max(g(x.lo), g(x.hi))


SIN = _bundle(_iv_trig(math.sin, math.pi / 2, -math.pi / 2), _cond_sin)
COS = _bundle(_iv_trig(math.cos, 0.0, math.pi), _cond_cos)


def _logsigmoid_cond_at(x: float) -> float:
    # |x σ(-x) / log σ(x)|: 0 at 0, → 1 as x → -inf, ~x as x → inf (valley)
    if x == 0:
        return 0.0
    if x == -INF:
        return 1.0
    if x == INF:
        return INF
    ls = _logsigmoid(x)
    return INF if ls == 0 else abs(x * _sigmoid(-x) / ls)


def _softplus_cond_at(tv: float) -> float:
    # in t = βx: |t σ(t) / softplus t|: 0 at 0, → 1 as t → inf, ~|t| as t → -inf (valley)
    if tv == 0:
        return 0.0
    if tv == INF:
        return 1.0
    if tv == -INF:
        return INF
    sp = _softplus(tv)
    return INF if sp == 0 else abs(tv * _sigmoid(tv) / sp)


def _iv_softplus(a, at, t, ts):
    beta = float(at["beta"])
    if beta == 0:
        return Interval.whole()
    # log1p(e^(βx))/β is increasing in x for either sign of β (its derivative is σ(βx)). β·x is
    # rounded, and e^t amplifies that relative error by |t|: widen by |t| ulps on top.
    x = a[0]
    lo, hi = (_softplus(beta * v) / beta for v in (x.lo, x.hi))
    lo = _rel_down(lo, COMPOUND_ULPS + 2 * abs(beta * x.lo)) if math.isfinite(x.lo) else lo
    hi = _rel_up(hi, COMPOUND_ULPS + 2 * abs(beta * x.hi)) if math.isfinite(x.hi) else hi
    if beta > 0:
        lo = max(lo, 0.0)
    return Interval(lo, max(lo, hi))


def _cond_softplus(a, at, out, t, ts, wrt=None):
    tv = a[0] * float(at["beta"])
    return max(_softplus_cond_at(tv.lo), _softplus_cond_at(tv.hi))


LOGSIGMOID = _bundle(
    lambda a, at, t, ts: _inc(_logsigmoid, a[0], ulps=COMPOUND_ULPS, clip=(-INF, 0.0)),
    lambda a, at, out, t, ts, wrt=None: max(_logsigmoid_cond_at(a[0].lo), _logsigmoid_cond_at(a[0].hi)),
)
SOFTPLUS = _bundle(_iv_softplus, _cond_softplus)

# gelu is not monotone: it decreases to its minimum, then increases. Both forms' minimizers
# (-0.751792 exact, -0.752461 tanh) lie in GELU_ARGMIN; both minima (-0.169971, -0.170041) ≥ GELU_MIN.
GELU_MIN = -0.17005
GELU_ARGMIN = (-0.76, -0.74)
GELU_COND_POS = 1.2946  # max of 1 + xφ(x)/Φ(x) over x >= 0 (1.294528 at x = 0.8399)


def _iv_gelu(a, at, t, ts):
    x = a[0]
    tanh_form = at.get("approximate") == "tanh"
    f = _gelu_tanh if tanh_form else _gelu

    def err(v):  # ulps: erfc(|x|/√2) and σ(2z) amplify their rounded argument's error by ~x², ~|z|
        if not math.isfinite(v):
            return COMPOUND_ULPS
        return COMPOUND_ULPS + (10 * abs(_GELU_K * (v + 0.044715 * v**3)) if tanh_form else 2 * v * v)

    f0, f1 = f(x.lo), f(x.hi)
    if x.hi <= GELU_ARGMIN[0]:
        lo, hi = _rel_down(f1, err(x.hi)), _rel_up(f0, err(x.lo))
    elif x.lo >= GELU_ARGMIN[1]:
        lo, hi = _rel_down(f0, err(x.lo)), _rel_up(f1, err(x.hi))
    else:
        lo, hi = GELU_MIN, max(_rel_up(f0, err(x.lo)), _rel_up(f1, err(x.hi)))
    lo = max(lo, GELU_MIN)
    if x.lo >= 0:
        lo = max(lo, 0.0)
    if x.hi <= 0:
        hi = min(hi, 0.0)
    return Interval(lo, max(lo, hi))


def _gelu_cond_at(x: float) -> float:
    # |x f'(x)/f(x)| = |1 + x φ(x)/Φ(x)| (the tanh form is close enough for a cost)
    if x == -INF:
        return INF
    if x < -30:
        r = -x / (1 - 1 / x**2 + 3 / x**4)  # Mills ratio asymptotics for φ/Φ
    else:
        r = math.exp(-x * x / 2) / SQRT2PI / (math.erfc(-x / SQRT2) / 2)
    return abs(1 + x * r)


def _cond_gelu(a, at, out, t, ts, wrt=None):
    x = a[0]
    vals = [0.0]
    if x.lo < 0:
        vals += [_gelu_cond_at(x.lo), _gelu_cond_at(min(x.hi, 0.0))]
        if at.get("approximate") == "tanh":
            # torch's kernel computes x/2 (1 + tanh z): the add cancels for z < 0, amplifying
            # tanh's rounding by (1 - t)/(1 + t) = e^(2|z|) at the lowest z (z increases with x)
            try:
                z = _GELU_K * (x.lo + 0.044715 * x.lo**3)
            except OverflowError:
                z = -INF
            vals.append(_exp(-2 * z))
    if x.hi > 0:
        vals.append(GELU_COND_POS)
    return max(vals)


GELU = _bundle(_iv_gelu, _cond_gelu)


# -- selection ---------------------------------------------------------------------------------


def _iv_where(a, at, t, ts):
    c, x, y = a
    if c.lo == 0 and c.hi == 0:
        return y
    if not c.contains_zero:
        return x
    return x.hull(y)


def _cond_where(a, at, out, t, ts, wrt=None):
    return 1.0 if wrt is None or set(wrt) & {1, 2} else 0.0


def _iv_clamp(a, at, t, ts):
    lo = -INF if at["min"] is None else float(at["min"])
    hi = INF if at["max"] is None else float(at["max"])
    return a[0].clip(lo, hi)


def _cond_clamp(a, at, out, t, ts, wrt=None):
    x = a[0]
    lo = -INF if at["min"] is None else float(at["min"])
    hi = INF if at["max"] is None else float(at["max"])
    return 0.0 if x.hi < lo or x.lo > hi or lo > hi else 1.0


MAXIMUM = _bundle(lambda a, at, t, ts: Interval(max(a[0].lo, a[1].lo), max(a[0].hi, a[1].hi)), _one)
MINIMUM = _bundle(lambda a, at, t, ts: Interval(min(a[0].lo, a[1].lo), min(a[0].hi, a[1].hi)), _one)
WHERE = _bundle(_iv_where, _cond_where)
CLAMP = _bundle(_iv_clamp, _cond_clamp)


# -- reductions --------------------------------------------------------------------------------


def _iv_sum(a, at, t, ts):
    return _scale_count(_count(_ts(ts, 0), at.get("dim")), a[0])


def _cond_sum(a, at, out, t, ts, wrt=None):
    x = a[0]
    if x.mag == 0:
        return 0.0
    if x.is_nonneg or x.is_nonpos:
        return 1.0
    n = _count(_ts(ts, 0), at.get("dim"))
    if out is None:
        out = _iv_sum(a, at, t, ts)
    return _ratio(INF if n is None else n * _term_mag(x, _changes_sign(out)), _result_mag(out))


def _cond_mean(a, at, out, t, ts, wrt=None):
    x = a[0]
    if x.mag == 0:
        return 0.0
    if x.is_nonneg or x.is_nonpos:
        return 1.0
    return _ratio(_term_mag(x, _changes_sign(out or x)), _result_mag(out or x))


def _iv_var(a, at, t, ts):
    x = a[0]
    n = _count(_ts(ts, 0), at.get("dim"))
    c = at.get("correction", 1)
    c = 1 if c is None else c
    if n is None or n - c <= 0 or not x.is_finite:
        return Interval(0.0, INF)
    w = x.width
    return Interval(0.0, up(w * w / 4 * n / (n - c), COMPOUND_ULPS))


def _cond_var(a, at, out, t, ts, wrt=None):
    # Σ|xᵢ ∂v/∂xᵢ|/v = 2Σ|xᵢ||xᵢ-μ|/Σ(xᵢ-μ)² ≤ 2 rms(x)/σ ≤ 2 mag x/σ (Cauchy–Schwarz), σ² = v(n-c)/n
    x = a[0]
    if x.mag == 0:
        return 0.0
    out = out or _iv_var(a, at, t, ts)
    n = _count(_ts(ts, 0), at.get("dim"))
    c = at.get("correction", 1)
    c = 1 if c is None else c
    frac = (n - c) / n if n and n > c else 0.5
    if out.lo <= 0:
        return INF
    return _ratio(2 * x.mag, math.sqrt(out.lo * frac))


def _iv_std(a, at, t, ts):
    v = _iv_var(a, at, t, ts)
    return Interval(down(math.sqrt(v.lo)), up(math.sqrt(v.hi)) if math.isfinite(v.hi) else INF)


def _cond_std(a, at, out, t, ts, wrt=None):
    return _cond_var(a, at, None, t, ts, wrt) / 2  # sqrt halves a relative error


def _hz_var(a, at, t, ts):
    n = _count(_ts(ts, 0), at.get("dim"))
    c = at.get("correction", 1)
    c = 1 if c is None else c
    if n is not None and n - c <= 0:
        return f"variance of {n} element(s) with correction {c} (divides by {n - c})"
    return None


def _iv_logsumexp(a, at, t, ts):
    x = a[0]
    n = _count(_ts(ts, 0), at.get("dim"))
    if n is None:
        return Interval(x.lo, INF)
    if n == 0:
        return Interval(-INF, -INF)
    ln = math.log(n)
    return Interval(add_down(x.lo, down(ln)), add_up(x.hi, up(ln)))


def _cond_logsumexp(a, at, out, t, ts, wrt=None):
    x = a[0]
    out = out or _iv_logsumexp(a, at, t, ts)
    return _ratio(x.mag, out.mig)


def _softmax_n(ts, at) -> int | None:
    t = _ts(ts, 0)
    if t is None:
        return None
    if t.rank == 0:
        return 1
    d = t.shape[at["dim"] % t.rank]
    return d if isinstance(d, int) else None


def _iv_softmax(a, at, t, ts):
    x = a[0]
    n = _softmax_n(ts, at)
    if n == 1:
        return Interval(1.0, 1.0)
    if n is None or n == 0:
        return Interval(0.0, 1.0)
    w = x.width
    # pᵢ = 1/(1 + Σⱼ≠ᵢ e^(xⱼ-xᵢ)), each difference within ±w
    lo = 1.0 / (1.0 + (n - 1) * _exp(w))
    hi = 1.0 / (1.0 + (n - 1) * _exp(-w))
    return _iv(lo, hi, COMPOUND_ULPS, (0.0, 1.0))


def _iv_log_softmax(a, at, t, ts):
    x = a[0]
    n = _softmax_n(ts, at)
    if n == 1:
        return Interval(0.0, 0.0)
    if n is None or n == 0:
        return Interval(-INF, 0.0)
    w = x.width
    ln = math.log(n - 1)
    # softplus(t) ≈ e^t for t << 0 amplifies the rounding of t = ln ± w by |t|
    lo = -_rel_up(_softplus(add_up(ln, w)), COMPOUND_ULPS + 2 * abs(ln + w)) if math.isfinite(w) else -INF
    hi = -_rel_down(_softplus(add_down(ln, -w)), COMPOUND_ULPS + 2 * abs(ln - w)) if math.isfinite(w) else 0.0
    return Interval(lo, min(max(lo, hi), 0.0))


def _cond_softmax(a, at, out, t, ts, wrt=None):
    out = out or _iv_softmax(a, at, t, ts)
    return _ratio(2 * a[0].mag * (1 - max(out.lo, 0.0)), 1.0)


def _cond_log_softmax(a, at, out, t, ts, wrt=None):
    # the math: (|xᵢ|(1-pᵢ) + Σⱼ≠ᵢ|xⱼ|pⱼ)/|log pᵢ| ≤ 2 mag x (1-p)/(-log p) ≤ 2 mag x. The kernel
    # computes (xᵢ - m) - log Σ e^(xⱼ-m), a subtraction that cancels for the largest entries
    # (yᵢ ≈ 0, the sum ≈ 1): its (|xᵢ - m| + log Σ)/|yᵢ| ≤ (width x + log n)/mig y counts too.
    x = a[0]
    n = _softmax_n(ts, at)
    out = out or _iv_log_softmax(a, at, t, ts)
    kernel = _ratio(x.width + (math.log(n) if n else INF), out.mig) if n != 1 else 0.0
    return max(_ratio(2 * x.mag, 1.0), kernel)


SUM = _bundle(_iv_sum, _cond_sum)
MEAN = _bundle(_identity, _cond_mean)
AMAX = _bundle(_identity, _one)
AMIN = _bundle(_identity, _one)
VAR = _bundle(_iv_var, _cond_var, _hz_var)
STD = _bundle(_iv_std, _cond_std, _hz_var)
LOGSUMEXP = _bundle(_iv_logsumexp, _cond_logsumexp)
SOFTMAX = _bundle(_iv_softmax, _cond_softmax)
LOG_SOFTMAX = _bundle(_iv_log_softmax, _cond_log_softmax)


# -- normalizations ----------------------------------------------------------------------------


def _affine(y: Interval, w: Interval | None, b: Interval | None) -> Interval:
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


def _iv_layer_norm(a, at, t, ts):
    x, w, b = a
    n = _prod(ts[0].shape[len(ts[0].shape) - at["normalized_ndim"] :]) if ts and ts[0] is not None else None
    eps = float(at["eps"])
    if x.width == 0:
        y = Interval(0.0, 0.0)
    else:
        # |xᵢ - μ| ≤ σ √(n-1) (Samuelson) and ≤ width; σ² + eps ≥ max(σ², eps)
        bound = INF if n is None else math.sqrt(max(n - 1, 0))
        if eps > 0:
            bound = min(bound, x.width / math.sqrt(eps))
        bound = up(bound, COMPOUND_ULPS)
        y = Interval(-bound, bound)
    return _affine(y, w, b)


def _cond_layer_norm(a, at, out, t, ts, wrt=None):
    x, w, b = a
    spread = max(x.width / 2, math.sqrt(max(float(at["eps"]), 0.0)))
    # x - mean: (|x| + |mean|)/|x - mean|, typically so when x changes sign (as for sub)
    c = 1.0 + _ratio(2 * _term_mag(x, _changes_sign(x)), spread)
    if b is not None:
        # the affine ŷ·w + b, priced as the separate ops are (so fusing it changes no cost): the
        # scale by a weight amplifies nothing; the bias add amplifies ŷ·w's error by its cond
        y = _iv_layer_norm([x, None, None], at, t, ts)
        c *= max(1.0, _addsub_cond(y * w if w is not None else y, b, out, {0}))
    return c


def _rms_eps(at, t) -> float:
    # as hnfc.ops.reductions._rms_eps: eps=None is the compute dtype's machine epsilon
    if at["eps"] is not None:
        return float(at["eps"])
    return 2.0**-52 if t is not None and getattr(t, "dtype", None) == "f64" else 2.0**-23


def _iv_rms_norm(a, at, t, ts):
    x, w = a
    n = _prod(ts[0].shape[len(ts[0].shape) - at["normalized_ndim"] :]) if ts and ts[0] is not None else None
    eps = _rms_eps(at, t)
    # xᵢ² ≤ Σx² = n·ms, so |ŷᵢ| = |xᵢ|/√(ms+eps) < √n; also ≤ mag/√eps
    bound = INF if n is None else math.sqrt(n)
    if eps > 0:
        bound = min(bound, x.mag / math.sqrt(eps))
    bound = up(bound, COMPOUND_ULPS)
    lo, hi = -bound, bound
    scale = math.sqrt(x.mag * x.mag + eps) if x.is_finite else INF
    if x.lo >= 0:
        lo = 0.0 if scale in (0.0, INF) else max(0.0, down(x.lo / scale, COMPOUND_ULPS))
    if x.hi <= 0:
        hi = 0.0 if scale in (0.0, INF) else min(0.0, up(x.hi / scale, COMPOUND_ULPS))
    return _affine(Interval(lo, max(lo, hi)), w, None)


def _iv_batch_norm(a, at, t, ts):
    x, w, b, mean, var = a
    v = var + float(at["eps"])
    if v.hi < 0:
        return Interval.whole()
    s = Interval(max(v.lo, 0.0), v.hi)
    s = Interval(down(math.sqrt(s.lo)), up(math.sqrt(s.hi)))
    return _affine((x - mean) / s, w, b)


def _cond_batch_norm(a, at, out, t, ts, wrt=None):
    x, w, b, mean, var = a
    s = math.sqrt(max(var.lo, 0.0) + float(at["eps"]))
    return 1.5 + _ratio(x.mag + mean.mag, s) + (1.0 if w is not None else 0.0)


def _hz_batch_norm(a, at, t, ts):
    var = a[4]
    if not _unknown(var) and var.lo + float(at["eps"]) <= 0:
        return f"batch_norm with running var in {var} (var + eps reaches 0)"
    return None


LAYER_NORM = _bundle(_iv_layer_norm, _cond_layer_norm)
def _cond_rms_norm(a, at, out, t, ts, wrt=None):
    counted = {0, 1} if wrt is None else set(wrt)
    return (2.0 if 0 in counted else 0.0) + (1.0 if a[1] is not None and 1 in counted else 0.0)


RMS_NORM = _bundle(_iv_rms_norm, _cond_rms_norm)
BATCH_NORM = _bundle(_iv_batch_norm, _cond_batch_norm, _hz_batch_norm)


def _iv_sdpa(a, at, t, ts):
    return a[2]  # each output row is a convex combination of v's rows


def _cond_sdpa(a, at, out, t, ts, wrt=None):
    q, k, v, mask = a
    tq = _ts(ts, 0)
    d = tq.shape[-1] if tq is not None and tq.rank and isinstance(tq.shape[-1], int) else None
    if d is None:
        return INF
    scale = at["scale"] if at["scale"] is not None else 1 / math.sqrt(d)
    logits = abs(scale) * d * q.mag * k.mag
    m = _result_mag(out or v)
    cv = 1.0 if (v.is_nonneg or v.is_nonpos) else _ratio(v.mag, m)
    return cv + _ratio(2 * logits * v.width, m)


SDPA = _bundle(_iv_sdpa, _cond_sdpa)


# -- linear algebra ----------------------------------------------------------------------------


def _contracted(ts, i: int = 0) -> int | None:
    t = _ts(ts, i)
    if t is None or t.rank == 0:
        return None
    k = t.shape[-1]
    return k if isinstance(k, int) else None


def _products_cond(p: Interval, k: int | None, amag: float, bmag: float, out: Interval | None, nargs: float) -> float:
    if p.is_nonneg or p.is_nonpos:
        return nargs  # no cancellation among the products
    if out is None:
        return INF
    return nargs * _ratio(INF if k is None else k * amag * bmag, _result_mag(out))


def _iv_matmul(a, at, t, ts):
    return _scale_count(_contracted(ts, 0), a[0] * a[1])


def _cond_matmul(a, at, out, t, ts, wrt=None):
    out = out or _iv_matmul(a, at, t, ts)
    typ = _changes_sign(out)
    return _products_cond(a[0] * a[1], _contracted(ts, 0), _term_mag(a[0], typ), _term_mag(a[1], typ), out, 2.0)


def _iv_addmm(a, at, t, ts):
    bias, x, y = a
    prod = _scale_count(_contracted(ts, 1), x * y) * float(at["alpha"])
    return prod if at["beta"] == 0 else prod + bias * float(at["beta"])


def _cond_with_bias(prod: Interval, pmag: float, bias: Interval | None, out: Interval, nf: float) -> float:
    """(Σ per-factor |terms| + |bias|)/|out|; without cancellation: number of arguments."""
    if bias is None:
        terms = [prod]
    else:
        terms = [prod, bias]
    if all(tm.is_nonneg for tm in terms) or all(tm.is_nonpos for tm in terms):
        return nf + (1.0 if bias is not None else 0.0)
    return _ratio(nf * pmag + (0.0 if bias is None else _term_mag(bias, _changes_sign(out))), _result_mag(out))


def _cond_addmm(a, at, out, t, ts, wrt=None):
    bias, x, y = a
    k = _contracted(ts, 1)
    alpha, beta = float(at["alpha"]), float(at["beta"])
    prod = _scale_count(k, x * y) * alpha
    b = None if beta == 0 else bias * beta
    out = out or _iv_addmm(a, at, t, ts)
    typ = _changes_sign(out)
    pmag = INF if k is None else k * _term_mag(x, typ) * _term_mag(y, typ) * abs(alpha)
    return _cond_with_bias(prod, pmag, b, out, 2.0)


def _iv_linear(a, at, t, ts):
    x, w, b = a
    y = _scale_count(_contracted(ts, 0), x * w)
    return y if b is None else y + b


def _cond_linear(a, at, out, t, ts, wrt=None):
    x, w, b = a
    k = _contracted(ts, 0)
    prod = _scale_count(k, x * w)
    out = out or _iv_linear(a, at, t, ts)
    typ = _changes_sign(out)
    pmag = INF if k is None else k * _term_mag(x, typ) * _term_mag(w, typ)
    return _cond_with_bias(prod, pmag, b, out, 2.0)


MATMUL = _bundle(_iv_matmul, _cond_matmul)
ADDMM = _bundle(_iv_addmm, _cond_addmm)
LINEAR = _bundle(_iv_linear, _cond_linear)


# -- shape, conversion, leaves -----------------------------------------------------------------

SHAPE = _bundle(_identity, _one)
CAT = _bundle(lambda a, at, t, ts: hull_all(a) or Interval.whole(), _one)


def _iv_to(a, at, t, ts):
    x = a[0]
    kind = DTYPES[at["dtype"]].kind
    if kind == "bool":
        if x.lo == 0 and x.hi == 0:
            return Interval(0.0, 0.0)
        return Interval(1.0, 1.0) if not x.contains_zero else Interval(0.0, 1.0)
    if kind == "int":

        def trunc(v):
            return v if math.isinf(v) else float(math.trunc(v))

        return Interval(trunc(x.lo), trunc(x.hi))
    return x


def _iv_const(a, at, t, ts):
    v = at["value"]
    try:
        return Interval.point(float(v))
    except (TypeError, ValueError):
        return Interval.whole()


TO = _bundle(_iv_to, _one)
DETACH = _bundle(_identity, _one)
GETITEM = _bundle(_whole, _one)
CONST = _bundle(_iv_const, _zero)
LEAF = _bundle(None, _zero)
