"""Range analysis and the cost model (hnfc.analysis, formulas beside each op family, hnfc/ops/*_bounds.py).

- every op with a real meaning has an interval transfer function and a condition number;
- table-driven over the op table's examples: the interval computed from the argument domains
  encloses the op's exact values (mpmath `ref`) on samples, extremes included; cond is ≥ 0,
  never NaN, finite where the domain keeps away from the op's singularities, and bounds the
  pointwise relative condition number measured by finite differences in mpmath;
- hypothesis: enclosure on random sub-intervals for the core pointwise ops, far beyond their
  test domains (overflow, poles, periodicity);
- the calibration of DESIGN.md ("Curvature: the extraction objective"), float32.
"""

from __future__ import annotations

import math
import subprocess
import sys

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hnfc import analysis
from hnfc.analysis import HAZARD_BITS, Interval, interval_of_node, node_cost, program_bits, ranges
from hnfc.foundation.intervals import add_down, add_up, down, up
from hnfc.ir import Builder, TensorType, parse_program
from hnfc.ops import OPS
from hnfc.ops.core import full_attrs, obj
from tests.conftest import op_examples

# ---------------------------------------------------------------------------------------------
# helpers

_MP = np.frompyfunc(mpmath.mpf, 1, 1)


def _arg_types(op, ex):
    types = []
    for i, shape in enumerate(ex.shapes):
        if shape is None:
            types.append(None)
        else:
            types.append(TensorType(tuple(shape), ex.dtypes[i] if ex.dtypes is not None else "f64"))
    return types


def _domains(op, ex):
    out = []
    for i, shape in enumerate(ex.shapes):
        if shape is None:
            out.append(None)
        elif ex.dtypes is not None and ex.dtypes[i] == "bool":
            out.append((0.0, 1.0))
        else:
            out.append(tuple(ex.domain[i]) if ex.domain is not None else op.domain)
    return out


def _draw(rng, shape, dom, kind, dtype):
    lo, hi = dom
    if dtype == "bool":
        v = rng.integers(0, 2, size=shape).astype(float)
    elif kind == "lo":
        v = np.full(shape, lo)
    elif kind == "hi":
        v = np.full(shape, hi)
    elif kind == "corners":
        v = np.where(rng.random(shape) < 0.5, lo, hi)
    else:
        v = rng.uniform(lo, hi, size=shape)
    return obj(_MP(v)) if np.ndim(v) else obj(mpmath.mpf(float(v)))


def _evaluate(op, ex, types, xs, at, out_type):
    return obj(op.ref(xs, at, out_type))


def _setup(op, ex):
    types = _arg_types(op, ex)
    at = full_attrs(op, ex.attrs)
    out_type = op.infer(types, at)
    doms = _domains(op, ex)
    ivs = [None if d is None else Interval(*d) for d in doms]
    return types, at, out_type, doms, ivs


# ---------------------------------------------------------------------------------------------
# the table is complete


def test_every_op_with_a_meaning_has_interval_and_cond():
    missing = sorted(f"{n}: {', '.join(f for f in ('interval', 'cond') if getattr(op, f) is None)}" for n, op in OPS.items() if op.ref is not None and (op.interval is None or op.cond is None))
    assert not missing, "ops without range/cost formulas (add them in the family's hnfc/ops/*_bounds.py):\n" + "\n".join(missing)


# ---------------------------------------------------------------------------------------------
# enclosure over the table's examples


@pytest.mark.parametrize("op,ex", op_examples(need_ref=True))
def test_interval_encloses_samples(op, ex):
    types, at, out_type, doms, ivs = _setup(op, ex)
    iv = interval_of_node(op, ivs, at, out_type, types)
    rng = np.random.default_rng(0)
    with mpmath.workprec(80):
        for kind in ("lo", "hi", "corners", "uniform", "uniform"):
            xs = [None if s is None else _draw(rng, s, d, kind, t.dtype) for s, d, t in zip(ex.shapes, doms, types)]
            y = _evaluate(op, ex, types, xs, at, out_type)
            for v in y.flat:
                if mpmath.isnan(v):
                    continue
                tol = abs(v) * 2.0**-60  # the reference's own rounding at 80 bits
                assert iv.lo - tol <= v <= iv.hi + tol, f"{op.name}{dict(ex.attrs)}: value {v} outside {iv} ({kind} sample)"


# ---------------------------------------------------------------------------------------------
# condition numbers

