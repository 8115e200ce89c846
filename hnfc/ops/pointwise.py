"""Op-table entries for elementwise ops (one entry per op).

Each entry says which aten overloads it covers, how to call it from torch, its exact real
meaning in mpmath, its type rule and the domain it is tested on.
"""

from __future__ import annotations

import mpmath
import numpy as np

from hnfc.foundation.types import TensorType
from hnfc.ops import pointwise_bounds, slopes, trig_bounds
from hnfc.ops.core import (
    Alias,
    AsTensor,
    Call,
    Example,
    OpDef,
    Scalar,
    broadcast_shapes,
    float_pointwise_type,
    obj,
    pointwise_ref,
    pointwise_type,
    r_div,
    r_log,
    r_log1p,
    r_max,
    r_min,
    r_pow,
    r_sigmoid,
    r_softplus,
    r_sqrt,
)
from hnfc.ops.core import NAN, isnan

_UNARY_EXAMPLES = (Example(shapes=((3, 5),)), Example(shapes=((),)))


def _unary(name, fn, *, domain=(-3.0, 3.0), aten=None, float_out=True, doc="", extra_aliases=(), **analysis):
    target = f"aten.{aten or name}.default"
    return OpDef(
        name=name,
        arity=1,
        infer=float_pointwise_type if float_out else pointwise_type,
        emit=lambda a, at, out: Call(target, (a[0],)),
        ref=pointwise_ref(fn),
        aliases=(Alias(target, lambda a: ([a["self"]], {})), *extra_aliases),
        domain=domain,
        examples=_UNARY_EXAMPLES,
        doc=doc,
        **analysis,
    )


def _tensor(v, out):
    return AsTensor(v.value, out.dtype) if isinstance(v, Scalar) else v


def _binary_emit(overload: str, *, commutative: bool, reversed_overload: str | None = None):
    """Aten binary ops take a Python scalar only as their second operand."""

    def emit(a, at, out):
        x, y = a
        if isinstance(x, Scalar) and not isinstance(y, Scalar):
            if commutative:
                return Call(overload, (y, x))
            if reversed_overload:
                return Call(reversed_overload, (y, x))
        return Call(overload, (_tensor(x, out), y))

    return emit


def _binary_alias(target, *, alpha: bool):
    """alpha: the overload has an `alpha` scale (add, sub); only alpha == 1 is this op."""
    if alpha:
        return Alias(target, lambda a: ([a["self"], a["other"]], {}) if a["alpha"] == 1 else None)
    return Alias(target, lambda a: ([a["self"], a["other"]], {}))


def _binary(name, fn, *, commutative, reversed_overload=None, domain=(-3.0, 3.0), aliases=(), doc="", examples=None, **analysis):
    target = f"aten.{name}.Tensor"
    return OpDef(
        name=name,
        arity=2,
        infer=pointwise_type,
        emit=_binary_emit(target, commutative=commutative, reversed_overload=reversed_overload),
        ref=pointwise_ref(fn, 2),
        aliases=(_binary_alias(target, alpha=name in ("add", "sub")), *aliases),
        domain=domain,
        examples=examples or (Example(shapes=((3, 5), (3, 5))), Example(shapes=((2, 3, 5), (5,)))),
        doc=doc,
        commutative=commutative,
        **analysis,
    )


def _minmax_emit(overload):
    return lambda a, at, out: Call(overload, tuple(_tensor(v, out) for v in a))


def _where_emit(a, at, out):
    c, x, y = a
    if isinstance(x, Scalar) and isinstance(y, Scalar):
        return Call("aten.where.Scalar", (c, x, y))
    if isinstance(x, Scalar):
        return Call("aten.where.ScalarSelf", (c, x, y))
    if isinstance(y, Scalar):
        return Call("aten.where.ScalarOther", (c, x, y))
    return Call("aten.where.self", (c, x, y))


def _where_ref(xs, at, out):
    c, x, y = xs
    return obj(np.where(np.frompyfunc(bool, 1, 1)(c).astype(bool), x, y))


def _where_type(ts, at):
    t = pointwise_type(ts[1:], at)
    return TensorType(broadcast_shapes(*(s.shape for s in ts)), t.dtype)


def _eq_emit(a, at, out):
    x, y = a
    if isinstance(x, Scalar) and not isinstance(y, Scalar):
        x, y = y, x  # aten's Scalar overload takes the number second
    if isinstance(y, Scalar):
        return Call("aten.eq.Scalar", (AsTensor(x.value, "f64") if isinstance(x, Scalar) else x, y.value))
    return Call("aten.eq.Tensor", (x, y))


