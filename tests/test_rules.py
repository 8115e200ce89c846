"""Rule layer: the DSL refuses malformed rules at definition, the library compiles to egglog."""

from __future__ import annotations

import pytest

from hnfc import ops
from hnfc.rewrites import BUILDERS, RuleError, attr_vars, in_range, library, pos, rule, vars
from hnfc.rewrites import exp, log, log1p, softmax
from hnfc.rewrites import sum as rsum
from hnfc.rewrites.compile import canonical_attrs, compile_rule, compile_rules, unify
from hnfc.rewrites import layer_norm, mean, rms_norm, sqrt
from hnfc.rewrites.dsl import AttrVar, Const, P, check_unique, const_vars, rank

x, y = vars("x y")
(d,) = attr_vars("d")
(e,) = const_vars("e")


@pytest.mark.parametrize("name", sorted(n for n, op in ops.OPS.items() if op.kind != "leaf" and not op.opaque))
def test_every_op_has_a_builder(name):
    assert name in BUILDERS
    arity = ops.OPS[name].arity
    pattern = BUILDERS[name](*([x] * max(arity, 1)))
    assert pattern.op == name


def test_operators_build_op_patterns():
    p = log(1 + x) - x * 2 / y
    assert p.op == "sub"
    assert p.args[0].args[0] == P("add", Const(1.0), x)
    assert (-x).op == "neg" and (x**2).attr == {"exponent": 2.0}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: P("frobnicate", x), "unknown op 'frobnicate'"),
        (lambda: log(x, y), "log takes 1 arguments, got 2"),
        (lambda: softmax(x, dimm=1), "softmax has no attribute 'dimm'"),
        (lambda: rule("bad-rhs", log(x), log1p(y)), "right side uses ['y']"),
        (lambda: rule("bad-guard", log(x), x, when=[pos(y)]), "guard pos(y) is on a variable the left side does not bind"),
        (lambda: rule("bare-lhs", x, log(x)), "left side must be an op pattern"),
        (lambda: rule("bad attr var", log(x), softmax(x, dim=d)), "must be a non-empty kebab-case"),
        (lambda: rule("unbound-attr", log(x), softmax(x, dim=d)), "attribute variables ['d'] not bound"),
        (lambda: in_range(x, 2, 1), "empty range"),
        (lambda: rank(x, 1.5), "the rank is a non-negative integer"),
        (lambda: x + "one", "cannot use 'one'"),
        (lambda: layer_norm(x, eps=e * 2), "attribute eps=mul(#e, 2) must be a literal, an attribute variable or a constant variable"),
        (lambda: rule("const-in-lhs-attr", layer_norm(x, eps=e), x), "an attribute on the left side takes an attribute variable"),
        (lambda: rule("clash", x * Const(2.0) + P("neg", const_vars("x")[0]), x), "names both a pattern variable and a constant variable"),
        (lambda: rule("unbound-const", log(x), x * e), "right side uses ['e']"),
    ],
)
def test_definition_errors_name_the_problem(make, message):
    with pytest.raises(RuleError, match=None) as e:
        make()
    assert message in str(e.value)


def test_duplicate_rule_names_are_refused():
    r = rule("same", log(1 + x), log1p(x))
    with pytest.raises(RuleError, match="duplicate rule name 'same'"):
        check_unique([r, rule("same", exp(log(x)), x, when=[pos(x)])])


def test_library_rules_are_unique_and_compile():
    rules = library()
    assert len({r.name for r in rules}) == len(rules)
    compiled = compile_rules(rules)
    for c in compiled:
        assert c.variants and all(v.text.startswith("(rule ") for v in c.variants)
        assert f"(relation Cand_{c.index} " in c.declarations


def test_commutative_operands_match_in_both_orders():
    c = compile_rule(rule("log1p-intro", log(1 + x), log1p(x)), 0)
    texts = [v.text for v in c.variants]
    assert len(texts) == 2
    assert any('(App2 "add" "" (Num 1.0) ?v_x)' in t for t in texts)
    assert any('(App2 "add" "" ?v_x (Num 1.0))' in t for t in texts)


def test_attribute_variables_unify_and_fill_the_right_side():
    c = compile_rule(rule("softmax-intro", exp(x) / rsum(exp(x), dim=(d,), keepdim=True), softmax(x, dim=d)), 3)
    (v,) = c.variants
    assert v.attr_relation == "Attr_3_0" and len(v.lhs_slots) == 1 and len(v.rhs_slots) == 1
    assert v.rhs_attr_strings([{"dim": (1,), "keepdim": True}]) == [canonical_attrs("softmax", {"dim": 1})]
    assert v.rhs_attr_strings([{"dim": (0, 1), "keepdim": True}]) is None  # two axes: not a softmax
    assert v.rhs_attr_strings([{"dim": (1,), "keepdim": False}]) is None


def test_unify_binds_consistently():
    b = {}
    assert unify((AttrVar("d"), AttrVar("d")), (2, 2), b) and b == {"d": 2}
    assert not unify((AttrVar("d"), AttrVar("d")), (2, 3), {})
    assert not unify(True, 1, {})  # keepdim=True does not match an integer 1


def test_constant_variables_bind_a_number_and_fill_attributes():
    """`e` matches `(Num ?k_e)` only, and its value reaches the right side's `eps` through an f64
    column of the attribute relation."""
    c = compile_rule(rule("rms", x / sqrt(mean(x * x, dim=(-1,), keepdim=True) + e), rms_norm(x, eps=e), when=[pos(e)]), 5)
    v = c.variants[0]
    assert "(Num ?k_e)" in v.text and v.const_slots == ("e",)
    assert "(relation Attr_5_0 (String f64 String))" in c.declarations
    assert c.var_names == ("x", "e")  # guards on e see its class
    mean_attrs = {"dim": (-1,), "keepdim": True}
    assert v.rhs_attr_strings([mean_attrs], [1e-6]) == [canonical_attrs("rms_norm", {"eps": 1e-6})]
    assert v.rhs_attr_strings([{"dim": (-2,), "keepdim": True}], [1e-6]) is None
