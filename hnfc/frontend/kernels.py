"""Library kernels kept whole while tracing, where functionalization would decompose them.

In: the user's call of a torch.nn.functional kernel during `trace` (a TorchFunctionMode sees it).
Out: one call of an `hnfc::` custom op with the aten op's own schema, which make_fx records as a
single node; the converter in tracing.py names it after the aten op, so the op table's entry for
that aten op claims it (and lowering calls the aten op: eager's own kernel, bit for bit).

Why: torch.func.functionalize runs a CompositeExplicitAutograd kernel such as
aten.binary_cross_entropy_with_logits through its C++ body, so the proxy mode sees only its
pieces (neg, clamp_min, exp, log, ...) and lint would talk about code the user never wrote.
A custom op is opaque to functionalization. One line of KEPT per kernel.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_REDUCTION = {"none": 0, "mean": 1, "sum": 2}


def _define(name: str, aten, schema: str):
    """An hnfc:: custom op with `aten`'s schema that calls `aten` (its fake form too)."""
    op = torch.library.custom_op(f"hnfc::{name}", lambda *a: aten(*a), mutates_args=(), schema=schema)
    op.register_fake(lambda *a: aten(*a))
    return getattr(torch.ops.hnfc, name).default


_BCE_LOGITS = _define(
    "binary_cross_entropy_with_logits",
    torch.ops.aten.binary_cross_entropy_with_logits.default,
    "(Tensor self, Tensor target, Tensor? weight=None, Tensor? pos_weight=None, int reduction=1) -> Tensor",
)
_BCE_SIG = inspect.signature(F.binary_cross_entropy_with_logits)


def _bce_with_logits(args, kwargs):
    a = _BCE_SIG.bind(*args, **kwargs)
    a.apply_defaults()
    a = a.arguments
    if a["size_average"] is not None or a["reduce"] is not None or a["reduction"] not in _REDUCTION:
        return None  # legacy arguments: torch's own path
    return _BCE_LOGITS(a["input"], a["target"], a["weight"], a["pos_weight"], _REDUCTION[a["reduction"]])


# the functional the user calls -> (args, kwargs) -> the whole op's result, or None: trace through it
KEPT = {
    F.binary_cross_entropy_with_logits: _bce_with_logits,
}


class KeepKernels(TorchFunctionMode):
    """While tracing: calls of a KEPT functional become one custom-op node."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        keep = KEPT.get(func)
        if keep is not None:
            out = keep(args, kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)