def _clamp_ref(xs, at, out):
    lo, hi = at["min"], at["max"]

    def f(x):
        if lo is not None:
            x = r_max(x, mpmath.mpf(lo))
        if hi is not None:
            x = r_min(x, mpmath.mpf(hi))
        return x

    return pointwise_ref(f)(xs, at, out)


def _gelu(x, approximate):
    if approximate == "tanh":
        k = mpmath.sqrt(2 / mpmath.pi)
        # x/2 (1 + tanh z) = x sigmoid(2z): the same real number without 1 + tanh's cancellation
        return x * r_sigmoid(2 * k * (x + mpmath.mpf("0.044715") * x**3))
    return x / 2 * (1 + mpmath.erf(x / mpmath.sqrt(2)))


SQRT_DOC = "sqrt(x); NaN below 0"


def _on(lo, hi, fn, *, at_lo=None, at_hi=None):
    """fn on [lo, hi] (NaN outside, the real function is undefined there); at_lo/at_hi: the
    value at an endpoint where mpmath would answer with a complex or raise (atanh(±1) = ±inf)."""

    def f(x):
        if isnan(x) or x < lo or x > hi:
            return NAN
        if at_lo is not None and x == lo:
            return at_lo
        if at_hi is not None and x == hi:
            return at_hi
        return fn(x)

    return f


_INF = mpmath.inf


def _erfc(x):
    # mpmath's erfc raises beyond ~1e150 (a float conversion inside); there the leading terms of
    # the asymptotic series e^(-x²)/(x√π) (1 - 1/(2x²)) are exact to ~1/x⁴, far below any precision used
    if not isnan(x) and x > 1e20:
        return mpmath.exp(-x * x) / (x * mpmath.sqrt(mpmath.pi)) * (1 - 1 / (2 * x * x))
    return mpmath.erfc(x)

