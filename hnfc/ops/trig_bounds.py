"""Range and cost formulas of the trigonometric and inverse trigonometric/hyperbolic ops
(hnfc/ops/pointwise.py): sin, cos, tan, atan, asin, acos, asinh, acosh, atanh. Periodic and
domain-limited functions share their helpers here; the other pointwise formulas are in
hnfc/ops/pointwise_bounds.py. Contracts and the formula table: hnfc/ops/formulas.py.
"""

from __future__ import annotations

import math
from typing import Callable

from hnfc.foundation.intervals import INF, TRANS_ULPS, Interval, down, up
from hnfc.ops.formulas import _bundle, _dec, _inc, _unknown, TWO_PI

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


def _domain_part(x: Interval, lo: float, hi: float) -> Interval | None:
    """x ∩ [lo, hi] (where the function is real), None when empty."""
    if x.hi < lo or x.lo > hi:
        return None
    return Interval(max(x.lo, lo), min(x.hi, hi))


def _hz_domain(name: str, lo: float, hi: float, open_ends: bool = False):
    def hz(a, at, t, ts):
        x = a[0]
        if _unknown(x):
            return None
        if x.lo < lo or x.hi > hi or (open_ends and (x.lo <= lo or x.hi >= hi)):
            return f"{name} of a value in {x} (outside {'(' if open_ends else '['}{lo:g}, {hi:g}{')' if open_ends else ']'})"
        return None

    return hz


def _iv_on(fn, lo: float, hi: float, *, increasing: bool = True, clip=(-INF, INF), zero_at=None):
    def iv(a, at, t, ts):
        x = _domain_part(a[0], lo, hi)
        if x is None:
            return Interval.whole()  # NaN everywhere
        if increasing:
            return _inc(fn, x, clip=clip, zero_at=zero_at)
        return _dec(fn, x, clip=clip)

    return iv


def _even_cond(g: Callable[[float], float], at_zero: float, *, decreasing: bool):
    """cond of an odd function whose |x f'/f| = g(|x|) is monotone in |x| (value at_zero at 0)."""

    def cond(a, at, out, t, ts, wrt=None):
        x = a[0]
        m = x.mig if decreasing else x.mag
        if m == 0:
            return at_zero
        return g(m)

    return cond


def _g_atan(m: float) -> float:
    # m / ((1 + m²) atan m): 1 at 0, decreasing
    if m == INF or m > 1e150:
        return 0.0
    return m / ((1 + m * m) * math.atan(m))


def _g_asin(m: float) -> float:
    # m / (√(1 - m²) asin m): 1 at 0, increasing, inf at 1
    if m >= 1:
        return INF
    return m / (math.sqrt((1 - m) * (1 + m)) * math.asin(m))


def _g_asinh(m: float) -> float:
    # m / (√(1 + m²) asinh m): 1 at 0, decreasing
    if m == INF or m > 1e150:
        return 0.0
    return m / (math.hypot(m, 1.0) * math.asinh(m))


def _g_atanh(m: float) -> float:
    # m / ((1 - m²) atanh m): 1 at 0, increasing, inf at 1
    if m >= 1:
        return INF
    return m / ((1 - m) * (1 + m) * math.atanh(m))


def _cond_acos(a, at, out, t, ts, wrt=None):
    # |x / (√(1 - x²) acos x)|: 0 at 0, increasing in |x| on each side, inf at ±1
    x = _domain_part(a[0], -1.0, 1.0)
    if x is None:
        return 0.0

    def g(v):
        if abs(v) >= 1:
            return INF
        return abs(v) / (math.sqrt((1 - v) * (1 + v)) * math.acos(v))

    return max(g(x.lo), g(x.hi))


def _cond_acosh(a, at, out, t, ts, wrt=None):
    # x / (√(x² - 1) acosh x): inf at 1, decreasing toward 1 as x grows
    x = _domain_part(a[0], 1.0, INF)
    if x is None:
        return 0.0
    v = x.lo
    if v <= 1:
        return INF
    if v > 1e150:
        return 1.0 / math.log(2 * v) if v < INF else 0.0
    return v / (math.sqrt((v - 1) * (v + 1)) * math.acosh(v))


def _iv_tan(a, at, t, ts):
    x = a[0]
    if not x.is_finite or x.width >= math.pi or _crosses(x, math.pi / 2, skip_zero=False):
        return Interval.whole()
    return _inc(math.tan, x, zero_at=0.0 if -math.pi / 2 < x.lo and x.hi < math.pi / 2 else None)


def _cond_tan(a, at, out, t, ts, wrt=None):
    # |x (1 + tan² x)/tan x| = |2x / sin 2x|: 1 at 0, valley-shaped between multiples of π/2
    x = a[0]
    if not x.is_finite or _crosses(x * 2.0, 0.0, skip_zero=True):
        return INF

    def g(v):
        s = math.sin(2 * v)
        return 1.0 if v == 0 else (INF if s == 0 else abs(2 * v / s))

    return max(g(x.lo), g(x.hi), 1.0 if x.contains_zero else 0.0)


HALF_PI = up(math.pi / 2, 1)  # the float π/2 is below the real one: clip outward
PI_UP = up(math.pi, 1)
TAN = _bundle(_iv_tan, _cond_tan)
ATAN = _bundle(lambda a, at, t, ts: _inc(math.atan, a[0], clip=(-HALF_PI, HALF_PI), zero_at=0.0), _even_cond(_g_atan, 1.0, decreasing=True))
ASIN = _bundle(_iv_on(math.asin, -1.0, 1.0, clip=(-HALF_PI, HALF_PI), zero_at=0.0), _even_cond(_g_asin, 1.0, decreasing=False), _hz_domain("asin", -1.0, 1.0))
ACOS = _bundle(_iv_on(math.acos, -1.0, 1.0, increasing=False, clip=(0.0, PI_UP)), _cond_acos, _hz_domain("acos", -1.0, 1.0))
ASINH = _bundle(lambda a, at, t, ts: _inc(math.asinh, a[0], zero_at=0.0), _even_cond(_g_asinh, 1.0, decreasing=True))
ACOSH = _bundle(_iv_on(lambda v: math.acosh(v) if v < INF else INF, 1.0, INF, clip=(0.0, INF)), _cond_acosh, _hz_domain("acosh", 1.0, INF))
ATANH = _bundle(
    _iv_on(lambda v: INF if v >= 1 else (-INF if v <= -1 else math.atanh(v)), -1.0, 1.0, zero_at=0.0),
    _even_cond(_g_atanh, 1.0, decreasing=False),
    _hz_domain("atanh", -1.0, 1.0, open_ends=True),
)
