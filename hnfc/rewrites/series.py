"""Series candidates: truncated Taylor/Laurent/Puiseux expansions of a univariate subexpression.

In: an IR program, the value to expand (a pointwise subexpression) and its one variable leaf
(hnfc/verify/localize.py finds both), the program dtype's significand bits.
Out: `Expansion`s: a point (0, ±inf, a real root of a denominator), the truncated series as
exponents and coefficients, and the interval around the point where the truncation error was
measured below the dtype's rounding; `build` writes one into a `Builder` (Horner form).
Sits in rewrites beside check.py, whose sympy meanings of the ops it shares; the regimes stage
(hnfc/verify/regimes.py) decides where (if anywhere) a candidate is used.

The truncation bound. For a candidate order the series is compared with the subexpression itself,
both evaluated in mpmath at `WORK_PREC` bits, at test points spread geometrically from the
expansion point out to a trial radius (both sides where the leaf's range has them); the radius is
the largest power of two (for ±inf: the smallest) at which every test point's relative difference
is below a quarter of the dtype's unit roundoff, and the expansion is only offered inside it.
That is a measured bound (the remainder of these series grows monotonically away from the point
on each side, which the spread of test points checks), not an interval-arithmetic proof.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import mpmath

from hnfc.ir.program import Builder, Program
from hnfc.rewrites.check import _Unevaluable, sympy_call

WORK_PREC = 512  # bits for the truncation check (the subexpressions cancel up to ~2 x 64 bits)
ORDERS = (6, 12, 20, 32, 48)  # truncation orders tried (terms kept below τ^order); the widest interval wins
MAX_TERMS = 48
MAX_ROOT = 4  # Puiseux terms τ^(p/q) up to q = 4 (conjugates of square and cube roots at ±inf)


class NoSeries(Exception):
    """The subexpression has no usable expansion here (no meaning, non-real or mixed terms)."""


CALL_SECONDS = 2.0  # one sympy series or solve call; an essential singularity (exp(-1/t²) at ±inf) makes sympy grind without end


class _OutOfTime(BaseException):
    """Raised inside sympy when a call's time is up (a BaseException: sympy's own `except
    Exception` clauses must not swallow it)."""


@contextmanager
def _time_limited(seconds: float):
    """Interrupt the block after `seconds` (SIGALRM, raising _OutOfTime in it): sympy calls are
    pure Python and have no timeout of their own. Only where an alarm is ours to use: POSIX, the
    main thread, no interval timer of the program's own running; elsewhere the block runs to
    its end (the stage's deadline is still checked between calls)."""
    import signal
    import threading

    if not (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread() and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)):
        yield
        return
    if seconds <= 0:
        raise _OutOfTime
    armed = [True]

    def ring(signum, frame):
        if armed[0]:
            raise _OutOfTime

    old = signal.signal(signal.SIGALRM, ring)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            armed[0] = False
    finally:  # also when the alarm rang on the way out of the inner block
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass(frozen=True)
class Expansion:
    point: float  # 0.0, a finite root, or ±inf
    exps: tuple  # rational exponents of τ = x - point (1/|x| for ±inf), one per term
    coefs: tuple[float, ...]
    lo: float  # where the truncation error was measured below the rounding (closed interval of x)
    hi: float
    order: int

    @property
    def name(self) -> str:
        p = "inf" if self.point == math.inf else "-inf" if self.point == -math.inf else f"{self.point:g}"
        return f"series@{p}"


def _extra(op, a, attrs, sp):
    """sympy meanings of ops check.py's proof table does not carry (its rules stay as they are)."""
    table = {
        "tan": lambda: sp.tan(a[0]), "atan": lambda: sp.atan(a[0]), "asin": lambda: sp.asin(a[0]),
        "acos": lambda: sp.acos(a[0]), "asinh": lambda: sp.asinh(a[0]), "acosh": lambda: sp.acosh(a[0]),
        "atanh": lambda: sp.atanh(a[0]), "erfc": lambda: sp.erfc(a[0]),
    }
    if op not in table:
        raise _Unevaluable(op)
    return table[op]()


def _call(op, a, attrs, sp):
    try:
        return sympy_call(op, a, attrs, sp)
    except _Unevaluable:
        return _extra(op, a, attrs, sp)


@lru_cache(maxsize=None)
def has_meaning(op: str) -> bool:
    """Whether `op` is pointwise with a sympy meaning (a site may contain it)."""
    import sympy as sp

    from hnfc import ops

    if op not in ops.OPS or ops.OPS[op].kind != "pointwise" or op in ("where", "clamp", "lt"):
        return False
    x, y = sp.symbols("x y", real=True)
    try:
        _call(op, [x, y], dict(ops.OPS[op].attrs), sp)
        return True
    except (_Unevaluable, IndexError):
        return False