OPS = [
    _binary("add", lambda a, b: a + b, commutative=True, integral=True, rounds_once=True, doc="a + b", **pointwise_bounds.ADD),
    _binary(
        "sub",
        lambda a, b: a - b,
        commutative=False,
        integral=True,
        rounds_once=True,
        reversed_overload="aten.rsub.Scalar",
        aliases=(Alias("aten.rsub.Scalar", lambda a: ([a["other"], a["self"]], {}) if a.get("alpha", 1) == 1 else None),),
        doc="a - b",
        **pointwise_bounds.SUB,
    ),
    _binary("mul", lambda a, b: a * b, commutative=True, integral=True, rounds_once=True, doc="a * b", **pointwise_bounds.MUL),
    _binary(
        "div",
        r_div,
        commutative=False,
        aliases=(),
        examples=(Example(shapes=((3, 5), (3, 5)), domain=((-3.0, 3.0), (0.5, 3.0))),),
        doc="a / b (true division; other rounding modes stay opaque)",
        rounds_once=True,
        **pointwise_bounds.DIV,
    ),
    _unary("neg", lambda x: -x, float_out=False, integral=True, rounds_once=True, doc="-x", **pointwise_bounds.NEG),
    _unary("reciprocal", lambda x: r_div(mpmath.mpf(1), x), domain=(0.1, 10.0), doc="1 / x", **pointwise_bounds.RECIPROCAL),
    _unary("abs", abs, float_out=False, integral=True, rounds_once=True, doc="|x|", **pointwise_bounds.ABS),
    OpDef(
        name="square",
        arity=1,
        infer=pointwise_type,
        emit=lambda a, at, out: Call("aten.pow.Tensor_Scalar", (a[0], 2)),
        ref=pointwise_ref(lambda x: x * x),
        aliases=(Alias("aten.square.default", lambda a: ([a["self"]], {})),),
        examples=_UNARY_EXAMPLES,
        doc="x * x (torch.square is pow(x, 2))",
        **pointwise_bounds.SQUARE,
    ),
    OpDef(
        name="pow",
        arity=1,
        attrs={"exponent": 2.0},
        infer=pointwise_type,
        emit=lambda a, at, out: Call("aten.pow.Tensor_Scalar", (a[0], at["exponent"])),
        ref=lambda xs, at, out: pointwise_ref(lambda x: r_pow(x, at["exponent"]))(xs, at, out),
        aliases=(Alias("aten.pow.Tensor_Scalar", lambda a: ([a["self"]], {"exponent": a["exponent"]})),),
        domain=(0.1, 5.0),
        examples=(
            Example(shapes=((3, 5),), attrs={"exponent": 2.5}),
            Example(shapes=((3, 5),), attrs={"exponent": -1.5}),
            Example(shapes=((3, 5),), attrs={"exponent": 3}, domain=((-3.0, 3.0),)),
        ),
        doc="x ** p for a scalar exponent p",
        **pointwise_bounds.POW,
    ),
    _unary("exp", mpmath.exp, domain=(-10.0, 10.0), doc="e^x", **pointwise_bounds.EXP),
    _unary("expm1", mpmath.expm1, domain=(-10.0, 10.0), doc="e^x - 1", **pointwise_bounds.EXPM1),
    _unary("log", r_log, domain=(1e-3, 10.0), doc="natural log; NaN below 0", **pointwise_bounds.LOG),
    _unary("log1p", r_log1p, domain=(-0.5, 10.0), doc="log(1 + x)", **pointwise_bounds.LOG1P),
    _unary("log2", lambda x: r_log(x) / mpmath.log(2), domain=(1e-3, 10.0), doc="log base 2", **pointwise_bounds.LOG2),
    _unary("sqrt", r_sqrt, domain=(1e-3, 10.0), doc=SQRT_DOC, rounds_once=True, **pointwise_bounds.SQRT),
    _unary("rsqrt", lambda x: r_div(mpmath.mpf(1), r_sqrt(x)), domain=(1e-3, 10.0), doc="1 / sqrt(x)", **pointwise_bounds.RSQRT),
    _unary("tanh", mpmath.tanh, domain=(-5.0, 5.0), doc="tanh x", **pointwise_bounds.TANH),
    _unary("sinh", mpmath.sinh, domain=(-5.0, 5.0), doc="sinh x", **pointwise_bounds.SINH),
    _unary("cosh", mpmath.cosh, domain=(-5.0, 5.0), doc="cosh x", **pointwise_bounds.COSH),
    _unary("sigmoid", r_sigmoid, domain=(-10.0, 10.0), doc="1 / (1 + e^-x)", **pointwise_bounds.SIGMOID),
    _unary("silu", lambda x: x * r_sigmoid(x), domain=(-6.0, 6.0), doc="x σ(x) (swish)", **pointwise_bounds.SILU),
    _unary("erf", mpmath.erf, doc="error function", **pointwise_bounds.ERF),
    _unary("erfc", _erfc, domain=(-5.0, 25.0), doc="1 - erf x without the cancellation (complementary error function)", enclosure=slopes.ERFC, **pointwise_bounds.ERFC),
    _unary("sin", mpmath.sin, doc="sin x", **trig_bounds.SIN),
    _unary("tan", mpmath.tan, domain=(-1.5, 1.5), doc="tan x (poles at π/2 + kπ)", enclosure=slopes.TAN, **trig_bounds.TAN),
    _unary("atan", mpmath.atan, domain=(-50.0, 50.0), doc="arctangent, in (-π/2, π/2)", enclosure=slopes.ATAN, **trig_bounds.ATAN),
    _unary("asin", _on(-1, 1, mpmath.asin), domain=(-0.99, 0.99), doc="arcsine; NaN outside [-1, 1]", enclosure=slopes.ASIN, **trig_bounds.ASIN),
    _unary("acos", _on(-1, 1, mpmath.acos), domain=(-0.99, 0.99), doc="arccosine; NaN outside [-1, 1]", enclosure=slopes.ACOS, **trig_bounds.ACOS),
    _unary("asinh", mpmath.asinh, domain=(-50.0, 50.0), doc="inverse hyperbolic sine", enclosure=slopes.ASINH, **trig_bounds.ASINH),
    _unary("acosh", _on(1, _INF, mpmath.acosh), domain=(1.01, 50.0), doc="inverse hyperbolic cosine; NaN below 1", enclosure=slopes.ACOSH, **trig_bounds.ACOSH),
    _unary(
        "atanh",
        _on(-1, 1, mpmath.atanh, at_lo=-_INF, at_hi=_INF),
        domain=(-0.99, 0.99),
        doc="inverse hyperbolic tangent; ±inf at ±1, NaN outside",
        enclosure=slopes.ATANH,
        **trig_bounds.ATANH,
    ),
    _unary("cos", mpmath.cos, doc="cos x", **trig_bounds.COS),
    _unary("relu", lambda x: r_max(x, mpmath.mpf(0)), float_out=False, doc="max(x, 0)", rounds_once=True, **pointwise_bounds.RELU),
    OpDef(
        name="logsigmoid",
        arity=1,
        infer=float_pointwise_type,
        emit=lambda a, at, out: Call("aten.log_sigmoid.default", (a[0],)),
        ref=pointwise_ref(lambda x: -r_softplus(-x)),
        aliases=(
            Alias("aten.log_sigmoid_forward.default", lambda a: ([a["self"]], {}), output=0),
            Alias("aten.log_sigmoid.default", lambda a: ([a["self"]], {})),
        ),
        domain=(-15.0, 15.0),
        examples=_UNARY_EXAMPLES,
        doc="log(sigmoid x) = -softplus(-x)",
        **pointwise_bounds.LOGSIGMOID,
    ),
    OpDef(
        name="softplus",
        arity=1,
        attrs={"beta": 1.0, "threshold": 20.0},
        infer=float_pointwise_type,
        emit=lambda a, at, out: Call("aten.softplus.default", (a[0], at["beta"], at["threshold"])),
        ref=lambda xs, at, out: pointwise_ref(lambda x: r_softplus(x, mpmath.mpf(at["beta"])))(xs, at, out),
        aliases=(Alias("aten.softplus.default", lambda a: ([a["self"]], {"beta": a["beta"], "threshold": a["threshold"]})),),
        domain=(-15.0, 15.0),
        # beta * x stays below `threshold` (20), where torch returns x instead of softplus
        examples=_UNARY_EXAMPLES + (Example(shapes=((4,),), attrs={"beta": 2.0}, domain=((-9.0, 9.0),)),),
        doc="log(1 + e^(beta x)) / beta; torch returns x above `threshold` (an approximation)",
        **pointwise_bounds.SOFTPLUS,
    ),
    OpDef(
        name="gelu",
        arity=1,
        attrs={"approximate": "none"},
        infer=float_pointwise_type,
        emit=lambda a, at, out: Call("aten.gelu.default", (a[0],), {"approximate": at["approximate"]}),
        ref=lambda xs, at, out: pointwise_ref(lambda x: _gelu(x, at["approximate"]))(xs, at, out),
        aliases=(Alias("aten.gelu.default", lambda a: ([a["self"]], {"approximate": a["approximate"]})),),
        domain=(-1.0, 5.0),
        examples=_UNARY_EXAMPLES + (Example(shapes=((3, 5),), attrs={"approximate": "tanh"}),),
        doc="x/2 (1 + erf(x/sqrt 2)); approximate='tanh' means the tanh formula exactly",
        **pointwise_bounds.GELU,
    ),
    OpDef(
        name="maximum",
        arity=2,
        infer=pointwise_type,
        emit=_minmax_emit("aten.maximum.default"),
        ref=pointwise_ref(r_max, 2),
        aliases=(Alias("aten.maximum.default", lambda a: ([a["self"], a["other"]], {})),),
        examples=(Example(shapes=((3, 5), (3, 5))),),
        doc="elementwise max, NaN-propagating",
        commutative=True,
        **pointwise_bounds.MAXIMUM,
    ),
    OpDef(
        name="minimum",
        arity=2,
        infer=pointwise_type,
        emit=_minmax_emit("aten.minimum.default"),
        ref=pointwise_ref(r_min, 2),
        aliases=(Alias("aten.minimum.default", lambda a: ([a["self"], a["other"]], {})),),
        examples=(Example(shapes=((3, 5), (3, 5))),),
        doc="elementwise min, NaN-propagating",
        commutative=True,
        **pointwise_bounds.MINIMUM,
    ),
    OpDef(
        name="hypot",
        arity=2,
        infer=pointwise_type,
        emit=_minmax_emit("aten.hypot.default"),
        ref=pointwise_ref(mpmath.hypot, 2),
        aliases=(Alias("aten.hypot.default", lambda a: ([a["self"], a["other"]], {})),),
        examples=(Example(shapes=((3, 5), (3, 5))), Example(shapes=((2, 3, 5), (5,)))),
        doc="sqrt(a^2 + b^2) without overflow or underflow of the squares",
        **pointwise_bounds.HYPOT,
    ),
    OpDef(
        name="logaddexp",
        arity=2,
        infer=float_pointwise_type,
        emit=_minmax_emit("aten.logaddexp.default"),
        ref=pointwise_ref(lambda a, b: r_log(mpmath.exp(a) + mpmath.exp(b)), 2),
        aliases=(Alias("aten.logaddexp.default", lambda a: ([a["self"], a["other"]], {})),),
        domain=(-50.0, 50.0),
        examples=(Example(shapes=((3, 5), (3, 5))), Example(shapes=((2, 3, 5), (5,)))),
        doc="log(e^a + e^b) without overflow",
        **pointwise_bounds.LOGADDEXP,
    ),
    OpDef(
        name="where",
        arity=3,
        infer=_where_type,
        emit=_where_emit,
        ref=_where_ref,
        aliases=tuple(
            Alias(f"aten.where.{ov}", lambda a: ([a["condition"], a["self"], a["other"]], {}))
            for ov in ("self", "ScalarSelf", "ScalarOther", "Scalar")
        )
        # masked_fill(x, mask, v) selects exactly as where(mask, v, x) (attention masks): ranges and
        # hazards then see the fill value instead of an opaque kernel
        + tuple(
            Alias(f"aten.masked_fill.{ov}", lambda a: ([a["mask"], a["value"], a["self"]], {}) if getattr(a["mask"].type, "dtype", None) == "bool" else None)
            for ov in ("Scalar", "Tensor")
        ),
        examples=(Example(shapes=((3, 5), (3, 5), (3, 5)), dtypes=("bool", "f64", "f64")),),
        doc="cond ? a : b",
        rounds_once=True,
        **pointwise_bounds.WHERE,
    ),
    OpDef(
        name="lt",
        arity=1,
        attrs={"other": 0.0},
        infer=lambda ts, at: TensorType(ts[0].shape, "bool"),
        emit=lambda a, at, out: Call("aten.lt.Scalar", (a[0], float(at["other"]))),
        ref=lambda xs, at, out: obj(np.frompyfunc(lambda v: bool(v < mpmath.mpf(at["other"])), 1, 1)(xs[0])),
        examples=(Example(shapes=((3, 5),), attrs={"other": 0.5}),),
        # no aten alias yet: the regimes stage (hnfc/verify/regimes.py) builds its branch
        # conditions with it; traced comparisons stay opaque as before
        doc="x < other (a scalar threshold): the condition of a piecewise candidate",
        **pointwise_bounds.LT,
    ),
    OpDef(
        name="eq",
        arity=2,
        infer=lambda ts, at: TensorType(broadcast_shapes(*(t.shape for t in ts)), "bool"),
        emit=_eq_emit,
        ref=lambda xs, at, out: obj(np.frompyfunc(lambda a, b: bool(a == b), 2, 1)(*np.broadcast_arrays(xs[0], xs[1]))),
        # integer samples, so that equal pairs occur (float samples are never equal)
        examples=(Example(shapes=((3, 5), (3, 1)), domain=((0.0, 2.0), (0.0, 2.0)), dtypes=("i64", "i64")), Example(shapes=((3, 5), (3, 5)))),
        # no aten alias yet (as lt): traced comparisons stay opaque; rules build it (an entry
        # equal to its row's max: hnfc/rewrites/builtin.py)
        doc="a == b elementwise (broadcasting): exact, a bool",
        commutative=True,
        **pointwise_bounds.EQ,
    ),
    OpDef(
        name="clamp",
        arity=1,
        attrs={"min": None, "max": None},
        infer=pointwise_type,
        emit=lambda a, at, out: Call("aten.clamp.default", (a[0], at["min"], at["max"])),
        ref=_clamp_ref,
        aliases=(
            Alias("aten.clamp.default", lambda a: ([a["self"]], {"min": a["min"], "max": a["max"]})),
            Alias("aten.clamp_min.default", lambda a: ([a["self"]], {"min": a["min"]})),
            Alias("aten.clamp_max.default", lambda a: ([a["self"]], {"max": a["max"]})),
        ),
        examples=(Example(shapes=((3, 5),), attrs={"min": -1.0, "max": 2.0}), Example(shapes=((4,),), attrs={"min": 0.0})),
        doc="min(max(x, min), max) with scalar bounds",
        rounds_once=True,
        **pointwise_bounds.CLAMP,
    ),
]