# Ops whose cond may be unbounded on their test domains: the result can be 0 while the inputs
# are not (cancellation: a sum of mixed signs, log near 1, cos near π/2, a variance that can be 0).
CAN_BE_UNBOUNDED = {"add", "sub", "log", "log2", "cos", "sum", "mean", "var", "std", "logsumexp", "logaddexp", "mm", "bmm", "matmul", "addmm", "linear", "scaled_dot_product_attention"}

# Ops whose cond is a heuristic (documented in hnfc/ops/*_bounds.py), not a sup bound.
COND_HEURISTIC = {"layer_norm", "batch_norm", "scaled_dot_product_attention"}
# Ops whose cond is a typical-magnitude estimate, not a sup bound, when their result changes sign
# inside the box (hnfc/ops/formulas.py, "Sign changes"): tested in test_sign_change_*.
SIGN_CHANGE_TYPICAL = {"add", "sub", "sum", "mean", "mm", "bmm", "matmul", "addmm", "linear"}


@pytest.mark.parametrize("op,ex", op_examples(need_ref=True))
def test_cond_nonnegative_and_finite_off_singularities(op, ex):
    types, at, out_type, doms, ivs = _setup(op, ex)
    out = interval_of_node(op, ivs, at, out_type, types)
    c = op.cond(ivs, at, out, out_type, types, None)
    assert not math.isnan(c) and c >= 0, f"{op.name}: cond {c}"
    if op.name not in CAN_BE_UNBOUNDED:
        assert math.isfinite(c), f"{op.name}{dict(ex.attrs)}: cond unbounded on {doms}"


def _pointwise_cond(op, xs, at, out_type, float_args):
    """max over output elements of Σⱼ |xⱼ ∂fᵢ/∂xⱼ| / |fᵢ|, by relative finite differences."""
    h = mpmath.mpf(2) ** -60
    y0 = obj(op.ref(xs, at, out_type))
    total = np.zeros(y0.shape, dtype=object)
    total[...] = mpmath.mpf(0)
    for k in float_args:
        x = xs[k]
        for idx in np.ndindex(x.shape):
            if x[idx] == 0:
                continue
            xp = obj(x.copy())
            xp[idx] = x[idx] * (1 + h)
            args = list(xs)
            args[k] = xp
            y1 = obj(op.ref(args, at, out_type))
            total = obj(total + obj(np.frompyfunc(lambda a, b: abs(a - b) / h, 2, 1)(y1, y0)))
    worst = 0.0
    for t, f in zip(total.flat, y0.flat):
        if mpmath.isnan(f) or mpmath.isinf(f) or mpmath.isnan(t):
            continue
        if f == 0:
            if t != 0:
                return math.inf
            continue
        worst = max(worst, float(t / abs(f)))
    return worst


def _cond_cases():
    out = []
    for p in op_examples(need_ref=True):
        op, ex = p.values
        if op.name in COND_HEURISTIC or (op.name == "to" and ex.attrs.get("dtype") != "f32"):
            continue
        numel = sum(math.prod(s) for s in ex.shapes if s is not None)
        if numel <= 64:
            out.append(p)
    return out


@pytest.mark.parametrize("op,ex", _cond_cases())
def test_cond_bounds_pointwise_conditioning(op, ex):
    types, at, out_type, doms, ivs = _setup(op, ex)
    out = interval_of_node(op, ivs, at, out_type, types)
    c = op.cond(ivs, at, out, out_type, types, None)
    if math.isinf(c):
        return
    if op.name in SIGN_CHANGE_TYPICAL and out.lo < 0 < out.hi and out.is_finite:
        return  # a typical-magnitude estimate there, not a bound
    float_args = [k for k, (s, t) in enumerate(zip(ex.shapes, types)) if s is not None and t.dtype != "bool"]
    rng = np.random.default_rng(1)
    with mpmath.workprec(160):
        for kind in ("uniform", "uniform", "uniform"):  # no ties: max/min are not differentiable there
            xs = [None if s is None else _draw(rng, s, d, kind, t.dtype) for s, d, t in zip(ex.shapes, doms, types)]
            got = _pointwise_cond(op, xs, at, out_type, float_args)
            assert got <= c * (1 + 1e-6) + 1e-9, f"{op.name}{dict(ex.attrs)}: measured cond {got} above the bound {c}"


# ---------------------------------------------------------------------------------------------
# hypothesis: enclosure on random sub-intervals, far beyond the test domains

