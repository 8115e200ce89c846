"""Failure is local (issue 16): one spot the optimizer cannot handle keeps the user's code
there, and the rest of the program is still optimized; the report says where and why."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

import hnfc
from hnfc import ops
from hnfc.ir import TensorType
from hnfc.pipeline import HnfcWarning


def _masked_mean_and_softplus(x, mask, z):
    return x.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True), torch.log(1 + torch.exp(z))


def _inputs(dtype):
    x = torch.randn(4, 8)
    mask = torch.ones(4, 8, dtype=dtype)
    return x, mask, torch.linspace(-30, 100, 16)


def _optimize(fn, inputs, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = hnfc.optimize(fn, inputs, input_ranges={2: (-30.0, 100.0)}, **kw)
    return m, [str(w.message) for w in caught if issubclass(w.category, HnfcWarning)]


@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.int64, torch.uint8])
def test_masked_mean_with_an_integer_mask_and_softplus_elsewhere(dtype):
    """Was: `no finite program for e-classes [4]`, the whole optimizer off (the op table typed
    sum(int32 mask) as i32, torch gives i64, so no e-node matched its class)."""
    inputs = _inputs(dtype)
    m, warned = _optimize(_masked_mean_and_softplus, inputs)
    assert not warned, warned
    assert any("softplus-intro" in rw.rules for rw in m.report.rewrites)
    got, want = m(*inputs), _masked_mean_and_softplus(*inputs)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1].double(), torch.nn.functional.softplus(inputs[2].double()), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype,want", [("i32", "i64"), ("bool", "i64"), ("u8", "i64"), ("i64", "i64"), ("bf16", "bf16"), ("f32", "f32")])
def test_sum_types_as_torch_does(dtype, want):
    t = ops.OPS["sum"].infer([TensorType((4, 8), dtype)], {"dim": (-1,), "keepdim": True})
    assert t == TensorType((4, 1), want)
    x = torch.ones(4, 8, dtype={"i32": torch.int32, "bool": torch.bool, "u8": torch.uint8, "i64": torch.int64, "bf16": torch.bfloat16, "f32": torch.float32}[dtype])
    from hnfc.foundation.dtypes import from_torch

    assert from_torch(x.sum(-1, keepdim=True).dtype) == want


def test_an_op_table_gap_keeps_the_users_node(monkeypatch):
    """An e-class whose every e-node the op table mistypes (the old sum gap, simulated) keeps the
    user's node: the user's program is well typed by tracing, so its nodes are always a choice."""
    real = ops.OPS["sum"]

    def wrong(ts, at):
        t = real.infer(ts, at)
        return TensorType(t.shape, "i32") if t.dtype == "i64" else t

    monkeypatch.setitem(ops.OPS, "sum", dataclasses.replace(real, infer=wrong))
    inputs = _inputs(torch.int32)
    m, warned = _optimize(_masked_mean_and_softplus, inputs)
    assert not warned, warned
    assert any("softplus-intro" in rw.rules for rw in m.report.rewrites)
    torch.testing.assert_close(m(*inputs)[0], _masked_mean_and_softplus(*inputs)[0])


def test_a_failing_region_keeps_the_users_code_and_the_rest_is_optimized(monkeypatch):
    """The optimizer fails on the region holding the division (simulated): that region keeps the
    user's code, with a report note naming it and the reason; the softplus elsewhere is fixed."""
    import hnfc.egraph.regions as regions

    real = regions.saturate

    def failing(program, ranges, rules, limits):
        if rules and any(n.op == "div" for n in program.nodes):
            raise RuntimeError("boom in this region")
        return real(program, ranges, rules, limits)

    monkeypatch.setattr(regions, "saturate", failing)

    def fn(x, mask, z):
        sp = torch.log(1 + torch.exp(z))  # its own region (region_nodes=4): exp, add, log
        mean = x.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)
        return mean * 2, sp

    inputs = _inputs(torch.int32)
    m, warned = _optimize(fn, inputs, region_nodes=4)
    assert not [w for w in warned if "optimizer failed" in w], warned
    notes = [w for w in m.report.warnings if "keeps the user's code" in w]
    assert len(notes) == 1 and "div" in notes[0] and "boom in this region" in notes[0], m.report.warnings
    assert any("softplus-intro" in rw.rules for rw in m.report.rewrites)
    got = m(*inputs)
    torch.testing.assert_close(got[0], fn(*inputs)[0])
    assert torch.isfinite(got[1]).all()
