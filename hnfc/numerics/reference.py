"""The judge: evaluate a program exactly (to float64) with mpmath.

In: a `Program`, one array per program input (torch tensors or numpy arrays, in
`program.inputs` order), parameter values from `program.params`.
Out: a `Reference` whose `.outputs` are the true outputs, float64 numpy arrays correctly rounded
from the high-precision values.

Every node means what its op-table entry's `ref` says, over numpy object arrays of
`mpmath.mpf`: the program is evaluated over the reals (a `to` node is the identity on reals:
its rounding is error, not meaning). Inputs and parameters convert exactly. Ops without a `ref`
(`opaque`) run in torch, in float64 on the CPU, from their `emit` call; the result is then
flagged `approximate`.

Precision escalation is Herbie's ground truth: evaluate at `min_prec` bits and at twice that;
if every output agrees after rounding to float64 (NaN agreeing with NaN) that is the answer,
otherwise keep doubling up to `max_prec` and, failing agreement, return the last evaluation
with `converged=False`. mpmath's precision is only changed inside `mpmath.workprec`.
Like Herbie's original scheme, agreement can be fooled when a cancellation needs more bits than
both precisions have (both give 0 for (1 + 1e300) - 1e300 at 80 and 160 bits); the default start
(2x the output's significand bits + 16, at least 80) covers every cancellation of float-sized
terms up to that; pass a larger `min_prec` for programs that add terms of very different size.

Tiers (the default, `tiered=True`): the program is first evaluated vectorized in float64, then in
numpy's long double where that is wider (x86: 64-bit significand), each element with a rigorous
running error bound (hnfc/numerics/enclosure.py); an element whose whole enclosure rounds to one value is
done. Only when some output element stays undecided, or the program has an op without a
vectorized meaning (opaque), does the mpmath evaluation above run, and its values are taken for
the undecided elements only. The answer is the same as the pure evaluation's wherever that one
converges: both are the correctly rounded real value (`tiered=False` keeps the pure path).

`rounding` says what "correctly rounded" means for the outputs: "f64" (the default, today's
answers: float64 nearest) or "dtype": float64 nearest, then each output's own float dtype
(bits_error's double rounding, what verification compares in). With "dtype", float32, bfloat16
and float16 outputs are nearly always decided by the float64 tier alone.

torch is imported lazily (only when an opaque op or a torch input needs it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import mpmath
import numpy as np

from hnfc.foundation.dtypes import DTYPES
from hnfc.ir.program import last_uses
from hnfc.numerics import enclosure
from hnfc.numerics.metric import FORMATS, round_mp, round_to_format
from hnfc.ops.core import obj
from hnfc.foundation.types import TensorType, TupleType

_LEAF_PREC = 128  # float64 and 64-bit integers convert exactly at this precision
_MARGIN = 16


class EvaluationError(ValueError):  # (not ReferenceError: that is a Python builtin)
    """The reference cannot evaluate a program (bad inputs, an op it cannot run)."""


@dataclass
class Reference:
    """True outputs of a program on one set of inputs.

    outputs: one float64 numpy array per program output, correctly rounded (nearest, ties to
      even) from the high-precision values; shaped as the output's type.
    approximate: some float value came from an op evaluated with torch in float64 (opaque ops),
      so the outputs are only as good as that op's float64 result.
    prec: the working precision (bits) of the evaluation returned (a tier's significand bits when
      no mpmath evaluation ran).
    converged: the last two precisions agreed on every output (rounded to float64).
    precisions: every mpmath precision evaluated, in order (none when the vectorized tiers decided all).
    mp_outputs: the outputs as object arrays of mpmath numbers (only with return_mp=True).
    approximate_nodes: ids of the nodes evaluated with torch.
    tiers: the tiers that ran, in order ("f64", "longdouble", "mpmath").
    escalated: output elements the vectorized tiers left undecided (taken from mpmath).
    rounding: "f64" or "dtype" (see the module docstring).
    """

    outputs: list[np.ndarray]
    approximate: bool
    prec: int
    converged: bool
    precisions: list[int] = field(default_factory=list)
    mp_outputs: list[np.ndarray] | None = None
    approximate_nodes: list[int] = field(default_factory=list)
    tiers: list[str] = field(default_factory=list)
    escalated: int = 0
    rounding: str = "f64"


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def to_mp(value: Any, dtype: str | None = None) -> np.ndarray:
    """An input or parameter value (torch tensor, numpy array, Python number) as an object array
    of mpf, exactly. Floats (incl. bfloat16/float16) go through float64, ints become integral
    mpf, bools stay Python bools (they still add and multiply as 0 and 1).

    dtype: the value's declared IR dtype; float values are first rounded to it when it is a
    float format (a float32 input given float64 data sees float32 values, as in torch)."""
    if _is_torch(value):
        value = value.detach().cpu()
        if value.is_floating_point():
            arr = value.double().numpy()
        elif value.is_complex():
            raise EvaluationError("complex values are not supported by the reference")
        else:
            arr = np.asarray(value.tolist(), dtype=object).reshape(tuple(value.shape))
    else:
        arr = np.asarray(value)
        if arr.dtype.kind == "c":
            raise EvaluationError("complex values are not supported by the reference")
        if arr.dtype.kind in "iub":
            arr = np.asarray(arr.tolist(), dtype=object).reshape(arr.shape)
        elif arr.dtype.kind == "f":
            arr = arr.astype(np.float64)
        elif arr.dtype != object:
            raise EvaluationError(f"cannot convert values of dtype {arr.dtype}")
    if dtype is not None and arr.dtype == np.float64 and DTYPES[dtype].kind == "float":
        arr = round_to_format(arr, dtype)
    with mpmath.workprec(_LEAF_PREC):  # exact for float64 and 64-bit integers
        return obj(np.frompyfunc(_mpf_exact, 1, 1)(arr))


def _mpf_exact(v: Any) -> Any:
    if isinstance(v, mpmath.mpf):
        return v
    if isinstance(v, (bool, np.bool_)):
        return bool(v)  # bools stay bools: refs tell masks from values by it (sdpa's attn_mask)
    return mpmath.mpf(v)


def _dtype_of(t: Any) -> str | None:
    return t.dtype if isinstance(t, TensorType) else None


def _check_shape(what: str, arr: np.ndarray, t: Any) -> None:
    if isinstance(t, TensorType) and not t.is_symbolic and tuple(arr.shape) != tuple(t.shape):
        raise EvaluationError(f"{what}: shape {tuple(arr.shape)} does not match its type {t}")


def _leaves(program, inputs: Sequence[Any], convert=None) -> dict[int, np.ndarray]:
    """Inputs and parameters by value id, each `convert`ed (default: exact mpmath arrays) and
    checked against its declared shape."""
    convert = convert or to_mp
    ids = program.inputs
    if len(inputs) != len(ids):
        raise EvaluationError(f"program has {len(ids)} inputs ({', '.join(program.input_names)}) but {len(inputs)} values were given")
    out: dict[int, np.ndarray] = {}
    for i, value in zip(ids, inputs):
        node = program.nodes[i]
        out[i] = convert(value, _dtype_of(node.type))
        _check_shape(f"input {node.attr['name']!r} (%{i})", out[i], node.type)
    for i, node in enumerate(program.nodes):
        if node.op == "param":
            name = node.attr["name"]
            if name not in program.params:
                raise EvaluationError(f"no value for parameter {name!r} (%{i})")
            out[i] = convert(program.params[name], _dtype_of(node.type))
            _check_shape(f"parameter {name!r} (%{i})", out[i], node.type)
    return out


# ---------------------------------------------------------------------------------------------
# Ops run with torch (opaque)


def _is_float_type(t: Any) -> bool:
    if isinstance(t, TensorType):
        return DTYPES[t.dtype].kind == "float"
    if isinstance(t, TupleType):
        return any(_is_float_type(s) for s in t.items if s is not None)
    return False


def _mp_to_torch(x: Any, t: Any):
    import torch

    from hnfc.foundation.dtypes import to_torch

    if isinstance(x, tuple):  # a tuple-valued node passed on whole
        items = t.items if isinstance(t, TupleType) else (None,) * len(x)
        return tuple(None if e is None else _mp_to_torch(e, s) for e, s in zip(x, items))
    if isinstance(t, TensorType) and DTYPES[t.dtype].kind in ("int", "bool"):
        ints = np.frompyfunc(lambda v: bool(v) if t.dtype == "bool" else int(v), 1, 1)(x)
        return torch.tensor(np.asarray(ints).tolist(), dtype=to_torch(t.dtype)).reshape(x.shape)
    return torch.from_numpy(round_mp(x, "f64"))


def _torch_to_mp(v: Any) -> Any:
    import torch

    if isinstance(v, torch.Tensor):
        return to_mp(v)
    if isinstance(v, (tuple, list)):
        return tuple(_torch_to_mp(e) for e in v)
    if isinstance(v, (bool, int, float)):
        return to_mp(v)
    return None  # a non-tensor result item (None, a device...)


def _run_torch(node, xs: list, arg_types: list) -> Any:
    import torch

    from hnfc.numerics.torch_calls import run_call

    if node.opdef.emit is None:
        raise EvaluationError(f"{node.op}: has neither an exact meaning (ref) nor a torch call (emit)")
    targs = [None if x is None else _mp_to_torch(x, t) for x, t in zip(xs, arg_types)]
    call = node.opdef.emit(targs, node.attr, node.type)
    with torch.no_grad():
        try:
            out = run_call(call, "cpu", float_dtype=torch.float64, all_on_device=True)
        except Exception as e:
            raise EvaluationError(f"{node.op} ({call.target}) failed in torch float64: {type(e).__name__}: {e}") from e
    return _torch_to_mp(out)


# ---------------------------------------------------------------------------------------------
# Evaluation


def _cache_key(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return tuple(_cache_key(e) for e in x)
    r = round_mp(x, "f64")
    return (r.shape, r.tobytes())


def _evaluate(program, leaves: dict, prec: int, torch_cache: dict, approx: set) -> list:
    vals: list[Any] = [None] * len(program.nodes)
    last = last_uses(program)
    with mpmath.workprec(prec):
        for i, node in enumerate(program.nodes):
            if i in leaves:
                vals[i] = leaves[i]
            else:
                xs = [None if a is None else vals[a] for a in node.args]
                ref = node.opdef.ref
                try:
                    if ref is not None and node.op != "opaque":
                        vals[i] = ref(xs, node.attr, node.type)
                    else:
                        arg_types = [None if a is None else program.nodes[a].type for a in node.args]
                        # opaque results are cached across precisions: they are float64 anyway, and
                        # a random op must give the same value at every precision to converge
                        key = (i, _cache_key(xs))
                        if key not in torch_cache:
                            torch_cache[key] = _run_torch(node, xs, arg_types)
                        vals[i] = torch_cache[key]
                        if _is_float_type(node.type) or any(_is_float_type(t) for t in arg_types):
                            approx.add(i)
                except EvaluationError:
                    raise
                except Exception as e:
                    raise EvaluationError(f"%{i} = {node.op}: reference evaluation failed: {type(e).__name__}: {e}") from e
            for a in set(node.args):
                if a is not None and last[a] == i:
                    vals[a] = None  # free what no later node needs
    return [vals[o] for o in program.outputs]


def _rounded(program, mp_outs: list) -> list[np.ndarray]:
    out = []
    for o, v in zip(program.outputs, mp_outs):
        if isinstance(v, tuple):
            raise EvaluationError(f"output %{o} is a tuple; select its items with getitem")
        r = round_mp(v, "f64")
        t = program.nodes[o].type
        if isinstance(t, TensorType) and not t.is_symbolic and r.shape != tuple(t.shape):
            raise EvaluationError(f"output %{o} ({program.nodes[o].op}): reference gives shape {r.shape}, type says {t}")
        out.append(r)
    return out


def _agree(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(x.shape == y.shape and np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))


def default_min_prec(program) -> int:
    """2x the widest output float format's significand bits plus a margin, at least 80."""
    widest = max(
        (DTYPES[t.dtype].mantissa for t in (program.nodes[o].type for o in program.outputs) if isinstance(t, TensorType) and DTYPES[t.dtype].kind == "float"),
        default=0,
    )
    return max(80, 2 * widest + _MARGIN)


