"""hnfc's rule library: one rule per line, grouped by family (the family is the first tag).

Every rule is an equality over the reals on its guarded domain, applied left to right; the
extractor decides whether the right side is better. Operand order of `+` and `*` does not
matter in patterns (the compiler matches both orders).
"""

from __future__ import annotations

from hnfc.rewrites.builders import abs as rabs
from hnfc.rewrites.builders import acos, acosh, amax, asin, clamp, eq, lt, where, asinh, atan, atanh, bmm, cos, cosh, erf, erfc, exp, expm1, hypot, layer_norm, log, log1p, log_softmax, logaddexp, logsigmoid, logsumexp, matmul, mean, mm
from hnfc.rewrites.builders import reciprocal, reshape, select, rms_norm, rsqrt, sigmoid, sin, sinh, softmax, softplus, sqrt, square, std, tanh, var
from hnfc.rewrites.builders import prod as rprod
from hnfc.rewrites.builders import sum as rsum
from hnfc.rewrites.builders import tan
from hnfc.rewrites.dsl import FUSION, attr_vars, check_unique, const_vars, in_range, negative, nonneg, nonzero, pos, rank, rule, vars

x, y, z, w = vars("x y z w")
d, D, k, S, N, E, C, I = attr_vars("d D k S N E C I")
e, c = const_vars("e c")

LOG_EXP = ("log-exp",)
SOFTMAX = ("softmax",)
ALGEBRA = ("algebra",)
CANCEL = ("cancellation",)
STATS = ("statistics",)
STATS_FUSION = ("statistics", FUSION)
ATTENTION = ("attention",)
LOSSES = ("losses",)
ROOTS = ("roots",)
TRIG = ("trig",)
INVERSE = ("inverse",)
SPECIAL = ("special",)
FRACTIONS = ("fractions",)
NORMS = ("norms",)
THIRD = 1.0 / 3.0  # pow(x, 1/3): how a cube root is written in torch (no cbrt op)

# The ways a square is written: x * x, x ** 2 (pow), torch.square.
SQUARES = {"mul": lambda t: t * t, "pow": lambda t: t**2, "square": square}
# The squares a norm's pattern matches; the scaled forms write theirs with square(), which these
# do not match, so a scaled norm is never scaled again.
NORM_SQUARES = {n: SQUARES[n] for n in ("mul", "pow")}
# The ways a value is divided by a square root.
OVER_SQRT = {"div-sqrt": lambda a, s: a / sqrt(s), "mul-rsqrt": lambda a, s: a * rsqrt(s)}
# A scale by a constant, and the matrix products it can move into.
SCALES = {"div": lambda a, s: a / s, "mul": lambda a, s: a * s}
PRODUCTS = {"mm": mm, "bmm": bmm, "matmul": matmul}
# Trailing dims a normalization runs over (the e-graph counts dims from the end).
TRAILING = {1: (-1,), 2: (-2, -1)}



# The least scale a safely scaled norm divides by: a normal number in every float dtype (float16's
# least normal), so the divisor is never 0 or subnormal
SCALE_FLOOR = 2.0**-14


def _scale(m):
    """m where it is at least SCALE_FLOOR, else 1: s·sqrt(Σ (x/s)²) is the norm for any s > 0."""
    return where(lt(m, other=SCALE_FLOOR), 1.0, m)


def _log_sum_exp_split(x, dims, keepdim):
    """log Σ exp(x - m) over dims, m = amax(x), with the sum's 1 (C ≥ 1 with ties) kept apart
    from the other terms (see log-softmax-split-max below)."""
    m = amax(x, dim=dims, keepdim=True)
    count = rsum(eq(x, m), dim=dims, keepdim=keepdim)
    rest = rsum(where(eq(x, m), 0, exp(clamp(x - m, max=0))), dim=dims, keepdim=keepdim)
    return where(lt(count, other=1.5), log1p(rest), log(clamp(count, min=2) + rest))


