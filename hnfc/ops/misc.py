"""Op-table entries for leaves (inputs, parameters, constants), dtype conversion and opaque ops.

`opaque` keeps any aten op hnfc does not model: it runs unchanged, its result is a fresh
value to every analysis, and the reference evaluates it with torch in float64.
"""

from __future__ import annotations

import mpmath
import numpy as np

from hnfc.foundation.dtypes import DTYPES, to_torch
from hnfc.ops import shape_bounds
from hnfc.ops.core import Alias, Call, DeviceArg, DeviceStr, DTypeArg, Example, OpDef, TorchAttr, obj, same_type
from hnfc.foundation.types import TensorType

# aten ops whose value is their first argument's: the IR has no aliasing or memory layout.
IDENTITY_TARGETS = frozenset(
    {
        "aten.clone.default",
        "aten.alias.default",
        "aten.lift_fresh_copy.default",
        "aten.contiguous.default",
        "aten.dropout.default",  # eval mode only; train-mode dropout is native_dropout (opaque)
    }
)


def _plain_placement(a) -> bool:
    """Created on the program's device with the default layout (anything else stays opaque)."""
    return a.get("device") in (None, a["$device"]) and str(a.get("layout")) in ("None", "torch.strided")


def _full_alias(target, value_key=None, value=None, shape_key="size"):
    def convert(a):
        if not _plain_placement(a):
            return None
        fill = a[value_key] if value_key else value
        return [], {"shape": tuple(a[shape_key]) if shape_key else (), "value": fill, "dtype": a["$out"].dtype}

    return Alias(target, convert)


def _leaf_value(at):
    return bool(at["value"]) if at["dtype"] == "bool" else mpmath.mpf(at["value"])


def _to_ref(xs, at, out):
    kind = DTYPES[at["dtype"]].kind
    if kind == "float":
        return xs[0]
    if kind == "bool":  # Python bools, as the reference keeps them (masks select, not add)
        return obj(np.frompyfunc(lambda v: bool(v != 0), 1, 1)(xs[0]))
    return obj(np.frompyfunc(lambda v: _to_integer(v, at["dtype"]), 1, 1)(xs[0]))


def _to_integer(v, dtype: str):
    if mpmath.isfinite(v):
        return mpmath.mpf(int(v))
    # inf/nan to an integer is undefined in C; take what torch gives here, so the reference
    # agrees with the program where such values are computed and then masked away (T5's
    # relative-position buckets take log(0) = -inf on the branch `where` discards)
    import torch

    return mpmath.mpf(int(torch.tensor(float(v), dtype=torch.float64).to(to_torch(dtype))))


def _to_alias(a):
    if not _plain_placement(a):
        return None
    return [a["self"]], {"dtype": a["$out"].dtype}


def decode_template(template, args):
    """An opaque op's recorded argument structure, with its tensors and torch objects restored."""
    if isinstance(template, tuple) and len(template) == 2 and isinstance(template[0], str) and template[0].startswith("$"):
        tag, v = template
        return {"$arg": lambda: args[v], "$dtype": lambda: DTypeArg(v), "$torch": lambda: TorchAttr(v), "$device": lambda: DeviceStr(v)}[tag]()
    if isinstance(template, tuple):
        return [decode_template(t, args) for t in template]
    return template


def _opaque_emit(a, at, out):
    args = decode_template(at["args"], a)
    kwargs = {k: decode_template(v, a) for k, v in at["kwargs"]}
    return Call(at["target"], tuple(args), kwargs)


OPS = [
    OpDef(name="input", arity=0, attrs={"name": ""}, kind="leaf", doc="a program input", **shape_bounds.LEAF),
    OpDef(name="param", arity=0, attrs={"name": ""}, kind="leaf", doc="a named parameter, buffer or tensor constant", **shape_bounds.LEAF),
    OpDef(
        name="const",
        arity=0,
        attrs={"value": 0.0, "dtype": "f32"},
        infer=lambda ts, at: TensorType((), at["dtype"]),
        emit=lambda a, at, out: Call("aten.scalar_tensor.default", (at["value"],), {"dtype": DTypeArg(at["dtype"]), "device": DeviceArg()}),
        ref=lambda xs, at, out: obj(_leaf_value(at)),
        examples=(Example(shapes=(), attrs={"value": -2.5, "dtype": "f32"}), Example(shapes=(), attrs={"value": 0.1, "dtype": "f64"})),
        kind="leaf",
        constant=True,
        doc="a scalar constant; emitted inline as a Python number where torch takes one",
        **shape_bounds.CONST,
    ),
    OpDef(
        name="full",
        arity=0,
        attrs={"shape": (), "value": 0.0, "dtype": "f32"},
        infer=lambda ts, at: TensorType(tuple(at["shape"]), at["dtype"]),
        emit=lambda a, at, out: Call("aten.full.default", (list(at["shape"]), at["value"]), {"dtype": DTypeArg(at["dtype"]), "device": DeviceArg()}),
        ref=lambda xs, at, out: obj(np.full(tuple(at["shape"]), _leaf_value(at), dtype=object)),
        aliases=(
            _full_alias("aten.full.default", "fill_value"),
            _full_alias("aten.scalar_tensor.default", "s", shape_key=None),
            _full_alias("aten.zeros.default", value=0),
            _full_alias("aten.ones.default", value=1),
        ),
        examples=(Example(shapes=(), attrs={"shape": (2, 3), "value": 1.5, "dtype": "f32"}), Example(shapes=(), attrs={"shape": (4,), "value": 3, "dtype": "i64"})),
        kind="leaf",
        constant=True,
        doc="a tensor filled with one value",
        **shape_bounds.CONST,
    ),
    OpDef(
        name="to",
        arity=1,
        attrs={"dtype": "f32"},
        infer=lambda ts, at: ts[0].with_dtype(at["dtype"]),
        emit=lambda a, at, out: Call("aten._to_copy.default", (a[0],), {"dtype": DTypeArg(at["dtype"])}),
        ref=_to_ref,
        aliases=(Alias("aten._to_copy.default", _to_alias),),
        examples=(Example(shapes=((3, 4),), attrs={"dtype": "f32"}), Example(shapes=((3, 4),), attrs={"dtype": "i64"})),
        kind="other",
        doc="dtype conversion: the identity on reals (its rounding is error), truncation to ints",
        **shape_bounds.TO,
    ),
    OpDef(
        name="detach",
        arity=1,
        infer=same_type,
        emit=lambda a, at, out: Call("aten.detach.default", (a[0],)),
        ref=lambda xs, at, out: xs[0],
        aliases=(Alias("aten.detach.default", lambda a: ([a["self"]], {})),),
        examples=(Example(shapes=((3,),)),),
        kind="other",
        same_values=True,
        doc="the same value, cut from autograd",
        **shape_bounds.DETACH,
    ),
    OpDef(
        name="getitem",
        arity=1,
        attrs={"index": 0},
        infer=lambda ts, at: ts[0].items[at["index"]],
        emit=lambda a, at, out: Call("getitem", (a[0], at["index"])),
        ref=lambda xs, at, out: xs[0][at["index"]],
        kind="other",
        opaque=True,
        doc="one result of an opaque op that returns several",
        **shape_bounds.GETITEM,
    ),
    OpDef(
        name="opaque",
        arity=-1,
        attrs={"target": "", "args": (), "kwargs": ()},
        emit=_opaque_emit,
        kind="other",
        opaque=True,
        doc="an aten op hnfc does not model; `args`/`kwargs` record its call with ('$arg', i) for tensors",
    ),
]
