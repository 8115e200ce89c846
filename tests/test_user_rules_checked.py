"""User rules go through the soundness checker before they are used (hnfc/rewrites/gate.py
`checked`, called by hnfc.optimize and the backend's option parsing): an unsound rule is an
error naming the rule and its counterexample; `trust_rules=True` runs it and the report says so;
a pack that does not exist is an error, not a warning."""

from __future__ import annotations

import warnings

import pytest
import torch

import hnfc
from hnfc.rewrites import library, nonzero, rule, vars
from hnfc.rewrites.gate import UnsoundRuleError, _verdict, checked

x, = vars("x")
UNSOUND = rule("div-self-unguarded", x / x, 1 + 0 * x)
SOUND = rule("div-self-guarded", x / x, 1 + 0 * x, when=[nonzero(x)])


def test_optimize_refuses_an_unsound_user_rule_naming_it_and_the_counterexample():
    t = torch.tensor([0.0, 1.0, 2.0])
    with pytest.raises(UnsoundRuleError) as e:
        hnfc.optimize(lambda t: t / t, (t,), rules=[UNSOUND])
    msg = str(e.value)
    assert "div-self-unguarded" in msg and "x=0" in msg and "lhs = nan" in msg, msg


def test_trusting_runs_the_rule_and_the_report_says_so():
    t = torch.tensor([0.0, 1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hnfc.optimize(lambda t: t / t, (t,), rules=[UNSOUND], trust_rules=True, verify=False)
    assert any("trust_rules=True" in w and "div-self-unguarded" in w for w in m.report.warnings), m.report.warnings
    assert "div-self-unguarded" in {r for rw in m.report.rewrites for r in rw.rules}
    assert float(m(t)[0]) == 1.0  # the unsound rewrite ran: 0/0 became 1, as the user asked


def test_a_sound_user_rule_passes_and_library_rules_are_not_rechecked():
    _verdict.cache_clear()
    assert checked([SOUND]) == (SOUND,)
    assert _verdict.cache_info().misses == 1
    checked([SOUND])
    assert _verdict.cache_info().misses == 1 and _verdict.cache_info().hits == 1  # once per process
    checked("hnfc")
    assert _verdict.cache_info().currsize == 1  # the library (tested by tests/test_rule_check.py) is not checked again
    assert len(checked("hnfc")) == len(library())


def test_an_unknown_pack_is_an_error():
    with pytest.raises(ValueError, match="no rule pack 'no.such.pack'"):
        hnfc.optimize(lambda t: t + 1, (torch.ones(3),), rules="no.such.pack")


def test_the_backend_refuses_an_unsound_rule_at_option_parsing():
    from hnfc.backend import parse_options

    with pytest.raises(UnsoundRuleError, match="div-self-unguarded"):
        parse_options({"rules": [UNSOUND]})
    assert parse_options({"rules": [UNSOUND], "trust_rules": True}).rules == (UNSOUND,)