def _to_numpy(value: Any, dtype: str | None) -> np.ndarray:
    """`to_mp`'s conversion without the mpmath objects: bool, integer or float64 numpy arrays
    holding the same exact values."""
    if _is_torch(value):
        value = value.detach().cpu()
        if value.is_complex():
            raise EvaluationError("complex values are not supported by the reference")
        arr = value.double().numpy() if value.is_floating_point() else value.numpy()
    else:
        arr = np.asarray(value)
        if arr.dtype.kind == "c":
            raise EvaluationError("complex values are not supported by the reference")
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float64)
        elif arr.dtype.kind not in "iub":
            raise EvaluationError(f"cannot convert values of dtype {arr.dtype}")
    if dtype is not None and arr.dtype == np.float64 and DTYPES[dtype].kind == "float":
        arr = round_to_format(arr, dtype)
    return arr


def _leaves_numpy(program, inputs: Sequence[Any]) -> dict[int, np.ndarray]:
    """`_leaves` as numpy arrays of their own dtypes (the vectorized tiers' leaves)."""
    return _leaves(program, inputs, _to_numpy)


def output_formats(program, rounding: str) -> list[str]:
    """The format each output is correctly rounded to (after float64) under `rounding`."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    out = []
    for o in program.outputs:
        t = program.nodes[o].type
        float_fmt = isinstance(t, TensorType) and DTYPES[t.dtype].kind == "float"
        out.append(t.dtype if rounding == "dtype" and float_fmt else "f64")
    return out


ROUNDINGS = ("f64", "dtype")


def _torch_nodes(program) -> list[int]:
    """The nodes the mpmath path evaluates with torch and flags `approximate`."""
    out = []
    for i, n in enumerate(program.nodes):
        if n.op in ("input", "param") or (n.opdef.ref is not None and n.op != "opaque"):
            continue
        if _is_float_type(n.type) or any(_is_float_type(program.nodes[a].type) for a in n.args if a is not None):
            out.append(i)
    return out


def _tiers() -> list[tuple[str, Any]]:
    tiers = [("f64", np.float64)]
    if np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant:
        tiers.append(("longdouble", np.longdouble))  # x86: 64 bits; elsewhere maybe none
    return tiers


def reference(
    program,
    inputs: Sequence[Any],
    *,
    min_prec: int | None = None,
    max_prec: int = 4096,
    return_mp: bool = False,
    tiered: bool = True,
    rounding: str = "f64",
) -> Reference:
    """True outputs of `program` on `inputs` (one array per program input, program.inputs order).

    Tiered (default): vectorized float64 and long double evaluations with error enclosures
    decide every element they can; mpmath (below) runs only for the rest. `tiered=False` or
    `return_mp=True` evaluates everything in mpmath. Returns a `Reference`: `.outputs` (list of
    float64 numpy arrays, correctly rounded to float64, then with rounding="dtype" to each
    output's float dtype), `.approximate`, `.prec`, `.converged`, `.tiers`, `.escalated`, and
    `.mp_outputs` when `return_mp`.

    mpmath: evaluates at `min_prec` bits (default `default_min_prec(program)`) and doubles the
    precision until two consecutive precisions agree on every output rounded to float64, up to
    `max_prec`.
    """
    fmts = output_formats(program, rounding)
    if not tiered or return_mp or not enclosure.supported(program):
        r = _pure(program, inputs, min_prec=min_prec, max_prec=max_prec, return_mp=return_mp)
        r.outputs = [x if f == "f64" else round_to_format(x, f) for x, f in zip(r.outputs, fmts)]
        r.tiers, r.rounding = ["mpmath"], rounding
        return r
    prec = int(min_prec if min_prec is not None else default_min_prec(program))
    if prec < 2 or max_prec < prec:
        raise ValueError(f"bad precisions: min_prec={prec}, max_prec={max_prec}")
    leaves = _leaves_numpy(program, inputs)
    outs: list[np.ndarray | None] = [None] * len(fmts)
    done: list[np.ndarray | None] = [None] * len(fmts)
    tiers, precs, balls_of = [], [], {}
    for name, dt in _tiers():
        try:
            balls = enclosure.evaluate(program, leaves, dt)
        except enclosure.Unsupported:
            continue  # this tier cannot hold the program (a large integer): try the next
        tiers.append(name)
        balls_of[name] = balls
        precs.append(int(np.finfo(dt).nmant) + 1)
        for k, (ball, fmt) in enumerate(zip(balls, fmts)):
            vals, ok = enclosure.decide(ball, fmt, round_to_format)
            if outs[k] is None:
                outs[k], done[k] = vals, ok
            else:
                new = ok & ~done[k]
                outs[k] = np.where(new, vals, outs[k])
                done[k] = done[k] | ok
        if all(d.all() for d in done):
            break
    if len(balls_of) == 2 and not all(d.all() for d in done) and not enclosure.uses_float64_only(program):
        # what no enclosure decided: the float64 and long double values, agreeing (see `agree`)
        tiers.append("agreement")
        for k, (narrow, wide, fmt) in enumerate(zip(balls_of["f64"], balls_of["longdouble"], fmts)):
            vals, ok = enclosure.agree(narrow, wide, fmt, round_to_format, FORMATS)
            new = ok & ~done[k]
            outs[k] = np.where(new, vals, outs[k])
            done[k] = done[k] | ok
    if not tiers:
        r = _pure(program, inputs, min_prec=min_prec, max_prec=max_prec)
        r.outputs = [x if f == "f64" else round_to_format(x, f) for x, f in zip(r.outputs, fmts)]
        r.tiers, r.rounding = ["mpmath"], rounding
        return r
    undecided = sum(int((~d).sum()) for d in done)
    if not undecided:
        approx = _torch_nodes(program)  # the same flag the mpmath path sets: opaque float ops ran in torch
        return Reference(
            outputs=[np.asarray(o, dtype=np.float64) for o in outs],
            approximate=bool(approx),
            prec=precs[-1],
            converged=True,
            precisions=[],
            approximate_nodes=approx,
            tiers=tiers,
            rounding=rounding,
        )
    # Escalate: mpmath for what the enclosures left undecided (the whole program is evaluated;
    # only the undecided elements' values are taken).
    r = _pure(program, inputs, min_prec=min_prec, max_prec=max_prec)
    final = []
    for o, d, x, fmt in zip(outs, done, r.outputs, fmts):
        exact = x if fmt == "f64" else round_to_format(x, fmt)
        final.append(np.where(d, o, exact).astype(np.float64))
    r.outputs, r.tiers, r.escalated, r.rounding = final, tiers + ["mpmath"], undecided, rounding
    return r


def _pure(program, inputs: Sequence[Any], *, min_prec: int | None = None, max_prec: int = 4096, return_mp: bool = False) -> Reference:
    """The whole program in mpmath, with precision escalation (see the module docstring)."""

    prec = int(min_prec if min_prec is not None else default_min_prec(program))
    if prec < 2 or max_prec < prec:
        raise ValueError(f"bad precisions: min_prec={prec}, max_prec={max_prec}")
    leaves = _leaves(program, inputs)
    torch_cache: dict = {}
    approx: set[int] = set()
    precs = [prec]
    mp_outs = _evaluate(program, leaves, prec, torch_cache, approx)
    outs = _rounded(program, mp_outs)
    converged = False
    while True:
        nxt = min(2 * prec, max_prec)
        if nxt <= prec:
            break
        prec = nxt
        precs.append(prec)
        mp_new = _evaluate(program, leaves, prec, torch_cache, approx)
        new = _rounded(program, mp_new)
        done = _agree(outs, new)
        mp_outs, outs = mp_new, new
        if done:
            converged = True
            break
    return Reference(
        outputs=outs,
        approximate=bool(approx),
        prec=prec,
        converged=converged,
        precisions=precs,
        mp_outputs=list(mp_outs) if return_mp else None,
        approximate_nodes=sorted(approx),
    )