RULES = check_unique(
    [
        # log / exp
        rule("log1p-intro", log(1 + x), log1p(x), tags=LOG_EXP),
        rule("expm1-intro", exp(x) - 1, expm1(x), tags=LOG_EXP),
        rule("log-exp", log(exp(x)), x, tags=LOG_EXP),
        rule("exp-log", exp(log(x)), x, when=[pos(x)], tags=LOG_EXP),
        rule("softplus-intro", log1p(exp(x)), softplus(x), tags=LOG_EXP),
        rule("softplus-minus-self", softplus(x) - x, softplus(-x), tags=LOG_EXP),  # log(1 + e^x) - x = log(e^-x + 1): no cancellation for large x
        rule("logsigmoid-intro", log(sigmoid(x)), logsigmoid(x), tags=LOG_EXP),
        rule("logsigmoid-neg-softplus", -softplus(-x, beta=1.0), logsigmoid(x), tags=LOG_EXP),
        rule("sigmoid-intro", 1 / (1 + exp(-x)), sigmoid(x), tags=LOG_EXP),
        rule("sigmoid-intro-reciprocal", reciprocal(1 + exp(-x)), sigmoid(x), tags=LOG_EXP),
        rule("sigmoid-exp-ratio", exp(x) / (1 + exp(x)), sigmoid(x), tags=LOG_EXP),
        rule("sigmoid-of-difference", exp(x) / (exp(x) + exp(y)), sigmoid(x - y), tags=LOG_EXP),
        rule("logaddexp-intro", log(exp(x) + exp(y)), logaddexp(x, y), tags=LOG_EXP),
        rule("logaddexp-minus-first", logaddexp(x, y) - x, softplus(y - x), tags=LOG_EXP),  # log(1 + e^(y-x)): no cancellation when y << x
        rule("logaddexp-minus-second", logaddexp(x, y) - y, softplus(x - y), tags=LOG_EXP),
        rule("exp-log-diff", exp(log(x) - log(y)), x / y, when=[pos(x), pos(y)], tags=LOG_EXP),
        # e^x is positive even where it underflows to 0, which log-mul's guard cannot see
        rule("log-exp-times", log(exp(x) * y), x + log(y), when=[pos(y)], tags=LOG_EXP),
        rule("log-exp-over", log(exp(x) / y), x - log(y), when=[pos(y)], tags=LOG_EXP),
        # σ(x) − σ(y) = (e^x − e^y)/((1 + e^x)(1 + e^y)) = −σ(x)·σ(−y)·expm1(y − x) = σ(y)·σ(−x)·expm1(x − y):
        # no cancellation for x ≈ y; each branch where its expm1 argument is ≤ 0 (no overflow; the
        # clamps are identities there and keep the untaken branch finite)
        rule("sigmoid-diff", sigmoid(x) - sigmoid(y),
             where(lt(x - y, other=0.0), sigmoid(y) * sigmoid(-x) * expm1(clamp(x - y, max=0.0)), -(sigmoid(x) * sigmoid(-y) * expm1(clamp(y - x, max=0.0)))), tags=LOG_EXP),
        rule("log-mul", log(x * y), log(x) + log(y), when=[pos(x), pos(y)], tags=LOG_EXP),
        rule("log-div", log(x / y), log(x) - log(y), when=[pos(x), pos(y)], tags=LOG_EXP),
        rule("log-reciprocal", log(1 / x), -log(x), when=[pos(x)], tags=LOG_EXP),
        # softmax family
        rule("softmax-intro", exp(x) / rsum(exp(x), dim=(d,), keepdim=True), softmax(x, dim=d), tags=SOFTMAX),
        rule("softmax-intro-vector", exp(x) / rsum(exp(x), dim=(-1,), keepdim=False), softmax(x, dim=-1), when=[rank(x, 1)], tags=SOFTMAX),
        rule("log-softmax-intro", log(softmax(x, dim=d)), log_softmax(x, dim=d), tags=SOFTMAX),
        # a non-negative weight (a 0/1 mask) moves into the exponent, where softmax-intro finds a
        # softmax of masked logits (log 0 = -inf: softmax's entry is 0, with no overflow first)
        rule("exp-times-weight", exp(x) * y, exp(x + log(y)), when=[nonneg(y)], tags=SOFTMAX),
        # a log taken of one class's probability (hand-written cross-entropy) is the log of the row first
        rule("log-of-select", log(select(x, dim=S, index=I)), select(log(x), dim=S, index=I), tags=SOFTMAX),
        rule("logsumexp-intro", log(rsum(exp(x), dim=D, keepdim=k)), logsumexp(x, dim=D, keepdim=k), tags=SOFTMAX),
        # log-mean-exp: log n is the logsumexp of n zeros (clamp(x, 0, 0): zeros of x's shape, 0 at ±inf too)
        rule("logmeanexp-intro", log(mean(exp(x), dim=D, keepdim=k)), logsumexp(x, dim=D, keepdim=k) - logsumexp(clamp(x, min=0.0, max=0.0), dim=D, keepdim=k), tags=SOFTMAX),
        # an average weighted by exp(x) (a hand-written attention): the weights are a softmax
        rule("softmax-weighted-sum", rsum(y * exp(x), dim=(d,), keepdim=k) / rsum(exp(x), dim=(d,), keepdim=k), rsum(y * softmax(x, dim=d), dim=(d,), keepdim=k), tags=SOFTMAX),
        *(rule(f"softmax-weighted-{n}", prod(exp(x), y) / rsum(exp(x), dim=(-1,), keepdim=True), prod(softmax(x, dim=-1), y), tags=SOFTMAX) for n, prod in PRODUCTS.items()),
        rule("log-softmax-from-logsumexp", x - logsumexp(x, dim=(d,), keepdim=True), log_softmax(x, dim=d), tags=SOFTMAX),
        rule("softmax-max-shift", softmax(x - amax(x, dim=(d,), keepdim=True), dim=d), softmax(x, dim=d), tags=SOFTMAX),
        rule("log-softmax-max-shift", log_softmax(x - amax(x, dim=(d,), keepdim=True), dim=d), log_softmax(x, dim=d), tags=SOFTMAX),
        rule(
            "logsumexp-max-shift",
            amax(x, dim=D, keepdim=True) + logsumexp(x - amax(x, dim=D, keepdim=True), dim=D, keepdim=True),
            logsumexp(x, dim=D, keepdim=True),
            tags=SOFTMAX,
        ),
        # torch's log_softmax returns (x - m) - log(fl(1 + s)) at a row's max m, with s the sum
        # of the other terms' exp(x - m): where s < u it is 0, the truth -log1p(s) ≈ -s (entropy
        # and KL weight exactly that entry by p ≈ 1). Sum the other terms apart, S, and count the
        # entries equal to m, C ≥ 1; log Σ exp(x - m) = log(C + S) is log1p(S) when C = 1 (the
        # common case: no rounding of 1 + S), log(C + S) ≥ log 2 else. The clamps are identities
        # (x ≤ m; C ≥ 2 where that branch is taken) that tell the range analysis what it cannot
        # see: exp(x - m) ≤ 1, log of ≥ 2.
        rule("log-softmax-split-max", log_softmax(x, dim=d), clamp(x - amax(x, dim=(d,), keepdim=True), max=0) - _log_sum_exp_split(x, (d,), True), tags=SOFTMAX),
        # norms: squares of tiny or huge entries underflow or overflow (1e-25² is 0 in float32,
        # 1e25² is inf); a 2-norm is homogeneous of degree 1 and a cosine of degree 0, so divide
        # by the largest magnitude first (the scaled entries lie in [-1, 1])
        *(
            rule(f"norm-scaled-{n}", sqrt(rsum(sq(x), dim=D, keepdim=k)),
                 amax(rabs(x), dim=D, keepdim=k) * sqrt(rsum(square(x / amax(rabs(x), dim=D, keepdim=True)), dim=D, keepdim=k)), when=[nonzero(x)], tags=NORMS)
            for n, sq in NORM_SQUARES.items()
        ),
        # the same where a row may be all zeros (a range holding 0): a row whose largest magnitude
        # is below SCALE_FLOOR (all zeros among them) is scaled by 1, that is, not at all
        *(
            rule(f"norm-scaled-safe-{n}", sqrt(rsum(sq(x), dim=D, keepdim=k)),
                 _scale(amax(rabs(x), dim=D, keepdim=k)) * sqrt(rsum(square(x / _scale(amax(rabs(x), dim=D, keepdim=True))), dim=D, keepdim=k)), tags=NORMS)
            for n, sq in NORM_SQUARES.items()
        ),
        *(
            rule(
                f"cosine-scaled-{n}",
                rsum(x * y, dim=D, keepdim=k) / (sqrt(rsum(sq(x), dim=D, keepdim=k)) * sqrt(rsum(sq(y), dim=D, keepdim=k))),
                rsum((x / amax(rabs(x), dim=D, keepdim=True)) * (y / amax(rabs(y), dim=D, keepdim=True)), dim=D, keepdim=k)
                / (sqrt(rsum(square(x / amax(rabs(x), dim=D, keepdim=True)), dim=D, keepdim=k)) * sqrt(rsum(square(y / amax(rabs(y), dim=D, keepdim=True)), dim=D, keepdim=k))),
                when=[nonzero(x), nonzero(y)],
                tags=NORMS,
            )
            for n, sq in NORM_SQUARES.items()
        ),
        # cancellation: rewrite a difference of nearly equal values into a form without it
        rule("sqrt-diff", sqrt(x) - sqrt(y), (x - y) / (sqrt(x) + sqrt(y)), when=[pos(x), nonneg(y)], tags=CANCEL),
        rule("sqrt-diff-rev", sqrt(x) - sqrt(y), (x - y) / (sqrt(x) + sqrt(y)), when=[nonneg(x), pos(y)], tags=CANCEL),
        # the same with the shared term cancelled exactly (x + y - x = y keeps y's shape: a
        # scalar y cannot replace a tensor-valued difference, so this is its own rule)
        rule("sqrt-add-diff", sqrt(x + y) - sqrt(x), y / (sqrt(x + y) + sqrt(x)), when=[nonneg(x), pos(y)], tags=CANCEL),
        rule("sqrt-sub-diff", sqrt(x) - sqrt(x - y), y / (sqrt(x) + sqrt(x - y)), when=[pos(x), nonneg(y)], tags=CANCEL),
        rule("recip-add-diff", reciprocal(x + y) - reciprocal(x), -y / ((x + y) * x), when=[pos(x), nonneg(y)], tags=CANCEL),
        rule("one-over-add-diff", 1 / (x + y) - 1 / x, -y / ((x + y) * x), when=[pos(x), nonneg(y)], tags=CANCEL),
        *(rule(f"sq-diff-{n}", sq(x) - sq(y), (x - y) * (x + y), tags=CANCEL) for n, sq in SQUARES.items()),
        rule("recip-diff", reciprocal(x) - reciprocal(y), (y - x) / (x * y), when=[nonzero(x), nonzero(y)], tags=CANCEL),
        rule("one-over-diff", 1 / x - 1 / y, (y - x) / (x * y), when=[nonzero(x), nonzero(y)], tags=CANCEL),
        rule("add-sub-cancel", (x + y) - x, y, tags=CANCEL),
        rule("sub-add-cancel", x - (x + y), -y, tags=CANCEL),
        rule("one-minus-cos", 1 - cos(x), square(sin(x / 2)) * 2, tags=CANCEL),
        rule("one-minus-exp", 1 - exp(x), -expm1(x), tags=CANCEL),
        rule("exp-diff-sinh", exp(x) - exp(-x), sinh(x) * 2, tags=CANCEL),
        rule("exp-sum-cosh", exp(x) + exp(-x), cosh(x) * 2, tags=CANCEL),
        rule("sinh-intro", (exp(x) - exp(-x)) / 2, sinh(x), tags=CANCEL),
        rule("sinh-intro-half", (exp(x) - exp(-x)) * 0.5, sinh(x), tags=CANCEL),
        rule("cosh-intro", (exp(x) + exp(-x)) / 2, cosh(x), tags=CANCEL),
        rule("cosh-intro-half", (exp(x) + exp(-x)) * 0.5, cosh(x), tags=CANCEL),
        rule("tanh-intro", (exp(x) - exp(-x)) / (exp(x) + exp(-x)), tanh(x), tags=CANCEL),
        rule("tanh-intro-exp2", (exp(2 * x) - 1) / (exp(2 * x) + 1), tanh(x), tags=CANCEL),
        rule("tanh-intro-exp-neg2", (1 - exp(-2 * x)) / (1 + exp(-2 * x)), tanh(x), tags=CANCEL),
        rule("tanh-half-intro", (exp(x) - 1) / (exp(x) + 1), tanh(x * 0.5), tags=CANCEL),
        rule("tanh-half-intro-neg", (1 - exp(-x)) / (1 + exp(-x)), tanh(x * 0.5), tags=CANCEL),
        rule("tanh-sinh-cosh", sinh(x) / cosh(x), tanh(x), tags=CANCEL),
        rule("one-plus-tanh", 1 + tanh(x), sigmoid(x * 2) * 2, tags=CANCEL),
        rule("one-minus-tanh", 1 - tanh(x), sigmoid(x * -2) * 2, tags=CANCEL),
        *(rule(f"hypot-intro-{n}", sqrt(sq(x) + sq(y)), hypot(x, y), tags=CANCEL) for n, sq in SQUARES.items()),
        *(rule(f"hypot-one-intro-{n}", sqrt(sq(x) + 1), hypot(x, 1), tags=CANCEL) for n, sq in SQUARES.items()),
        rule("div-cancel-factor", (x * y) / x, y, when=[nonzero(x)], tags=CANCEL),
        rule("div-common-factor", (x * y) / (x * z), y / z, when=[nonzero(x)], tags=CANCEL),
        rule("div-sub-combine", x / z - y / z, (x - y) / z, when=[nonzero(z)], tags=CANCEL),
        # factoring: one product of the difference instead of a difference of two rounded products
        rule("mul-sub-factor", x * y - x * z, x * (y - z), tags=CANCEL),
        rule("mul-add-factor", x * y + x * z, x * (y + z), tags=CANCEL),
        rule("div-add-combine", x / z + y / z, (x + y) / z, when=[nonzero(z)], tags=CANCEL),
        rule("one-minus-fraction", 1 - x / (x + y), y / (x + y), tags=CANCEL),
        rule("fraction-minus-one", x / (x + y) - 1, -y / (x + y), tags=CANCEL),
        # roots: conjugates, so a difference of nearly equal roots becomes a quotient without it
        rule("sqrt-minus-value", sqrt(x) - y, (x - y * y) / (sqrt(x) + y), when=[nonneg(x), pos(y)], tags=ROOTS),
        rule("value-minus-sqrt", y - sqrt(x), (y * y - x) / (y + sqrt(x)), when=[nonneg(x), pos(y)], tags=ROOTS),
        rule("value-plus-sqrt", y + sqrt(x), (x - y * y) / (sqrt(x) - y), when=[nonneg(x), negative(y)], tags=ROOTS),
        rule("rsqrt-diff", rsqrt(x) - rsqrt(y), (sqrt(y) - sqrt(x)) * (rsqrt(x) * rsqrt(y)), when=[pos(x), pos(y)], tags=ROOTS),
        rule(
            "cbrt-diff",
            x**THIRD - y**THIRD,
            (x - y) / (x ** (2 * THIRD) + x**THIRD * y**THIRD + y ** (2 * THIRD)),
            when=[pos(x), nonneg(y)],
            tags=ROOTS,
        ),
        # logs of sums and quotients: the ratio near 1 goes through log1p
        rule("log-diff-add", log(x + y) - log(x), log1p(y / x), when=[pos(x), nonneg(y)], tags=LOG_EXP),
        rule("log-diff-add-rev", log(x) - log(x + y), -log1p(y / x), when=[pos(x), nonneg(y)], tags=LOG_EXP),
        rule("log1p-minus-log", log1p(x) - log(x), log1p(1 / x), when=[pos(x)], tags=LOG_EXP),
        rule("log-minus-log1p", log(x) - log1p(x), -log1p(1 / x), when=[pos(x)], tags=LOG_EXP),
        # (log(1 - x) -> log1p(-x) is left to the tutorial's user pack, hnfc/examples/user_pack.py,
        # whose test shows a pack changing what optimize finds)
        rule("log1p-one-minus", log1p(x - 1), log(x), tags=LOG_EXP),
        rule("exp-diff-expm1", exp(x) - exp(y), exp(y) * expm1(x - y), when=[in_range(x, -700, 700), in_range(y, -700, 700)], tags=LOG_EXP),
        rule("log-prod-sum-log", log(rprod(x, dim=D, keepdim=k)), rsum(log(x), dim=D, keepdim=k), when=[pos(x)], tags=LOG_EXP),
        rule("mul-over-one-plus-exp", x / (1 + exp(-y)), x * sigmoid(y), tags=LOG_EXP),
        # inverse trig/hyperbolic functions written with logs and roots, and their differences
        rule("asinh-intro", log(x + sqrt(x * x + 1)), asinh(x), tags=INVERSE),
        rule("asinh-intro-hypot", log(x + hypot(x, 1)), asinh(x), tags=INVERSE),
        rule("acosh-intro", log(x + sqrt(x * x - 1)), acosh(x), tags=INVERSE),
        rule("atanh-intro", log((1 + x) / (1 - x)), atanh(x) * 2, tags=INVERSE),
        rule("atanh-intro-neg", log((1 - x) / (1 + x)), atanh(x) * -2, tags=INVERSE),
        rule("atanh-from-log1p", log1p(x) - log1p(-x), atanh(x) * 2, tags=INVERSE),
        rule("atan-diff", atan(x) - atan(y), atan((x - y) / (1 + x * y)), when=[nonneg(x), nonneg(y)], tags=INVERSE),
        rule("acos-one-minus", acos(1 - x), asin(sqrt(x / 2)) * 2, tags=INVERSE),
        # trigonometric and hyperbolic differences as products (sum-to-product formulas)
        rule("sin-diff-product", sin(x) - sin(y), cos((x + y) / 2) * sin((x - y) / 2) * 2, tags=TRIG),
        rule("cos-diff-product", cos(x) - cos(y), sin((x + y) / 2) * sin((x - y) / 2) * -2, tags=TRIG),
        rule("tan-diff-quotient", tan(x) - tan(y), sin(x - y) / (cos(x) * cos(y)), tags=TRIG),
        rule("cosh-minus-one", cosh(x) - 1, square(sinh(x / 2)) * 2, tags=TRIG),
        rule("tanh-from-sigmoid", sigmoid(x * 2) * 2 - 1, tanh(x), tags=TRIG),
        # complementary special functions: 1 - erf cancels in the tail, erfc does not
        rule("erfc-intro", 1 - erf(x), erfc(x), tags=SPECIAL),
        rule("erfc-intro-neg", 1 + erf(x), erfc(-x), tags=SPECIAL),
        rule("erf-minus-one", erf(x) - 1, -erfc(x), tags=SPECIAL),
        # fractions: combine over a common denominator, split a quotient that overflows
        rule("sum-minus-diff", (x + y) - (x - y), y * 2, tags=FRACTIONS),
        rule("sub-sub-cancel", x - (x - y), y, tags=FRACTIONS),
        rule("sub-sub-cancel-left", (x - y) - x, -y, tags=FRACTIONS),
        rule("neg-times-neg", (-x) * (-y), x * y, tags=FRACTIONS),
        # the same cancellations inside a quotient or product, where a constant left over (the 1
        # of (x·x + 1) − x·x) takes the other operand's shape: a conjugate's numerator simplifies
        rule("add-sub-cancel-div", ((x + y) - x) / z, y / z, tags=FRACTIONS),
        rule("sub-sub-cancel-div", (x - (x - y)) / z, y / z, tags=FRACTIONS),
        rule("sub-sub-cancel-left-div", ((x - y) - x) / z, -y / z, tags=FRACTIONS),
        rule("add-minus-sub-div", ((x + y) - (x - w)) / z, (y + w) / z, tags=FRACTIONS),
        rule("add-sub-cancel-mul", ((x + y) - x) * z, y * z, tags=FRACTIONS),
        rule("div-over-square-plus", x / (x * x + y), 1 / (x + y / x), when=[nonzero(x)], tags=FRACTIONS),
        # statistics: E[x²] - E[x]² cancels when |mean| >> std; the variance kernel does not
        *(
            rule(
                f"var-intro-{na}-{nb}",
                mean(sa(x), dim=D, keepdim=k) - sb(mean(x, dim=D, keepdim=k)),
                var(x, dim=D, correction=0, keepdim=k),
                tags=STATS,
            )
            for na, sa in SQUARES.items()
            for nb, sb in SQUARES.items()
        ),
        *(
            rule(
                f"var-centered-intro-{n}",
                mean(sq(x - mean(x, dim=D, keepdim=True)), dim=D, keepdim=k),
                var(x, dim=D, correction=0, keepdim=k),
                tags=STATS,
            )
            for n, sq in SQUARES.items()
        ),
        # statistics: hand-written normalizations -> the fused ops (one kernel, the same numbers)
        *(
            rule(
                f"layer-norm-intro-{n}-{nd}d",
                over(x - mean(x, dim=dims, keepdim=True), var(x, dim=dims, correction=0, keepdim=True) + e),
                layer_norm(x, normalized_ndim=nd, eps=e),
                when=[pos(e)],
                tags=STATS_FUSION,
            )
            for n, over in OVER_SQRT.items()
            for nd, dims in TRAILING.items()
        ),
        *(
            rule(f"rms-norm-intro-{n}-{m}-{nd}d", over(x, mean(sq(x), dim=dims, keepdim=True) + e), rms_norm(x, normalized_ndim=nd, eps=e), when=[pos(e)], tags=STATS_FUSION)
            for n, over in OVER_SQRT.items()
            for m, sq in SQUARES.items()
            for nd, dims in TRAILING.items()
        ),
        rule("std-intro", sqrt(var(x, dim=D, correction=C, keepdim=k)), std(x, dim=D, correction=C, keepdim=k), tags=STATS_FUSION),
        # ... and their elementwise affine into the kernel (its type rule checks the shapes)
        rule("layer-norm-affine", layer_norm(x, None, None, normalized_ndim=N, eps=E) * y + z, layer_norm(x, y, z, normalized_ndim=N, eps=E), tags=STATS_FUSION),
        rule("layer-norm-scale", layer_norm(x, None, None, normalized_ndim=N, eps=E) * y, layer_norm(x, y, None, normalized_ndim=N, eps=E), tags=STATS_FUSION),
        rule("rms-norm-scale", rms_norm(x, None, normalized_ndim=N, eps=E) * y, rms_norm(x, y, normalized_ndim=N, eps=E), tags=STATS_FUSION),
        # attention: scale q before q kᵀ rather than the logits after (kᵀ/√d can overflow f16 first)
        *(
            rule(f"{n}-scale-into-{pn}", scale(prod(x, y), c), prod(scale(x, c), y), when=[nonzero(c)], tags=ATTENTION)
            for n, scale in SCALES.items()
            for pn, prod in PRODUCTS.items()
        ),
        *(rule(f"{n}-scale-through-reshape", scale(reshape(x, shape=S), c), reshape(scale(x, c), shape=S), when=[nonzero(c)], tags=ATTENTION) for n, scale in SCALES.items()),
        # losses: BCE on probabilities, written through sigmoid
        rule("one-minus-sigmoid", 1 - sigmoid(x), sigmoid(-x), tags=LOSSES),
        rule("log-one-minus-sigmoid", log(1 - sigmoid(x)), logsigmoid(-x), tags=LOSSES),
        rule("log1p-neg-sigmoid", log1p(-sigmoid(x)), logsigmoid(-x), tags=LOSSES),
        # algebra that connects the families (one bounded pass between stability phases)
        rule("add-assoc-left", (x + y) + z, x + (y + z), tags=ALGEBRA),
        rule("add-assoc-right", x + (y + z), (x + y) + z, tags=ALGEBRA),
        rule("mul-assoc-left", (x * y) * z, x * (y * z), tags=ALGEBRA),
        rule("add-neg-is-sub", x + (-y), x - y, tags=ALGEBRA),
        rule("sub-neg-is-add", x - (-y), x + y, tags=ALGEBRA),
        rule("neg-neg", -(-x), x, tags=ALGEBRA),
        rule("mul-one", x * 1, x, tags=ALGEBRA),
        rule("div-one", x / 1, x, tags=ALGEBRA),
        rule("add-zero", x + 0, x, tags=ALGEBRA),
        rule("sub-zero", x - 0, x, tags=ALGEBRA),
        rule("mul-neg-one", x * -1, -x, tags=ALGEBRA),
        rule("pow-half-is-sqrt", x**0.5, sqrt(x), tags=ALGEBRA),
        rule("pow-minus-half-is-rsqrt", x**-0.5, rsqrt(x), tags=ALGEBRA),
    ]
)
