"""Range, condition and hazard formulas of the library loss and norm kernels (hnfc/ops/nn_losses.py):
vector_norm, nll_loss, binary_cross_entropy (on probabilities and with logits). Contracts:
hnfc/ops/formulas.py.
"""

from __future__ import annotations

import math

from hnfc.foundation.dtypes import DTYPES
from hnfc.foundation.intervals import INF, Interval
from hnfc.ops.formulas import _bundle, _count, _one, _rel_down, _rel_up, _scale_count, _softplus, _ts, _unknown, COMPOUND_ULPS


def _iv_vector_norm(a, at, t, ts):
    # max|x_i| <= ||x||_p <= n^(1/p) max|x_i| (p >= 1), and max|x_i| >= mig(x)
    x, p = a[0], float(at["ord"])
    n = _count(_ts(ts, 0), at.get("dim"))
    if _unknown(x):
        return Interval(0.0, INF)
    hi = x.mag if math.isinf(p) else (x.mag * (n ** (1.0 / p)) if n is not None else INF)
    return Interval(x.mig, hi * (1 + 2.0**-40) if math.isfinite(hi) else INF)


def _hz_vector_norm(a, at, t, ts):
    # the kernel sums |x|^p in the accumulation dtype (f32 for half types): that sum can overflow
    # although the norm itself fits
    x, p = a[0], float(at["ord"])
    d = DTYPES.get(getattr(t, "dtype", ""))
    if d is None or not d.is_float or _unknown(x) or math.isinf(p):
        return None
    acc = DTYPES["f32"] if d.bits < 32 else d
    n = _count(_ts(ts, 0), at.get("dim")) or 1
    try:
        s = n * x.mag**p
    except OverflowError:
        s = INF
    if s > acc.max:
        return f"sum of |x|^{p:g} over {n} elements with |x| up to {x.mag:.3g} overflows {acc.name} inside the norm"
    return None


VECTOR_NORM = _bundle(_iv_vector_norm, _one, _hz_vector_norm)


def _iv_nll(a, at, t, ts):
    # -x[target]: each term in [-hi, -lo]; mean is inside that hull, sum scales by the count
    x = a[0]
    if _unknown(x):
        return None
    term = Interval(-x.hi, -x.lo)
    if at["reduction"] == 2:  # sum
        n = _count(_ts(ts, 1), None)
        if n is None:
            return None
        return Interval(min(0.0, n * term.lo), max(0.0, n * term.hi))
    return Interval(min(0.0, term.lo), max(0.0, term.hi)) if at["reduction"] == 1 else term


def _cond_nll(a, at, out, t, ts, wrt=None):
    # a (weighted) mean of -x[target]: no cancellation where x keeps one sign (log-probabilities)
    x = a[0]
    if x.is_nonpos or x.is_nonneg:
        return 1.0
    return INF if out.contains_zero else x.mag / out.mig


NLL = _bundle(_iv_nll, _cond_nll)


def _iv_bce(a, at, t, ts):
    # torch clamps each log at -100: every term is in [0, 100 (|t| + |1 - t|)]
    y = a[1]
    if _unknown(y):
        return Interval(0.0, INF)
    hi = 100.0 * (y.mag + max(abs(1 - y.lo), abs(1 - y.hi)))
    if at["reduction"] == 2:
        n = _count(_ts(ts, 0), None)
        hi = hi * n if n is not None else INF
    return Interval(0.0 if y.lo >= 0 and y.hi <= 1 else -hi, hi)


def _hz_bce(a, at, t, ts):
    p = a[0]
    if _unknown(p):
        return None
    if p.lo <= 0 or p.hi >= 1:
        return (f"probabilities in {p} (as the dtype holds them) reach 0 or 1: log(p) or log(1 - p) is clamped to -100, "
                "the loss saturates and its gradient vanishes or explodes")
    return None


