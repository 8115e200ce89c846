"""The shape of an op-table entry, and the helpers entries are written with.

An `OpDef` is everything hnfc knows about one op: attributes, the aten overloads it stands for
(frontend), the torch call that runs it (lowering), its exact real meaning over numpy object
arrays of mpmath numbers (reference), its type rule, and the domain to sample it on (tests).
Nothing here imports torch: torch calls are described as `Call` records that lowering resolves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import mpmath
import numpy as np

from hnfc.foundation.dtypes import DTYPES, promote
from hnfc.foundation.types import Dim, TensorType

# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Scalar:
    """A Python number standing in a tensor position (what aten records for `x + 1`)."""

    value: int | float | bool


@dataclass(frozen=True)
class AsTensor:
    """Lowering must materialize this scalar as a 0-d tensor of `dtype` (no scalar overload)."""

    value: int | float | bool
    dtype: str


@dataclass(frozen=True)
class Call:
    """One torch call: `torch.ops.<target>(*args, **kwargs)`, optionally taking output `index`."""

    target: str  # e.g. "aten.log1p.default"
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    index: int | None = None


@dataclass(frozen=True)
class Alias:
    """An aten overload the frontend maps to this op.

    `convert` receives the overload's arguments by schema name (tensors as `V`, Python scalars
    as they are) and returns (ir_args, attrs), or None when this use of the overload is outside
    what the op means (the frontend then keeps it opaque). `output` is the tuple index the op
    stands for when the overload returns several tensors.
    """

    target: str
    convert: Callable[[dict], tuple[list, dict] | None]
    output: int | None = None


@dataclass(frozen=True)
class Example:
    """Arguments for table-driven tests: shapes per tensor argument, attrs, and value domains."""

    shapes: tuple[tuple[int, ...] | None, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    domain: tuple[tuple[float, float], ...] | None = None  # per argument; default op.domain
    dtypes: tuple[str, ...] | None = None  # per argument; default all float


@dataclass(frozen=True)
class OpDef:
    name: str
    arity: int  # number of value arguments; -1 = variadic (cat)
    attrs: Mapping[str, Any] = field(default_factory=dict)  # name -> default
    infer: Callable[[list, dict], Any] | None = None  # (arg types, attrs) -> type; None = given
    emit: Callable[[list, dict], Call] | None = None  # (lowered args, attrs) -> Call
    ref: Callable[[list, dict, TensorType], np.ndarray] | None = None  # exact meaning
    aliases: tuple[Alias, ...] = ()
    optional: frozenset[int] = frozenset()  # argument positions that may be None
    domain: tuple[float, float] = (-3.0, 3.0)  # default sampling domain per argument
    examples: tuple[Example, ...] = ()
    kind: str = "pointwise"  # pointwise | reduction | nn | linalg | shape | leaf | other
    doc: str = ""
    # Facts other layers derive their op sets from (never listed again outside the table)
    commutative: bool = False  # f(a, b) = f(b, a): rules match both operand orders
    contraction: int | None = None  # argument whose last axis each result element sums over (products)
    constant: bool = False  # a leaf whose value is in its attributes (const, full)
    opaque: bool = False  # hnfc does not model its meaning: no rules; the e-graph keeps it by identity
    integral: bool = False  # integer arguments give an integer result (legalize: exact integers stay exact)
    same_values: bool = False  # its value holds exactly its (one) argument's elements, rearranged (a view): same range
    # In a 16-bit float dtype torch's kernel computes it in float32 and rounds once, and IEEE fixes
    # the float32 result (exact, or one correctly rounded operation): on 16-bit-valued arguments its
    # 16-bit result is the float32 kernel's rounded, bit for bit (precision: no float32 island
    # between two 16-bit ops; tests/test_precision_islands.py checks every such entry)
    rounds_once: bool = False
    # Range analysis and cost model (hnfc.analysis); contracts in hnfc/ops/formulas.py, formulas
    # in the `*_bounds.py` module beside each family.
    # interval(arg intervals, attrs, out type, arg types) -> Interval enclosing the exact values
    interval: Callable[..., Any] | None = None
    # cond(arg intervals, attrs, out interval, out type, arg types, wrt=None) -> relative condition number
    cond: Callable[..., float] | None = None
    # hazard(arg intervals as their dtypes hold them, attrs, out type, arg types) -> reason or None
    hazard: Callable[..., str | None] | None = None
    # grad_hazard(arg intervals as their dtypes hold them, attrs, out type, arg types) -> reason or
    # None: where the derivative the backward pass computes is not finite although the forward
    # value is (sqrt at 0). Written beside `hazard` in the family's *_bounds.py.
    grad_hazard: Callable[..., str | None] | None = None
    # The vectorized reference's meaning where the op has no formula there by name
    # (hnfc/numerics/enclosure.py): a `hnfc.ops.slopes.Slope` for a pointwise function.
    enclosure: Any = None

    def check_call(self, args: Sequence, attrs: Mapping) -> None:
        """Raise ValueError naming the op when arity or attribute names are wrong."""
        if self.arity >= 0 and len(args) != self.arity:
            raise ValueError(f"{self.name}: expects {self.arity} arguments, got {len(args)}")
        for i, a in enumerate(args):
            if a is None and i not in self.optional:
                raise ValueError(f"{self.name}: argument {i} may not be omitted")
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise ValueError(f"{self.name}: unknown attributes {sorted(unknown)}")


def full_attrs(op: OpDef, attrs: Mapping) -> dict:
    """Attributes with defaults filled in, in declaration order."""
    return {k: attrs.get(k, d) for k, d in op.attrs.items()}


# ---------------------------------------------------------------------------------------------
# Type rules


def broadcast_shapes(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        known = [d for d in dims if d != 1]
        if not known:
            out.append(1)
            continue
        ints = {d for d in known if isinstance(d, int)}
        if len(ints) > 1:
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(ints.pop() if ints else known[0])
    return tuple(out)


def result_dtype(types: list[TensorType]) -> str:
    """torch promotion: 0-d operands only matter when every operand is 0-d or of a higher kind."""
    dims = [t for t in types if t.rank > 0]
    zero = [t for t in types if t.rank == 0]
    if not dims:
        return promote([t.dtype for t in zero])
    out = promote([t.dtype for t in dims])
    kinds = {"bool": 0, "int": 1, "float": 2, "complex": 3}
    higher = [t.dtype for t in zero if kinds[DTYPES[t.dtype].kind] > kinds[DTYPES[out].kind]]
    return promote(higher) if higher else out


def pointwise_type(ts: list, at: dict, *, to_float: bool = False) -> TensorType:
    ts = [t for t in ts if t is not None]
    dt = result_dtype(ts)
    if to_float and DTYPES[dt].kind != "float":
        dt = "f32"
    return TensorType(broadcast_shapes(*(t.shape for t in ts)), dt)


def float_pointwise_type(ts, at):
    return pointwise_type(ts, at, to_float=True)


def same_type(ts, at):
    return ts[0]


def norm_dims(dim, rank: int) -> tuple[int, ...]:
    """`dim` attribute (None, int or tuple) as sorted non-negative axes."""
    if dim is None or dim == ():
        return tuple(range(rank))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(sorted(d % rank if rank else 0 for d in dims))


def reduce_type(ts, at, *, to_float: bool = False):
    t = ts[0]
    axes = norm_dims(at.get("dim"), t.rank)
    if at.get("keepdim"):
        shape = tuple(1 if i in axes else d for i, d in enumerate(t.shape))
    else:
        shape = tuple(d for i, d in enumerate(t.shape) if i not in axes)
    dt = t.dtype
    if to_float and DTYPES[dt].kind != "float":
        dt = "f32"
    return TensorType(shape, dt)


def float_reduce_type(ts, at):
    return reduce_type(ts, at, to_float=True)


# ---------------------------------------------------------------------------------------------
# Exact real meaning. Values are numpy object arrays of mpmath.mpf; the working precision is
# whatever mpmath.mp.prec the reference interpreter set. These wrappers keep results real:
# mpmath returns complex numbers for log(-1) or sqrt(-1) and raises on 0/0, IEEE gives NaN.

NAN = mpmath.mpf("nan")
INF = mpmath.mpf("inf")


def isnan(x) -> bool:
    return mpmath.isnan(x)


def r_div(a, b):
    if b == 0:
        if a == 0 or isnan(a):
            return NAN
        return INF * mpmath.sign(a)  # mpmath has no signed zero; +0 is assumed
    return a / b


def r_log(x):
    if isnan(x) or x < 0:
        return NAN
    return -INF if x == 0 else mpmath.log(x)


def r_log1p(x):
    if isnan(x) or x < -1:
        return NAN
    return -INF if x == -1 else mpmath.log1p(x)


def r_sqrt(x):
    if isnan(x) or x < 0:
        return NAN
    return mpmath.sqrt(x)


def r_pow(x, p):
    if isnan(x) or isnan(p):
        return NAN
    p = mpmath.mpf(p)
    if x == 0:
        return INF if p < 0 else (mpmath.mpf(1) if p == 0 else mpmath.mpf(0))
    if x < 0 and p != int(p):
        return NAN
    return mpmath.power(x, p)


def r_sigmoid(x):
    return r_div(mpmath.mpf(1), 1 + mpmath.exp(-x))


def r_softplus(x, beta=1):
    return r_log1p(mpmath.exp(beta * x)) / beta


def r_max(a, b):
    return NAN if isnan(a) or isnan(b) else (a if a >= b else b)


def r_min(a, b):
    return NAN if isnan(a) or isnan(b) else (a if a <= b else b)


def obj(x) -> np.ndarray:
    """Any scalar or array as a numpy object array (np.frompyfunc returns bare scalars for 0-d)."""
    if isinstance(x, np.ndarray) and x.dtype == object:
        return x
    out = np.empty(np.shape(x), dtype=object)
    out[...] = x
    return out


def pointwise_ref(fn: Callable, nargs: int = 1) -> Callable:
    ufunc = np.frompyfunc(fn, nargs, 1)
    return lambda xs, at, out: obj(ufunc(*xs))


def mp_sum(x: np.ndarray, axes, keepdim: bool) -> np.ndarray:
    return obj(np.sum(x, axis=axes, keepdims=keepdim, initial=mpmath.mpf(0)))


def mp_count(x: np.ndarray, axes) -> int:
    return math.prod(x.shape[a] for a in axes)


def mp_mean(x: np.ndarray, axes, keepdim: bool) -> np.ndarray:
    return mp_sum(x, axes, keepdim) / mp_count(x, axes)


def mp_var(x: np.ndarray, axes, keepdim: bool, correction=1) -> np.ndarray:
    mean = mp_mean(x, axes, True)
    dev = x - mean
    sq = mp_sum(dev * dev, axes, keepdim)
    n = mp_count(x, axes) - correction
    return obj(np.frompyfunc(lambda s: r_div(s, mpmath.mpf(n)), 1, 1)(sq))


def mp_reduce(fn: Callable, x: np.ndarray, axes, keepdim: bool) -> np.ndarray:
    """Reduce with a binary mpmath function, one axis at a time (object ufuncs allow only one)."""
    ufunc = np.frompyfunc(fn, 2, 1)
    for a in sorted(axes, reverse=True):
        x = obj(ufunc.reduce(x, axis=a, keepdims=True))
    return x if keepdim else obj(x.reshape([d for i, d in enumerate(x.shape) if i not in axes]))


def mp_max(x: np.ndarray, axes, keepdim: bool) -> np.ndarray:
    return mp_reduce(r_max, x, axes, keepdim)


def mp_min(x: np.ndarray, axes, keepdim: bool) -> np.ndarray:
    return mp_reduce(r_min, x, axes, keepdim)


def mp_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = mp_max(x, (axis % x.ndim,), True)
    m = obj(np.frompyfunc(lambda v: v if mpmath.isfinite(v) else mpmath.mpf(0), 1, 1)(m))
    e = obj(np.frompyfunc(mpmath.exp, 1, 1)(x - m))
    s = mp_sum(e, (axis,), True)
    return obj(np.frompyfunc(r_div, 2, 1)(e, s))


def mp_logsumexp(x: np.ndarray, axes, keepdim: bool) -> np.ndarray:
    s = mp_sum(obj(np.frompyfunc(mpmath.exp, 1, 1)(x)), axes, keepdim)
    return obj(np.frompyfunc(r_log, 1, 1)(s))


def mp_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return obj(np.matmul(a, b))


@dataclass(frozen=True)
class DTypeArg:
    """A torch dtype in a `Call`, by short name (lowering resolves it)."""

    name: str


@dataclass(frozen=True)
class DeviceArg:
    """The program's device in a `Call` (lowering resolves it)."""


@dataclass(frozen=True)
class V:
    """A tensor argument seen by an alias converter: IR value id and its type."""

    id: int
    type: Any


@dataclass(frozen=True)
class TorchAttr:
    """A torch object by attribute name in a `Call` (torch.strided, torch.contiguous_format...)."""

    name: str


@dataclass(frozen=True)
class DeviceStr:
    """A device in a `Call`, by its string ("cpu", "cuda:0")."""

    name: str