def to_sympy(program: Program, root: int, leaf: int, x):
    """The sympy expression of value `root` as a function of `leaf` (the symbol `x`)."""
    import sympy as sp

    memo: dict[int, object] = {leaf: x}

    def go(i: int):
        if i in memo:
            return memo[i]
        n = program.nodes[i]
        if n.op == "const":
            v = n.attr["value"]
            e = sp.Integer(int(v)) if float(v) == int(v) else sp.Rational(float(v))  # the float's exact value
        elif has_meaning(n.op):
            try:
                e = _call(n.op, [go(a) for a in n.args], n.attr, sp)
            except _Unevaluable as err:
                raise NoSeries(str(err)) from None
        else:
            raise NoSeries(f"{n.op} is not a pointwise op with a meaning")
        memo[i] = e
        return e

    return go(root)


def _terms(s, x, t, point):
    """(exponent, exact coefficient) pairs of a truncated series in the local variable t (τ)."""
    import sympy as sp

    s = sp.expand(sp.powsimp(sp.expand_power_base(s, force=True), force=True))
    out = []
    for term in sp.Add.make_args(s):
        c, k = term.as_coeff_exponent(t)
        if c.has(t) or c.has(x) or not k.is_Rational:
            raise NoSeries(f"term {term} is not c·t^k")
        if not c.is_real:
            raise NoSeries("complex coefficient")
        if c != 0:
            out.append((sp.Rational(k), c))
    if not out or len(out) > MAX_TERMS or any(k.q > MAX_ROOT for k, _ in out):
        raise NoSeries(f"no terms, too many, or exponents with a denominator above {MAX_ROOT}")
    return sorted(out, key=lambda kc: kc[0])


def _series(expr, x, point, order):
    """Terms in the local variable τ: x - point, or 1/|x| on the side of ±inf."""
    import sympy as sp

    t = sp.Symbol("t", positive=True)
    if point in (math.inf, -math.inf):
        s = sp.series(expr.subs(x, (1 if point > 0 else -1) / t), t, 0, order).removeO()
    else:
        s = sp.series(expr.subs(x, point + t), t, 0, order).removeO()
    return _terms(s, x, t, point)


def _local(x, point):
    if point in (math.inf, -math.inf):
        return (1 if point > 0 else -1) / x
    return x - point


def _value_mp(exps, coefs, x: mpmath.mpf, point: float):
    t = _local(x, mpmath.mpf(point) if point not in (math.inf, -math.inf) else point)
    if t < 0 and any(k.q > 1 for k in exps):
        return None
    return mpmath.fsum(mpmath.mpf(c) * (t ** int(k.p) if k.q == 1 else t ** (mpmath.mpf(k.p) / k.q)) for k, c in zip(exps, coefs))


def _fits(f, exps, coefs, point, xs, tol) -> bool:
    with mpmath.workprec(WORK_PREC):
        for v in xs:
            xv = mpmath.mpf(v)
            try:
                truth = f(xv)
                approx = _value_mp(exps, coefs, xv, point)
            except (ZeroDivisionError, ValueError, OverflowError):
                return False
            if approx is None or not isinstance(truth, mpmath.mpf) or not mpmath.isfinite(truth):
                return False
            if truth == 0:
                if approx != 0:
                    return False
                continue
            if abs(approx - truth) > tol * abs(truth):
                return False
    return True


SPREAD = (1.0, 0.75, 0.5, 0.25, 2.0**-4, 2.0**-10, 2.0**-24)


def _radius(f, exps, coefs, point, lo, hi, tol):
    """The interval of x around `point` (inside [lo, hi]) where the truncation error fits `tol`."""
    if point in (math.inf, -math.inf):
        sign = 1.0 if point > 0 else -1.0
        far = hi if sign > 0 else -lo
        if not far > 0:
            return None
        for e in range(0, 1030):  # smallest R = 2^e with every test point beyond it fitting
            r = 2.0**e
            if r > far:
                return None
            if _fits(f, exps, coefs, point, [sign * r / s for s in SPREAD[:5]], tol):
                return (r, math.inf) if sign > 0 else (-math.inf, -r)
        return None
    sides = [s for s in (-1.0, 1.0) if (lo < point if s < 0 else hi > point)]
    if not sides:
        return None
    width = max(abs(lo - point), abs(hi - point), 2.0**-1000)
    e_hi = min(int(math.ceil(math.log2(width))), 1000)
    for e in range(e_hi, -1000, -1):  # largest r = 2^e
        r = 2.0**e
        pts = [point + s * r * f_ for s in sides for f_ in SPREAD]
        if _fits(f, exps, coefs, point, pts, tol):
            return (point - r if -1.0 in sides else point, point + r if 1.0 in sides else point)
    return None


