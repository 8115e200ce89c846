"""Range and cost formulas of the pointwise ops (hnfc/ops/pointwise.py): arithmetic, exp/log,
roots, hyperbolic functions, activations, selection (the trigonometric ones are in
trig_bounds.py). Contracts and the formula table: hnfc/ops/formulas.py.
"""

from __future__ import annotations

import math
from typing import Callable

from hnfc.foundation.intervals import INF, TRANS_ULPS, Interval, down
from hnfc.ops.formulas import _bundle, _changes_sign, _dec, _exp, _expm1, _gelu, _GELU_K, _gelu_tanh, _inc, _iv, _log, _log1p, _log2, _logsigmoid, _mean_mag, _nonneg_part, _one, _pow, _ratio, _rel_down, _rel_up, _result_mag, _rsqrt, _sigmoid, _silu, _softplus, _unknown, COMPOUND_ULPS, SQRT2, SQRT2PI


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
def _hz_mul(a, at, t, ts):
    # 0 * inf = NaN: one factor can be 0 while the other can be infinite (p * log p at p = 0)
    x, y = a
    if _unknown(x) or _unknown(y):
        return None
    for u, v in ((x, y), (y, x)):
        if u.contains_zero and (math.isinf(v.lo) or math.isinf(v.hi)):
            return f"a factor in {u} (reaches 0) times one in {v} (reaches inf): 0 * inf is NaN"
    return None


MUL = _bundle(lambda a, at, t, ts: a[0] * a[1], _cond_per_arg(2), _hz_mul)
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


def _gz_pow(a, at, t, ts):
    # d/dx x^p = p x^(p-1): infinite at x = 0 for 0 < p < 1
    x, p = a[0], float(at["exponent"])
    if not _unknown(x) and 0 < p < 1 and x.lo <= 0 <= x.hi:
        return f"d/dx x^{p:g} = {p:g} x^{p - 1:g} is infinite at x = 0, and x in {x} reaches 0: the gradient is inf (NaN once multiplied by 0)"
    return None


POW = {**_bundle(_iv_pow, lambda a, at, out, t, ts, wrt=None: abs(float(at["exponent"])), _hz_pow), "grad_hazard": _gz_pow}


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
def _gz_log(a, at, t, ts):
    # d/dx log x = 1/x overflows the dtype for x below 1/max (forward log is still finite there)
    from hnfc.foundation.dtypes import DTYPES

    x, d = a[0], DTYPES.get(getattr(t, "dtype", ""))
    if d is not None and d.is_float and not _unknown(x) and 0 < x.lo < 1 / d.max:
        return f"d/dx log x = 1/x overflows {d.name} for x below {1 / d.max:.3g}, and x in {x} gets there: the gradient is inf"
    return None


LOG = {**_bundle(_iv_log_like(_log, 0.0), _cond_log, _hz_log(0.0, "log")), "grad_hazard": _gz_log}
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
def _gz_sqrt(a, at, t, ts):
    # d/dx sqrt x = 1/(2 sqrt x): infinite at exactly 0, where the forward value (0) is fine
    x = a[0]
    if not _unknown(x) and x.lo <= 0 <= x.hi:
        return f"d/dx sqrt(x) = 1/(2 sqrt x) is infinite at x = 0, and x in {x} reaches 0: the gradient is inf, NaN once multiplied by 0 (x*x's own derivative there)"
    return None


SQRT = {**_bundle(_iv_sqrt, _HALF, _hz_sqrt), "grad_hazard": _gz_sqrt}
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


