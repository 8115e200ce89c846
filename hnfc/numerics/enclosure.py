"""Tier 1 of the reference: a program evaluated vectorized, each element with an error enclosure.

In: a `Program` and its leaf values (inputs and parameters as numpy arrays, already rounded to
their declared dtypes), a working float dtype (float64, or numpy's long double where it is wider).
Out: per program output a `Ball`: values `y` in the working dtype and absolute error bounds `e`
such that the exact real value the op table's mpmath `ref` gives lies in [y - e, y + e]. `e` is
+inf where no bound is known (NaN, overflow, a domain edge inside the enclosure, an undecidable
comparison). hnfc.reference decides with it every element whose whole enclosure rounds to one
float and sends only the rest to mpmath (Herbie's Rival: escalate only where needed).

The bound is a running error analysis, op by op, for values that carry error:
- rounding of the working dtype: + − × ÷ sqrt are correctly rounded (u = half an ulp, relative,
  plus the smallest subnormal for underflow); libm functions (exp, log, tanh, ...) get `LIBM_ULPS`
  ulps and formulas of a few calls `COMPOUND_ULPS` (glibc documents ≤ 1-4 ulps for these);
- propagated error: the op's Lipschitz bound over the enclosure (|f'| at its worst point: e.g.
  exp: |y|·expm1(e), log: e/(x - e), tanh: 1), the standard first-and-second-order products for
  ×, ÷, and for sums and matrix products Higham's γ_n = nu/(1 - nu) times Σ|terms| (any order of
  summation, BLAS included);
- composite ops (softmax, layer_norm, sdpa, gelu, ...) are written as the same real formula their
  `ref` computes, in these bounded primitives, so their enclosure is as sound as the primitives';
- the bound arithmetic itself is rounded: every computed bound is grown by `GROW`, and bounds that
  go through float64 BLAS (|A|·|B|) are rounded up into float64 and grown by their own γ_n.
Shape ops run their own `ref` on index arrays, so they mean exactly what the reference means.

Opaque ops run in torch, in float64 on the CPU, exactly as the mpmath reference runs them: when
every argument is exact (and a float64), the call sees the very values the mpmath path gives it,
so its result is the same and exact by the reference's convention (embedding, arange, masks).
A known selection (split, index, narrow, ...: `SELECTIONS`) of inexact values is run on index
codes instead and gathers values and bounds. Random ops and anything else inexact: `Unsupported`
(the caller then evaluates the whole program in mpmath, as before).

torch is imported only for opaque ops and the `erf` of gelu (float64, torch.special).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import mpmath
import numpy as np

from hnfc.foundation.dtypes import DTYPES
from hnfc.ops.core import norm_dims
from hnfc.foundation.types import TensorType

LIBM_ULPS = 8  # one libm call (exp, log, tanh, ...): glibc claims <= 1-4 ulps; kept generous
COMPOUND_ULPS = 32  # a formula of a few libm calls and float operations (logaddexp, sigmoid)
GROW = 1 + 2.0**-40  # covers the rounding of the bound arithmetic itself (a few dozen ops at u)


class Unsupported(Exception):
    """The program has an op this tier cannot bound; evaluate it in mpmath instead."""


@dataclass
class Ball:
    """Values `y` (working dtype, or bool) and absolute error bounds `e` (working dtype, >= 0)."""

    y: np.ndarray
    e: np.ndarray


class Ctx:
    """The working dtype and its constants."""

    def __init__(self, dtype: Any):
        self.dt = np.dtype(dtype)
        fi = np.finfo(self.dt)
        self.t = self.dt.type
        self.u = self.t(fi.eps) / 2  # unit roundoff of round-to-nearest
        self.eta = self.t(fi.smallest_subnormal)
        self.bits = int(fi.nmant) + 1
        self.grow = self.t(GROW)

    # -- constructors -----------------------------------------------------------------------

    def exact(self, y) -> Ball:
        y = np.asarray(y)
        return Ball(y, np.zeros(y.shape, self.dt))

    def const(self, value: float, rel: float = 0.0) -> Ball:
        """A real constant known to relative accuracy `rel` (0: exact in the working dtype)."""
        y = np.asarray(self.t(value))
        return Ball(y, np.asarray(abs(y) * self.t(rel) + (self.eta if rel else 0), self.dt))

    def mp_const(self, value: Callable[[], Any]) -> Ball:
        """A real computed by `value()` in mpmath (pi, sqrt(2), a decimal), rounded to the working
        dtype, with its error (`value` runs at a precision well above the working dtype's)."""
        with mpmath.workprec(self.bits + 32):
            s = mpmath.nstr(mpmath.mpf(value()), 40, strip_zeros=False)
        return self.const(self.t(s), 2.0 ** -(self.bits - 4))  # parsing a decimal: within a few ulps

    # -- helpers ----------------------------------------------------------------------------

    def num(self, b: Ball) -> Ball:
        """Bool values as 0/1 numbers (the reference adds and multiplies Python bools)."""
        if b.y.dtype != self.dt:
            return Ball(np.asarray(b.y, dtype=self.dt), b.e)
        return b

    def rnd(self, y, ulps: float = 1.0):
        """Bound on one rounding (to nearest, `ulps` ulps for libm) of a result y: 0 where y is
        infinite or NaN (those are judged by `fix`)."""
        with np.errstate(invalid="ignore", over="ignore"):
            a = np.abs(y)
            # the absolute term: a subnormal result is within `ulps` subnormal ulps
            return np.where(np.isfinite(a), a * (self.u * self.t(2 * ulps)) + self.eta * self.t(max(ulps, 1)), 0)

    def fix(self, y, e, *args: Ball) -> Ball:
        """The result Ball: bounds grown for their own rounding; +inf where the value is NaN, the
        bound is NaN, or an infinity came from finite arguments (overflow)."""
        y = np.asarray(y)
        with np.errstate(invalid="ignore", over="ignore"):
            e = np.asarray(e, dtype=self.dt) * self.grow
            bad = np.isnan(e) | (np.isnan(y) if y.dtype != bool else False)
            if args and y.dtype != bool:  # (sums and products test their own terms)
                fin = np.ones(y.shape, bool)
                for a in args:
                    if a.y.dtype != bool:
                        fin = fin & np.isfinite(a.y)
                bad = bad | (~np.isfinite(y) & fin)
            e = np.where(bad, np.inf, e)
        return Ball(y, np.asarray(np.broadcast_to(e, y.shape), dtype=self.dt))

    def p(self, x, e):
        """x·e with 0 where e is 0 (an exact operand contributes nothing, even beside inf); a
        non-zero product that underflows counts as the smallest subnormal (a bound may not round
        down to 0: 0.5 · 2^-1074 does, to even)."""
        with np.errstate(invalid="ignore", over="ignore", under="ignore"):
            prod = x * e
            return np.where(e == 0, 0, np.where((prod == 0) & (x != 0), self.eta, prod))

    # -- arithmetic -------------------------------------------------------------------------

    def two_sum_err(self, a, b, s):
        """|a + b - s| exactly (Knuth's TwoSum; round to nearest), the rounding bound where the
        transformation overflows. Exact sums (integers, aligned values) get 0."""
        with np.errstate(invalid="ignore", over="ignore"):
            bb = s - a
            err = np.abs((a - (s - bb)) + (b - bb))
            return np.where(np.isfinite(err), err, self.rnd(s))

    def two_prod_err(self, a, b, y):
        """|a·b - y| exactly (Dekker's TwoProduct with Veltkamp's split) where no intermediate
        overflows or underflows, else the rounding bound."""
        split = self.t(2.0 ** ((self.bits + 1) // 2) + 1)
        fi = np.finfo(self.dt)
        with np.errstate(invalid="ignore", over="ignore", under="ignore"):
            ca, cb = split * a, split * b
            ah, bh = ca - (ca - a), cb - (cb - b)
            al, bl = a - ah, b - bh
            err = np.abs(((ah * bh - y) + ah * bl + al * bh) + al * bl)
            big = self.t(fi.max) / split / 4
            ok = np.isfinite(err) & (np.abs(a) < big) & (np.abs(b) < big) & ((np.abs(y) > self.t(fi.tiny) * self.t(2.0 ** (2 * self.bits + 4))) | (y == 0) & ((a == 0) | (b == 0)))
            return np.where(ok, err, self.rnd(y))

    def add(self, a: Ball, b: Ball) -> Ball:
        a, b = self.num(a), self.num(b)
        with np.errstate(invalid="ignore", over="ignore"):
            y = a.y + b.y
            return self.fix(y, a.e + b.e + self.two_sum_err(a.y, b.y, y), a, b)

    def sub(self, a: Ball, b: Ball) -> Ball:
        a, b = self.num(a), self.num(b)
        with np.errstate(invalid="ignore", over="ignore"):
            y = a.y - b.y
            return self.fix(y, a.e + b.e + self.two_sum_err(a.y, -b.y, y), a, b)

    def neg(self, a: Ball) -> Ball:
        a = self.num(a)
        return Ball(-a.y, a.e)

    def mul(self, a: Ball, b: Ball) -> Ball:
        a, b = self.num(a), self.num(b)
        with np.errstate(invalid="ignore", over="ignore"):
            y = a.y * b.y
            e = self.p(np.abs(a.y), b.e) + self.p(np.abs(b.y), a.e) + self.p(a.e, b.e) + self.two_prod_err(a.y, b.y, y)
            return self.fix(y, e, a, b)

    def div(self, a: Ball, b: Ball) -> Ball:
        a, b = self.num(a), self.num(b)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            y = a.y / b.y
            mb = np.abs(b.y)
            lo = (mb - b.e) * (1 - 4 * self.u)  # |b| >= lo on the enclosure
            e = (a.e + self.p(np.abs(y) * (1 + 4 * self.u), b.e)) / lo + self.rnd(y)
            # a divisor that may be 0 (the reference's signed infinities have no -0): undecided
            e = np.where(lo > 0, e, np.inf)
            return self.fix(y, e, a, b)

    def lipschitz(self, x: Ball, y, lip, ulps: float = LIBM_ULPS) -> Ball:
        """f(x) computed as y (within `ulps`), |f'| <= lip on the enclosure of x."""
        return self.fix(y, self.p(lip, x.e) + self.rnd(y, ulps), x)

    # -- reductions and products ------------------------------------------------------------

    def gamma(self, n: int):
        nu = self.t(n) * self.u
        return nu / (1 - nu) if nu < 0.5 else self.t(np.inf)

    def sum(self, x: Ball, axes: tuple, keepdim: bool) -> Ball:
        x = self.num(x)
        n = math.prod(x.y.shape[a] for a in axes) if axes else 1
        with np.errstate(invalid="ignore", over="ignore"):
            y = np.sum(x.y, axis=axes, keepdims=keepdim)
            if n <= 1:
                return self.fix(y, np.sum(x.e, axis=axes, keepdims=keepdim), x)
            mag = np.sum(np.abs(x.y), axis=axes, keepdims=keepdim) * self.grow
            e = np.sum(x.e, axis=axes, keepdims=keepdim) * self.grow + self.gamma(n) * mag + self.eta * n
            # an infinity among finite terms is exact (the reference sums infinities too); the
            # finiteness test of `fix` must look at the terms of each sum, not elementwise
            fin = np.all(np.isfinite(x.y), axis=axes, keepdims=keepdim)
            e = np.where(~np.isfinite(y) & fin, np.inf, e)
        return self.fix(y, e)

    def amax(self, x: Ball, axes: tuple, keepdim: bool, fn=np.max) -> Ball:
        # |max x - max x̂| <= max |x - x̂|; max and min are exact selections
        x = self.num(x)
        if any(x.y.shape[a] == 0 for a in axes):
            raise Unsupported("max over an empty axis")
        return self.fix(fn(x.y, axis=axes, keepdims=keepdim), np.max(x.e, axis=axes, keepdims=keepdim))

    def _up64(self, v):
        """Nonnegative working values as float64, rounded up."""
        f = np.asarray(v, dtype=np.float64)
        if self.dt == np.float64:
            return f
        with np.errstate(invalid="ignore", over="ignore"):
            return np.where(f < v, np.nextafter(f, np.inf), f)

    def matmul(self, a: Ball, b: Ball) -> Ball:
        a, b = self.num(a), self.num(b)
        n = a.y.shape[-1] if a.y.ndim else 1
        with np.errstate(invalid="ignore", over="ignore"):
            y = np.matmul(a.y, b.y)
            # bounds through float64 BLAS on nonnegative matrices: relative error <= γ_n in
            # float64, covered by `safe`; underflowed products by n·2^-1074 each
            aa, ab = self._up64(np.abs(a.y)), self._up64(np.abs(b.y))
            ea_any, eb_any = bool(np.any(a.e)), bool(np.any(b.e))
            bound = np.matmul(aa, ab) * float(self.gamma(n))
            if eb_any:
                bound = bound + np.matmul(aa, self._up64(b.e))
            if ea_any:
                bound = bound + np.matmul(self._up64(a.e), ab)
            if ea_any and eb_any:
                bound = bound + np.matmul(self._up64(a.e), self._up64(b.e))
            safe = 1 + (n + 8) * 2.0**-50
            e = np.asarray(bound, dtype=self.dt) * self.t(safe) + self.t(n * 2.0**-1074) + self.rnd(y)
            if not np.all(np.isfinite(y)):  # an infinity from finite terms is an overflow
                fin = np.matmul(np.isfinite(a.y).astype(np.float64), np.isfinite(b.y).astype(np.float64)) >= n
                e = np.where(~np.isfinite(y) & fin, np.inf, e)
            e = np.where(np.isfinite(bound), e, np.inf)
        return self.fix(y, e)

    def softmax_parts(self, x: Ball, axis: int):
        """d = x - m (m = the row max, any finite constant works: the real softmax does not
        depend on it), E = exp(d), S = sum E: softmax = E/S, log_softmax = d - log S."""
        x = self.num(x)
        m = np.max(x.y, axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        d = self.sub(x, self.exact(m))
        ex = self.exp(d)
        return d, ex, self.sum(ex, (axis,), True)

    # -- elementary functions ---------------------------------------------------------------

    def exp(self, x: Ball) -> Ball:
        x = self.num(x)
        with np.errstate(invalid="ignore", over="ignore"):
            y = np.exp(x.y)
            # |e^x - e^x̂| <= e^x̂ (e^|x - x̂| - 1); e^x̂ <= |y|(1 + ulps·2u)
            e = self.p(np.abs(y) * (1 + 4 * LIBM_ULPS * self.u), np.expm1(x.e)) + self.rnd(y, LIBM_ULPS)
            return self.fix(y, e, x)

    def log(self, x: Ball, scale: Ball | None = None) -> Ball:
        x = self.num(x)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            y = np.log(x.y)
            lo = (x.y - x.e) * (1 - 4 * self.u)
            e = np.where(lo > 0, self.p(1 / lo, x.e), np.where(x.e == 0, 0, np.inf)) + self.rnd(y, LIBM_ULPS)
            e = np.where(x.y >= 0, e, np.inf)  # log of a negative: NaN in the reference
            return self.fix(y, e, x)

    def sqrt(self, x: Ball) -> Ball:
        x = self.num(x)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            y = np.sqrt(x.y)
            # |√x - √x̂| <= min(e/√x̂, √e)
            prop = np.minimum(np.where(x.y > 0, x.e / y, np.inf), np.sqrt(x.e) * (1 + 4 * self.u))
            e = self.p(1, prop) + self.rnd(y)
            e = np.where((x.y - x.e >= 0) | (x.e == 0) & (x.y >= 0), e, np.inf)
            return self.fix(y, e, x)

    def pow(self, x: Ball, p: float) -> Ball:
        x = self.num(x)
        if p == 0:  # r_pow: 1 everywhere but NaN
            return self.fix(np.where(np.isnan(x.y), np.nan, self.t(1)), np.zeros(x.y.shape, self.dt))
        if p == 1:
            return x
        if p == 2:
            return self.mul(x, x)
        integral = float(p).is_integer()
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            y = np.power(x.y, self.t(p))
            ax = np.abs(x.y)
            lo, hi = (ax - x.e) * (1 - 4 * self.u), (ax + x.e) * (1 + 4 * self.u)
            q = self.t(p - 1)
            if integral and p >= 1:  # |f'| = |p| t^(p-1) increasing in |t|: at hi, over 0 too
                lip = abs(p) * np.power(hi, q) * (1 + 4 * LIBM_ULPS * self.u)
                ok = np.ones(x.y.shape, bool)
            else:  # needs the enclosure on one side of 0 (and positive for non-integers)
                lip = abs(p) * np.maximum(np.power(lo, q), np.power(hi, q)) * (1 + 4 * LIBM_ULPS * self.u)
                ok = (lo > 0) & ((x.y > 0) | integral)
            e = self.p(lip, x.e) + self.rnd(y, LIBM_ULPS)
            e = np.where(ok | (x.e == 0), e, np.inf)
            return self.fix(y, e, x)

    def unary(self, name: str, x: Ball, attrs: dict) -> Ball:
        """Pointwise ops by name (as the op table's refs define them)."""
        t = self.t
        x = self.num(x)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            if name == "neg":
                return self.neg(x)
            if name == "abs":
                return Ball(np.abs(x.y), x.e)
            if name == "reciprocal":
                return self.div(self.exact(np.ones((), self.dt)), x)
            if name == "square":
                return self.mul(x, x)
            if name == "pow":
                return self.pow(x, float(attrs["exponent"]))
            if name == "exp":
                return self.exp(x)
            if name == "expm1":
                y = np.expm1(x.y)
                return self.lipschitz(x, y, np.exp(x.y + x.e) * (1 + 4 * LIBM_ULPS * self.u))
            if name == "log":
                return self.log(x)
            if name == "log1p":
                y = np.log1p(x.y)
                lo = (1 + x.y - x.e) - 4 * self.u * (1 + np.abs(x.y) + x.e)
                e = np.where(lo > 0, self.p(1 / lo, x.e), np.where((x.e == 0) & (x.y >= -1), 0, np.inf)) + self.rnd(y, LIBM_ULPS)
                return self.fix(y, e, x)
            if name == "log2":  # r_log(x) / log(2), the same real number
                return self.div(self.log(x), self.mp_const(lambda: mpmath.log(2)))
            if name == "sqrt":
                return self.sqrt(x)
            if name == "rsqrt":
                return self.div(self.exact(np.ones((), self.dt)), self.sqrt(x))
            if name == "tanh":
                return self.lipschitz(x, np.tanh(x.y), 1)
            if name == "sinh":
                return self.lipschitz(x, np.sinh(x.y), np.cosh(np.abs(x.y) + x.e) * (1 + 4 * LIBM_ULPS * self.u))
            if name == "cosh":
                return self.lipschitz(x, np.cosh(x.y), np.cosh(np.abs(x.y) + x.e) * (1 + 4 * LIBM_ULPS * self.u))
            if name == "sin":
                return self.lipschitz(x, np.sin(x.y), 1)
            if name == "cos":
                return self.lipschitz(x, np.cos(x.y), 1)
            if name == "sigmoid":  # 1 / (1 + e^-x)
                ex = np.exp(-x.y)
                b = self.lipschitz(x, 1 / (1 + ex), t(0.25), COMPOUND_ULPS)
                # e^-x overflowing gives 0 where the true value is a tiny positive number
                return Ball(b.y, np.where(np.isinf(ex), np.inf, b.e).astype(self.dt))
            if name == "relu":
                return self.fix(np.where(np.isnan(x.y), x.y, np.maximum(x.y, 0)), x.e, x)
            if name == "logsigmoid":  # -softplus(-x) = -log(1 + e^-x)
                return self.lipschitz(x, -np.logaddexp(t(0), -x.y), 1, COMPOUND_ULPS)
            if name == "softplus":  # log1p(e^(beta x)) / beta (the reference ignores threshold)
                beta = self.const(float(attrs["beta"]))
                z = self.mul(x, beta)
                s = self.lipschitz(z, np.logaddexp(t(0), z.y), 1, COMPOUND_ULPS)
                return self.div(s, beta)
            if name == "erf":
                return self.erf(x)
            if name == "gelu":
                if attrs["approximate"] == "tanh":  # x sigmoid(2k(x + 0.044715 x^3)), k = sqrt(2/pi)
                    k2 = self.mp_const(lambda: 2 * mpmath.sqrt(2 / mpmath.pi))
                    inner = self.add(x, self.mul(self.mp_const(lambda: mpmath.mpf("0.044715")), self.pow(x, 3)))
                    return self.mul(x, self.unary("sigmoid", self.mul(k2, inner), {}))
                half = self.const(0.5)
                z = self.mul(x, self.mp_const(lambda: 1 / mpmath.sqrt(2)))
                return self.mul(self.mul(x, half), self.add(self.const(1.0), self.erf(z)))
            if name == "clamp":
                y = x.y
                if attrs["min"] is not None:
                    y = np.where(np.isnan(y), y, np.maximum(y, t(attrs["min"])))
                if attrs["max"] is not None:
                    y = np.where(np.isnan(y), y, np.minimum(y, t(attrs["max"])))
                return self.fix(y, x.e, x)
        raise Unsupported(name)

    def erf(self, x: Ball) -> Ball:
        import torch

        # torch's float64 erf (within a few float64 ulps); |erf'| <= 2/sqrt(pi)
        y64 = torch.special.erf(torch.from_numpy(np.asarray(x.y, dtype=np.float64))).numpy()
        e64 = np.abs(y64) * (2.0**-53 * 2 * COMPOUND_ULPS) + 2.0**-1074
        conv = np.abs(np.asarray(x.y, dtype=np.float64) - x.y)  # the argument rounded to float64
        y = np.asarray(y64, dtype=self.dt)
        e = self.p(self.t(1.1284), x.e + conv) + e64
        return self.fix(y, e, x)


def _binary(name: str):
    return {"add": Ctx.add, "sub": Ctx.sub, "mul": Ctx.mul, "div": Ctx.div}.get(name)


def _where(c: Ctx, xs: list[Ball]) -> Ball:
    cond, a, b = xs
    cb, undecided = _truth(c, cond)
    if a.y.dtype == bool and b.y.dtype == bool:  # a mask stays a mask (sdpa tells them by it)
        return Ball(np.where(cb, a.y, b.y), np.where(undecided, np.inf, np.where(cb, a.e, b.e)).astype(c.dt))
    a, b = c.num(a), c.num(b)
    y = np.where(cb, a.y, b.y)
    e = np.where(cb, a.e, b.e)
    e = np.where(undecided, np.inf, e)
    return c.fix(y, e)


def _truth(c: Ctx, b: Ball):
    """bool(v) of each value, and where the enclosure cannot tell (it holds 0 and another value)."""
    if b.y.dtype == bool:
        return b.y, b.e != 0
    y = b.y != 0
    und = (b.e != 0) & (np.abs(b.y) <= b.e) | np.isnan(b.y) | np.isnan(b.e)
    return y, und


def _to(c: Ctx, x: Ball, at, out) -> Ball:
    kind = DTYPES[at["dtype"]].kind
    if kind == "float":
        return x
    if kind == "bool":
        y, und = _truth(c, x)
        return Ball(y, np.where(und, np.inf, 0).astype(c.dt))
    # truncation toward zero: decided when both ends truncate alike
    with np.errstate(invalid="ignore", over="ignore"):
        xn = c.num(x)
        lo, hi = np.trunc(xn.y - xn.e), np.trunc(xn.y + xn.e)
        ok = (lo == hi) & np.isfinite(xn.y) & np.isfinite(xn.e)
        return Ball(np.where(ok, np.trunc(xn.y), 0).astype(c.dt), np.where(ok, 0, np.inf).astype(c.dt))


def _index_map(node, args: list[Ball], out) -> Ball:
    """A shape op: its own ref run on index arrays, then the values gathered by index."""
    sizes = [a.y.size for a in args]
    offs = np.cumsum([0] + sizes)
    idx = [np.arange(o, o + s, dtype=np.int64).reshape(a.y.shape).astype(object) for a, o, s in zip(args, offs, sizes)]
    where = np.asarray(node.opdef.ref(idx, node.attr, out)).astype(np.int64)
    if len(args) == 1:
        ys, es = args[0].y.reshape(-1), args[0].e.reshape(-1)
    else:
        dt = np.result_type(*(a.y.dtype for a in args))
        ys = np.concatenate([a.y.reshape(-1).astype(dt) for a in args])
        es = np.concatenate([a.e.reshape(-1) for a in args])
    return Ball(ys[where], es[where])


def _layer_norm(c: Ctx, xs, at, out, center: bool, eps: float) -> Ball:
    x = c.num(xs[0])
    axes = tuple(range(x.y.ndim - at["normalized_ndim"], x.y.ndim))
    n = c.const(float(math.prod(x.y.shape[a] for a in axes)))
    if center:
        x = c.sub(x, c.div(c.sum(x, axes, True), n))
    var = c.div(c.sum(c.mul(x, x), axes, True), n)
    y = c.div(x, c.sqrt(c.add(var, c.const(float(eps)))))
    w = xs[1]
    b = xs[2] if center else None
    if w is not None:
        y = c.mul(y, w)
    if b is not None:
        y = c.add(y, b)
    return y


def _batch_norm(c: Ctx, xs, at, out) -> Ball:
    x, w, b, mean, var = xs
    shape = (1, -1) + (1,) * (x.y.ndim - 2)

    def per_channel(v):
        return None if v is None else Ball(v.y.reshape(shape), v.e.reshape(shape))

    mean, var, w, b = map(per_channel, (mean, var, w, b))
    y = c.div(c.sub(x, mean), c.sqrt(c.add(var, c.const(float(at["eps"])))))
    if w is not None:
        y = c.mul(y, w)
    if b is not None:
        y = c.add(y, b)
    return y


def _sdpa(c: Ctx, xs, at, out) -> Ball:
    q, k, v, mask = xs
    if at["enable_gqa"] and q.y.shape[-3] != k.y.shape[-3]:
        rep = q.y.shape[-3] // k.y.shape[-3]
        k = Ball(np.repeat(k.y, rep, axis=-3), np.repeat(k.e, rep, axis=-3))
        v = Ball(np.repeat(v.y, rep, axis=-3), np.repeat(v.e, rep, axis=-3))
    scale = c.const(float(at["scale"])) if at["scale"] is not None else c.mp_const(lambda: 1 / mpmath.sqrt(q.y.shape[-1]))
    kt = Ball(np.swapaxes(k.y, -1, -2), np.swapaxes(k.e, -1, -2))
    logits = c.mul(c.matmul(q, kt), scale)
    L, S = logits.y.shape[-2], logits.y.shape[-1]
    ninf = c.exact(np.full((), -np.inf, c.dt))
    if at["is_causal"]:
        logits = _where(c, [c.exact(np.tril(np.ones((L, S), dtype=bool))), logits, ninf])
    if mask is not None:
        if mask.y.dtype == bool:
            logits = _where(c, [mask, logits, ninf])
        else:
            logits = c.add(logits, mask)
    _, ex, s = c.softmax_parts(logits, logits.y.ndim - 1)
    return c.matmul(c.div(ex, s), v)


def _linear_like(c: Ctx, name: str, xs, at) -> Ball:
    if name in ("mm", "bmm", "matmul"):
        return c.matmul(xs[0], xs[1])
    if name == "linear":
        x, w, b = xs
        y = c.matmul(x, Ball(w.y.T, w.e.T))
        return y if b is None else c.add(y, b)
    bias, a, b = xs  # addmm
    prod = c.mul(c.matmul(a, b), c.const(float(at["alpha"])))
    return prod if at["beta"] == 0 else c.add(prod, c.mul(bias, c.const(float(at["beta"]))))


def _reduce(c: Ctx, name: str, x: Ball, at) -> Ball:
    axes = norm_dims(at.get("dim"), x.y.ndim)
    keep = at["keepdim"]
    if name == "sum":
        return c.sum(x, axes, keep)
    n = math.prod(x.y.shape[a] for a in axes) if axes else 1
    if name == "mean":
        return c.div(c.sum(x, axes, keep), c.const(float(n)))
    if name == "amax":
        return c.amax(x, axes, keep, np.max)
    if name == "amin":
        return c.amax(x, axes, keep, np.min)
    if name == "logsumexp":  # log(sum(exp(x))) = m + log(sum(exp(x - m)))
        x = c.num(x)
        m = np.max(x.y, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        s = c.sum(c.exp(c.sub(x, c.exact(m))), axes, keep)
        return c.add(c.log(s), c.exact(m if keep else m.reshape(s.y.shape)))
    if name in ("var", "std"):
        x = c.num(x)
        d = c.sub(x, c.div(c.sum(x, axes, True), c.const(float(n))))
        dof = n - at["correction"]
        if dof <= 0:
            raise Unsupported(f"{name} with {dof} degrees of freedom")
        var = c.div(c.sum(c.mul(d, d), axes, keep), c.const(float(dof)))
        return var if name == "var" else c.sqrt(var)
    raise Unsupported(name)


def _leaf_value(c: Ctx, at) -> Ball:
    value = at["value"]
    if at["dtype"] == "bool":
        return c.exact(np.asarray(bool(value)))
    y = c.t(value)
    if (float(value) if not isinstance(value, int) else value) != (float(y) if not isinstance(value, int) else int(y)):
        raise Unsupported(f"constant {value!r} is not exact in {c.dt}")
    return c.exact(np.asarray(y))


def _node(c: Ctx, node, xs: list, prog) -> Ball:
    op, at, out = node.op, node.attr, node.type
    kind = node.opdef.kind
    if op == "const":
        return _leaf_value(c, at)
    if op == "full":
        v = _leaf_value(c, at)
        return c.exact(np.full(tuple(at["shape"]), v.y, dtype=v.y.dtype))
    if op in ("detach",):
        return xs[0]
    if op == "opaque":
        return _opaque(c, node, xs, prog)
    if op == "getitem":
        v = xs[0][at["index"]]
        if v is None:
            raise Unsupported("getitem of a non-tensor item")
        return v
    if op == "to":
        return _to(c, xs[0], at, out)
    if kind == "shape":
        return _index_map(node, xs, out)
    f = _binary(op)
    if f is not None:
        return f(c, xs[0], xs[1])
    if op in ("maximum", "minimum"):
        a, b = c.num(xs[0]), c.num(xs[1])
        fn = np.maximum if op == "maximum" else np.minimum  # NaN-propagating, as r_max/r_min
        return c.fix(fn(a.y, b.y), np.maximum(a.e, b.e), a, b)
    if op == "hypot":
        a, b = c.num(xs[0]), c.num(xs[1])
        with np.errstate(invalid="ignore", over="ignore"):
            y = np.hypot(a.y, b.y)
            return c.fix(y, a.e + b.e + c.rnd(y, LIBM_ULPS), a, b)
    if op == "logaddexp":
        a, b = c.num(xs[0]), c.num(xs[1])
        with np.errstate(invalid="ignore", over="ignore"):
            y = np.logaddexp(a.y, b.y)
            return c.fix(y, np.maximum(a.e, b.e) + c.rnd(y, COMPOUND_ULPS), a, b)
    if op == "where":
        return _where(c, xs)
    if kind == "pointwise":
        return c.unary(op, xs[0], at)
    if kind == "reduction":
        return _reduce(c, op, xs[0], at)
    if kind == "linalg":
        return _linear_like(c, op, xs, at)
    if op in ("softmax", "log_softmax"):
        x = c.num(xs[0])
        axis = at["dim"] % max(x.y.ndim, 1)
        d, ex, s = c.softmax_parts(x, axis)
        return c.div(ex, s) if op == "softmax" else c.sub(d, c.log(s))
    if op == "layer_norm":
        return _layer_norm(c, xs, at, out, True, at["eps"])
    if op == "rms_norm":
        from hnfc.ops.reductions import _rms_eps

        return _layer_norm(c, [xs[0], xs[1], None], at, out, False, _rms_eps(at, out))
    if op == "batch_norm":
        return _batch_norm(c, xs, at, out)
    if op == "scaled_dot_product_attention":
        return _sdpa(c, xs, at, out)
    raise Unsupported(op)


# aten ops that only select, copy or rearrange elements of their float arguments: run on index
# codes they give the element map
SELECTIONS = frozenset(
    f"aten.{n}"
    for n in (
        "split.Tensor", "split_with_sizes.default", "chunk.default", "unbind.int", "narrow.default",
        "index.Tensor", "index_select.default", "flip.default", "roll.default", "repeat.default",
        "clone.default", "alias.default", "select.int", "slice.Tensor", "t.default", "view.default",
        "contiguous.default", "embedding.default", "gather.default", "tril.default", "triu.default",
    )
)
_RANDOM = ("rand", "dropout", "bernoulli", "normal", "multinomial", "uniform", "randperm", "exponential")


def _is_float(v: Ball) -> bool:
    return v.y.dtype != bool and v.y.dtype.kind == "f"


def _opaque(c: Ctx, node, xs: list, prog) -> Any:
    import torch

    from hnfc.numerics.torch_calls import run_call

    target = node.attr["target"]
    if any(r in target for r in _RANDOM):
        raise Unsupported(f"random op {target}")
    arg_types = [None if a is None else prog.nodes[a].type for a in node.args]
    if any(isinstance(x, tuple) for x in xs):
        raise Unsupported("a tuple argument")
    # the mpmath path hands torch its values rounded to float64: so do we (an enclosure of the
    # rounded value is the rounded ends of the enclosure; rounding is monotone)
    xs = [x if x is None or not _is_float(x) else _rounded64(c, x) for x in xs]
    exact = all(x is None or not np.any(x.e) for x in xs)

    def run(args):
        call = node.opdef.emit(args, node.attr, node.type)
        with torch.no_grad():
            return run_call(call, "cpu", float_dtype=torch.float64, all_on_device=True)

    def tensor(v: Ball, t):
        if isinstance(t, TensorType) and DTYPES[t.dtype].kind == "bool":
            return torch.from_numpy(np.asarray(v.y != 0 if v.y.dtype != bool else v.y))
        if isinstance(t, TensorType) and DTYPES[t.dtype].kind == "int":
            return torch.from_numpy(np.asarray(v.y).astype(np.int64)).to(_torch_dtype(t.dtype))
        return torch.from_numpy(np.asarray(v.y, dtype=np.float64))

    if exact:
        out = run([None if x is None else tensor(x, t) for x, t in zip(xs, arg_types)])
        return _from_torch(c, out)
    if target not in SELECTIONS:
        raise Unsupported(f"opaque {target} of inexact values")
    # a selection of inexact floats: run it on codes (exact integers in float64) for the float
    # arguments, the real values for the others (which must be exact)
    ys, es, args, off = [], [], [], 0
    for x, t in zip(xs, arg_types):
        if x is None:
            args.append(None)
        elif _is_float(x) and isinstance(t, TensorType) and DTYPES[t.dtype].kind == "float":
            ys.append(np.asarray(x.y, c.dt).reshape(-1))
            es.append(np.asarray(x.e, c.dt).reshape(-1))
            args.append(torch.arange(off, off + x.y.size, dtype=torch.float64).reshape(x.y.shape))
            off += x.y.size
        elif np.any(x.e):
            raise Unsupported(f"opaque {target}: inexact index argument")
        else:
            args.append(tensor(x, t))
    if off >= 2**53:
        raise Unsupported("too many elements to code in float64")
    yv, ev = np.concatenate(ys), np.concatenate(es)

    def gather(o):
        if isinstance(o, (tuple, list)):
            return tuple(gather(v) for v in o)
        codes = o.detach().numpy()
        if codes.dtype != np.float64 or not np.array_equal(codes, np.round(codes)):
            raise Unsupported(f"opaque {target}: not a selection")
        k = codes.astype(np.int64)
        return Ball(yv[k], ev[k])

    return gather(run(args))


def _rounded64(c: Ctx, x: Ball) -> Ball:
    """An enclosure of round_to_float64(v) for every v in x's enclosure."""
    with np.errstate(invalid="ignore", over="ignore"):
        lo = np.where(x.e == 0, x.y, np.nextafter(x.y - x.e, -np.inf)).astype(np.float64)
        hi = np.where(x.e == 0, x.y, np.nextafter(x.y + x.e, np.inf)).astype(np.float64)
        same = (lo == hi) | (np.isnan(lo) & np.isnan(hi))
        y = np.where(same, lo, (np.asarray(lo, c.dt) + np.asarray(hi, c.dt)) / 2)
        half = np.maximum(y - np.asarray(lo, c.dt), np.asarray(hi, c.dt) - y)
        e = np.where(same, 0, np.nextafter(half, np.inf))
        e = np.where(np.isnan(y) | np.isnan(e), np.inf, e)
    return Ball(np.asarray(y, c.dt), np.asarray(e, c.dt))


def _torch_dtype(name: str):
    from hnfc.foundation.dtypes import to_torch

    return to_torch(name)


def _from_torch(c: Ctx, v: Any) -> Any:
    import torch

    if isinstance(v, (tuple, list)):
        return tuple(_from_torch(c, e) for e in v)
    if isinstance(v, torch.Tensor):
        if v.is_complex():
            raise Unsupported("complex result")
        if v.dtype == torch.bool:
            return c.exact(v.numpy().copy())
        arr = v.double().numpy() if v.is_floating_point() else v.numpy()
        y = arr.astype(c.dt)
        if arr.dtype.kind in "iu" and np.any(y.astype(arr.dtype) != arr):
            raise Unsupported("integer result not exact in the working dtype")
        return c.exact(y)
    if isinstance(v, (bool, int, float)):
        return c.exact(np.asarray(v, dtype=bool if isinstance(v, bool) else c.dt))
    return None


def supported(program) -> bool:
    """Whether every node may have a vectorized meaning here (opaque ops are judged as they run)."""
    return all(not (n.op == "opaque" and any(r in n.attr["target"] for r in _RANDOM)) for n in program.nodes)


def evaluate(program, leaves: dict[int, np.ndarray], dtype: Any) -> list[Ball]:
    """Every output of `program` as a Ball in `dtype`; `leaves` maps input and parameter node ids
    to their values (bool, integer or float numpy arrays, exact). Raises Unsupported."""
    if not supported(program):
        raise Unsupported("random op")
    c = Ctx(dtype)
    vals: list[Any] = [None] * len(program.nodes)
    last = list(range(len(program.nodes)))
    for i, n in enumerate(program.nodes):
        for a in n.args:
            if a is not None:
                last[a] = i
    for o in program.outputs:
        last[o] = len(program.nodes)
    for i, node in enumerate(program.nodes):
        if i in leaves:
            v = leaves[i]
            if v.dtype == bool:
                vals[i] = c.exact(v)
            else:
                y = v.astype(c.dt)
                if v.dtype.kind in "iu" and np.any(y.astype(v.dtype) != v):
                    raise Unsupported("integer input not exact in the working dtype")
                vals[i] = c.exact(y)
        else:
            xs = [None if a is None else vals[a] for a in node.args]
            vals[i] = _node(c, node, xs, program)
            t = node.type
            if isinstance(vals[i], tuple) or vals[i] is None:
                pass
            elif isinstance(t, TensorType) and not t.is_symbolic and tuple(vals[i].y.shape) != tuple(t.shape):
                raise Unsupported(f"%{i} = {node.op}: shape {vals[i].y.shape}, type says {t}")
        for a in set(node.args):
            if a is not None and last[a] == i:
                vals[a] = None
    return [vals[o] for o in program.outputs]


def decide(ball: Ball, fmt: str, round_to_format: Callable) -> tuple[np.ndarray, np.ndarray]:
    """(values, decided): where the whole enclosure rounds to one value -- to float64 (nearest)
    and then to `fmt` -- that value (as float64), and a mask of those elements."""
    y, e = ball.y, ball.e
    if y.dtype == bool:
        return y.astype(np.float64), e == 0
    with np.errstate(invalid="ignore", over="ignore"):
        lo = np.nextafter(y - e, -np.inf)  # outward: the subtraction itself rounds
        hi = np.nextafter(y + e, np.inf)
        lo = np.where(e == 0, y, lo)
        hi = np.where(e == 0, y, hi)
        rlo = round_to_format(lo.astype(np.float64), fmt)
        rhi = round_to_format(hi.astype(np.float64), fmt)
        ok = (rlo == rhi) & ~np.isnan(y) & ~np.isnan(e)
    return np.where(ok, rlo, np.nan) + 0.0, ok  # + 0.0: the reference has no -0


AGREEMENT_WINDOW_ULPS = 2**16  # the rigorous bound may span at most this many output ulps
AGREEMENT_MARGIN = 2  # the wider value must sit this many observed differences from a boundary


def uses_float64_only(program) -> bool:
    """Whether some value is computed in float64 in every tier (erf), so that comparing the tiers
    would not show its error."""
    return any(n.op == "erf" or (n.op == "gelu" and n.attr.get("approximate") != "tanh") for n in program.nodes)


def agree(narrow: Ball, wide: Ball, fmt: str, round_to_format: Callable, formats: dict) -> tuple[np.ndarray, np.ndarray]:
    """(values, decided) by two evaluations that must agree, as the mpmath path's own precision
    escalation decides (two precisions agreeing after rounding), here float64 against long double.

    The same formula at 53 and at 64 bits makes errors that scale with the unit roundoff, so the
    float64 value's distance from the long double one measures the float64 error, and the long
    double error is ~2^11 times smaller. An element is decided when the whole interval
    wide ± (AGREEMENT_MARGIN·|narrow - wide| + its last rounding) rounds to one value, and the
    rigorous bound of the wide evaluation spans at most AGREEMENT_WINDOW_ULPS ulps of the output
    format (which rules out what agreement cannot see: both precisions losing every bit to one
    cancellation and agreeing on the same wrong value)."""
    f = formats[fmt]
    yw = np.asarray(wide.y)
    if yw.dtype == bool:
        return yw.astype(np.float64), np.zeros(yw.shape, bool)
    with np.errstate(invalid="ignore", over="ignore"):
        yn = np.asarray(narrow.y, dtype=yw.dtype)
        fi = np.finfo(yw.dtype)
        diff = np.abs(yw - yn)
        e = AGREEMENT_MARGIN * diff + np.abs(yw) * fi.eps + fi.smallest_subnormal
        vals, ok = decide(Ball(yw, e), fmt, round_to_format)
        y64 = np.asarray(yw, dtype=np.float64)
        _, ex = np.frexp(y64)
        ex = np.where(y64 == 0, f.emin + 1, ex)  # (frexp(0) gives exponent 0: 0 has the smallest ulp)
        ulp = np.ldexp(1.0, np.maximum(ex - 1, f.emin) - (f.mantissa - 1))
        window = np.isfinite(wide.e) & (np.asarray(wide.e, dtype=np.float64) <= AGREEMENT_WINDOW_ULPS * ulp) & np.isfinite(diff)
    return vals, ok & window