_UNARY = {
    "exp": (-800.0, 800.0),
    "expm1": (-800.0, 800.0),
    "log": (0.0, 1e300),
    "log2": (0.0, 1e300),
    "log1p": (-1.0, 1e300),
    "sqrt": (0.0, 1e300),
    "rsqrt": (0.0, 1e300),
    "tanh": (-40.0, 40.0),
    "sigmoid": (-800.0, 800.0),
    "erf": (-10.0, 10.0),
    "sin": (-60.0, 60.0),
    "cos": (-60.0, 60.0),
    "relu": (-5.0, 5.0),
    "abs": (-5.0, 5.0),
    "neg": (-5.0, 5.0),
    "square": (-1e200, 1e200),
    "reciprocal": (-10.0, 10.0),
    "logsigmoid": (-800.0, 800.0),
    "softplus": (-800.0, 800.0),
    "gelu": (-15.0, 40.0),  # the reference's 1 + erf(x/√2) cancels below: it needs ~x²/1.4 bits
}


def _sub_interval(draw, lo, hi):
    a = draw(st.floats(lo, hi, allow_nan=False, allow_infinity=False))
    b = draw(st.floats(lo, hi, allow_nan=False, allow_infinity=False))
    return min(a, b), max(a, b)


def _points(lo, hi, data):
    pts = [lo, hi, (lo + hi) / 2]
    pts += [data.draw(st.floats(lo, hi, allow_nan=False)) for _ in range(4)]
    return pts


def _check_unary(name, attrs, lo, hi, data):
    op = OPS[name]
    at = full_attrs(op, attrs)
    t = TensorType((), "f64")
    iv = interval_of_node(op, [Interval(lo, hi)], at, t, [t])
    with mpmath.workprec(400):
        for p in _points(lo, hi, data):
            v = op.ref([obj(mpmath.mpf(p))], at, t)
            v = obj(v).flat[0]
            if mpmath.isnan(v):
                continue
            assert iv.lo <= v <= iv.hi, f"{name}{attrs}({p}) = {v} outside {iv} for x in [{lo}, {hi}]"


@pytest.mark.parametrize("name", sorted(_UNARY))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_unary_interval_encloses(name, data):
    lo, hi = _sub_interval(data.draw, *_UNARY[name])
    attrs = {}
    if name == "gelu":
        attrs = {"approximate": data.draw(st.sampled_from(["none", "tanh"]))}
    if name == "softplus":
        attrs = {"beta": data.draw(st.sampled_from([1.0, 2.0, 0.5, -1.0]))}
    _check_unary(name, attrs, lo, hi, data)


_COND_UNARY = {
    "exp": (-80.0, 80.0),
    "expm1": (-80.0, 80.0),
    "log": (1e-6, 1e6),
    "log1p": (-0.999, 1e6),
    "tanh": (-20.0, 20.0),
    "sigmoid": (-80.0, 80.0),
    "erf": (-6.0, 6.0),
    "sin": (-40.0, 40.0),
    "cos": (-40.0, 40.0),
    "logsigmoid": (-80.0, 80.0),
    "softplus": (-80.0, 80.0),
    "gelu": (-8.0, 8.0),
}


@pytest.mark.parametrize("name", sorted(_COND_UNARY))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_unary_cond_bounds_pointwise(name, data):
    """cond over a random box ≥ |x f'(x)/f(x)| at points of the box (the sup really is one)."""
    op = OPS[name]
    lo, hi = _sub_interval(data.draw, *_COND_UNARY[name])
    at = full_attrs(op, {})
    t = TensorType((), "f64")
    box = Interval(lo, hi)
    c = op.cond([box], at, interval_of_node(op, [box], at, t, [t]), t, [t], None)
    if math.isinf(c):
        return

    def f(v):
        return obj(op.ref([obj(v)], at, t)).flat[0]

    with mpmath.workprec(200):
        for p in _points(lo, hi, data):
            x = mpmath.mpf(p)
            y = f(x)
            if y == 0 or mpmath.isnan(y) or x == 0:
                continue
            got = abs(x * mpmath.diff(f, x) / y)
            assert got <= c * (1 + 1e-9) + 1e-12, f"{name}: cond at {p} is {float(got)}, bound over [{lo}, {hi}] is {c}"


