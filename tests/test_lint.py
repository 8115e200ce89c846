"""hnfc.lint: hazards on sound ranges, unknown values, constants, gradient hazards, source lines,
triggers checked by running, the library-kernel op entries it relies on."""

from __future__ import annotations

import math

import pytest
import torch

from hnfc import ops
from hnfc.foundation.intervals import Interval
from hnfc.lint import lint


def _kinds(res, op=None):
    return {f.kind for f in res.failing if op is None or f.op == op}


def test_hazard_at_declared_edge_not_hidden_by_samples():
    # the example and samples sit far below 88.7 (exp overflow); the declared range reaches 100
    res = lint(lambda s: torch.exp(s), (torch.tensor(3.0),), input_ranges={0: (0.0, 100.0)}, samples=2)
    f = [f for f in res.failing if f.op == "exp"]
    assert f and f[0].kind == "hazard"
    assert f[0].trigger and "inf" in f[0].trigger  # checked by running at the bound
    assert f[0].source and "torch.exp(s)" in f[0].source


def test_safe_range_is_ok():
    res = lint(lambda s: torch.exp(s), (torch.tensor(3.0),), input_ranges={0: (0.0, 50.0)}, samples=2)
    assert res.ok


def test_division_by_norm_reported():
    res = lint(lambda a: a / a.norm(), (torch.randn(8),), input_ranges={0: (-1.0, 1.0)}, samples=2)
    assert "hazard" in _kinds(res, "div")


def test_sqrt_gradient_hazard_checked_by_backward():
    def f(a):
        return torch.sqrt((a * a).sum(-1))

    res = lint(f, (torch.randn(3, 4),), input_ranges={0: (-1.0, 1.0)}, samples=2)
    g = [f for f in res.failing if f.kind == "grad-hazard"]
    assert g and g[0].op == "sqrt"
    assert g[0].trigger and "gradient" in g[0].trigger
    assert lint(f, (torch.randn(3, 4),), input_ranges={0: (-1.0, 1.0)}, samples=2, backward=False).ok


def test_vector_norm_is_not_a_gradient_hazard():
    res = lint(lambda a: torch.linalg.vector_norm(a, dim=-1), (torch.randn(3, 4),), input_ranges={0: (-1.0, 1.0)}, samples=2)
    assert res.ok


def test_constant_underflow_is_a_hazard():
    def f(x):
        return x / torch.sqrt(x.var(-1, keepdim=True) + 1e-12)

    res = lint(f, (torch.randn(2, 8, dtype=torch.float16),), input_ranges={0: (-4.0, 4.0)}, samples=2)
    assert any(f.kind == "hazard" and "underflows" in f.reason for f in res.failing)


def test_unknown_feeding_log():
    def f(x):
        return torch.log(torch.special.i0(x))  # i0 has no range rule in the op table

    res = lint(f, (torch.randn(4),), input_ranges={0: (-1.0, 1.0)}, samples=2)
    assert "unknown" in _kinds(res, "log")


def test_frontend_records_sources():
    import hnfc

    def f(x):
        y = torch.exp(x)
        return torch.log1p(y)

    p = hnfc.trace(f, (torch.randn(3),))
    assert any("torch.exp(x)" in s for s in p.meta["sources"].values())


@pytest.mark.parametrize("p", [1.0, 2.0, math.inf])
def test_vector_norm_entry_matches_torch(p):
    x = torch.randn(3, 5, dtype=torch.float64)
    import numpy as np
    import mpmath

    from hnfc.foundation.types import TensorType
    from hnfc.ops.core import obj

    op = ops.get("vector_norm")
    xs = obj(np.frompyfunc(mpmath.mpf, 1, 1)(x.numpy()))
    at = {"ord": p, "dim": (-1,), "keepdim": False}
    got = np.array([float(v) for v in op.ref([xs], at, TensorType((3,), "f64")).flat])
    assert np.allclose(got, torch.linalg.vector_norm(x, ord=p, dim=-1).numpy(), rtol=1e-12)
    iv = op.interval([Interval(-2.0, 3.0)], at, TensorType((3,), "f32"), [TensorType((3, 5), "f32")])
    assert iv.lo == 0.0 and iv.hi >= 3.0


def test_nll_and_bce_stay_whole():
    import hnfc
    import torch.nn.functional as F

    p = hnfc.trace(lambda x, y: F.cross_entropy(x, y), (torch.randn(4, 5), torch.randint(0, 5, (4,))))
    assert any(n.op == "nll_loss" for n in p.nodes)
    p = hnfc.trace(lambda x, t: F.binary_cross_entropy(torch.sigmoid(x), t), (torch.randn(4), torch.rand(4)))
    assert any(n.op == "binary_cross_entropy" for n in p.nodes)


def test_bce_on_saturating_sigmoid_is_a_hazard():
    import torch.nn.functional as F

    res = lint(lambda x, t: F.binary_cross_entropy(torch.sigmoid(x), t), (torch.randn(4), torch.rand(4)), input_ranges={0: (-50.0, 50.0), 1: (0.0, 1.0)}, samples=2)
    assert "hazard" in _kinds(res, "binary_cross_entropy")


