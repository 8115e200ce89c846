"""Op-table entries for matrix products (one entry per op)."""

from __future__ import annotations

import mpmath

from hnfc.ops import linalg_bounds
from hnfc.ops.core import Alias, Call, Example, OpDef, broadcast_shapes, mp_matmul, obj, result_dtype
from hnfc.foundation.types import TensorType


def product_dtype(ts) -> str:
    """The dtype of a matrix product: torch's mm/bmm/matmul/addmm/linear kernels take no mixed
    dtypes (no promotion, not even a 0-d bias), so operands of two dtypes do not type."""
    dts = sorted({t.dtype for t in ts if t is not None})
    if len(dts) > 1:
        raise ValueError(f"matrix product of mixed dtypes {' and '.join(dts)}: torch needs every operand in one dtype (cast the input or the model)")
    return result_dtype([t for t in ts if t is not None])


def _matmul_type(ts, at):
    a, b = ts
    dt = product_dtype([a, b])
    if a.rank == 0 or b.rank == 0:
        raise ValueError("matrix products need tensors of rank >= 1")
    ka, kb = a.shape[-1], b.shape[0] if b.rank == 1 else b.shape[-2]
    if isinstance(ka, int) and isinstance(kb, int) and ka != kb:
        raise ValueError(f"contraction sizes {ka} and {kb} differ")
    if a.rank == 1 and b.rank == 1:
        return TensorType((), dt)
    if a.rank == 1:
        return TensorType(b.shape[:-2] + b.shape[-1:], dt)
    if b.rank == 1:
        return TensorType(a.shape[:-1], dt)
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return TensorType(batch + (a.shape[-2], b.shape[-1]), dt)


def _linear_type(ts, at):
    x, w = ts[0], ts[1]
    return TensorType(x.shape[:-1] + w.shape[:1], product_dtype(ts))


def _addmm_type(ts, at):
    bias, a, b = ts
    return TensorType((a.shape[0], b.shape[1]), product_dtype(ts))


def _addmm_ref(xs, at, out):
    bias, a, b = xs
    prod = mp_matmul(a, b) * mpmath.mpf(at["alpha"])
    return prod if at["beta"] == 0 else obj(prod + bias * mpmath.mpf(at["beta"]))


def _linear_ref(xs, at, out):
    x, w, b = xs
    y = mp_matmul(x, w.T)
    return y if b is None else obj(y + b)


def _product(name, overload, a_name, b_name, examples, doc):
    target = f"aten.{name}.{overload}"
    return OpDef(
        name=name,
        arity=2,
        infer=_matmul_type,
        emit=lambda a, at, out: Call(target, (a[0], a[1])),
        ref=lambda xs, at, out: mp_matmul(xs[0], xs[1]),
        aliases=(Alias(target, lambda a: ([a[a_name], a[b_name]], {})),),
        examples=examples,
        kind="linalg",
        doc=doc,
        contraction=0,
        **linalg_bounds.MATMUL,
    )


OPS = [
    _product("mm", "default", "self", "mat2", (Example(shapes=((3, 4), (4, 5))),), "matrix product of 2-D tensors"),
    _product("bmm", "default", "self", "mat2", (Example(shapes=((2, 3, 4), (2, 4, 5))),), "batched matrix product"),
    _product(
        "matmul",
        "default",
        "self",
        "other",
        (Example(shapes=((2, 3, 4), (4, 5))), Example(shapes=((4,), (4, 3))), Example(shapes=((4,), (4,)))),
        "torch.matmul with broadcasting",
    ),
    OpDef(
        name="addmm",
        arity=3,
        attrs={"beta": 1, "alpha": 1},
        infer=_addmm_type,
        emit=lambda a, at, out: Call("aten.addmm.default", (a[0], a[1], a[2]), {"beta": at["beta"], "alpha": at["alpha"]}),
        ref=_addmm_ref,
        aliases=(Alias("aten.addmm.default", lambda a: ([a["self"], a["mat1"], a["mat2"]], {"beta": a["beta"], "alpha": a["alpha"]})),),
        examples=(Example(shapes=((5,), (3, 4), (4, 5))), Example(shapes=((3, 5), (3, 4), (4, 5)), attrs={"beta": 0.5, "alpha": 2})),
        kind="linalg",
        doc="beta * bias + alpha * (a @ b)",
        contraction=1,
        **linalg_bounds.ADDMM,
    ),
    OpDef(
        name="linear",
        arity=3,
        optional=frozenset({2}),
        infer=_linear_type,
        emit=lambda a, at, out: Call("aten.linear.default", (a[0], a[1], a[2])),
        ref=_linear_ref,
        aliases=(Alias("aten.linear.default", lambda a: ([a["input"], a["weight"], a["bias"]], {})),),
        examples=(Example(shapes=((2, 3, 4), (5, 4), (5,))), Example(shapes=((3, 4), (5, 4), None))),
        kind="linalg",
        doc="x @ w^T + b",
        contraction=0,
        **linalg_bounds.LINEAR,
    ),
]
