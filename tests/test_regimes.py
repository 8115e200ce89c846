"""Localization, regime inference and the series stage (hnfc/verify/localize.py,
hnfc/verify/regimes.py, the "series" stage of hnfc/pipeline.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import hnfc
from hnfc import pipeline
from hnfc.foundation.types import TensorType
from hnfc.ir.expr import parse_expr
from hnfc.ir.program import Builder
from hnfc.numerics.metric import sample_inputs
from hnfc.runtime.run import runner
from hnfc.verify import localize, regimes


def _sets(lo, hi, n=64, dtype="f64"):
    t = [TensorType((n,), dtype)]
    return sample_inputs(t, [(lo, hi)], 2, mode="value", seed=3) + sample_inputs(t, [(lo, hi)], 2, mode="bits", seed=4)


def _fresh_bits(fn, module, lo, hi, dtype="f64"):
    t = [TensorType((256,), dtype)]
    inputs = sample_inputs(t, [(lo, hi)], 1, mode="bits", seed=99)[0] + []
    prog = hnfc.trace(fn, tuple(inputs))
    ref = hnfc.reference(prog, inputs, return_mp=True)
    truth = np.asarray(ref.outputs[0], dtype=np.float64)
    keep = ~np.isnan(truth)
    with torch.no_grad():
        b = hnfc.bits_error(fn(*inputs), ref.mp_outputs[0])[keep]
        a = hnfc.bits_error(module(*inputs), ref.mp_outputs[0])[keep]
    return float(b.mean()), float(a.mean())


# -- localization ---------------------------------------------------------------------------


def test_local_error_lands_on_the_node_that_rounds():
    # x - sin(x): sin is accurate on its exact input; the subtraction cancels its rounding
    p = parse_expr("x - sin(x)", {"x": TensorType((8,), "f64")})
    (site,) = localize.sites(p)
    localize.local_errors(p, site, localize.leaf_values(-1.0, 1.0, "f64"))
    by_op = {p.nodes[j].op: v for j, v in site.local.items()}
    assert by_op["sin"] < 1.0
    assert by_op["sub"] > 5.0
    assert site.root_bits > 5.0


def test_log_of_a_rounded_argument_is_blamed_on_log():
    # Herbie's local error: log evaluated on round(1 - x) against log(1 - x) exactly
    p = parse_expr("log(1 - x)", {"x": TensorType((8,), "f64")})
    (site,) = localize.sites(p)
    localize.local_errors(p, site, localize.leaf_values(1e-12, 0.5, "f64"))
    by_op = {p.nodes[j].op: v for j, v in site.local.items()}
    assert by_op["log"] > 3.0 and by_op["sub"] < 1.0


def test_sites_are_univariate_pointwise_and_small():
    b = Builder()
    x = b.input("x", TensorType((4, 4), "f64"))
    y = b.input("y", TensorType((4, 4), "f64"))
    m = b.add("mm", [x, y])
    one = b.const(1.0, "f64")
    u = b.add("sub", [b.add("exp", [m]), one])  # univariate in m (a matmul is a leaf)
    v = b.add("add", [u, y])  # two leaves: not in a site
    p = b.build([v])
    (site,) = localize.sites(p)
    assert site.leaf == m and site.root == u
    assert localize.sites(p, max_nodes=1) == []


# -- regime inference -------------------------------------------------------------------------


def test_infer_splits_where_the_better_candidate_changes():
    xs = np.linspace(-1, 1, 400)
    left_good = np.where(xs < 0.3, 0.0, 20.0)
    right_good = np.where(xs < 0.3, 20.0, 0.0)
    segs = regimes.infer(xs, np.stack([left_good, right_good]))
    assert [c for _, _, c in segs] == [0, 1]
    cut = segs[0][1]
    assert abs(xs[cut] - 0.3) < 0.06
    # a split must pay for itself: a tiny gain is not worth it
    small = regimes.infer(xs, np.stack([np.zeros(400), np.where(xs < 0.3, 0.01, 0.0)]))
    assert [c for _, _, c in small] == [0]


def test_infer_respects_where_a_candidate_is_allowed():
    xs = np.linspace(0, 1, 100)
    errs = np.stack([np.full(100, 10.0), np.zeros(100)])
    allowed = np.stack([np.ones(100, bool), xs <= 0.5])
    segs = regimes.infer(xs, errs, allowed)
    assert [c for _, _, c in segs] == [1, 0]
    assert xs[segs[0][1] - 1] <= 0.5


def test_bisection_finds_the_change_between_two_floats():
    split = regimes._bisect(0.0, 1.0, lambda v: v < 0.123456, "f64")
    assert split == pytest.approx(0.123456, abs=1e-6)


# -- the stage --------------------------------------------------------------------------------


def test_series_stage_fixes_x_minus_sin_near_zero():
    fn = lambda x: x - torch.sin(x)  # noqa: E731
    x = torch.linspace(-1, 1, 64, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hnfc.optimize(fn, (x,), input_ranges={0: (-1.0, 1.0)})
        off = hnfc.optimize(fn, (x,), input_ranges={0: (-1.0, 1.0)}, series=False)
    assert any("series-regimes" in rw.rules for rw in m.report.rewrites)
    assert not any("series-regimes" in rw.rules for rw in off.report.rewrites)
    assert "series" in m.report.times
    before, after = _fresh_bits(fn, m, -1.0, 1.0)
    assert before > 5.0 and after < 1.0


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_series_stage_in_narrow_formats(dtype):
    # the truncation is sized to the format: fewer terms, wider intervals, still below its rounding
    fn = lambda x: x - torch.sin(x)  # noqa: E731
    x = torch.linspace(-1, 1, 64).to(getattr(torch, {"f32": "float32", "bf16": "bfloat16"}[dtype]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hnfc.optimize(fn, (x,), input_ranges={0: (-1.0, 1.0)})
    assert any("series-regimes" in rw.rules for rw in m.report.rewrites), m.report.warnings
    before, after = _fresh_bits(fn, m, -1.0, 1.0, dtype)
    assert before > 2.0 and after < 1.0


def test_untaken_branch_reaches_neither_value_nor_gradient():
    # (exp(x) - 1 - x)/x^2 is 0/0 at 0 and loses everything near it; the series branch covers 0,
    # the original is evaluated on its own clamped interval only
    fn = lambda x: (torch.exp(x) - 1 - x) / (x * x)  # noqa: E731
    x = torch.linspace(-3, 3, 64, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hnfc.optimize(fn, (x,), input_ranges={0: (-3.0, 3.0)})
    assert any(n.op == "where" for n in m.program.nodes)
    pts = torch.tensor([0.0, -0.0, 1e-300, 1e-8, -0.5, 2.5, -2.9], dtype=torch.float64, requires_grad=True)
    y = m(pts)
    assert torch.isfinite(y).all()
    assert y[0].item() == pytest.approx(0.5) and y[3].item() == pytest.approx(0.5, rel=1e-7)
    y.sum().backward()
    assert torch.isfinite(pts.grad).all()
    assert pts.grad[0].item() == pytest.approx(1 / 6, rel=1e-6)
    with torch.no_grad():  # the far branch is the original function
        assert m(pts)[5].item() == pytest.approx(fn(torch.tensor(2.5, dtype=torch.float64)).item(), rel=1e-14)


def test_a_failing_search_keeps_the_program(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("injected")

    monkeypatch.setattr(regimes, "improve", boom)
    fn = lambda x: x - torch.sin(x)  # noqa: E731
    x = torch.linspace(-1, 1, 16, dtype=torch.float64)
    with pytest.warns(pipeline.HnfcWarning, match="series stage failed"):
        m = hnfc.optimize(fn, (x,), input_ranges={0: (-1.0, 1.0)})
    assert torch.equal(m(x), fn(x))


def test_time_limit_and_nothing_to_do():
    p = parse_expr("x - sin(x)", {"x": TensorType((16,), "f64")})
    new, recs, notes = regimes.improve(p, _sets(-1.0, 1.0, 16), time_limit=1e-9)
    assert new is p and recs == [] and notes
    q = parse_expr("exp(x) * 2", {"x": TensorType((16,), "f64")})  # accurate already
    new, recs, _ = regimes.improve(q, _sets(-1.0, 1.0, 16))
    assert new is q and recs == []


def test_piecewise_chain_selects_by_range():
    p = parse_expr("x - sin(x)", {"x": TensorType((5,), "f64")})
    site = localize.sites(p)[0]
    b = Builder()
    x = b.input("x", TensorType((5,), "f64"))
    # the original on both sides of [-0.5, 0.5), and the original again in the middle: equal values
    segs = [(-np.inf, -0.5, None), (-0.5, 0.5, None), (0.5, np.inf, None)]
    out = regimes.piecewise(p, site.root, site.leaf, segs, b, x, "f64")
    prog = b.build([out])
    xs = torch.tensor([-0.9, -0.5, 0.0, 0.49, 2.0], dtype=torch.float64)
    assert torch.equal(runner(prog)([xs])[0], xs - torch.sin(xs))
    ops = [n.op for n in prog.nodes]
    assert ops.count("where") == 2 and ops.count("lt") == 2 and ops.count("clamp") == 3


def test_bench_series_quick(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, str(root / "bench" / "series.py"), "--quick", "--only", "x-minus-sin", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    (row,) = json.loads((tmp_path / "series_quick.json").read_text())["rows"]
    assert row["case"] == "x-minus-sin" and row["off_mean"] > 5.0 and row["on_mean"] < 1.0
    assert row["regimes"] and "series@0" in row["regimes"][0]


def test_series_is_used_only_inside_its_truncation_interval():
    from hnfc.rewrites import series

    p = parse_expr("log(1 - x)", {"x": TensorType((64,), "f64")})
    (e,) = series.expansions(p, p.outputs[0], p.inputs[0], 1e-12, 0.5, 53)
    new, (rec,), _ = regimes.improve(p, _sets(1e-12, 0.5))
    used = [(lo, hi) for lo, hi, name in rec.segments if name == "series@0"]
    assert used and all(e.lo <= lo and hi <= e.hi for lo, hi in used)
    assert rec.after_mean < 1.0 < rec.before_mean
    # beyond the interval the original runs: same value as the naive form there
    xs = torch.tensor([0.3, 0.45] + [0.0] * 62, dtype=torch.float64)
    assert torch.equal(runner(new)([xs])[0][:2], torch.log(1 - xs[:2]))


# -- the wider candidate ----------------------------------------------------------------------

CPU_MENU = ("bf16", "f32", "f64")
GELU = "0.5 * x * erfc(-x / 1.4142135623730951)"  # erf-GELU after erfc-intro-neg


def _gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / 1.4142135623730951))


def test_wider_dtype_is_the_cheapest_with_twice_the_significand():
    assert regimes.wider_dtype("f32", CPU_MENU) == "f64"
    assert regimes.wider_dtype("bf16", CPU_MENU) == "f32"
    assert regimes.wider_dtype("f16", ("f16", "bf16", "f32", "f64")) == "f32"
    assert regimes.wider_dtype("f64", CPU_MENU) is None  # nothing wider than float64
    assert regimes.wider_dtype("f32", ("bf16", "f16", "f32")) is None  # a device without float64
    assert regimes.wider_dtype("f32", ()) is None
    # the pipeline passes the device's menu: Apple's MPS has no float64
    from hnfc import precision
    from hnfc.foundation.config import Config

    assert regimes.wider_dtype("f32", precision.menu(Config(), torch.device("mps"))) is None
    assert regimes.wider_dtype("f32", precision.menu(Config(), torch.device("cuda"))) == "f64"
    assert regimes.wider_dtype("f32", precision.menu(Config(dtypes=("bf16", "f32")), "cpu")) is None


def test_wider_candidate_is_chosen_for_erfc_gelu_in_float32():
    # erfc(-x/sqrt2) at x in [-10, -1]: the rounding of x/sqrt2 times erfc's condition number
    # (~2z^2) is error no float32 rewrite removes; computed in float64 and rounded once it is gone
    p = parse_expr(GELU, {"x": TensorType((64,), "f32")})
    sets = _sets(-10.0, -1.0, 64, "f32")
    new, (rec,), _ = regimes.improve(p, sets, menu=CPU_MENU)
    assert rec.wider == "f64" and any(name == "in float64" for _, _, name in rec.segments)
    assert rec.before_mean > 1.5 and rec.after_mean <= 1.0
    casts = [n.attr["dtype"] for n in new.nodes if n.op == "to"]
    assert "f64" in casts and new.nodes[new.outputs[0]].type.dtype == "f32"
    # without float64 on the menu (a device that lacks it) the candidate is not built
    _, recs, _ = regimes.improve(p, sets, menu=("bf16", "f32"))
    assert all(r.wider is None for r in recs)


def test_wider_candidate_through_optimize_on_erf_gelu():
    x = torch.linspace(-10, -1, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hnfc.optimize(_gelu_erf, (x,), input_ranges={0: (-10.0, -1.0)})
        narrow = hnfc.optimize(_gelu_erf, (x,), input_ranges={0: (-10.0, -1.0)}, dtypes=("bf16", "f32"))
    assert any("wider-f64" in rw.rules for rw in m.report.rewrites), m.report.rewrites
    assert not any(r.startswith("wider-") for rw in narrow.report.rewrites for r in rw.rules)
    before, after = _fresh_bits(_gelu_erf, m, -10.0, -1.0, "f32")
    assert before > 5.0 and after <= 1.0
    # the casts are differentiable: the gradient is float64's (of the erfc form: 1 + erf cancels
    # in float64 too at -9.5), rounded
    pts = torch.tensor([-9.5, -6.0, -3.0, -1.0], requires_grad=True)
    m(pts).sum().backward()
    x64 = pts.detach().double().requires_grad_()
    (0.5 * x64 * torch.erfc(-x64 / 1.4142135623730951)).sum().backward()
    assert pts.grad.dtype == torch.float32
    assert torch.allclose(pts.grad.double(), x64.grad, rtol=1e-5, atol=0)


def test_wider_candidate_is_not_offered_in_float64():
    p = parse_expr(GELU, {"x": TensorType((64,), "f64")})
    _, recs, _ = regimes.improve(p, _sets(-30.0, -1.0, 64, "f64"), menu=CPU_MENU)
    assert all(r.wider is None for r in recs)
    x = torch.linspace(-30, -1, 64, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hnfc.optimize(_gelu_erf, (x,), input_ranges={0: (-30.0, -1.0)})
    assert not any(r.startswith("wider-") for rw in m.report.rewrites for r in rw.rules)
    assert not any(n.op == "to" for n in m.program.nodes)


def test_untaken_wider_branch_is_nan_safe():
    # (x - sin x)/x^3 is 0/0 at 0 in any dtype, float64 too: a series covers 0, the float64
    # branches on both sides read their own clamped leaf, so neither value nor gradient sees 0/0
    from hnfc.rewrites import series

    p = parse_expr("(x - sin(x)) / (x * x * x)", {"x": TensorType((8,), "f32")})
    site = localize.sites(p)[0]
    (e,) = [e for e in series.expansions(p, site.root, site.leaf, -1.0, 1.0, 24) if e.point == 0.0]
    a, c = max(e.lo, -0.25), min(e.hi, 0.25)
    wide = regimes.Wider("f64")
    segs = [(-np.inf, a, wide), (a, c, e), (c, np.inf, wide)]
    b = Builder()
    x = b.input("x", TensorType((8,), "f32"))
    prog = b.build([regimes.piecewise(p, site.root, site.leaf, segs, b, x, "f32")])
    from hnfc.runtime.lowering import lower

    mod = lower(prog)
    pts = torch.tensor([0.0, -0.0, 1e-30, -1e-3, 0.9, -0.9, 3.0, -2.0], requires_grad=True)
    y = mod(pts)
    y = y[0] if isinstance(y, (tuple, list)) else y
    assert torch.isfinite(y).all() and y[0].item() == pytest.approx(1 / 6, rel=1e-6)
    y.sum().backward()
    assert torch.isfinite(pts.grad).all() and abs(pts.grad[0].item()) < 1e-6
    x64 = pts.detach()[4:].double()
    ref = ((x64 - torch.sin(x64)) / (x64 * x64 * x64)).float()  # the float64 branch, rounded once
    assert torch.equal(y.detach()[4:], ref)