@settings(max_examples=60, deadline=None)
@given(data=st.data(), p=st.sampled_from([2.0, 3.0, -1.0, -2.0, -3.0, 0.5, 1.5, -0.5, 2.5, 0.0, 1.0, 7.0]))
def test_pow_interval_encloses(data, p):
    lo, hi = _sub_interval(data.draw, -50.0, 50.0)
    if not float(p).is_integer():
        lo, hi = abs(lo), abs(hi)
        lo, hi = min(lo, hi), max(lo, hi)
    _check_unary("pow", {"exponent": p}, lo, hi, data)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "maximum", "minimum"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_binary_interval_encloses(name, data):
    op = OPS[name]
    t = TensorType((), "f64")
    a = _sub_interval(data.draw, -1e6, 1e6)
    b = _sub_interval(data.draw, -1e6, 1e6)
    iv = interval_of_node(op, [Interval(*a), Interval(*b)], {}, t, [t, t])
    with mpmath.workprec(80):
        for x in _points(*a, data):
            for y in _points(*b, data)[:3]:
                v = obj(op.ref([obj(mpmath.mpf(x)), obj(mpmath.mpf(y))], {}, t)).flat[0]
                if mpmath.isnan(v):
                    continue
                assert iv.lo <= v <= iv.hi, f"{name}({x}, {y}) = {v} outside {iv}"


# ---------------------------------------------------------------------------------------------
# intervals


def test_interval_helpers():
    a, b = Interval(-1.0, 2.0), Interval(3.0, 5.0)
    assert a.contains_zero and not b.contains_zero and b.is_pos and not a.is_nonneg
    assert a.mag == 2.0 and a.mig == 0.0 and b.mig == 3.0 and a.width == 3.0 and a.diameter == 3.0
    assert a.hull(b) == Interval(-1.0, 5.0)
    assert a.intersect(b) is None and a.intersect(Interval(1.0, 9.0)) == Interval(1.0, 2.0)
    assert Interval.whole().is_whole and not Interval.whole().is_finite
    with pytest.raises(ValueError):
        Interval(math.nan, 1.0)
    with pytest.raises(ValueError):
        Interval(2.0, 1.0)


def test_arithmetic_rounds_outward_and_keeps_signs():
    x = Interval(0.1, 0.1) + Interval(0.2, 0.2)
    assert x.lo <= mpmath.mpf(0.1) + mpmath.mpf(0.2) <= x.hi and x.lo < x.hi
    assert (Interval(1.0, 1.0) + Interval(2.0, 2.0)) == Interval(3.0, 3.0)  # exact sums stay points
    assert (Interval(0.0, 3.0) * Interval(0.0, 3.0)).lo == 0.0
    assert (Interval(1e-200, 1.0) * Interval(1e-200, 1.0)).is_nonneg
    assert Interval(-2.0, 3.0).sqr() == Interval(0.0, 9.0)
    q = Interval(1.0, 2.0) / Interval(0.0, 4.0)
    assert 0.24 < q.lo <= 0.25 and q.hi == math.inf
    assert (Interval(-1.0, 1.0) / Interval(-1.0, 1.0)).is_whole
    assert add_down(1.0, 1e-20) == 1.0 and add_up(1.0, 1e-20) > 1.0
    assert down(1.0) < 1.0 < up(1.0)


def test_in_dtype_flushes_underflow_and_overflow():
    assert Interval(1e-44, 1.0).in_dtype("f32").lo == 0.0
    assert Interval(1e-44, 1.0).in_dtype("f64").lo == 1e-44
    assert Interval(1.0, 7e4).in_dtype("f16").hi == math.inf


def test_gelu_and_sin_details():
    t = TensorType((), "f64")
    g = interval_of_node("gelu", [Interval(-3.0, 3.0)], {}, t)
    assert -0.171 < g.lo < -0.1699 and g.hi >= 3.0 - 1e-2
    s = interval_of_node("sin", [Interval(0.0, 1.0)], {}, t)
    assert s.lo == 0.0 and abs(s.hi - math.sin(1.0)) < 1e-12
    s = interval_of_node("sin", [Interval(1.0, 2.0)], {}, t)
    assert s.hi == 1.0
    assert interval_of_node("softmax", [Interval(-1.0, 1.0)], {"dim": -1}, t, [TensorType((4,), "f64")]).hi < 1.0


# ---------------------------------------------------------------------------------------------
# ranges over programs


