"""The op table: one `OpDef` per op, gathered from the family modules, and the aten alias map.

In: nothing (pure data). Out: `OPS` (name -> OpDef) and `ALIASES` (aten overload -> (op, alias)).
Every layer reads ops from here; adding an op means adding one entry to one family module.
"""

from __future__ import annotations

from hnfc.ops import linalg, misc, nn_losses, pointwise, reductions, shape
from hnfc.ops.core import Alias, AsTensor, Call, DeviceArg, DeviceStr, DTypeArg, Example, OpDef, Scalar, TorchAttr, V, full_attrs
from hnfc.ops.misc import IDENTITY_TARGETS, decode_template


def _build() -> tuple[dict[str, OpDef], dict[str, tuple[OpDef, Alias]]]:
    ops: dict[str, OpDef] = {}
    aliases: dict[str, tuple[OpDef, Alias]] = {}
    for family in (pointwise, reductions, linalg, shape, misc, nn_losses):
        for op in family.OPS:
            if op.name in ops:
                raise ValueError(f"op {op.name!r} declared twice")
            ops[op.name] = op
            for alias in op.aliases:
                if alias.target in aliases:
                    raise ValueError(f"aten target {alias.target} claimed by {aliases[alias.target][0].name} and {op.name}")
                aliases[alias.target] = (op, alias)
    return ops, aliases


OPS, ALIASES = _build()


def get(name: str) -> OpDef:
    try:
        return OPS[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}") from None


__all__ = [
    "ALIASES",
    "IDENTITY_TARGETS",
    "OPS",
    "Alias",
    "AsTensor",
    "Call",
    "DTypeArg",
    "DeviceArg",
    "DeviceStr",
    "Example",
    "OpDef",
    "Scalar",
    "TorchAttr",
    "V",
    "decode_template",
    "full_attrs",
    "get",
]
