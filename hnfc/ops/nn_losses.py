"""Op-table entries for library loss and norm kernels users call by name: vector_norm (x.norm(),
torch.linalg.vector_norm, inside F.normalize and cosine_similarity), nll_loss (F.nll_loss, the
second half of F.cross_entropy), binary_cross_entropy (F.binary_cross_entropy on probabilities),
binary_cross_entropy_with_logits (on logits, with weight and pos_weight), embedding.

They stay whole in the IR where the frontend sees them, so lint and the rewriter talk about the
call the user wrote rather than opaque kernels. binary_cross_entropy_with_logits
(F.binary_cross_entropy_with_logits) reaches the frontend whole only because
hnfc/frontend/kernels.py keeps it from functionalization during tracing.
Formulas: hnfc/ops/nn_losses_bounds.py.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np

from hnfc.foundation.types import TensorType
from hnfc.ops import nn_losses_bounds
from hnfc.ops.core import Alias, Call, Example, OpDef, float_reduce_type, mp_reduce, mp_sum, norm_dims, obj, r_log, r_softplus


def _dims(d):
    if d is None or (not isinstance(d, int) and len(d) == 0):
        return None
    return (d,) if isinstance(d, int) else tuple(d)


def _vector_norm_ref(xs, at, out):
    x = xs[0]
    axes = norm_dims(at["dim"], x.ndim)
    p = float(at["ord"])
    ab = obj(np.frompyfunc(abs, 1, 1)(x))
    if math.isinf(p):
        return mp_reduce(lambda a, b: a if a >= b else b, ab, axes, at["keepdim"])
    powered = obj(np.frompyfunc(lambda v: v ** mpmath.mpf(p), 1, 1)(ab))
    s = mp_sum(powered, axes, at["keepdim"])
    return obj(np.frompyfunc(lambda v: v ** (1 / mpmath.mpf(p)), 1, 1)(s))


def _vector_norm_alias(a):
    ord_ = a.get("ord", 2)
    if a.get("dtype") is not None or not isinstance(ord_, (int, float)) or not (ord_ >= 1):
        return None  # ord < 1 (0: a count, fractional: not a norm) stays opaque
    return [a["self"]], {"ord": float(ord_), "dim": _dims(a.get("dim")), "keepdim": bool(a.get("keepdim", False))}


def _nll_type(ts, at):
    x, target = ts[0], ts[1]
    if x.rank not in (1, 2):
        raise ValueError("nll_loss: input must be (C,) or (N, C)")
    if at["reduction"] == 0:
        return TensorType(tuple(target.shape), x.dtype)
    return TensorType((), x.dtype)


def _nll_ref(xs, at, out):
    x, target, weight = xs
    x2 = x.reshape(1, -1) if x.ndim == 1 else x
    t = np.asarray(target).reshape(-1)
    terms, weights = [], []
    for n, c in enumerate(t):
        c = int(c)
        if c == at["ignore_index"]:
            terms.append(mpmath.mpf(0))
            weights.append(mpmath.mpf(0))
            continue
        w = mpmath.mpf(1) if weight is None else weight[c]
        terms.append(-x2[n, c] * w)
        weights.append(w)
    if at["reduction"] == 0:
        return obj(np.array(terms, dtype=object).reshape(out.shape))
    total = mpmath.fsum(terms)
    if at["reduction"] == 2:
        return obj(total)
    wsum = mpmath.fsum(weights)
    return obj(mpmath.mpf("nan") if wsum == 0 else total / wsum)


def _nll_alias(a):
    if a["self"].type is None or a["self"].type.rank not in (1, 2):
        return None
    return [a["self"], a["target"], a["weight"]], {"reduction": int(a["reduction"]), "ignore_index": int(a["ignore_index"])}


def _bce_ref(xs, at, out):
    p, y, w = xs

    def term(pv, yv):
        lp = max(r_log(pv), mpmath.mpf(-100))
        lq = max(r_log(1 - pv), mpmath.mpf(-100))
        return -(yv * lp + (1 - yv) * lq)

    terms = obj(np.frompyfunc(term, 2, 1)(p, y))
    return _reduced(terms if w is None else obj(terms * w), at["reduction"])


def _reduced(terms, reduction: int):
    """A loss's reduction: none (0), mean (1) or sum (2) over every element, summed exactly."""
    if reduction == 0:
        return terms
    s = mpmath.fsum(terms.flat)
    return obj(s if reduction == 2 else s / max(1, terms.size))


def _bce_type(ts, at):
    if tuple(ts[0].shape) != tuple(ts[1].shape):
        raise ValueError("binary_cross_entropy: input and target must have the same shape")
    return ts[0] if at["reduction"] == 0 else TensorType((), ts[0].dtype)


def _bce_logits_ref(xs, at, out):
    x, y, w, p = xs
    sp = np.frompyfunc(r_softplus, 1, 1)
    terms = (1 - y) * sp(x) + (1 if p is None else p) * y * sp(-x)
    return _reduced(obj(np.broadcast_to(terms if w is None else terms * w, np.shape(x))), at["reduction"])


def _bce_logits_type(ts, at):
    return _bce_type(ts[:2], at)


def _embedding_type(ts, at):
    w, idx = ts
    if w.rank != 2:
        raise ValueError("embedding: weight must be 2-d")
    return TensorType(tuple(idx.shape) + (w.shape[1],), w.dtype)


def _embedding_ref(xs, at, out):
    w, idx = xs
    return obj(w[np.asarray(idx, dtype=object).astype(int)])