def expansions(program: Program, root: int, leaf: int, lo: float, hi: float, bits: int, *, deadline: float | None = None) -> list[Expansion]:
    """Expansions of value `root` in its leaf around 0, ±inf and real roots of denominators that the
    leaf's range [lo, hi] reaches, each with the interval where its truncation error is below a
    quarter of the dtype's rounding (2^-bits)."""
    import time

    import sympy as sp

    x = sp.Symbol("x", real=True)
    expr = to_sympy(program, root, leaf, x)
    if not expr.has(x):
        return []
    f = sp.lambdify(x, expr, modules="mpmath")
    points = []
    if lo <= 0 <= hi or 0 < lo <= 2.0**-8 or -(2.0**-8) <= hi < 0:
        points.append(0.0)
    if hi >= 64:
        points.append(math.inf)
    if lo <= -64:
        points.append(-math.inf)
    def seconds() -> float:
        return CALL_SECONDS if deadline is None else min(CALL_SECONDS, deadline - time.perf_counter())

    try:
        with _time_limited(seconds()):
            points += _denominator_roots(expr, x, lo, hi)
    except _OutOfTime:
        pass
    tol = 2.0 ** -(bits + 2)
    out = []
    for p in points:
        best = None
        for order in ORDERS:
            if deadline is not None and time.perf_counter() > deadline:
                break
            try:
                with _time_limited(seconds()):
                    terms = _series(expr, x, p, order)
            except (NoSeries, NotImplementedError, ValueError, TypeError, ZeroDivisionError, sp.PoleError, _OutOfTime):
                break
            exps, coefs = tuple(k for k, _ in terms), tuple(float(c) for _, c in terms)
            with mpmath.workprec(WORK_PREC):  # the truncation error alone: exact coefficients
                exact = [mpmath.mpf(str(sp.N(c, WORK_PREC // 3))) for _, c in terms]
            if not all(math.isfinite(c) for c in coefs):
                break
            rng = _radius(f, exps, exact, p, lo, hi, tol)
            if rng is None:
                continue
            cand = Expansion(p, exps, coefs, rng[0], rng[1], order)
            if best is None or _wider(cand, best):
                best = cand
        if best is not None:
            out.append(best)
    return out


def _wider(a: Expansion, b: Expansion) -> bool:
    if a.point in (math.inf, -math.inf):
        return abs(a.lo if a.point < 0 else a.hi) == math.inf and (a.lo if a.point > 0 else -a.hi) < (b.lo if b.point > 0 else -b.hi)
    return a.hi - a.lo > b.hi - b.lo


def _denominator_roots(expr, x, lo, hi, limit: int = 2) -> list[float]:
    """Finite real roots (other than 0) inside [lo, hi] of the subexpression's denominators."""
    import sympy as sp

    roots: list[float] = []
    for pw in expr.atoms(sp.Pow):
        base, e = pw.as_base_exp()
        if not (e.is_number and e < 0 and base.has(x)):
            continue
        try:
            sols = sp.solve(sp.Eq(base, 0), x)
        except (NotImplementedError, ValueError, TypeError):
            continue
        for r in sols:
            if r.is_real and r != 0:
                v = float(r)
                if lo < v < hi and v not in roots:
                    roots.append(v)
    return roots[:limit]


def build(b: Builder, e: Expansion, x: int, dtype: str) -> int:
    """The expansion as IR over value `x`: t = x - point (1/x for ±inf), then Horner in t^g for
    the exponents' common step g, times t^(smallest exponent)."""
    if e.point in (math.inf, -math.inf):
        t = b.add("reciprocal", [x])
        if e.point < 0:
            t = b.add("neg", [t])  # τ = 1/|x| on the negative side
    else:
        t = x if e.point == 0 else b.add("sub", [x, b.const(e.point, dtype)])
    exps, coefs = list(e.exps), list(e.coefs)
    q = math.lcm(*(int(k.q) for k in exps))
    if q > 1:  # τ^k = (τ^(1/q))^(qk): Horner in a root of τ (τ >= 0 where these are offered)
        t = b.add("sqrt", [t]) if q == 2 else b.add("pow", [t], {"exponent": 1.0 / q})
        exps = [k * q for k in exps]
    ints = [int(k) for k in exps]
    base = min(ints)
    shifted = [k - base for k in ints]
    g = math.gcd(*shifted) if any(shifted) else 1
    by_power = {s // g: c for s, c in zip(shifted, coefs)}
    z = t if g == 1 else (b.add("square", [t]) if g == 2 else b.add("pow", [t], {"exponent": float(g)}))
    top = max(by_power)
    acc = b.const(by_power[top], dtype)
    for k in range(top - 1, -1, -1):
        acc = b.add("mul", [acc, z])
        if k in by_power:
            acc = b.add("add", [acc, b.const(by_power[k], dtype)])
    if base == 0:
        return acc
    if base == 1:
        return b.add("mul", [acc, t])
    if base == -1:
        return b.add("div", [acc, t])
    p = b.add("square", [t]) if abs(base) == 2 else b.add("pow", [t], {"exponent": float(abs(base))})
    return b.add("mul" if base > 0 else "div", [acc, p])
