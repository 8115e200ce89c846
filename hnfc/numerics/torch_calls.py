"""Turn the op table's `Call` records into real torch calls.

In: an `hnfc.ops.Call` (from an `OpDef.emit`) whose arguments may hold the op table's marker
objects (`Scalar`, `AsTensor`, `DTypeArg`, `DeviceArg`, `DeviceStr`, `TorchAttr`).
Out: `ResolvedCall(fn, args, kwargs, index)` with every marker replaced by the torch object it
stands for, or the result of running it (`run_call`).

Shared by the reference interpreter (which runs opaque ops in float64 on the CPU) and lowering
(which puts the call into an fx graph: anything that is not a marker, e.g. an fx Node, passes
through untouched). torch is imported inside the functions only.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

from hnfc.foundation.dtypes import DTYPES, to_torch
from hnfc.ops.core import AsTensor, Call, DeviceArg, DeviceStr, DTypeArg, Scalar, TorchAttr


@dataclass(frozen=True)
class ResolvedCall:
    """`fn(*args, **kwargs)`, then `[index]` when index is not None."""

    fn: Callable
    args: tuple
    kwargs: dict
    index: int | None = None

    def __call__(self):
        out = self.fn(*self.args, **self.kwargs)
        return out if self.index is None else out[self.index]


def resolve_target(target: str) -> Callable:
    """"aten.log1p.default" -> torch.ops.aten.log1p.default; "getitem" -> operator.getitem."""
    if target == "getitem":
        return operator.getitem
    import torch

    obj: Any = torch.ops
    try:
        for part in target.split("."):
            obj = getattr(obj, part)
    except (AttributeError, RuntimeError) as e:
        raise ValueError(f"unknown torch op target {target!r}: {e}") from None
    return obj


def _torch_dtype(name: str, float_dtype):
    if float_dtype is not None and DTYPES[name].kind == "float":
        return float_dtype
    return to_torch(name)


def resolve_value(v: Any, device=None, *, float_dtype=None, all_on_device: bool = False) -> Any:
    """One argument with its markers resolved (recursing into lists, tuples and dicts).

    device: what `DeviceArg` means (default "cpu"). float_dtype: when given (a torch dtype),
    every float `DTypeArg`/`AsTensor` dtype becomes it (the reference runs in float64).
    all_on_device: `DeviceStr` also becomes `device` (the reference runs everything on the CPU).
    """
    import torch

    def dev():
        return torch.device(device if device is not None else "cpu")

    def go(x):
        if isinstance(x, Scalar):
            return x.value
        if isinstance(x, AsTensor):
            return torch.tensor(x.value, dtype=_torch_dtype(x.dtype, float_dtype), device=dev())
        if isinstance(x, DTypeArg):
            return _torch_dtype(x.name, float_dtype)
        if isinstance(x, DeviceArg):
            return dev()
        if isinstance(x, DeviceStr):
            return dev() if all_on_device else torch.device(x.name)
        if isinstance(x, TorchAttr):
            return getattr(torch, x.name)
        if isinstance(x, list):
            return [go(e) for e in x]
        if isinstance(x, tuple):
            return tuple(go(e) for e in x)
        if isinstance(x, dict):
            return {k: go(e) for k, e in x.items()}
        return x

    return go(v)


def resolve_call(call: Call, device=None, *, float_dtype=None, all_on_device: bool = False) -> ResolvedCall:
    """The torch callable and resolved arguments of `call` (see `resolve_value` for the options)."""
    opts = dict(device=device, float_dtype=float_dtype, all_on_device=all_on_device)
    args = tuple(resolve_value(a, **opts) for a in call.args)
    kwargs = {k: resolve_value(v, **opts) for k, v in dict(call.kwargs).items()}
    return ResolvedCall(resolve_target(call.target), args, kwargs, call.index)


def run_call(call: Call, device=None, *, float_dtype=None, all_on_device: bool = False) -> Any:
    """Resolve `call` and run it."""
    return resolve_call(call, device, float_dtype=float_dtype, all_on_device=all_on_device)()