def _valley(f, err, x: Interval, argmin: tuple[float, float], fmin: float) -> Interval:
    """Image of x under f, decreasing up to its minimizer (inside `argmin`, minimum >= fmin) and
    increasing after, with f(0) = 0 (signs carry over); `err(v)`: ulps of f's evaluation at v."""
    f0, f1 = f(x.lo), f(x.hi)
    if x.hi <= argmin[0]:
        lo, hi = _rel_down(f1, err(x.hi)), _rel_up(f0, err(x.lo))
    elif x.lo >= argmin[1]:
        lo, hi = _rel_down(f0, err(x.lo)), _rel_up(f1, err(x.hi))
    else:
        lo, hi = fmin, max(_rel_up(f0, err(x.lo)), _rel_up(f1, err(x.hi)))
    lo = max(lo, fmin)
    if x.lo >= 0:
        lo = max(lo, 0.0)
    if x.hi <= 0:
        hi = min(hi, 0.0)
    return Interval(lo, max(lo, hi))


def _iv_gelu(a, at, t, ts):
    tanh_form = at.get("approximate") == "tanh"

    def err(v):  # ulps: erfc(|x|/√2) and σ(2z) amplify their rounded argument's error by ~x², ~|z|
        if not math.isfinite(v):
            return COMPOUND_ULPS
        return COMPOUND_ULPS + (10 * abs(_GELU_K * (v + 0.044715 * v**3)) if tanh_form else 2 * v * v)

    return _valley(_gelu_tanh if tanh_form else _gelu, err, a[0], GELU_ARGMIN, GELU_MIN)


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


# silu x = x σ(x) is not monotone either: it decreases to its minimum -0.2784645 at x = -1.2784645
# (the root of 1 + x σ(-x), which is silu's x f'/f), then increases.
SILU_MIN = -0.27847
SILU_ARGMIN = (-1.28, -1.277)


def _iv_silu(a, at, t, ts):
    # ulps: e^-|x| amplifies the rounding of its argument by |x|
    return _valley(_silu, lambda v: COMPOUND_ULPS + (2 * abs(v) if math.isfinite(v) else 0.0), a[0], SILU_ARGMIN, SILU_MIN)


def _silu_cond_at(x: float) -> float:
    # |x f'(x)/f(x)| = |1 + x σ(-x)|: increasing in x below 0 (from -inf to 1), at most 1.2785 above
    if x == -INF:
        return INF
    return abs(1 + x * _sigmoid(-x)) if x < 0 else 1.2785


def _cond_silu(a, at, out, t, ts, wrt=None):
    x = a[0]
    vals = [_silu_cond_at(x.hi)] if x.hi > 0 else []
    if x.lo < 0:
        vals += [_silu_cond_at(x.lo), _silu_cond_at(min(x.hi, 0.0))]
    return max(vals or [1.0])


SILU = _bundle(_iv_silu, _cond_silu)


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
# a comparison: 0 or 1, and no rounding (its result does not move with small input changes
# except at the threshold itself, which the regimes stage puts between sampled points)
LT = _bundle(lambda a, at, t, ts: Interval(0.0, 1.0), lambda a, at, out, t, ts, wrt=None: 0.0)
EQ = LT  # a == b: the same facts as any comparison
CLAMP = _bundle(_iv_clamp, _cond_clamp)




# -- complementary error function, inverse trigonometric and hyperbolic functions -------------


def _erfc_cond_at(x: float) -> float:
    """|x erfc'(x)/erfc(x)| = 2|x| e^(-x²)/(√π erfc x) for x >= 0: increasing, ~2x² + 1 as x grows."""
    if x <= 0:
        return 0.0
    if x > 25:
        return 2 * x * x + 2  # erfc x = e^(-x²)/(x√π) (1 - 1/(2x²) + ...): the ratio is below 2x² + 2
    return 2 * x * math.exp(-x * x) / (math.sqrt(math.pi) * math.erfc(x))


def _cond_erfc(a, at, out, t, ts, wrt=None):
    # for x < 0, erfc x is in (1, 2) and 2|x|e^(-x²)/√π ≤ √(2/(eπ)) < 0.49
    x = a[0]
    v = 0.49 if x.lo < 0 else 0.0
    if x.hi > 0:
        v = max(v, INF if x.hi == INF else _erfc_cond_at(x.hi))
    return v


ERFC = _bundle(lambda a, at, t, ts: _dec(math.erfc, a[0], clip=(0.0, 2.0)), _cond_erfc)
