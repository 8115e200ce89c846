"""The tiered reference (hnfc.reference with hnfc/numerics/enclosure.py) against the pure mpmath one.

Differential: on every op-table example and on random small programs, the tiered reference gives
exactly the pure mpmath reference's answers (both roundings) wherever the pure one converges, and
every enclosure the vectorized tiers compute holds the exact value (checked against mpmath's
high-precision outputs, element by element).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hnfc.numerics import enclosure
from hnfc.ir import Builder, TensorType
from hnfc.numerics.metric import round_to_format, sample_inputs
from hnfc.ops import OPS
from hnfc.numerics.reference import _leaves_numpy, _tiers, reference
from tests.test_reference import _example_program  # one builder of op-example programs


def _exact_mpf(v) -> mpmath.mpf:
    """A long double (or float64) as an exact mpmath number (significand and exponent as ints)."""
    m, e = np.frexp(np.longdouble(v))
    return mpmath.mpf((int(np.ldexp(m, 70)), int(e) - 70))


def check_enclosures(program, inputs) -> int:
    """Assert that every finite enclosure of every tier holds the exact (mpmath) output value;
    returns how many elements were checked."""
    pure = reference(program, inputs, return_mp=True)
    if not pure.converged:
        return 0
    leaves = _leaves_numpy(program, inputs)
    checked = 0
    for _, dt in _tiers():
        try:
            balls = enclosure.evaluate(program, leaves, dt)
        except enclosure.Unsupported:
            continue
        for ball, mp_out in zip(balls, pure.mp_outputs):
            ys, es = np.asarray(ball.y).ravel(), np.asarray(ball.e).ravel()
            for y, e, x in zip(ys, es, np.asarray(mp_out, dtype=object).ravel()):
                if isinstance(x, bool) or ball.y.dtype == bool:
                    if e == 0:
                        assert bool(y) == bool(x)
                    continue
                if not (np.isfinite(e) and np.isfinite(y)):
                    continue
                with mpmath.workprec(400):
                    assert not mpmath.isnan(x), f"finite enclosure {y} ± {e} for NaN"
                    d = abs(x - _exact_mpf(y))
                    # mpmath's value is itself rounded at its working precision, after every op
                    # (1 + erf(1e-37) keeps ~pure.prec bits): allow a few of those roundings
                    slack = abs(x) * mpmath.mpf(2) ** (16 - pure.prec)
                    assert d <= _exact_mpf(e) + slack, f"{np.dtype(dt).name}: |{x} - {y}| = {d} > {e}"
                checked += 1
    return checked


def assert_same_answers(program, inputs):
    pure = reference(program, inputs, tiered=False)
    for rounding in ("f64", "dtype"):
        tiered = reference(program, inputs, rounding=rounding)
        fmts = [program.nodes[o].type.dtype if rounding == "dtype" and program.nodes[o].type.dtype in ("f16", "bf16", "f32") else "f64" for o in program.outputs]
        for a, b, f in zip(tiered.outputs, pure.outputs, fmts):
            want = b if f == "f64" else round_to_format(b, f)
            assert a.shape == want.shape
            bad = ~((a == want) | (np.isnan(a) & np.isnan(want)))
            assert not bad.any(), f"rounding={rounding}: tiered {a[bad][:5]} vs pure {want[bad][:5]} (tiers {tiered.tiers})"
    return tiered


# ---------------------------------------------------------------------------------------------
# every op-table example, float32 and float64, value and bit-pattern samples


def _example_cases():
    for name, op in OPS.items():
        if op.ref is None:
            continue
        for k, _ in enumerate(op.examples):
            for dt in ("f32", "f64"):
                yield pytest.param(name, k, dt, id=f"{name}-{k}-{dt}")


@pytest.mark.parametrize("name,k,dt", list(_example_cases()))
def test_op_examples_tiered_equals_pure(name, k, dt):
    p, types, domains = _example_program(name, k, dt)
    for mode, seed in (("value", k), ("bits", k + 1)):
        inputs = sample_inputs(types, domains, 1, mode=mode, seed=seed)[0]
        r = assert_same_answers(p, inputs)
        check_enclosures(p, inputs)
    try:
        enclosure.evaluate(p, _leaves_numpy(p, inputs), np.float64)
    except enclosure.Unsupported:
        assert r.tiers[0] == "mpmath"  # no vectorized meaning for this op yet: the mpmath path answered
    else:
        assert r.tiers[0] == "f64"  # the vectorized tier ran


def test_vectorized_tiers_decide_float32_outputs():
    # tanh(x W + b) at float32: the float64 tier alone decides every element
    b = Builder()
    x = b.input("x", TensorType((8, 16), "f32"))
    w = b.param("w", TensorType((16, 16), "f32"))
    y = b.add("tanh", [b.add("matmul", [x, w])])
    rng = np.random.default_rng(0)
    p = b.build([y], {"w": rng.standard_normal((16, 16)).astype(np.float32)})
    xs = rng.standard_normal((8, 16)).astype(np.float32)
    r = reference(p, [xs], rounding="dtype")
    assert r.tiers == ["f64"] and r.escalated == 0 and r.precisions == []
    assert_same_answers(p, [xs])
    assert check_enclosures(p, [xs]) == 8 * 16 * len(_tiers())


def test_exact_products_decide_ties():
    # (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: exactly halfway between two float32 values (a float64).
    # TwoProduct shows the float64 product is exact, so the tie is decided (ties to even), with
    # no escalation; a plain rounding bound would straddle the tie.
    b = Builder()
    x = b.input("x", TensorType((2,), "f32"))
    p = b.build([b.add("mul", [x, x])])
    xs = np.array([1 + 2.0**-12, 0.5], dtype=np.float32)
    r = reference(p, [xs], rounding="dtype")
    assert r.tiers == ["f64"] and r.escalated == 0
    assert r.outputs[0][0] == 1 + 2.0**-11 and r.outputs[0][1] == 0.25
    assert_same_answers(p, [xs])


def test_agreement_does_not_decide_total_cancellation():
    # exp(x) - 1 for tiny x: float64 and long double both give exactly 0 and agree; the rigorous
    # window (the bound spans far more than 2^16 ulps at 0) must keep agreement from deciding
    b = Builder()
    x = b.input("x", TensorType((3,), "bf16"))
    p = b.build([b.add("sub", [b.add("exp", [x]), b.const(1, "bf16")])])
    xs = np.array([3.98e-20, -4.67e-24, 0.5])
    r = assert_same_answers(p, [xs])
    assert r.tiers[-1] == "mpmath" and r.escalated >= 2


def test_hidden_overflow_is_not_decided():
    # sigmoid(-710) = 1/(1 + e^710): e^710 overflows float64, the quotient reads 0, the truth is
    # a subnormal 4.5e-309; the float64 tier must not decide it (long double holds e^710)
    b = Builder()
    x = b.input("x", TensorType((2,), "f64"))
    p = b.build([b.add("sigmoid", [x])])
    xs = np.array([-710.0, -1.0])
    r = assert_same_answers(p, [xs])
    assert r.outputs[0][0] > 0


def test_where_of_masks_stays_a_mask():
    # sdpa adds a float mask and selects by a bool one: a where between two bool masks must stay bool
    b = Builder()
    q, k, v = (b.input(n, TensorType((1, 2, 3, 4), "f32")) for n in "qkv")
    c, m1, m2 = (b.input(n, TensorType((3, 3), "bool")) for n in ("c", "m1", "m2"))
    p = b.build([b.add("scaled_dot_product_attention", [q, k, v, b.add("where", [c, m1, m2])])])
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((1, 2, 3, 4)).astype(np.float32) for _ in range(3)]
    xs += [rng.random((3, 3)) > 0.5, np.ones((3, 3), bool), np.eye(3, dtype=bool)]
    assert_same_answers(p, xs)


def test_cancellation_escalates():
    # (x + 1e30) - 1e30: the float tiers' bound is ~1e14, so nothing is decided without mpmath
    b = Builder()
    x = b.input("x", TensorType((3,), "f64"))
    big = b.const(1e30, "f64")
    p = b.build([b.add("sub", [b.add("add", [x, big]), big])])
    xs = np.array([1.0, -3.0, 0.5])
    r = reference(p, [xs], min_prec=200)
    assert r.tiers[-1] == "mpmath" and r.escalated == 3
    assert r.outputs[0].tolist() == [1.0, -3.0, 0.5]


def _opaque(b, target, args, tmpl, t):
    return b.add("opaque", args, {"target": target, "args": tmpl, "kwargs": ()}, t)


def test_opaque_ops_of_exact_values_run_in_torch_as_in_mpmath():
    b = Builder()
    x = b.input("x", TensorType((4,), "f64"))
    c = _opaque(b, "aten.cumsum.default", [x], (("$arg", 0), 0), TensorType((4,), "f64"))
    p = b.build([b.add("exp", [c])])
    xs = np.array([0.0, 1.0, 0.5, -3.0])
    r = assert_same_answers(p, [xs])
    assert r.tiers[0] == "f64" and r.approximate and r.approximate_nodes == [1]


def test_opaque_selection_of_inexact_values_gathers_bounds():
    # split(exp(x)) then add: the split runs on index codes
    from hnfc.foundation.types import TupleType

    b = Builder()
    x = b.input("x", TensorType((6,), "f32"))
    e = b.add("exp", [x])
    parts = _opaque(b, "aten.split.Tensor", [e], (("$arg", 0), 3), TupleType((TensorType((3,), "f32"), TensorType((3,), "f32"))))
    y = b.add("add", [b.add("getitem", [parts], {"index": 0}), b.add("getitem", [parts], {"index": 1})])
    p = b.build([y])
    xs = np.linspace(-1, 1, 6).astype(np.float32)
    r = assert_same_answers(p, [xs])
    assert r.tiers[0] == "f64"
    assert check_enclosures(p, [xs]) > 0


def test_opaque_arithmetic_of_inexact_values_needs_their_float64_rounding():
    # cumsum(exp(x)): torch gets exp(x) rounded to float64 in the mpmath path; the float64 tier
    # cannot know that rounding, long double (x86) can, else mpmath runs
    b = Builder()
    x = b.input("x", TensorType((4,), "f64"))
    c = _opaque(b, "aten.cumsum.default", [b.add("exp", [x])], (("$arg", 0), 0), TensorType((4,), "f64"))
    p = b.build([c])
    r = assert_same_answers(p, [np.arange(4.0)])
    assert "f64" not in r.tiers


def test_every_op_example_has_a_vectorized_meaning():
    # one op, one entry: an op added without a vectorized meaning would send every program
    # holding it wholly to mpmath (issue 13); its examples must get finite enclosures
    missing = []
    for name, op in OPS.items():
        for k, _ in enumerate(op.examples if op.ref is not None else ()):
            p, types, domains = _example_program(name, k, "f32")
            inputs = sample_inputs(types, domains, 1, mode="value", seed=k)[0]
            try:
                balls = enclosure.evaluate(p, _leaves_numpy(p, inputs), np.float64)
            except enclosure.Unsupported as e:
                missing.append(f"{name}[{k}]: {e}")
                continue
            if any(np.isinf(bl.e).any() for bl in balls):
                missing.append(f"{name}[{k}]: an infinite bound")
    assert not missing, missing


@pytest.mark.parametrize(
    "op,xs",
    [
        ("asin", [0.999999, -0.9999999999, 1.0, -1.0, 1.5, 0.0, 1e-30]),
        ("acos", [0.999999, -0.9999999999, 1.0, -1.0, 0.5, 0.0]),
        ("atanh", [0.999999, -0.9999999999, 0.5, 1e-20, 2.0]),
        ("acosh", [1.0000001, 1.0, 1e300, 3.0, 0.5]),
        ("asinh", [1e-300, -1e300, 2.0, 0.0]),
        ("atan", [1e300, -1e-300, 1.0, 0.0, 1e-30, 3e-3]),
        ("tan", [1.5707963, -1.5707963, 1.0, 1e-30, 100.0, 1e10]),
        ("erfc", [20.0, 26.5, -5.0, 0.0, 1e-10, 3.0]),
    ],
)
def test_slope_meanings_hold_at_the_edges_of_their_domains(op, xs):
    # near a pole, an end of the domain, underflow: every finite enclosure holds the exact value,
    # and the answers are the pure mpmath reference's
    for dt in ("f32", "f64"):
        b = Builder()
        x = b.input("x", TensorType((len(xs),), dt))
        k = b.const(64, dt)
        inexact = b.add("sub", [b.add("add", [x, k]), k])  # x in the reals, with the working dtype's rounding error: the slope bound must cover it
        p = b.build([b.add(op, [x]), b.add(op, [inexact])])
        v = np.array([min(max(t, -1e30), 1e30) for t in xs], dtype=np.float32 if dt == "f32" else np.float64)
        assert_same_answers(p, [v])
        assert check_enclosures(p, [v]) > 0


def test_losses_and_norms_with_ignored_targets_and_exact_zeros():
    b = Builder()
    x = b.input("x", TensorType((4, 5), "f32"))
    t = b.input("t", TensorType((4,), "i64"))
    w = b.input("w", TensorType((5,), "f32"))
    p0 = b.input("p", TensorType((2, 3), "f32"))
    y0 = b.input("y", TensorType((2, 3), "f32"))
    outs = [b.add("nll_loss", [x, t, w], {"reduction": r, "ignore_index": 2}) for r in (0, 1, 2)]
    outs += [b.add("binary_cross_entropy", [p0, y0, None], {"reduction": r}) for r in (0, 1)]
    outs += [b.add("vector_norm", [x], {"ord": o, "dim": (1,), "keepdim": False}) for o in (1.0, 2.0, 4.0, float("inf"))]
    outs += [b.add("prod", [x], {"dim": (1,), "keepdim": True})]
    p = b.build(outs)
    rng = np.random.default_rng(3)
    xs = [
        -rng.random((4, 5)).astype(np.float32) * 4,
        np.array([0, 2, 4, 1]),
        (rng.random(5) + 0.5).astype(np.float32),
        np.array([[0.0, 1.0, 0.25], [1e-30, 0.5, 0.999]], dtype=np.float32),  # log(0) clamps at -100
        np.array([[0.0, 1.0, 1.0], [0.5, 0.0, 1.0]], dtype=np.float32),
    ]
    r = assert_same_answers(p, xs)
    assert r.tiers[0] == "f64"
    assert check_enclosures(p, xs) > 0


def test_bad_rounding_is_named():
    b = Builder()
    x = b.input("x", TensorType((2,), "f32"))
    p = b.build([b.add("exp", [x])])
    with pytest.raises(ValueError, match="rounding"):
        reference(p, [np.zeros(2)], rounding="f32")


# ---------------------------------------------------------------------------------------------
# random small programs


UNARY = ["exp", "log", "tanh", "sqrt", "rsqrt", "sigmoid", "softplus", "gelu", "neg", "abs", "relu", "log1p", "expm1", "sin", "square"]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "hypot", "logaddexp"]
ROWWISE = ["softmax", "log_softmax", "layer_norm", "sum", "mean", "amax", "logsumexp", "var", "matmul"]


@st.composite
def programs(draw):
    dt = draw(st.sampled_from(["f32", "f64", "bf16"]))
    b = Builder()
    t = TensorType((3, 4), dt)
    vals = [b.input("x", t), b.input("y", t)]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    params = {"w": rng.standard_normal((4, 4)).astype(np.float32)}
    w = b.param("w", TensorType((4, 4), dt))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["u", "b", "r"]))
        a = draw(st.sampled_from(vals))
        if kind == "u":
            op = draw(st.sampled_from(UNARY))
            vals.append(b.add(op, [a]))
        elif kind == "b":
            op = draw(st.sampled_from(BINARY))
            vals.append(b.add(op, [a, draw(st.sampled_from(vals))]))
        else:
            op = draw(st.sampled_from(ROWWISE))
            if op in ("softmax", "log_softmax"):
                vals.append(b.add(op, [a], {"dim": -1}))
            elif op == "layer_norm":
                vals.append(b.add(op, [a, None, None], {"normalized_ndim": 1}))
            elif op == "matmul":
                if b.nodes[a].type.shape[-1] == 4:  # a keepdim reduction's (3, 1) does not contract with w
                    vals.append(b.add(op, [a, w]))
            else:  # keepdim: the result broadcasts against (3, 4) values
                vals.append(b.add(op, [a], {"dim": (-1,), "keepdim": True}))
    return b.build([vals[-1]], params), dt, draw(st.sampled_from(["value", "bits"])), draw(st.integers(0, 1000))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_programs_tiered_equals_pure(case):
    p, dt, mode, seed = case
    types = [p.nodes[i].type for i in p.inputs]
    inputs = sample_inputs(types, [(-4.0, 4.0)] * len(types), 1, mode=mode, seed=seed)[0]
    assert_same_answers(p, inputs)
    check_enclosures(p, inputs)


def test_a_mean_over_one_element_down_to_a_scalar():
    """A reduction of a size-1 axis to a 0-d result (`x[..., 0].mean()` of a (1, n) tensor): the
    vectorized tier gave a shape error here instead of the one term."""
    import torch

    import hnfc

    o = torch.tensor([[300.0, -200.0, 450.0]])
    program = hnfc.trace(lambda o: -torch.log(torch.softmax(o, -1))[..., 0].mean(), (o,))
    got = hnfc.reference(program, [o]).outputs[0]
    want = -(300.0 - 450.0 - math.log1p(math.exp(-650.0) + math.exp(-150.0)))
    assert float(got) == pytest.approx(want, rel=1e-15)
