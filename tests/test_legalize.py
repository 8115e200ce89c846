"""Dtype legalization (hnfc/precision/legalize.py): finite constants that round to ±inf in the dtype their
node computes in become ±finfo.max; genuine infinities, constants that fit and scaling constants
stay. Through `hnfc.optimize`, as a user calls it, and on the pure function."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import hnfc
from hnfc.ir.program import Builder
from hnfc.precision.legalize import legalize, overflows
from hnfc.pipeline import HnfcWarning
from hnfc.foundation.types import TensorType

F32_MIN = torch.finfo(torch.float32).min
# two attention rows over 8 keys: the first keeps 5 keys, the second is fully masked (padding)
KEEP = torch.tensor([[1.0] * 5 + [0.0] * 3, [0.0] * 8])
KEEP_BOOL = KEEP.bool()
SCORES = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
VALUES = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))


def additive_mask(s):
    """HF style: (1 - mask) * finfo(float32).min, added to the scores."""
    return torch.softmax(s + (1 - KEEP.to(s.dtype)) * F32_MIN, -1)


def where_mask(s):
    return torch.softmax(s + torch.where(KEEP_BOOL, 0.0, -1e9).to(s.dtype), -1)


def legalized(m) -> list:
    return [rw for rw in m.report.rewrites if rw.rules == ("legalize-constant",)]


def test_overflow_threshold_is_round_to_nearest_in_the_dtype():
    for d, torch_dtype in (("bf16", torch.bfloat16), ("f16", torch.float16), ("f32", torch.float32)):
        big = torch.finfo(torch_dtype).max
        for v in (big, big * 1.001, big * 1.01, -big * 1.01, 1e9, -1e30, F32_MIN):
            if abs(v) > torch.finfo(torch.float32).max:
                continue  # a float32 tensor could not hold it to compare
            rounds_to_inf = bool(torch.tensor(v, dtype=torch.float64).to(torch_dtype).isinf())
            assert overflows(v, d) == rounds_to_inf, (d, v)
    assert not overflows(-math.inf, "bf16") and not overflows(math.nan, "f16") and not overflows(1e308, "f64")


def test_bf16_additive_f32_min_mask_is_nan_before_and_matches_f32_after():
    s = SCORES.to(torch.bfloat16)
    assert additive_mask(s)[1].isnan().all()  # the fully masked row: -inf everywhere
    m = hnfc.optimize(additive_mask, (s,), input_ranges={0: (-4.0, 4.0)})
    y = m(s)
    assert y.dtype == torch.bfloat16 and y.isfinite().all()
    torch.testing.assert_close(y.float(), additive_mask(SCORES), atol=1e-2, rtol=1e-2)
    (rw,) = legalized(m)
    assert "-3.4028234663852886e+38" in rw.before and "bf16" in rw.before and "-3.3895313892515355e+38" in rw.after
    assert "legalize-constant" in str(m.report) and "legalize-constant" in m.report.to_html()


def test_f16_minus_1e9_mask_with_a_fully_masked_row_is_not_nan():
    s = SCORES.half()
    assert where_mask(s)[1].isnan().all()
    m = hnfc.optimize(where_mask, (s,), input_ranges={0: (-4.0, 4.0)})
    y = m(s)
    assert y.isfinite().all()
    torch.testing.assert_close(y[1].float(), torch.full((8,), 1 / 8))  # uniform, as in float32
    torch.testing.assert_close(y[0].float(), where_mask(SCORES)[0], atol=1e-3, rtol=1e-3)
    (rw,) = legalized(m)
    assert "-1000000000.0" in rw.before and "f16" in rw.before and "-65504.0" in rw.after


def test_genuine_infinity_is_untouched():
    def inf_mask(s):
        return torch.softmax(s + torch.where(KEEP_BOOL, 0.0, -math.inf).to(s.dtype), -1)

    s = SCORES.half()
    m = hnfc.optimize(inf_mask, (s,), input_ranges={0: (-4.0, 4.0)})
    assert not legalized(m)
    assert m(s)[1].isnan().all()  # what the user wrote: a fully masked row with -inf is NaN


def test_constant_that_fits_is_untouched():
    s = SCORES.to(torch.bfloat16)  # -1e9 fits in bfloat16 (max 3.4e38)
    m = hnfc.optimize(where_mask, (s,), input_ranges={0: (-4.0, 4.0)})
    assert not legalized(m) and "-1000000000.0" in str(m.program)
    assert torch.equal(m(s), where_mask(s))


def test_scaling_constant_times_a_fraction_is_untouched():
    # x * 1e5 in float16 is finite for small x (torch multiplies in float32): not a mask
    def scale(x):
        return x * 1e5

    x = torch.linspace(0, 1e-3, 8).half()
    m = hnfc.optimize(scale, (x,), input_ranges={0: (0.0, 1e-3)})
    assert not legalized(m)
    assert torch.equal(m(x), scale(x))


def test_node_narrowed_by_the_precision_stage_gets_its_constant_legalized():
    def clipped(s):  # a float32 program; the precision stage runs the softmax in float16
        # (it feeds a float16 product: in float16 it saves casts, which a lone softmax would not)
        return torch.softmax(torch.where(s > -5, s, -1e9), -1) @ VALUES

    # compiled on scores in (-4, 4), where nothing is masked, so float16 holds the softmax's input;
    # later a row arrives below -5 everywhere (fully masked): -1e9 reaches the float16 cast
    opts = dict(input_ranges={0: (-4.0, 4.0)}, target=1e-2, dtypes=("f16", "f32"))
    m = hnfc.optimize(clipped, (SCORES,), **opts)
    assert any(e["dtype"] == "f16" for e in m.report.dtypes.values()), m.report.dtypes
    (rw,) = legalized(m)
    assert "f16" in rw.before and "-65504.0" in rw.after
    s = torch.stack([SCORES[0], torch.full((8,), -6.0)])
    assert clipped(s).isfinite().all()  # in float32, -1e9 is fine: the second row is uniform
    torch.testing.assert_close(m(s), clipped(s), atol=1e-2, rtol=1e-2)
    off = hnfc.optimize(clipped, (SCORES,), legalize=False, **opts)
    assert off(s)[1].isnan().all()  # the narrowed program without legalization


def test_config_flag_off_leaves_the_program_unchanged():
    s = SCORES.to(torch.bfloat16)
    on = hnfc.optimize(additive_mask, (s,), input_ranges={0: (-4.0, 4.0)})
    off = hnfc.optimize(additive_mask, (s,), input_ranges={0: (-4.0, 4.0)}, legalize=False)
    assert legalized(on) and not legalized(off)
    assert str(off.program) == str(hnfc.trace(additive_mask, (s,)))  # nothing else to rewrite here
    assert "-3.4028234663852886e+38" in str(off.program) and "-3.4028234663852886e+38" not in str(on.program)
    assert off(s)[1].isnan().all()


def test_failure_warns_and_keeps_the_unlegalized_program(monkeypatch):
    import hnfc.pipeline

    def broken(program):
        raise RuntimeError("boom")

    monkeypatch.setattr(hnfc.pipeline, "legalize", broken)
    s = SCORES.to(torch.bfloat16)
    with pytest.warns(HnfcWarning, match="legalize stage failed"):
        m = hnfc.optimize(additive_mask, (s,), input_ranges={0: (-4.0, 4.0)})
    assert "-3.4028234663852886e+38" in str(m.program) and any("legalize stage failed" in w for w in m.report.warnings)
    assert m(s)[0].isfinite().all()


def test_pure_function_shares_unchanged_nodes_and_rejects_bad_input():
    b = Builder()
    x = b.input("x", TensorType((4,), "f16"))
    c = b.const(-1e9, "f16")
    mask = b.input("m", TensorType((4,), "bool"))
    y = b.add("add", [x, c])
    z = b.add("mul", [b.add("to", [mask], {"dtype": "f16"}), c])  # integer-valued factor
    w = b.add("div", [x, c])  # a divisor is never a mask: untouched
    program = b.build([y, z, w])
    out, notes = legalize(program)
    assert [(n.op, n.old, n.new, n.dtype) for n in notes] == [("add", -1e9, -65504.0, "f16"), ("mul", -1e9, -65504.0, "f16")]
    assert str(program).count("-1000000000.0") == 1  # the input program is not changed
    assert "div(%0, %" in str(out) and "value=-1000000000.0" in str(out)  # still there, for the div
    assert legalize(out)[0] is not program and len(legalize(out)[1]) == 0
    with pytest.raises(TypeError, match="expected an hnfc Program"):
        legalize("%0 = input()")


def test_no_warning_on_programs_without_such_constants():
    with warnings.catch_warnings():
        warnings.simplefilter("error", HnfcWarning)
        m = hnfc.optimize(lambda x: torch.log(1 + x), (torch.rand(8),), input_ranges={0: (1e-8, 1e-3)})
    assert not legalized(m)