def test_ranges_sources_and_policy():
    p = parse_program(
        """
        %0 = input(name="x") : f32[4]
        %1 = param(name="w") : f32[4]
        %2 = mul(%0, %1) : f32[4]
        %3 = exp(%2) : f32[4]
        return %3
        """
    )
    p = type(p)(p.nodes, p.outputs, {"w": np.array([0.5, -1.0, 2.0, 1.5], dtype=np.float32)})
    r = ranges(p, {"x": (1.0, 2.0)})
    assert r[0] == Interval(1.0, 2.0) and r[1] == Interval(-1.0, 2.0)
    assert r[2].lo <= -2.0 and r[2].hi >= 4.0 and r[2].hi < 4.0 + 1e-12
    assert ranges(p, [(1.0, 2.0)])[0] == Interval(1.0, 2.0)  # by position too
    # unknown input: the whole line; observed ranges replace wider propagated ones
    assert ranges(p)[0].is_whole
    r = ranges(p, observed={0: (1.0, 2.0), 3: (0.5, 3.0)}, margin=0.1)
    assert r[0] == Interval(0.9, 2.1)
    assert r[3].lo >= 0.0 and r[3].hi == pytest.approx(3.25)
    # declared inputs win over observed ones
    assert ranges(p, {0: (1.0, 2.0)}, observed={0: (1.5, 1.6)})[0] == Interval(1.0, 2.0)
    with pytest.raises(ValueError):
        ranges(p, {"nope": (0.0, 1.0)})


def test_widen_observed_never_crosses_zero():
    from hnfc.analysis import widen_observed

    assert widen_observed((1e-8, 1e-3), 0.1).lo == pytest.approx(1e-8 / 1.1)
    assert widen_observed((0.0, 5.0), 0.1) == Interval(0.0, 5.5)
    assert widen_observed((-3.0, -1.0), 0.5).hi == pytest.approx(-1.0 / 1.5)
    w = widen_observed((2.0, 2.0), 0.1)
    assert w.lo == pytest.approx(1.8) and w.hi == pytest.approx(2.2)
    assert widen_observed((math.nan, 1.0)) is None
    # masks: a value that is -inf everywhere, or partly
    assert widen_observed((-math.inf, -math.inf)) == Interval(-math.inf, -math.inf)
    assert widen_observed((-math.inf, 3.0)) == Interval(-math.inf, 3.0)


def test_egraph_style_calls_with_unknown_children():
    t = TensorType((3, 8), "f32")
    # None at a required position is unknown; at an optional position it means omitted
    assert interval_of_node("log", [None], {}, t).is_whole
    ln = interval_of_node("layer_norm", [Interval(-1.0, 1.0), None, None], {"normalized_ndim": 1, "eps": 1e-5}, t, [t, None, None])
    assert ln.hi <= math.sqrt(7) * (1 + 1e-12)
    assert analysis.node_bits("log", [None], {}, None, t) < HAZARD_BITS  # unknown is not a hazard


# ---------------------------------------------------------------------------------------------
# the cost model: hazards, exactness


def test_hazards():
    t = TensorType((4,), "f32")
    assert node_cost("log", [Interval(-1.0, 1.0)], {}, None, t).bits >= HAZARD_BITS
    assert node_cost("div", [Interval(1.0, 2.0), Interval(-1.0, 1.0)], {}, None, t).hazard
    assert node_cost("sqrt", [Interval(-1.0, 1.0)], {}, None, t).hazard
    assert node_cost("sqrt", [Interval(0.0, 1.0)], {}, None, t).hazard is None
    assert node_cost("pow", [Interval(0.0, 1.0)], {"exponent": -1.5}, None, t).hazard
    # underflow where it matters: exp of x down to -200 is 0 in f32, and log of it is -inf
    b = Builder()
    x = b.input("x", t)
    y = b.add("log", [b.add("exp", [x])])
    p = b.build([y])
    total, per = program_bits(p, ranges(p, {"x": (-200.0, 0.0)}))
    assert per[2] >= HAZARD_BITS and total < 2 * HAZARD_BITS
    # overflow in f16 (x*x of 300 is 9e4 > 65504), not in f32
    for dtype, bad in (("f16", True), ("f32", False)):
        q = parse_program(f"%0 = input(name=\"x\") : {dtype}[4]\n%1 = mul(%0, %0) : {dtype}[4]\nreturn %1\n")
        assert (program_bits(q, ranges(q, {"x": (-300.0, 300.0)}))[0] >= HAZARD_BITS) == bad


def test_exact_arguments_cost_nothing_for_one_rounding():
    q = parse_program('%0 = input(name="x") : f32[4]\n%1 = input(name="y") : f32[4]\n%2 = sub(%0, %1) : f32[4]\nreturn %2\n')
    r = ranges(q, {"x": (1.0, 2.0), "y": (1.0, 2.0)})
    assert program_bits(q, r)[0] == 0.0  # one rounding of exact inputs
    assert program_bits(q, r, exact=False)[0] == 32.0  # cancellation with inexact inputs
    # a reduction rounds many times: its conditioning counts even on exact inputs (a sum whose
    # result reaches 0 from one side without a sign change, so the sup applies: unbounded)
    s = parse_program('%0 = input(name="x") : f32[8]\n%1 = sum(%0, dim=(0,)) : f32[]\nreturn %1\n')
    assert program_bits(s, ranges(s, {"x": (-1.0, 1.0)}, observed={1: (0.0, 2.0)}))[0] == 32.0
    assert program_bits(s, ranges(s, {"x": (-1.0, 1.0)}))[0] > 0  # crossing 0: typical, yet counted