def test_lost_bits_that_never_reach_the_loss_do_not_fail():
    # 1 - sigmoid(x) loses every relative bit for x >> 0, but scaled by 1e-6 next to x*x the loss
    # never sees it: measured on the outputs, it is a note
    def absorbed(x):
        return ((1 - torch.sigmoid(x)) * 1e-6 + x * x).mean()

    def reaches(x):
        return torch.log(1 - torch.sigmoid(x)).mean()

    x = torch.linspace(-30, 30, 64)
    a = lint(absorbed, (x,), input_ranges={0: (-30.0, 30.0)})
    sub = [f for f in a.findings if f.op == "sub" and f.kind in ("fixable", "candidate")]
    assert sub and sub[0].effect is not None and sub[0].effect < 0.5 and a.ok
    b = lint(reaches, (x,), input_ranges={0: (-30.0, 30.0)})
    assert not b.ok and any(f.effect is not None and f.effect >= 0.5 for f in b.failing)


def test_rms_norm_written_out_is_bounded_by_sqrt_count():
    # LLaMA's RMS norm: x * rsqrt(mean(x²) + eps); each |x_i| / rms <= sqrt(n), whatever x's range
    from hnfc import analysis
    import hnfc

    def f(x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)

    p = hnfc.trace(f, (torch.randn(2, 16),))
    r = analysis.ranges(p, {0: (-1e6, 1e6)})
    out = r[p.outputs[0]]
    assert 4.0 <= out.hi <= 4.5 and -4.5 <= out.lo <= -4.0
    # a different tensor in the numerator is not bounded by it
    q = hnfc.trace(lambda x, y: y * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6), (torch.randn(2, 16), torch.randn(2, 16)))
    assert analysis.ranges(q, {0: (-1e6, 1e6), 1: (-1e6, 1e6)})[q.outputs[0]].hi > 1e6


def test_empty_cat_part_does_not_widen_the_range():
    from hnfc.foundation.types import TensorType

    op = ops.get("cat")
    whole = Interval.whole()
    iv = op.interval([whole, Interval(-2.0, 3.0)], {"dim": -2}, TensorType((1, 8, 4), "f32"), [TensorType((1, 0, 4), "f32"), TensorType((1, 8, 4), "f32")])
    assert (iv.lo, iv.hi) == (-2.0, 3.0)
    iv = op.interval([Interval(-5.0, 0.0), Interval(-2.0, 3.0)], {"dim": 0}, TensorType((3,), "f32"), [TensorType((1,), "f32"), TensorType((2,), "f32")])
    assert (iv.lo, iv.hi) == (-5.0, 3.0)


def test_silu_has_a_range_rule():
    from hnfc.foundation.types import TensorType

    op = ops.get("silu")
    t = TensorType((4,), "f32")
    for lo, hi in ((-50.0, 50.0), (-1.0, 2.0), (-10.0, -3.0), (0.5, 4.0)):
        iv = op.interval([Interval(lo, hi)], {}, t, [t])
        xs = torch.linspace(lo, hi, 10001, dtype=torch.float64)
        ys = torch.nn.functional.silu(xs)
        assert iv.lo <= float(ys.min()) and float(ys.max()) <= iv.hi
        assert iv.lo >= -0.2785 and iv.hi <= max(hi, 0.0) * 1.001 + 1e-12
    import hnfc

    p = hnfc.trace(lambda x: torch.nn.functional.silu(x), (torch.randn(4),))
    assert any(n.op == "silu" for n in p.nodes)


def test_unverified_candidate_is_a_note_not_a_failure():
    # without verification the e-graph's rewrite is a suggestion: nothing measured it better
    def f(x):
        return torch.log(1 - torch.sigmoid(x)).mean()

    x = torch.linspace(-30, 30, 64)
    res = lint(f, (x,), input_ranges={0: (-30.0, 30.0)}, verify=False)
    cand = [f for f in res.findings if f.kind == "candidate"]
    assert cand and cand[0].fix and "->" in cand[0].fix
    assert res.ok
    assert not lint(f, (x,), input_ranges={0: (-30.0, 30.0)}, verify=False, strict=True).ok


def test_lint_survives_a_failing_rewrite_search(monkeypatch):
    import hnfc.pipeline

    def boom(*a, **k):
        raise ValueError("search failed")

    monkeypatch.setattr(hnfc.pipeline, "find_rewrites", boom)
    res = lint(lambda s: torch.exp(s), (torch.tensor(3.0),), input_ranges={0: (0.0, 100.0)}, samples=2)
    assert "hazard" in _kinds(res, "exp")
    assert any("rewrite search failed" in w for w in res.report.warnings)


