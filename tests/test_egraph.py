"""E-graph layer: saturation + extraction, read as golden rewrites in the expression form."""

from __future__ import annotations

import pytest

from hnfc import analysis
from hnfc.egraph import Limits, extract, saturate
from hnfc.ir import TensorType, format_expr, parse_expr, validate
from hnfc.rewrites import library
from hnfc.rewrites.compile import compile_rules

RULES = compile_rules(library())


def optimize_expr(text: str, ranges: dict[str, tuple[float, float]], *, dtype="f32", shape=(16,), limits=Limits()):
    names = sorted(ranges) if len(ranges) > 1 else list(ranges)
    program = parse_expr(text, {n: TensorType(shape, dtype) for n in names})
    iv = analysis.ranges(program, {i: ranges[n] for i, n in enumerate(names)})
    sat = saturate(program, iv, RULES, limits)
    ex = extract(sat)
    validate(ex.program)
    return program, sat, ex


def assert_rewrites(before: str, after: str, **ranges):
    """`before` over inputs with the given (lo, hi) ranges extracts to `after`."""
    _, _, ex = optimize_expr(before, ranges)
    want = parse_expr(after, {n: TensorType((16,), "f32") for n in (sorted(ranges) if len(ranges) > 1 else ranges)})
    assert format_expr(ex.program, ex.program.outputs[0]) == format_expr(want, want.outputs[0])


@pytest.mark.parametrize(
    "before, after, x",
    [
        ("log(1 + x)", "log1p(x)", (1e-8, 1e-3)),
        ("log(x + 1)", "log1p(x)", (1e-8, 1e-3)),
        ("exp(x) - 1", "expm1(x)", (-1e-3, 1e-3)),
        ("log(1 + exp(x))", "softplus(x)", (-40.0, 40.0)),
        ("log(sigmoid(x))", "logsigmoid(x)", (-40.0, 40.0)),
        ("1 / (1 + exp(-x))", "sigmoid(x)", (-100.0, 100.0)),  # exp(-x) overflows below -88
        ("1 / (1 + exp(-x))", "div(1, add(1, exp(neg(x))))", (-40.0, 40.0)),  # nothing to gain: kept
        ("log(exp(x))", "x", (-5.0, 5.0)),
        ("exp(x) / sum(exp(x), dim=(-1,), keepdim=True)", "softmax(x, dim=-1)", (-100.0, 100.0)),
        # (+-30 and +-100: log-softmax-split-max, tests/test_log_softmax_split.py)
        ("log(softmax(x, dim=-1))", "log(softmax(x, dim=-1))", (-2.0, 2.0)),  # nothing to gain: kept
        ("log(sum(exp(x), dim=(-1,)))", "logsumexp(x, dim=(-1,))", (-100.0, 100.0)),
        ("x - logsumexp(x, dim=(-1,), keepdim=True)", "x - logsumexp(x, dim=(-1,), keepdim=True)", (-1.0, 1.0)),
    ],
)
def test_stability_rewrites(before, after, x):
    assert_rewrites(before, after, x=x)


def test_guard_blocks_an_unsound_rewrite_and_allows_a_sound_one():
    assert_rewrites("exp(log(x))", "exp(log(x))", x=(-1.0, 1.0))  # x may be <= 0: not x
    assert_rewrites("exp(log(x))", "x", x=(0.5, 2.0))


def test_stable_program_is_left_alone():
    program, sat, ex = optimize_expr("log1p(x) * softmax(x, dim=-1)", {"x": (-3.0, 3.0)})
    assert format_expr(ex.program, ex.program.outputs[0]) == format_expr(program, program.outputs[0])
    assert len(ex.program.nodes) <= len(program.nodes)
    assert not ex.new_classes


def test_node_limit_stops_with_a_result_and_says_so():
    _, sat, ex = optimize_expr("log(1 + exp(x)) + log(1 + exp(x * 2)) + exp(x) - 1", {"x": (-3.0, 3.0)}, limits=Limits(max_nodes=5))
    assert sat.stop_reason.startswith("node limit")
    validate(ex.program)


def test_applied_rules_name_the_values_they_rewrote():
    program, sat, ex = optimize_expr("log(1 + x)", {"x": (1e-8, 1e-3)})
    applied = {a.rule: a.values for a in sat.applied}
    assert applied["log1p-intro"] == (program.outputs[0],)
    assert sat.stop_reason == "saturated"


def _saturated_facts(sat):
    return (sat.snapshot.enodes, sat.snapshot.handles, sat.snapshot.rows, sat.class_of, sat.applied, sat.intervals, sat.stop_reason, sat.iterations)


def test_a_reused_session_saturates_as_a_fresh_one(monkeypatch):
    """Regions share one prepared egglog session (push/pop, hnfc/egraph/session.py): a region
    saturated after another gives exactly what a fresh session gives, e-class ids included."""
    from hnfc.egraph import session

    first = ("log(1 + exp(x)) - exp(x) / sum(exp(x), dim=(-1,), keepdim=True)", {"x": (-40.0, 40.0)})
    second = ("log(1 + x) * (exp(x) - 1)", {"x": (1e-8, 1e-3)})
    monkeypatch.setattr(session, "_kept", __import__("threading").local())
    _, fresh, _ = optimize_expr(*second)
    built = []
    monkeypatch.setattr(session.Session, "from_setup", classmethod(lambda cls, setup, _f=session.Session.from_setup.__func__: built.append(1) or _f(cls, setup)))
    monkeypatch.setattr(session, "_kept", __import__("threading").local())
    optimize_expr(*first)
    _, reused, _ = optimize_expr(*second)
    assert len(built) == 1  # the rule library was parsed once for both regions
    assert _saturated_facts(reused) == _saturated_facts(fresh)