def test_explain_rows():
    p = parse_program('%0 = input(name="x") : f32[16]\n%1 = const(value=1.0) : f32[]\n%2 = add(%0, %1) : f32[16]\n%3 = log(%2) : f32[16]\nreturn %3\n')
    rows = analysis.explain(p, ranges(p, {"x": (1e-8, 1e-3)}))
    assert [r[:2] for r in rows] == [(2, "add"), (3, "log")]
    vid, op, cond, bits, reason = rows[1]
    assert cond > 1e7 and bits > 20 and "cond" in reason


# ---------------------------------------------------------------------------------------------
# calibration (DESIGN.md), float32


def _build(f, shape=(16,)):
    b = Builder()
    x = b.input("x", TensorType(shape, "f32"))
    return b.build([f(b, x)])


def _bits(p, dom, *, sample=False):
    obs = analysis.sample_ranges(p, {"x": dom}, n=256) if sample else None
    return program_bits(p, ranges(p, {"x": dom}, observed=obs))[0]


def test_calibration_log1p():
    naive = _build(lambda b, x: b.add("log", [b.add("add", [x, b.const(1.0)])]))
    fused = _build(lambda b, x: b.add("log1p", [x]))
    assert abs(_bits(naive, (1e-8, 1e-3)) - 27) <= 3
    assert _bits(fused, (1e-8, 1e-3)) <= 1
    assert _bits(naive, (1e-8, 1e-3), sample=True) == pytest.approx(_bits(naive, (1e-8, 1e-3)), abs=1)


def test_calibration_sqrt_difference():
    def naive(b, x):
        return b.add("sub", [b.add("sqrt", [b.add("add", [x, b.const(1.0)])]), b.add("sqrt", [x])])

    def conjugate(b, x):
        s = b.add("add", [b.add("sqrt", [b.add("add", [x, b.const(1.0)])]), b.add("sqrt", [x])])
        return b.add("div", [b.const(1.0), s])

    # the subtraction's range needs observation: propagation loses that both sqrts follow x
    assert abs(_bits(_build(naive), (1.0, 1e6), sample=True) - 22) <= 3
    assert _bits(_build(naive), (1.0, 1e6)) >= 22  # unobserved: unbounded, capped at 32
    assert _bits(_build(conjugate), (1.0, 1e6)) <= 2
    assert _bits(_build(conjugate), (1.0, 1e6), sample=True) <= 2


def test_calibration_softmax_overflow():
    def naive(b, x):
        e = b.add("exp", [x])
        return b.add("div", [e, b.add("sum", [e], {"dim": (-1,), "keepdim": True})])

    p, q = _build(naive), _build(lambda b, x: b.add("softmax", [x], {"dim": -1}))
    rn, rq = ranges(p, {"x": (-100.0, 100.0)}), ranges(q, {"x": (-100.0, 100.0)})
    exp_cost = node_cost("exp", [rn[0]], {}, rn[1], p.nodes[1].type)
    assert exp_cost.hazard and "overflow" in exp_cost.hazard
    assert program_bits(p, rn)[0] >= HAZARD_BITS
    assert program_bits(q, rq)[0] < 24
    assert all(not r[4].startswith("hazard") for r in analysis.explain(q, rq))


def test_calibration_expm1():
    naive = _build(lambda b, x: b.add("sub", [b.add("exp", [x]), b.const(1.0)]))
    fused = _build(lambda b, x: b.add("expm1", [x]))
    assert _bits(naive, (-1e-5, 1e-5)) >= 20
    assert _bits(fused, (-1e-5, 1e-5)) <= 1


# ---------------------------------------------------------------------------------------------
# layering


def test_analysis_and_op_table_import_without_torch():
    code = "import sys, hnfc.ops, hnfc.analysis; hnfc.analysis.ranges; hnfc.analysis.node_bits; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).resolve().parent.parent))


# ---------------------------------------------------------------------------------------------
# sign changes, float32 accumulation, the overflow threshold (hnfc/ops/*_bounds.py, curvature.py)