@pytest.mark.parametrize("kw", [{}, {"reduction": "sum"}, {"reduction": "none", "pos_weight": torch.tensor([1.0, 2.0, 3.0, 0.5, 1.0])}])
def test_bce_with_logits_stays_whole_and_runs_as_eager(kw):
    import hnfc
    import torch.nn.functional as F

    from hnfc.runtime.lowering import lower
    from hnfc.runtime.run import flat

    def f(x, t):
        return F.binary_cross_entropy_with_logits(x, t, **kw)

    x, t = torch.randn(4, 5) * 20, torch.rand(4, 5)
    p = hnfc.trace(f, (x, t))
    ops_seen = [n.op for n in p.nodes if n.opdef.kind != "leaf"]
    assert ops_seen.count("binary_cross_entropy_with_logits") == 1 and "log" not in ops_seen and "exp" not in ops_seen
    run = lower(flat(p))
    x2 = (torch.randn(4, 5) * 30).requires_grad_(True)
    got = run(x2, t)
    got = got[0] if isinstance(got, (tuple, list)) else got
    assert torch.equal(got, f(x2, t))  # lowering calls torch's own kernel
    (g,) = torch.autograd.grad(got.sum(), x2)
    assert torch.isfinite(g).all()
    res = lint(f, (x, t), input_ranges={0: (-80.0, 80.0), 1: (0.0, 1.0)}, samples=2)
    assert res.ok, [f.reason for f in res.failing]
    assert not any(f.op in ("log", "exp") for f in res.findings)


def test_bce_with_logits_range_and_cond():
    from hnfc.foundation.types import TensorType

    op = ops.get("binary_cross_entropy_with_logits")
    t = TensorType((3, 4), "f32")
    iv = op.interval([Interval(-50.0, 50.0), Interval(0.0, 1.0), None, None], {"reduction": 0}, t, [t, t, None, None])
    assert iv.lo == 0.0 and 50.0 <= iv.hi <= 50.01  # softplus(50) = 50 + e^-50
    s = op.interval([Interval(-1.0, 1.0), Interval(0.0, 1.0), None, None], {"reduction": 2}, TensorType((), "f32"), [t, t, None, None])
    assert s.lo == 0.0 and 12 * math.log1p(math.e) <= s.hi <= 12 * math.log1p(math.e) * 1.001
    # a target held away from 1 keeps the sensitivity to it bounded; logits give at most max(1, |x|)
    c = op.cond([Interval(-10.0, 10.0), Interval(0.0, 0.5), None, None], {"reduction": 1}, Interval(0.0, 20.0), t, [t, t, None, None])
    assert 10.0 <= c <= 12.01
    assert op.cond([Interval(-10.0, 10.0), Interval(-1.0, 0.5), None, None], {"reduction": 1}, Interval(0.0, 20.0), t, [t, t, None, None]) == math.inf


def test_tiny_llama_lints_clean():
    # RMS norm written out, silu, an empty KV cache concatenated with the keys: each once made a
    # range unknown or astronomically wide (a failing finding on a clean model)
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
                                   intermediate_size=64, vocab_size=100, max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(cfg, attn_implementation="eager").eval()
    res = lint(lambda ids: model(input_ids=ids).last_hidden_state, (torch.randint(0, 100, (1, 8)),))
    assert res.ok, [(f.kind, f.op, f.reason[:120]) for f in res.failing]
    assert not any(f.kind == "unknown" for f in res.findings)


def test_unknown_argument_whose_range_avoids_the_pole_is_not_reported():
    # i0 has no range rule: i0(x)² + 1e-6 is >= 1e-6 but unbounded above; rsqrt of it cannot
    # meet its pole, exp of it can overflow, log of i0 itself is unknown
    def safe(x):
        return torch.rsqrt(torch.special.i0(x) ** 2 + 1e-6)

    def unsafe(x):
        return torch.exp(torch.special.i0(x) ** 2 + 1e-6)

    x = torch.randn(4)
    assert lint(safe, (x,), input_ranges={0: (-1.0, 1.0)}, samples=2).ok
    assert "unknown" in _kinds(lint(unsafe, (x,), input_ranges={0: (-1.0, 1.0)}, samples=2), "exp")


def test_gradient_hazard_without_a_rule_found_by_running_backward():
    # acos has an infinite derivative at ±1 and no grad_hazard rule: the angle between two equal
    # vectors (the declared bounds filled everywhere) has a finite value and an infinite gradient
    def angle(a, b):
        cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-8)
        return torch.acos(cos.clamp(-1.0, 1.0)).sum()

    xs = (torch.randn(3, 4), torch.randn(3, 4, generator=torch.Generator().manual_seed(1)))
    res = lint(angle, xs, input_ranges={0: (0.5, 1.0), 1: (0.5, 1.0)}, samples=2)
    g = [f for f in res.failing if f.kind == "grad-hazard"]
    assert g and g[0].trigger and "gradient" in g[0].trigger
    assert g[0].source and "torch.acos" in g[0].source
    assert lint(angle, xs, input_ranges={0: (0.5, 1.0), 1: (0.5, 1.0)}, samples=2, backward=False).ok
