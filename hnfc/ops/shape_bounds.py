"""Range and cost formulas of the shape ops, conversions and leaves (hnfc/ops/shape.py,
hnfc/ops/misc.py): they compute no new value, so they cost nothing. Contracts:
hnfc/ops/formulas.py.
"""

from __future__ import annotations

import math

from hnfc.foundation.dtypes import DTYPES
from hnfc.foundation.intervals import Interval, hull_all
from hnfc.ops.formulas import _bundle, _identity, _one, _whole, _zero


# -- shape, conversion, leaves -----------------------------------------------------------------

SHAPE = _bundle(_identity, _one)


def _iv_cat(a, at, t, ts):
    # a part with no elements (an empty KV cache, torch's legacy empty tensor) contributes no
    # value: its range, whatever it is, must not widen the result's
    parts = [x for x, ty in zip(a, ts) if not (ty is not None and 0 in getattr(ty, "shape", ()))]
    return hull_all(parts) or Interval.whole()


CAT = _bundle(_iv_cat, _one)


def _iv_to(a, at, t, ts):
    x = a[0]
    kind = DTYPES[at["dtype"]].kind
    if kind == "bool":
        if x.lo == 0 and x.hi == 0:
            return Interval(0.0, 0.0)
        return Interval(1.0, 1.0) if not x.contains_zero else Interval(0.0, 1.0)
    if kind == "int":

        def trunc(v):
            return v if math.isinf(v) else float(math.trunc(v))

        return Interval(trunc(x.lo), trunc(x.hi))
    return x


def _iv_const(a, at, t, ts):
    v = at["value"]
    try:
        return Interval.point(float(v))
    except (TypeError, ValueError):
        return Interval.whole()


TO = _bundle(_iv_to, _one)
DETACH = _bundle(_identity, _one)
GETITEM = _bundle(_whole, _one)
CONST = _bundle(_iv_const, _zero)
LEAF = _bundle(None, _zero)