def test_sign_change_sum_uses_typical_magnitude():
    # Σ|xᵢ|/|Σxᵢ| over a result that changes sign is unbounded at the root, but only a thin set of
    # inputs comes near it: the typical-magnitude cond (n·E|x| over exp E ln|out|, uniform) is
    # finite: 8·0.5/(8/e) = e/2 for 8 values in [-1, 1]
    t8, t = TensorType((8,), "f32"), TensorType((), "f32")
    at = {"dim": (0,), "keepdim": False}
    crossing = OPS["sum"].cond([Interval(-1.0, 1.0)], full_attrs(OPS["sum"], at), Interval(-8.0, 8.0), t, [t8], None)
    assert crossing == pytest.approx(math.e / 2)
    # the same sum whose result only reaches 0 from one side keeps the sup: unbounded
    one_sided = OPS["sum"].cond([Interval(-1.0, 1.0)], full_attrs(OPS["sum"], at), Interval(0.0, 8.0), t, [t8], None)
    assert math.isinf(one_sided)
    # and an unknown (infinite) result is not typical: unbounded
    assert math.isinf(OPS["sum"].cond([Interval(-1.0, 1.0)], full_attrs(OPS["sum"], at), Interval.whole(), t, [t8], None))


def test_sign_change_subtraction_of_sign_definite_terms_keeps_the_sup():
    # a - b with a, b > 0 crossing 0 is where the two terms coincide (exp(x) - exp(-x) at x = 0,
    # E[x²] - E[x]²): every bit can be lost, and rewrites exist, so the sup stays
    t = TensorType((4,), "f32")
    c_def = node_cost("sub", [Interval(1.0, 2.0), Interval(1.0, 2.0)], {}, Interval(-1.0, 1.0), t)
    assert math.isinf(c_def.cond) and c_def.bits == 32.0
    # a sum of terms that change sign themselves crosses its root: typical magnitude, a few bits
    c_mix = node_cost("add", [Interval(-1.0, 1.0), Interval(-1.0, 1.0)], {}, Interval(-2.0, 2.0), t)
    assert 1 < c_mix.cond < 4 and c_mix.bits < 2.5


def test_sign_change_matmul_logits_are_finite():
    # q kᵀ of zero-crossing factors (attention logits): the sup is unbounded, the typical cond is
    # 2·k·E|a|·E|b|/typ|out|: small, as measured (a few bits at most on the stability suite)
    ta, tb, to = TensorType((4, 16), "f32"), TensorType((16, 4), "f32"), TensorType((4, 4), "f32")
    out = Interval(-512.0, 848.0)
    c = node_cost("mm", [Interval(-10.0, 10.0), Interval(-10.0, 10.0)], {}, out, to, [ta, tb])
    assert math.isfinite(c.cond) and c.bits < 3
    # sign-definite products: no cancellation, cond = 2 (one per factor)
    assert node_cost("mm", [Interval(1.0, 10.0), Interval(1.0, 10.0)], {}, Interval(16.0, 1600.0), to, [ta, tb]).cond == 2.0


def test_low_precision_reductions_accumulate_in_float32():
    # torch computes softmax / sum / mm of bf16 data in float32 and rounds once: on exact
    # arguments the kernel's own roundings are f32's, 2^16 below a bf16 ulp
    tb, tf = TensorType((4, 16), "bf16"), TensorType((4, 16), "f32")
    x = Interval(-100.0, 100.0)
    at = {"dim": -1}
    f32 = node_cost("softmax", [x], at, None, tf, [tf], exact_args=[True])
    bf16_exact = node_cost("softmax", [x], at, None, tb, [tb], exact_args=[True])
    bf16_inexact = node_cost("softmax", [x], at, None, tb, [tb], exact_args=[False])
    assert f32.bits > 7  # cond 200: log2 200 ≈ 7.6 bits in f32 units
    assert bf16_exact.bits < 0.01  # 200·2^-24 is below half a bf16 ulp
    assert bf16_inexact.bits >= f32.bits  # the arguments' bf16 errors are amplified
    # pointwise ops are not discounted (one rounding in their own dtype)
    assert node_cost("sub", [Interval(1.0, 2.0), Interval(1.0, 2.0)], {}, Interval(1e-3, 1.0), TensorType((4,), "bf16"), exact_args=[False, False]).bits > 8