OPS = [
    OpDef(
        name="embedding",
        arity=2,
        attrs={"padding_idx": -1},  # only changes the gradient (that row gets none); kept so lowering does too
        infer=_embedding_type,
        emit=lambda a, at, out: Call("aten.embedding.default", (a[0], a[1], at["padding_idx"])),
        ref=_embedding_ref,
        aliases=(
            Alias(
                "aten.embedding.default",
                lambda a: ([a["weight"], a["indices"]], {"padding_idx": -1 if a.get("padding_idx") is None else int(a["padding_idx"])})
                if not a.get("scale_grad_by_freq") and not a.get("sparse")
                else None,
            ),
        ),
        examples=(Example(shapes=((6, 4), (3,)), domain=((-3.0, 3.0), (0.0, 5.0)), dtypes=("f32", "i64")),),
        kind="other",  # not "shape": a shape op maps every argument's elements, this indexes one by the other's values
        doc="rows of `weight` at `indices` (a lookup: exact, its range is the weight's)",
        **nn_losses_bounds.EMBEDDING,
    ),
    OpDef(
        name="vector_norm",
        arity=1,
        attrs={"ord": 2.0, "dim": None, "keepdim": False},
        infer=float_reduce_type,
        emit=lambda a, at, out: Call("aten.linalg_vector_norm.default", (a[0], at["ord"], None if at["dim"] is None else list(at["dim"]), at["keepdim"])),
        ref=_vector_norm_ref,
        aliases=(Alias("aten.linalg_vector_norm.default", _vector_norm_alias),),
        examples=(
            Example(shapes=((3, 5),), attrs={"ord": 2.0, "dim": (-1,), "keepdim": False}),
            Example(shapes=((3, 4),), attrs={"ord": 1.0, "dim": None, "keepdim": False}),
            Example(shapes=((2, 3, 4),), attrs={"ord": math.inf, "dim": (1,), "keepdim": True}),
        ),
        kind="reduction",
        doc="(sum |x|^ord)^(1/ord) over `dim` (max |x| for ord = inf); ord >= 1",
        **nn_losses_bounds.VECTOR_NORM,
    ),
    OpDef(
        name="nll_loss",
        arity=3,
        attrs={"reduction": 1, "ignore_index": -100},
        optional=frozenset({2}),
        infer=_nll_type,
        emit=lambda a, at, out: Call("aten.nll_loss_forward.default", (a[0], a[1], a[2], at["reduction"], at["ignore_index"]), index=0),
        ref=_nll_ref,
        aliases=(Alias("aten.nll_loss_forward.default", _nll_alias, output=0),),
        examples=(
            Example(shapes=((4, 5), (4,), None), attrs={"reduction": 1, "ignore_index": -100}, domain=((-5.0, 0.0), (0.0, 4.0), (0.5, 2.0)), dtypes=("f32", "i64", "f32")),
            Example(shapes=((4, 5), (4,), None), attrs={"reduction": 0, "ignore_index": -100}, domain=((-5.0, 0.0), (0.0, 4.0), (0.5, 2.0)), dtypes=("f32", "i64", "f32")),
        ),
        domain=(-5.0, 0.0),
        kind="nn",
        doc="-x[n, target[n]] (times weight[target]), mean over the weights (1), sum (2) or none (0); targets equal to ignore_index count 0",
        **nn_losses_bounds.NLL,
    ),
    OpDef(
        name="binary_cross_entropy",
        arity=3,
        attrs={"reduction": 1},
        optional=frozenset({2}),
        infer=_bce_type,
        emit=lambda a, at, out: Call("aten.binary_cross_entropy.default", (a[0], a[1], a[2], at["reduction"])),
        ref=_bce_ref,
        aliases=(Alias("aten.binary_cross_entropy.default", lambda a: ([a["self"], a["target"], a["weight"]], {"reduction": int(a["reduction"])})),),
        examples=(
            Example(shapes=((3, 4), (3, 4), None), attrs={"reduction": 1}, domain=((0.05, 0.95), (0.0, 1.0), (0.5, 2.0))),
            Example(shapes=((3, 4), (3, 4), None), attrs={"reduction": 0}, domain=((0.05, 0.95), (0.0, 1.0), (0.5, 2.0))),
        ),
        domain=(0.05, 0.95),
        kind="nn",
        doc="-(t log p + (1 - t) log(1 - p)) with each log clamped at -100, mean (1), sum (2) or none (0)",
        **nn_losses_bounds.BCE,
    ),
    OpDef(
        name="binary_cross_entropy_with_logits",
        arity=4,
        attrs={"reduction": 1},
        optional=frozenset({2, 3}),
        infer=_bce_logits_type,
        emit=lambda a, at, out: Call("aten.binary_cross_entropy_with_logits.default", (a[0], a[1], a[2], a[3], at["reduction"])),
        ref=_bce_logits_ref,
        aliases=(Alias("aten.binary_cross_entropy_with_logits.default", lambda a: ([a["self"], a["target"], a["weight"], a["pos_weight"]], {"reduction": int(a["reduction"])})),),
        examples=(
            Example(shapes=((3, 4), (3, 4), None, None), attrs={"reduction": 1}, domain=((-6.0, 6.0), (0.0, 1.0), (0.5, 2.0), (0.5, 2.0))),
            Example(shapes=((3, 4), (3, 4), (4,), (4,)), attrs={"reduction": 0}, domain=((-6.0, 6.0), (0.0, 1.0), (0.5, 2.0), (0.5, 2.0))),
            Example(shapes=((3, 4), (3, 4), None, (4,)), attrs={"reduction": 2}, domain=((-6.0, 6.0), (0.0, 1.0), (0.5, 2.0), (0.5, 2.0))),
        ),
        domain=(-6.0, 6.0),
        kind="nn",
        doc="w ((1 - t) softplus(x) + p t softplus(-x)) (BCE on logits; weight w, pos_weight p), mean (1), sum (2) or none (0)",
        **nn_losses_bounds.BCE_LOGITS,
    ),
]