def _cond_bce(a, at, out, t, ts, wrt=None):
    # Per term L(p, t) = -(t log p + (1 - t) log(1 - p)) >= 0 (a mean of such terms is no worse).
    # Relative sensitivities: to t, t (log(1-p) - log p) / L; to p, (-t + (1 - t) p / (1 - p)) / L.
    # Numerators are bounded by the box's ends (log((1-p)/p) is monotone); L is linear in t and
    # convex in p with its minimum at p = t, so its least value is at a t end with p = clip(t).
    p, y = a[0], a[1]
    if _unknown(p) or _unknown(y) or p.lo <= 0 or p.hi >= 1 or y.lo < 0 or y.hi > 1:
        return INF

    def loss(pv, tv):
        return -(tv * max(math.log(pv), -100.0) + (1 - tv) * max(math.log1p(-pv), -100.0))

    lmin = min(loss(min(max(tv, p.lo), p.hi), tv) for tv in (y.lo, y.hi))
    if lmin <= 0:
        return INF
    tm = y.mag
    d = max(abs(math.log((1 - p.lo) / p.lo)), abs(math.log((1 - p.hi) / p.hi)))
    num = tm * d + tm + (1 + tm) * p.hi / (1 - p.hi)
    return max(1.0, num / lmin)


BCE = _bundle(_iv_bce, _cond_bce, _hz_bce)


# BCE with logits: per element w·((1 - t)·softplus(x) + p·t·softplus(-x)) (torch's
# (1 - t) x + (1 + (p - 1) t)(log1p(e^-|x|) + max(-x, 0)) is the same real number), weight w and
# pos_weight p optional (1). With t in [0, 1] and p, w >= 0 every term is >= 0: no hazard, the
# stable form of log(sigmoid).


def _softplus_iv(x: Interval) -> Interval:
    lo, hi = _softplus(x.lo), _softplus(x.hi)
    return Interval(max(0.0, _rel_down(lo, COMPOUND_ULPS)), max(0.0, _rel_up(hi, COMPOUND_ULPS)))


def _bcel_args(a):
    x, y, w, p = (list(a) + [None, None])[:4]
    return x, y, w, p if p is not None else Interval(1.0, 1.0)


def _nonneg_terms(y, w, p) -> bool:
    return y.lo >= 0 and y.hi <= 1 and p.lo >= 0 and (w is None or w.lo >= 0)


def _iv_bce_logits(a, at, t, ts):
    x, y, w, p = _bcel_args(a)
    if _unknown(y) or _unknown(p) or (w is not None and _unknown(w)):
        return None
    if _unknown(x) or not x.is_finite:
        return Interval(0.0, INF) if _nonneg_terms(y, w, p) else None
    term = (1.0 - y) * _softplus_iv(x) + p * y * _softplus_iv(-x)
    if _nonneg_terms(y, w, p):
        # linear in t and in p, convex in x: the largest value sits at a corner of the box
        hi = max(_rel_up((1 - tv) * _softplus(xv) + pv * tv * _softplus(-xv), COMPOUND_ULPS + 4) for xv in (x.lo, x.hi) for tv in (y.lo, y.hi) for pv in (p.lo, p.hi))
        term = Interval(max(term.lo, 0.0), max(min(term.hi, hi), 0.0))
    term = term * w if w is not None else term
    if at["reduction"] == 2:  # sum over the input's elements (weights broadcast to it)
        return _scale_count(_count(_ts(ts, 0), None), term)
    return term  # each element, or their mean


def _cond_bce_logits(a, at, out, t, ts, wrt=None):
    # Relative sensitivities over the loss l = (1-t)S(x) + p t S(-x), S = softplus, all terms >= 0:
    # to x: |x|((1-t)σ(x) + p t σ(-x))/l <= max over the two terms of |s σ(s)/S(s)| <= max(1, |x|);
    # to t: t|p S(-x) - S(x)|/l <= 1 + min(t/(1-t), S(x)/(p S(-x))), the last increasing in x;
    # to p and to w: at most 1 each.
    x, y, w, p = _bcel_args(a)
    if any(_unknown(v) for v in (x, y, p)) or not _nonneg_terms(y, w, p):
        return INF
    count = (lambda k: True) if wrt is None else (lambda k: k in wrt)
    c = max(1.0, x.mag) if count(0) else 0.0
    if count(1) and y.hi > 0:
        by_t = y.hi / (1 - y.hi) if y.hi < 1 else INF
        sm = _softplus(-x.hi)
        by_x = _softplus(x.hi) / (p.lo * sm) if p.lo > 0 and sm > 0 else INF
        c += 1 + min(by_t, by_x)
    c += (1.0 if count(2) and w is not None else 0.0) + (1.0 if count(3) and len(a) > 3 and a[3] is not None else 0.0)
    return c


BCE_LOGITS = _bundle(_iv_bce_logits, _cond_bce_logits)


# embedding: a lookup of weight rows; every value is one of the weight's
EMBEDDING = _bundle(lambda a, at, t, ts: a[0], _one)
