"""Range and cost formulas of the reductions and nn ops (hnfc/ops/reductions.py): sums and means,
var/std, logsumexp, softmax/log_softmax, layer/RMS/batch norm, attention. Contracts and the formula
table: hnfc/ops/formulas.py.
"""

from __future__ import annotations

import math

from hnfc.foundation.intervals import INF, Interval, add_down, add_up, down, up
from hnfc.ops.pointwise_bounds import _addsub_cond
from hnfc.ops.formulas import _bundle, _changes_sign, _count, _exp, _identity, _iv, _one, _pow, _prod, _ratio, _rel_down, _rel_up, _result_mag, _scale_count, _softplus, _term_mag, _ts, _unknown, COMPOUND_ULPS


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


def _iv_prod(a, at, t, ts):
    """n factors in x: within [lo^n, hi^n] when x >= 0, within ±|x|^n otherwise (n unknown: whole)."""
    n = _count(_ts(ts, 0), at.get("dim"))
    x = a[0]
    if n is None:
        return Interval(0.0, INF) if x.is_nonneg else Interval.whole()
    if n == 0:
        return Interval(1.0, 1.0)
    ulps = 2 * n + 2  # one rounding per product, outward
    if x.is_nonneg:
        return _iv(_pow(x.lo, n), _pow(x.hi, n), ulps, clip=(0.0, INF))
    m = _pow(x.mag, n)
    return _iv(-m, m, ulps)


def _cond_prod(a, at, out, t, ts, wrt=None):
    # ∂ log|Π x| / ∂ log|x_i| = 1 for each of the n factors
    n = _count(_ts(ts, 0), at.get("dim"))
    return INF if n is None else float(n)


PROD = _bundle(_iv_prod, _cond_prod)
MEAN = _bundle(_identity, _cond_mean)
AMAX = _bundle(_identity, _one)
AMIN = _bundle(_identity, _one)
VAR = _bundle(_iv_var, _cond_var, _hz_var)
STD = _bundle(_iv_std, _cond_std, _hz_var)
LOGSUMEXP = _bundle(_iv_logsumexp, _cond_logsumexp)
def _hz_softmax_like(a, at, t, ts):
    # the kernel subtracts the row max: a +inf logit makes inf - inf = NaN
    x = a[0]
    if not _unknown(x) and x.hi == INF:
        return f"logits in {x} reach +inf: x - max(x) is inf - inf = NaN"
    return None


SOFTMAX = _bundle(_iv_softmax, _cond_softmax, _hz_softmax_like)
LOG_SOFTMAX = _bundle(_iv_log_softmax, _cond_log_softmax, _hz_softmax_like)


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


