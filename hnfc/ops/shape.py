"""Op-table entries for shape ops (one entry per op). Their real meaning moves values, exactly."""

from __future__ import annotations

import math

import numpy as np

from hnfc.ops import shape_bounds
from hnfc.ops.core import Alias, Call, Example, OpDef, obj, result_dtype
from hnfc.foundation.types import TensorType


def _resolve_shape(shape, t: TensorType) -> tuple:
    shape = tuple(shape)
    if -1 in shape and not t.is_symbolic and all(isinstance(d, int) for d in shape):
        known = math.prod(d for d in shape if d != -1)
        shape = tuple(t.numel // known if d == -1 else d for d in shape)
    return shape


def _reshape_type(ts, at):
    return TensorType(_resolve_shape(at["shape"], ts[0]), ts[0].dtype)


def _expand_type(ts, at):
    t = ts[0]
    lead = len(at["shape"]) - t.rank
    return TensorType(tuple(t.shape[i - lead] if s == -1 else s for i, s in enumerate(at["shape"])), t.dtype)


def _permute_type(ts, at):
    t = ts[0]
    return TensorType(tuple(t.shape[d] for d in at["dims"]), t.dtype)


def _transpose_dims(rank, at):
    dims = list(range(rank))
    if rank:
        i, j = at["dim0"] % rank, at["dim1"] % rank
        dims[i], dims[j] = dims[j], dims[i]
    return dims


def _transpose_type(ts, at):
    t = ts[0]
    return TensorType(tuple(t.shape[d] for d in _transpose_dims(t.rank, at)), t.dtype)


def _unsqueeze_type(ts, at):
    t = ts[0]
    d = at["dim"] % (t.rank + 1)
    return TensorType(t.shape[:d] + (1,) + t.shape[d:], t.dtype)


def _squeeze_axes(t_shape, dims):
    rank = len(t_shape)
    cand = range(rank) if dims is None else {d % rank for d in dims} if rank else set()
    return {i for i in cand if t_shape[i] == 1}


def _squeeze_type(ts, at):
    t = ts[0]
    drop = _squeeze_axes(t.shape, at["dims"])
    return TensorType(tuple(d for i, d in enumerate(t.shape) if i not in drop), t.dtype)


def _cat_type(ts, at):
    ts = [t for t in ts if not (t.rank == 1 and t.shape[0] == 0)]  # torch skips legacy empty tensors
    d = at["dim"] % ts[0].rank
    sizes = [t.shape[d] for t in ts]
    total = sum(sizes) if all(isinstance(s, int) for s in sizes) else "+".join(map(str, sizes))
    return TensorType(ts[0].shape[:d] + (total,) + ts[0].shape[d + 1 :], result_dtype(ts))


def _slice_range(n, at):
    return range(n)[slice(at["start"], at["end"], at["step"])]


def _slice_type(ts, at):
    t = ts[0]
    d = at["dim"] % t.rank
    n = t.shape[d]
    size = len(_slice_range(n, at)) if isinstance(n, int) else n
    return TensorType(t.shape[:d] + (size,) + t.shape[d + 1 :], t.dtype)


def _select_type(ts, at):
    t = ts[0]
    d = at["dim"] % t.rank
    return TensorType(t.shape[:d] + t.shape[d + 1 :], t.dtype)


def _slice_ref(xs, at, out):
    x = xs[0]
    index = [slice(None)] * x.ndim
    index[at["dim"] % x.ndim] = slice(at["start"], at["end"], at["step"])
    return obj(x[tuple(index)])


def _shape_op(name, arity, attrs, infer, emit, ref, aliases, examples, doc, optional=frozenset()):
    return OpDef(
        name=name,
        arity=arity,
        attrs=attrs,
        infer=infer,
        emit=emit,
        ref=ref,
        aliases=aliases,
        examples=examples,
        kind="shape",
        doc=doc,
        optional=optional,
        # every element of the argument appears and nothing else: the value set is the argument's
        same_values=name in ("reshape", "permute", "transpose", "expand", "unsqueeze", "squeeze"),
        **(shape_bounds.CAT if name == "cat" else shape_bounds.SHAPE),
    )


def _reshape_alias(target, key):
    return Alias(target, lambda a: ([a["self"]], {"shape": tuple(a[key])}))


OPS = [
    _shape_op(
        "reshape",
        1,
        {"shape": ()},
        _reshape_type,
        # The IR has no aliasing, so views are emitted as reshape: a view where one is possible.
        lambda a, at, out: Call("aten.reshape.default", (a[0], list(at["shape"]))),
        lambda xs, at, out: obj(xs[0].reshape(out.shape)),
        (
            _reshape_alias("aten.view.default", "size"),
            _reshape_alias("aten._unsafe_view.default", "size"),
            _reshape_alias("aten.reshape.default", "shape"),
            _reshape_alias("aten.view_copy.default", "size"),
        ),
        (Example(shapes=((3, 4),), attrs={"shape": (2, -1)}), Example(shapes=((2, 3, 4),), attrs={"shape": (6, 4)})),
        "same values in a new shape (covers view, _unsafe_view, reshape)",
    ),
    _shape_op(
        "permute",
        1,
        {"dims": ()},
        _permute_type,
        lambda a, at, out: Call("aten.permute.default", (a[0], list(at["dims"]))),
        lambda xs, at, out: obj(np.transpose(xs[0], at["dims"])),
        (Alias("aten.permute.default", lambda a: ([a["self"]], {"dims": tuple(a["dims"])})),),
        (Example(shapes=((2, 3, 4),), attrs={"dims": (2, 0, 1)}),),
        "reorder dimensions",
    ),
    _shape_op(
        "transpose",
        1,
        {"dim0": 0, "dim1": 1},
        _transpose_type,
        lambda a, at, out: Call("aten.transpose.int", (a[0], at["dim0"], at["dim1"])),
        lambda xs, at, out: obj(np.transpose(xs[0], _transpose_dims(xs[0].ndim, at))),
        (
            Alias("aten.transpose.int", lambda a: ([a["self"]], {"dim0": a["dim0"], "dim1": a["dim1"]})),
            Alias("aten.t.default", lambda a: ([a["self"]], {"dim0": 0, "dim1": 1 if a["self"].type.rank == 2 else 0})),
        ),
        (Example(shapes=((2, 3, 4),), attrs={"dim0": -1, "dim1": -2}),),
        "swap two dimensions (covers t)",
    ),
    _shape_op(
        "expand",
        1,
        {"shape": ()},
        _expand_type,
        lambda a, at, out: Call("aten.expand.default", (a[0], list(at["shape"]))),
        lambda xs, at, out: obj(np.broadcast_to(xs[0], out.shape).copy()),
        (Alias("aten.expand.default", lambda a: ([a["self"]], {"shape": tuple(a["size"])})),),
        (Example(shapes=((3, 1),), attrs={"shape": (2, 3, 4)}), Example(shapes=((3, 1),), attrs={"shape": (-1, 5)})),
        "broadcast to a larger shape (-1 keeps a size)",
    ),
    _shape_op(
        "unsqueeze",
        1,
        {"dim": 0},
        _unsqueeze_type,
        lambda a, at, out: Call("aten.unsqueeze.default", (a[0], at["dim"])),
        lambda xs, at, out: obj(xs[0].reshape(out.shape)),
        (Alias("aten.unsqueeze.default", lambda a: ([a["self"]], {"dim": a["dim"]})),),
        (Example(shapes=((3, 4),), attrs={"dim": -1}), Example(shapes=((3, 4),), attrs={"dim": 1})),
        "insert a size-1 dimension",
    ),
    _shape_op(
        "squeeze",
        1,
        {"dims": None},
        _squeeze_type,
        lambda a, at, out: Call("aten.squeeze.default", (a[0],)) if at["dims"] is None else Call("aten.squeeze.dims", (a[0], list(at["dims"]))),
        lambda xs, at, out: obj(xs[0].reshape(out.shape)),
        (
            Alias("aten.squeeze.default", lambda a: ([a["self"]], {"dims": None})),
            Alias("aten.squeeze.dim", lambda a: ([a["self"]], {"dims": (a["dim"],)})),
            Alias("aten.squeeze.dims", lambda a: ([a["self"]], {"dims": tuple(a["dim"])})),
        ),
        (Example(shapes=((3, 1, 4, 1),), attrs={"dims": (1,)}), Example(shapes=((3, 1, 4, 1),), attrs={"dims": None})),
        "drop size-1 dimensions (all, or those in `dims`)",
    ),
    _shape_op(
        "cat",
        -1,
        {"dim": 0},
        _cat_type,
        lambda a, at, out: Call("aten.cat.default", (list(a), at["dim"])),
        lambda xs, at, out: obj(np.concatenate([x for x in xs if not (x.ndim == 1 and x.shape[0] == 0)], axis=at["dim"])),
        (Alias("aten.cat.default", lambda a: (list(a["tensors"]), {"dim": a["dim"]})),),
        (Example(shapes=((2, 3), (4, 3)), attrs={"dim": 0}), Example(shapes=((2, 3), (2, 1), (2, 2)), attrs={"dim": -1})),
        "concatenate along `dim`",
    ),
    _shape_op(
        "slice",
        1,
        {"dim": 0, "start": None, "end": None, "step": 1},
        _slice_type,
        lambda a, at, out: Call("aten.slice.Tensor", (a[0], at["dim"], at["start"], at["end"], at["step"])),
        _slice_ref,
        (Alias("aten.slice.Tensor", lambda a: ([a["self"]], {"dim": a["dim"], "start": a["start"], "end": a["end"], "step": a["step"]})),),
        (Example(shapes=((5, 4),), attrs={"dim": 0, "start": 1, "end": 4, "step": 2}), Example(shapes=((5, 4),), attrs={"dim": 1, "start": -3})),
        "x[start:end:step] along `dim`",
    ),
    _shape_op(
        "select",
        1,
        {"dim": 0, "index": 0},
        _select_type,
        lambda a, at, out: Call("aten.select.int", (a[0], at["dim"], at["index"])),
        lambda xs, at, out: obj(np.take(xs[0], at["index"], axis=at["dim"])),
        (Alias("aten.select.int", lambda a: ([a["self"]], {"dim": a["dim"], "index": a["index"]})),),
        (Example(shapes=((5, 4),), attrs={"dim": 1, "index": -1}),),
        "x[index] along `dim` (drops the dimension)",
    ),
]
