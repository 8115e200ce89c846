"""Config (hnfc/foundation/config.py) checks every option against its field's annotation and range when it
is made, by any route (Config(...), Config.from_options, hnfc.optimize's keywords); `families`
is checked against the rule library's family names (the rules' first tags) where rules are
selected, before any work (the rewrites layer knows the rules, the foundation does not)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import hnfc
from hnfc.foundation.config import Config, conforms, field_types
from hnfc.pipeline import select_rules
from hnfc.rewrites.builtin import RULES


@pytest.mark.parametrize(
    "options, message",
    [
        ({"samples": 1.5}, "samples must be an integer"),
        ({"max_nodes": "abc"}, "max_nodes must be an integer"),
        ({"max_nodes": True}, "max_nodes must be an integer"),
        ({"verify": "maybe"}, "verify must be true or false"),
        ({"verify": 1}, "verify must be true or false"),
        ({"families": [3]}, "families must be a list of strings or None"),
        ({"time_limit": math.nan}, "time_limit must be a number, not NaN"),
        ({"time_limit": 0}, "must be positive"),
        ({"samples": -1}, "must not be negative"),
        ({"target": 2.0}, "target must be a relative error"),
        ({"tolerance_max_bits": "1"}, "tolerance_max_bits must be a number"),
        ({"max_nodez": 3}, "unknown hnfc option"),
    ],
)
def test_bad_options_are_errors_that_name_them(options, message):
    with pytest.raises(ValueError, match=message):
        Config.from_options(options)
    if "max_nodez" not in options:
        with pytest.raises(ValueError, match=message):
            Config(**options)


def test_good_options_are_normalized():
    assert Config(families="log-exp").families == ("log-exp",)  # one name, not its letters
    assert Config(families=["softmax", "losses"]).families == ("softmax", "losses")
    assert Config(time_limit=5).time_limit == 5  # an int is a number
    assert Config(target=1e-3, dtypes=[torch.bfloat16, "float32"]).dtypes == ("bf16", "f32")


def test_every_field_has_a_checkable_annotation_and_its_default_conforms():
    types = field_types()
    for f in dataclasses.fields(Config):
        assert conforms(f.default, types[f.name]), f.name
        assert not conforms(object(), types[f.name]), f.name  # the annotation really constrains


def test_optimize_refuses_bad_options_before_any_work():
    with pytest.raises(ValueError, match="unknown rule family 'log-epx'; known families: .*log-exp.*softmax"):
        hnfc.optimize(torch.nn.Tanh(), (torch.randn(3),), families=["log-epx"])


def test_families_select_the_rules_with_that_first_tag():
    chosen = select_rules(None, Config(families=["softmax"]))
    assert chosen and all(r.tags[0] in ("softmax", "algebra") for r in chosen)
    assert {r.name for r in chosen} == {r.name for r in RULES if r.tags[0] in ("softmax", "algebra")}
