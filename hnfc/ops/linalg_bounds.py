"""Range and cost formulas of the matrix products (hnfc/ops/linalg.py). Contracts and the formula
table: hnfc/ops/formulas.py.
"""

from __future__ import annotations

from hnfc.foundation.intervals import INF, Interval
from hnfc.ops.formulas import _bundle, _changes_sign, _ratio, _result_mag, _scale_count, _term_mag, _ts


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


