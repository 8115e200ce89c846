"""Soundness check of rules (hnfc.check_rules): every library rule passes, unsound rules are
refused with a counterexample, and the CLI entry point reports both."""

from __future__ import annotations

import sys
import types

import pytest

import hnfc
from hnfc.rewrites import attr_vars, const_vars, in_range, library, negative, nonneg, nonzero, pos, rule, vars
from hnfc.rewrites.dsl import rank
from hnfc.rewrites.builders import abs, amax, exp, log, log1p, logsumexp, matmul, mean, mm, relu, rms_norm, sigmoid, softmax, softplus, sqrt, tanh
from hnfc.rewrites.builders import sum as rsum
from hnfc.rewrites.check import RuleCheck, check_pack_cli, check_rule

x, y, z = vars("x y z")
(d,) = attr_vars("d")


@pytest.mark.parametrize("r", library(), ids=lambda r: r.name)
def test_library_rule_is_sound(r):
    # 1000 points per pointwise rule; rules with reductions: 1000 values as 250 rows of 4
    res = check_rule(r, samples=1000)
    assert res.status in ("proven", "tested"), f"{r}: {res.detail} {res.counterexample}"
    assert res.counterexample is None and res.points > 0


UNSOUND = [
    rule("sqrt-square", sqrt(x * x), x),
    rule("log-mul-unguarded", log(x * y), log(x) + log(y)),
    rule("exp-add", exp(x + y), exp(x) + exp(y)),
    rule("div-distribute-wrong", (x + y) / z, x / z + y),
    rule("sqrt-mul-weak-guard", sqrt(x * y), sqrt(x) * sqrt(y), when=[nonneg(x)]),  # needs nonneg(y) too
    rule("sqrt-square-weak-guard", sqrt(x * x), x, when=[nonzero(x)]),  # needs pos(x)
    rule("log-square-weak-guard", log(x * x), 2 * log(x), when=[nonzero(x)]),  # needs pos(x)
    rule("log1p-linear", log1p(x), x),
    rule("softplus-relu", softplus(x), relu(x)),
    rule("sigmoid-neg-wrong", sigmoid(-x), 1 + sigmoid(x)),
    rule("tanh-small-approx", tanh(x), x, when=[in_range(x, -1e-3, 1e-3)]),  # approximate, not exact
    rule("softmax-no-denominator", exp(x) / rsum(exp(x), dim=(d,), keepdim=True), exp(x - amax(x, dim=(d,), keepdim=True))),
    rule("logsumexp-is-max", logsumexp(x, dim=(d,), keepdim=True), amax(x, dim=(d,), keepdim=True)),
    rule("scale-both-factors", mm(x, y) / 2, mm(x / 2, y / 2)),  # scales twice
    rule("matmul-commutes", matmul(x, y), matmul(y, x)),
    rule("vector-softmax-on-matrices", exp(x) / rsum(exp(x), dim=(-1,)), softmax(x, dim=-1), when=[rank(x, 2)]),
]


@pytest.mark.parametrize("r", UNSOUND, ids=lambda r: r.name)
def test_unsound_rule_is_refused(r):
    res = check_rule(r, samples=1000)
    assert res.status == "refused", res.detail
    cex = res.counterexample
    assert cex is not None and set(cex) >= {"inputs", "lhs", "rhs", "domain"}
    assert set(cex["inputs"]) == set(sorted(v for v in "xyz" if v in str(r.lhs)))
    assert "at " in res.detail and r.name in str(res)


def test_constant_variables_take_values_inside_their_guards():
    (e,) = const_vars("e")
    ok = check_rule(rule("rms", x / sqrt(mean(x * x, dim=(-1,), keepdim=True) + e), rms_norm(x, eps=e), when=[pos(e)]))
    assert ok.status == "tested", ok.detail
    # the kernel's eps is fixed while the pattern's varies: refuted at an eps other than 1e-6
    bad = check_rule(rule("rms-fixed-eps", x / sqrt(mean(x * x, dim=(-1,), keepdim=True) + e), rms_norm(x, eps=1e-6), when=[pos(e)]))
    assert bad.status == "refused" and bad.counterexample["attrs"]["e"] > 0
    assert "e=" in bad.detail
    # a guard on the constant is honoured: no value of e ≤ 0 is tried
    neg = check_rule(rule("const-sign", x * e, -x * abs(e), when=[negative(e)]))
    assert neg.status == "proven", neg.detail  # sympy, with e a negative symbol


def test_counterexample_respects_the_guard_domain():
    res = check_rule(rule("w", sqrt(x * y), sqrt(x) * sqrt(y), when=[nonneg(x)]))
    cex = res.counterexample
    assert cex["inputs"]["x"] == 0.0 and cex["inputs"]["y"] < 0  # the only refuting points
    assert cex["domain"] == {"x": "nonneg(x)", "y": "any real"}
    assert cex["lhs"] == 0.0 and cex["rhs"] != cex["rhs"]  # finite -> NaN: refused


def test_undefined_left_sides_need_a_guard_infinite_ones_are_skipped():
    # documented policy: a rule may remove an overflow or a pole, never give a value where the
    # real function is undefined (NaN), and never turn a number into NaN or inf
    for unguarded in (rule("exp-log-any", exp(log(x)), x), rule("div-self", x / x, 1 + 0 * x)):
        res = check_rule(unguarded)
        assert res.status == "refused" and res.counterexample["lhs"] != res.counterexample["lhs"]  # NaN
    assert check_rule(rule("exp-log-pos", exp(log(x)), x, when=[pos(x)])).ok
    assert check_rule(rule("div-self-nonzero", x / x, 1 + 0 * x, when=[nonzero(x)])).ok
    assert check_rule(rule("pole", 1 / x, 1 / x + 0 * x)).ok  # 1/0 = inf: skipped
    assert check_rule(rule("one-to-nan", x * 0, log(x - x - 1))).status == "refused"


def test_sympy_proves_and_guards_become_assumptions():
    assert check_rule(rule("lm", log(x * y), log(x) + log(y), when=[pos(x), pos(y)])).status == "proven"
    # a reduction: sampled only
    assert check_rule(rule("lse", log(rsum(exp(x), dim=(d,), keepdim=True)), logsumexp(x, dim=(d,), keepdim=True))).status == "tested"


def test_contradictory_guards_are_refused():
    res = check_rule(rule("never", log(x), log(x), when=[pos(x), in_range(x, -2.0, -1.0)]))
    assert res.status == "refused" and "contradictory" in res.detail


def test_check_rules_is_public_and_takes_any_pack():
    out = hnfc.check_rules("hnfc.examples.user_pack", samples=200)
    assert [type(r) for r in out] == [RuleCheck] and out[0].status == "proven"


def test_check_pack_cli_exit_codes(monkeypatch, capsys):
    bad = types.ModuleType("bad_pack_for_test")
    bad.RULES = [rule("softplus-relu", softplus(x), relu(x)), rule("ok-one", log(exp(x)), x)]
    monkeypatch.setitem(sys.modules, "bad_pack_for_test", bad)
    assert check_pack_cli("bad_pack_for_test", samples=200) == 1
    out = capsys.readouterr().out
    assert "refused" in out and "softplus-relu" in out and "ok-one" in out
    assert check_pack_cli("hnfc.examples.user_pack", samples=200) == 0
    assert check_pack_cli("no_such_pack_xyz") == 2
