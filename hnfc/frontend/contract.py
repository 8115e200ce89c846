"""The input contract, checked before any work: what a model must be able to take for hnfc to
optimize it.

In: example inputs, a traced program, or a model whose trace failed. Out: nothing, or an
`InputError` (a ValueError) that names the input or node and the problem. Where it sits:
`hnfc.optimize` and `hnfc.lint` check the examples first (`check_examples`); the frontend checks
every traced node against the op table's type rules (`check_types`), since tracing with fake
tensors skips some of torch's own checks (addmm's meta kernel takes an f32 weight and an f64
input that the real kernel refuses); and when a trace fails, `cannot_run` tells a model that
cannot take the inputs at all (an error) from one that hnfc cannot trace (hnfc's limitation: the
model runs unchanged, with a warning). `random_warning` is the report's warning for a program
that draws random numbers (train-mode dropout): its measurements are not comparable.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch.utils import _pytree as pytree

from hnfc.foundation.types import TensorType
from hnfc.ir.format import format_node


class InputError(ValueError):
    """The model cannot take these inputs (wrong dtype or shape, non-finite examples)."""


def check_examples(example_inputs: Sequence[Any], names: Sequence[str] | None = None) -> None:
    """Every floating example must be finite: hnfc measures errors on the examples and derives
    ranges from them, and a NaN or inf there makes every figure meaningless."""
    for k, x in enumerate(pytree.tree_leaves(list(example_inputs))):
        if isinstance(x, torch.Tensor) and (x.is_floating_point() or x.is_complex()) and x.numel() and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            name = repr(names[k]) if names is not None and k < len(names) else f"#{k}"
            raise InputError(f"example input {name} has {bad} non-finite value(s) (NaN or inf): give finite example inputs")


def check_types(program) -> None:
    """Every node's arguments must type under the op table's rules (hnfc/ops), which follow
    torch's kernels; raises InputError naming the first node that does not."""
    for i, n in enumerate(program.nodes):
        opdef = n.opdef
        if opdef.infer is None or n.op == "getitem":
            continue
        types = [None if a is None else program.nodes[a].type for a in n.args]
        if not all(t is None or isinstance(t, TensorType) for t in types):
            continue
        try:
            opdef.infer(types, n.attr)
        except ValueError as e:
            raise InputError(f"the model cannot run on these inputs: {format_node(i, program)}: {e}") from None


def cannot_run(model_or_fn, example_inputs: Sequence[Any]) -> str | None:
    """After a failed trace: run the model eagerly, without gradients; its error in one line, or
    None when it runs (then the failure is hnfc's, not the inputs')."""
    try:
        with torch.no_grad():
            model_or_fn(*example_inputs)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"{type(e).__name__}: {first}"
    return None


def random_ops(program) -> list[str]:
    """The program's nodes that draw random numbers (torch tags them `nondeterministic_seeded`:
    dropout's bernoulli in train mode, rand, randn, ...), as "%i target"."""
    found = []
    for i, n in enumerate(program.nodes):
        if n.op == "opaque" and _seeded(n.attr.get("target", "")):
            found.append(f"%{i} {n.attr['target']}")
    return found


def random_warning(program) -> str | None:
    """The report's warning for a program with random ops: the torch run and the mpmath reference
    draw different numbers, so the error figures compare different computations."""
    found = random_ops(program)
    if not found:
        return None
    return (f"the model draws random numbers ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''}; a module in train mode?): "
            "the torch runs and the mpmath reference would draw different values, so whole outputs were not measured "
            "(each rewrite was verified locally, on values captured from one run); call model.eval() before hnfc for output figures")


def _seeded(target: str) -> bool:
    namespace, _, rest = target.partition(".")
    name, _, overload = rest.partition(".")
    try:
        op = getattr(getattr(getattr(torch.ops, namespace), name), overload or "default")
    except (AttributeError, RuntimeError):
        return False
    return torch.Tag.nondeterministic_seeded in getattr(op, "tags", ())


def input_bytes(shape: Sequence[int], dtype: torch.dtype) -> int:
    """Bytes a tensor of this shape and dtype takes (to refuse a huge input before allocating)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return math.prod(shape) * itemsize


__all__ = ["InputError", "cannot_run", "check_examples", "check_types", "input_bytes", "random_ops", "random_warning"]
