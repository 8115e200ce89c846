"""Value intervals: the domain of range analysis and of the cost model.

In: float bounds (±inf allowed, NaN never). Out: `Interval` records and outward-rounded interval
arithmetic that the op table's transfer functions (hnfc/ops/formulas.py and the `*_bounds.py` modules) are written with.

An interval encloses the exact real values of every element of a tensor, as the op's mpmath
`ref` defines them (NaN results excluded), not the rounded floats a dtype holds; hazards look at
those through `Interval.in_dtype`. Arithmetic rounds outward: results of + − × are rounded in
the right direction exactly (TwoSum, Dekker's TwoProduct; exact results stay exact), ÷ and sqrt
widen a nonzero result by one ulp, transcendental functions (libm: within an ulp or two) by a few
ulps (`down`/`up`), more where a rounded argument feeds an exponential (hnfc/ops/formulas.py and the `*_bounds.py` modules).
Overflow of finite bounds gives the largest float on the inner side, ±inf on the outer.

This module is a leaf (standard library and hnfc.foundation.dtypes only) so the op table, which sits below
the IR, can use it; the rest of hnfc.analysis (propagation, cost) sits above the IR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from hnfc.foundation.dtypes import DTYPES

INF = math.inf
MAX = 1.7976931348623157e308  # the largest finite float

# ulps of widening for results of libm transcendental functions (glibc: < 1 ulp, musl: < 2 ulps)
TRANS_ULPS = 4


def down(x: float, ulps: int = 1) -> float:
    """x moved `ulps` floats toward -inf (NaN -> -inf, -inf stays)."""
    if x != x:
        return -INF
    for _ in range(ulps):
        if x == -INF:
            break
        x = math.nextafter(x, -INF)
    return x


def up(x: float, ulps: int = 1) -> float:
    """x moved `ulps` floats toward +inf (NaN -> +inf, +inf stays)."""
    if x != x:
        return INF
    for _ in range(ulps):
        if x == INF:
            break
        x = math.nextafter(x, INF)
    return x


def add_down(a: float, b: float) -> float:
    """A float ≤ a + b (exact), as tight as TwoSum allows."""
    s = a + b
    if s != s:  # inf - inf
        return -INF
    if math.isinf(a) or math.isinf(b):
        return s
    if math.isinf(s):  # overflow of finite operands: the true sum is finite
        return s if s < 0 else MAX
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    return down(s) if err < 0 else s


def add_up(a: float, b: float) -> float:
    """A float ≥ a + b (exact)."""
    s = a + b
    if s != s:
        return INF
    if math.isinf(a) or math.isinf(b):
        return s
    if math.isinf(s):
        return s if s > 0 else -MAX
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    return up(s) if err > 0 else s


_SPLIT = 134217729.0  # 2^27 + 1 (Veltkamp)


def _prod_err(a: float, b: float, p: float) -> float | None:
    """a * b - p exactly (Dekker's TwoProduct), or None where the split may over/underflow."""
    if not (1e-280 < abs(p) < 1e280 and abs(a) < 1e290 and abs(b) < 1e290):
        return None
    c = _SPLIT * a
    ah = c - (c - a)
    al = a - ah
    c = _SPLIT * b
    bh = c - (c - b)
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


def mul_down(a: float, b: float) -> float:
    """A float ≤ a * b (0 * inf = 0)."""
    if a == 0 or b == 0:
        return 0.0
    p = a * b
    if p == 0:  # underflow: the true product is tiny with this sign
        return 0.0 if (a > 0) == (b > 0) else -math.ulp(0.0)
    if math.isinf(p):
        return MAX if p > 0 and math.isfinite(a) and math.isfinite(b) else p
    err = _prod_err(a, b, p)
    return p if err is not None and err >= 0 else down(p)


def mul_up(a: float, b: float) -> float:
    """A float ≥ a * b (0 * inf = 0)."""
    if a == 0 or b == 0:
        return 0.0
    p = a * b
    if p == 0:
        return math.ulp(0.0) if (a > 0) == (b > 0) else 0.0
    if math.isinf(p):
        return -MAX if p < 0 and math.isfinite(a) and math.isfinite(b) else p
    err = _prod_err(a, b, p)
    return p if err is not None and err <= 0 else up(p)


@dataclass(frozen=True)
class Interval:
    """Closed interval [lo, hi] of reals; bounds may be infinite, never NaN."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        lo, hi = float(self.lo), float(self.hi)
        if lo != lo or hi != hi:
            raise ValueError(f"Interval bounds may not be NaN: [{self.lo}, {self.hi}]")
        if lo > hi:
            raise ValueError(f"empty interval [{lo}, {hi}]")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    # -- construction ---------------------------------------------------------------------------

    @staticmethod
    def whole() -> "Interval":
        return Interval(-INF, INF)

    @staticmethod
    def point(x: float) -> "Interval":
        x = float(x)
        if x != x:
            return Interval.whole()
        return Interval(x, x)

    @staticmethod
    def of(x: Any) -> "Interval":
        """An Interval from an Interval, a (lo, hi) pair or a number; NaN bounds become unbounded."""
        if isinstance(x, Interval):
            return x
        if isinstance(x, (tuple, list)) and len(x) == 2:
            lo, hi = float(x[0]), float(x[1])
            lo = -INF if lo != lo else lo
            hi = INF if hi != hi else hi
            return Interval(lo, hi)
        return Interval.point(float(x))

    # -- predicates -----------------------------------------------------------------------------

    def __contains__(self, x: float) -> bool:
        return self.lo <= x <= self.hi

    def contains(self, x: float) -> bool:
        return self.lo <= x <= self.hi

    @property
    def contains_zero(self) -> bool:
        return self.lo <= 0.0 <= self.hi

    @property
    def is_pos(self) -> bool:
        return self.lo > 0

    @property
    def is_nonneg(self) -> bool:
        return self.lo >= 0

    @property
    def is_neg(self) -> bool:
        return self.hi < 0

    @property
    def is_nonpos(self) -> bool:
        return self.hi <= 0

    @property
    def is_finite(self) -> bool:
        """Both bounds finite (a bounded interval)."""
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def is_whole(self) -> bool:
        return self.lo == -INF and self.hi == INF

    @property
    def is_point(self) -> bool:
        return self.lo == self.hi

    # -- measures -------------------------------------------------------------------------------

    @property
    def width(self) -> float:
        """hi - lo, rounded up."""
        return add_up(self.hi, -self.lo)

    diameter = width

    @property
    def mag(self) -> float:
        """max |x| over the interval."""
        return max(abs(self.lo), abs(self.hi))

    @property
    def mig(self) -> float:
        """min |x| over the interval (0 when it contains 0)."""
        if self.contains_zero:
            return 0.0
        return min(abs(self.lo), abs(self.hi))

    @property
    def mid(self) -> float:
        if self.is_whole:
            return 0.0
        m = self.lo / 2 + self.hi / 2
        return m if math.isfinite(m) else (self.lo if math.isfinite(self.lo) else self.hi)

    # -- lattice --------------------------------------------------------------------------------

    def hull(self, other: "Interval | None") -> "Interval":
        if other is None:
            return self
        return Interval(min(self.lo, other.lo), max(self.hi, other.hi))

    def intersect(self, other: "Interval | None") -> "Interval | None":
        """The common part, or None when they are disjoint."""
        if other is None:
            return self
        lo, hi = max(self.lo, other.lo), min(self.hi, other.hi)
        return Interval(lo, hi) if lo <= hi else None

    def clip(self, lo: float = -INF, hi: float = INF) -> "Interval":
        """The interval with both bounds clipped into [lo, hi] (the image under clamp)."""
        a = min(max(self.lo, lo), hi)
        b = min(max(self.hi, lo), hi)
        return Interval(a, b)

    def in_dtype(self, dtype: str) -> "Interval":
        """The values as a float `dtype` holds them: magnitudes below its smallest normal flush to 0
        (or lose their precision: either way a log, a division or a sqrt sees 0), beyond its max
        become infinite. Non-float dtypes are returned unchanged."""
        d = DTYPES.get(dtype)
        if d is None or not d.is_float:
            return self
        lo, hi = self.lo, self.hi
        if 0 < lo < d.tiny:
            lo = 0.0
        if -d.tiny < hi < 0:
            hi = 0.0
        if lo > d.max:
            lo = INF
        if hi < -d.max:
            hi = -INF
        if hi > d.max:
            hi = INF
        if lo < -d.max:
            lo = -INF
        return Interval(lo, hi)

    def widen(self, rel: float = 0.0, abs_: float = 0.0) -> "Interval":
        """Both bounds moved outward by rel * |bound| + abs_."""
        return Interval(self.lo - rel * abs(self.lo) - abs_, self.hi + rel * abs(self.hi) + abs_)

    # -- arithmetic (outward rounded) -----------------------------------------------------------

    def __neg__(self) -> "Interval":
        return Interval(-self.hi, -self.lo)

    def __add__(self, other: "Interval | float") -> "Interval":
        o = Interval.of(other)
        return Interval(add_down(self.lo, o.lo), add_up(self.hi, o.hi))

    __radd__ = __add__

    def __sub__(self, other: "Interval | float") -> "Interval":
        return self + (-Interval.of(other))

    def __rsub__(self, other: float) -> "Interval":
        return Interval.of(other) + (-self)

    def __mul__(self, other: "Interval | float") -> "Interval":
        o = Interval.of(other)
        lows = [mul_down(a, b) for a in (self.lo, self.hi) for b in (o.lo, o.hi)]
        highs = [mul_up(a, b) for a in (self.lo, self.hi) for b in (o.lo, o.hi)]
        return Interval(min(lows), max(highs))

    __rmul__ = __mul__

    def recip(self) -> "Interval":
        """{1/x : x in self, x != 0}; 1/0 = ±inf as in the reference (`r_div`)."""
        lo, hi = self.lo, self.hi
        if lo > 0 or hi < 0:
            return Interval(_div_down(1.0, hi), _div_up(1.0, lo))
        if lo == 0 and hi == 0:
            return Interval(INF, INF)  # 1/+0 (the reference assumes +0)
        if lo == 0:
            return Interval(_div_down(1.0, hi), INF)
        return Interval.whole()  # hi == 0: (-inf, 1/lo] and 1/0 = +inf (the reference assumes +0)

    def __truediv__(self, other: "Interval | float") -> "Interval":
        o = Interval.of(other)
        if o.lo > 0 or o.hi < 0:
            cands_lo = [_div_down(a, b) for a in (self.lo, self.hi) for b in (o.lo, o.hi)]
            cands_hi = [_div_up(a, b) for a in (self.lo, self.hi) for b in (o.lo, o.hi)]
            return Interval(min(cands_lo), max(cands_hi))
        return self * o.recip()

    def __rtruediv__(self, other: float) -> "Interval":
        return Interval.of(other) / self

    def __abs__(self) -> "Interval":
        if self.contains_zero:
            return Interval(0.0, self.mag)
        return Interval(self.mig, self.mag)

    def sqr(self) -> "Interval":
        """{x*x}: tighter than self * self when the interval contains 0."""
        a = abs(self)
        return Interval(mul_down(a.lo, a.lo), mul_up(a.hi, a.hi))

    def __str__(self) -> str:
        return f"[{self.lo:.6g}, {self.hi:.6g}]"


def _div_down(a: float, b: float) -> float:
    """A float ≤ a / b (b != 0); inf/inf is unbounded."""
    if a == 0:
        return 0.0
    if math.isinf(a) and math.isinf(b):
        return -INF
    q = a / b
    if q == 0:  # underflow or a finite / inf: the true quotient is tiny with this sign
        return 0.0 if (a > 0) == (b > 0) else -math.ulp(0.0)
    if math.isinf(q):
        return MAX if q > 0 and math.isfinite(a) else q
    return down(q)


def _div_up(a: float, b: float) -> float:
    """A float ≥ a / b (b != 0)."""
    if a == 0:
        return 0.0
    if math.isinf(a) and math.isinf(b):
        return INF
    q = a / b
    if q == 0:
        return math.ulp(0.0) if (a > 0) == (b > 0) else 0.0
    if math.isinf(q):
        return -MAX if q < 0 and math.isfinite(a) else q
    return up(q)


def hull_all(ivs: Iterable[Interval | None]) -> Interval | None:
    out: Interval | None = None
    for iv in ivs:
        if iv is None:
            continue
        out = iv if out is None else out.hull(iv)
    return out


def dtype_range(dtype: str) -> Interval:
    """Everything a dtype can hold, as an interval (floats: the whole line; ints: their range)."""
    d = DTYPES.get(dtype)
    if d is None or d.kind in ("float", "complex"):
        return Interval.whole()
    if d.kind == "bool":
        return Interval(0.0, 1.0)
    if d.name == "u8":
        return Interval(0.0, 255.0)
    half = 2.0 ** (d.bits - 1)
    return Interval(-half, half - 1)


__all__ = [
    "INF",
    "TRANS_ULPS",
    "Interval",
    "add_down",
    "add_up",
    "down",
    "dtype_range",
    "hull_all",
    "mul_down",
    "mul_up",
    "up",
]
