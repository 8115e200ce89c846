"""Error balls: values in a working float dtype with rigorous absolute error bounds, and the
arithmetic, reductions and elementary functions on them (`Ctx`). The rules are described in
hnfc/numerics/enclosure.py, which evaluates whole programs with them; this module knows no IR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import mpmath
import numpy as np

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
            if n <= 1:  # the sum is its one term (or 0): exact, and no infinity can appear
                return self.fix(y, np.sum(x.e, axis=axes, keepdims=keepdim))
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
            if name == "silu":  # x sigmoid(x), as its ref
                return self.mul(x, self.unary("sigmoid", x, {}))
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

    def slope(self, x: Ball, s) -> Ball:
        """A pointwise function given by an op's `enclosure` (hnfc.ops.slopes.Slope): computed by
        libm (or torch in float64), its error the largest |f'| over x's enclosure times x's error,
        plus the function's own rounding."""
        x = self.num(x)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore", under="ignore"):
            pad = 4 * self.u * (np.abs(x.y) + x.e) + self.eta  # [lo, hi] outward despite their rounding
            lip = np.asarray(s.bound(x.y - x.e - pad, x.y + x.e + pad), dtype=self.dt) * self.t(1 + 2.0**-30)
            lip = np.where(np.isnan(lip), np.inf, lip)
            if s.torch64:
                import torch

                x64 = np.asarray(x.y, dtype=np.float64)
                y64 = getattr(torch.special, s.torch64)(torch.from_numpy(x64)).numpy()
                conv = np.abs(x64 - x.y)  # the argument rounded to float64
                e = self.p(lip, x.e + conv) + np.abs(y64) * (2.0**-53 * 2 * COMPOUND_ULPS) + 2.0**-1074
                return self.fix(np.asarray(y64, dtype=self.dt), e, x)
            y = getattr(np, s.function)(x.y)
            return self.fix(y, self.p(lip, x.e) + self.rnd(y, LIBM_ULPS), x)

    def erf(self, x: Ball) -> Ball:
        import torch

        # torch's float64 erf (within a few float64 ulps); |erf'| <= 2/sqrt(pi)
        y64 = torch.special.erf(torch.from_numpy(np.asarray(x.y, dtype=np.float64))).numpy()
        e64 = np.abs(y64) * (2.0**-53 * 2 * COMPOUND_ULPS) + 2.0**-1074
        conv = np.abs(np.asarray(x.y, dtype=np.float64) - x.y)  # the argument rounded to float64
        y = np.asarray(y64, dtype=self.dt)
        e = self.p(self.t(1.1284), x.e + conv) + e64
        return self.fix(y, e, x)