def test_overflow_threshold_is_max_plus_half_an_ulp():
    from hnfc.analysis.curvature import overflow_threshold
    from hnfc.foundation.dtypes import DTYPES

    assert overflow_threshold(DTYPES["f16"]) == 65520.0  # 65504 + 16: the first value that rounds to inf
    f32max = DTYPES["f32"].max
    t = TensorType((4,), "f32")
    # an additive mask of -max plus a logit rounds to -max, not -inf: no hazard
    assert node_cost("add", [Interval(-100.0, 100.0), Interval(-f32max, -f32max)], {}, None, t).hazard is None
    assert node_cost("add", [Interval(0.0, f32max), Interval(0.0, f32max)], {}, None, t).hazard


def test_variance_kernels_round_once_only_below_float64():
    """torch's CPU var accumulates float32 in double (exact on exact inputs), while its float64
    kernel is a one-pass update that loses bits on shifted data: the cost says the same."""
    x = Interval(999.0, 1001.0)
    at = {"dim": (-1,), "correction": 0, "keepdim": False}
    costs = {}
    for dtype in ("f32", "f64"):
        t_in, t_out = TensorType((4, 16), dtype), TensorType((4,), dtype)
        costs[dtype] = node_cost("var", [x], at, None, t_out, [t_in], [True]).bits
    assert costs["f32"] == 0.0 and costs["f64"] > 5


def test_prediction_moves_when_a_hazard_goes():
    """The capped total saturates at the width on one unbounded node; the itemized prediction
    counts hazards and unbounded nodes and sums the rest, so removing one hazard moves it."""
    head = '%0 = input(name="x") : f32[16]\n%1 = input(name="y") : f32[16]\n%2 = const(value=1.0) : f32[]\n'
    em1 = "%3 = exp(%1) : f32[16]\n%4 = sub(%3, %2) : f32[16]\n"  # exp(y) - 1 near y = 0: unbounded cond
    naive = parse_program(head + em1 + "%5 = exp(%0) : f32[16]\n%6 = add(%5, %2) : f32[16]\n%7 = log(%6) : f32[16]\nreturn %7, %4\n")
    fixed = parse_program(head + em1 + "%5 = softplus(%0) : f32[16]\nreturn %5, %4\n")
    box = {"x": (-1000.0, 1000.0), "y": (-1e-3, 1e-3)}
    pn, pf = (analysis.predict(p, ranges(p, box)) for p in (naive, fixed))
    assert analysis.predicted_bits(naive, ranges(naive, box)) == analysis.predicted_bits(fixed, ranges(fixed, box)) == 32.0
    assert pn.hazards == 1 and (pf.hazards, pf.unbounded) == (0, 1) and pn.unbounded >= 1  # log(1 + e^x) reaches 0 too
    assert pf.gain_over(pn) and not pn.gain_over(pf) and not pf.gain_over(pf)
    assert pf.outputs[1] == 32.0 and pf.outputs[0] < 32.0  # per output: only the exp(y) - 1 output saturates
    assert str(pf).startswith("0 hazards, 1 unbounded, ")


def test_prediction_order_hazards_then_unbounded_then_bits():
    P = analysis.Prediction
    assert P(0, 3, 90.0).gain_over(P(1, 0, 0.0))  # a hazard outweighs anything else
    assert P(1, 0, 50.0).gain_over(P(1, 1, 0.0))
    assert P(1, 1, 2.0).gain_over(P(1, 1, 3.0)) and not P(1, 1, 2.99).gain_over(P(1, 1, 3.0))


def test_a_safely_scaled_norm_is_ranged_by_its_relations():
    # x / where(M < c, 1, M), M = amax(|x|, keepdim): interval arithmetic alone gives ±1e25/c for
    # the quotient (and an overflowing square after it); each |x_i| <= M, and the divisor is >= c
    from hnfc.ir import parse_expr

    c = 2.0**-14
    p = parse_expr(f"x / where(lt(amax(abs(x), dim=(-1,), keepdim=True), other={c!r}), 1.0, amax(abs(x), dim=(-1,), keepdim=True))", {"x": TensorType((4, 8), "f32")})
    iv = ranges(p, {0: (-1e25, 1e25)})
    divisor = next(i for i, n in enumerate(p.nodes) if n.op == "where")
    assert iv[divisor].lo >= c and iv[divisor].hi >= 1e25
    assert (iv[p.outputs[0]].lo, iv[p.outputs[0]].hi) == (-1.0, 1.0)
    # a replacement below the floor breaks the bound: not claimed
    q = parse_expr(f"x / where(lt(amax(abs(x), dim=(-1,), keepdim=True), other={c!r}), 1e-06, amax(abs(x), dim=(-1,), keepdim=True))", {"x": TensorType((4, 8), "f32")})
    assert ranges(q, {0: (-1e25, 1e25)})[q.outputs[0]].hi > 1.0
