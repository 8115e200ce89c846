"""Series candidates (hnfc/rewrites/series.py): expansions, their measured truncation intervals,
and the IR they build."""

from __future__ import annotations

import math

import mpmath
import pytest
import torch

from hnfc.foundation.types import TensorType
from hnfc.ir.expr import parse_expr
from hnfc.ir.program import Builder
from hnfc.rewrites import series
from hnfc.runtime.run import runner

F64 = TensorType((4,), "f64")


def _prog(text, dtype="f64"):
    return parse_expr(text, {"x": TensorType((4,), dtype)})


def _exp_at(text, lo, hi, bits=53, dtype="f64"):
    p = _prog(text, dtype)
    return p, series.expansions(p, p.outputs[0], p.inputs[0], lo, hi, bits)


def _run(e, xs, dtype="f64"):
    b = Builder()
    x = b.input("x", TensorType((len(xs),), dtype))
    prog = b.build([series.build(b, e, x, dtype)])
    return runner(prog)([torch.tensor(xs, dtype=torch.float64 if dtype == "f64" else torch.float32)])[0]


def test_taylor_of_x_minus_sin_has_its_coefficients_and_interval():
    _, es = _exp_at("x - sin(x)", -1.0, 1.0)
    (e,) = es
    assert e.point == 0.0
    assert [int(k) for k in e.exps[:3]] == [3, 5, 7]
    assert e.coefs[0] == pytest.approx(1 / 6) and e.coefs[1] == pytest.approx(-1 / 120)
    assert e.lo < 0 < e.hi and e.hi >= 0.25


def test_truncation_error_is_below_the_rounding_inside_the_interval():
    _, (e,) = _exp_at("(exp(x) - 1 - x) / (x * x)", -1.0, 1.0)
    pts = [e.lo, e.lo / 3, -1e-9, 1e-300, 1e-5, e.hi / 7, e.hi]
    got = _run(e, pts).tolist()
    with mpmath.workprec(2400):  # 1e-300 cancels ~2000 bits in this form of the truth
        for v, g in zip(pts, got):
            x = mpmath.mpf(v)
            truth = mpmath.expm1(x) / x**2 - 1 / x if v != 0 else mpmath.mpf(0.5)
            # the truncation is below 2^-55; Horner in float64 adds a few roundings
            assert abs(g - truth) <= 2.0**-50 * abs(truth), v


def test_a_wider_format_gets_a_narrower_interval():
    # the truncation must be below the format's rounding: float32 tolerates a wider interval
    _, (e64,) = _exp_at("log(1 - x)", 1e-12, 0.5, bits=53)
    _, (e32,) = _exp_at("log(1 - x)", 1e-12, 0.5, bits=24, dtype="f32")
    assert e32.hi > e64.hi
    assert 0.0 == e64.lo < e64.hi < 0.5  # one-sided: the range has no negative values


def test_expansion_at_infinity_with_half_integer_powers():
    _, es = _exp_at("sqrt(x + 1) - sqrt(x)", 1.0, 1e15)
    (e,) = [e for e in es if e.point == math.inf]
    assert any(k.q == 2 for k in e.exps)
    assert e.hi == math.inf and 1.0 < e.lo < 1e6
    xs = [e.lo * 2, 1e8, 1e12, 1e15]
    got = _run(e, xs).tolist()
    with mpmath.workprec(300):
        for v, g in zip(xs, got):
            truth = mpmath.sqrt(mpmath.mpf(v) + 1) - mpmath.sqrt(mpmath.mpf(v))
            assert abs(g - truth) <= 2.0**-49 * truth, v


def test_laurent_terms_build_as_divisions():
    _, es = _exp_at("1 / expm1(x)", -1.0, 1.0)
    (e,) = es
    assert min(e.exps) == -1  # 1/x - 1/2 + x/12 - ...
    got = _run(e, [1e-3, -2e-4, 0.1]).tolist()
    for v, g in zip([1e-3, -2e-4, 0.1], got):
        assert g == pytest.approx(float(1 / mpmath.expm1(mpmath.mpf(v))), rel=1e-14)


def test_denominator_root_is_an_expansion_point():
    # a pole: Laurent terms from (x - 2)^-1; a removable singularity: a plain Taylor series
    _, es = _exp_at("x / (x - 2)", 1.0, 3.0)
    (e,) = [e for e in es if e.point == 2.0]
    assert min(e.exps) == -1 and e.lo < 2.0 < e.hi
    _, es = _exp_at("(x - 2) / (x * x - 4)", 1.0, 3.0)
    (e,) = [e for e in es if e.point == 2.0]
    assert min(e.exps) == 0 and e.coefs[0] == pytest.approx(0.25)
    assert float(_run(e, [2.0])[0]) == pytest.approx(0.25)  # finite where the original is 0/0


def test_ops_without_meaning_are_refused():
    p = parse_expr("sum(x, dim=[0])", {"x": TensorType((4,), "f64")})
    with pytest.raises(series.NoSeries):
        series.to_sympy(p, p.outputs[0], p.inputs[0], __import__("sympy").Symbol("x"))
    assert not series.has_meaning("sum") and not series.has_meaning("where")
    assert series.has_meaning("sin") and series.has_meaning("tan") and series.has_meaning("log1p")


def test_constants_keep_their_float_value():
    # 0.1 is not 1/10: the series of the program's function uses the float's exact value
    import sympy as sp

    p = _prog("x * 0.1")
    x = sp.Symbol("x")
    e = series.to_sympy(p, p.outputs[0], p.inputs[0], x)
    assert e.coeff(x) == sp.Rational(0.1) and e.coeff(x) != sp.Rational(1, 10)


def test_a_series_sympy_cannot_finish_is_cut_off():
    # exp(-x²/2) at ±inf is exp(-1/(2τ²)), an essential singularity: sympy's series of it runs
    # for minutes; each call is interrupted after CALL_SECONDS (in a subprocess: a regression
    # would otherwise hang the suite)
    import subprocess
    import sys
    import time

    code = (
        "import time; from hnfc.ir.expr import parse_expr; from hnfc.foundation.types import TensorType; from hnfc.rewrites import series\n"
        "p = parse_expr('log(exp(-(x * x) / 2) / 2.5)', {'x': TensorType((4,), 'f32')})\n"
        "t = time.perf_counter(); series.expansions(p, p.outputs[0], p.inputs[0], -100.0, 100.0, 24, deadline=time.perf_counter() + 60)\n"
        "print(time.perf_counter() - t)"
    )
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert float(r.stdout.split()[-1]) < 3 * series.CALL_SECONDS + 4, r.stdout  # each of 0, ±inf cut once, not at the stage's deadline
    assert time.perf_counter() - t < 90


def test_the_time_limit_leaves_no_alarm_behind():
    import signal

    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(series._OutOfTime):
        with series._time_limited(0.05):
            while True:
                pass
    assert signal.getsignal(signal.SIGALRM) is before and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    with series._time_limited(5.0):
        pass
    assert signal.getsignal(signal.SIGALRM) is before and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
