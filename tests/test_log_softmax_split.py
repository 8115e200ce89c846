"""log_softmax at a row's dominant entry (issue 14): torch returns (x - m) - log(fl(1 + s)), 0 where
s < u; the rule log-softmax-split-max keeps the max's term apart (an `eq` count for ties). Golden
extractions, the rewritten program's meaning with ties, entropy through hnfc.optimize, and the
rule left alone where it adds kernels for a few hundredths of a bit (moderate logits)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

import hnfc
from hnfc.foundation.types import TensorType
from hnfc.runtime.lowering import lower
from tests.test_egraph import assert_rewrites, optimize_expr

M = "amax(x, dim=(-1,), keepdim=True)"
EQ = f"eq(x, {M})"
REST = f"sum(where({EQ}, 0.0, exp(clamp(x - {M}, max=0))), dim=(-1,), keepdim=True)"
COUNT = f"sum({EQ}, dim=(-1,), keepdim=True)"
# log_softmax(x) = (x - m) - log(C + S): log1p(S) for one max, log(C + S) with ties (C >= 2)
SPLIT = f"clamp(x - {M}, max=0) - where(lt({COUNT}, other=1.5), log1p({REST}), log(clamp({COUNT}, min=2) + {REST}))"


def test_wide_logits_extract_the_split_form():
    # f32 rows of 16 in +-30: 15 e^-60 < u, where log_softmax's dominant entry is 0
    assert_rewrites("log(softmax(x, dim=-1))", SPLIT, x=(-30.0, 30.0))
    assert_rewrites("x - logsumexp(x, dim=(-1,), keepdim=True)", SPLIT, x=(-100.0, 100.0))


def test_narrow_logits_keep_the_kernel():
    # in +-1 the sum is >= 1 + 15/e^2: nothing rounds away, 14 more nodes buy nothing
    assert_rewrites("log_softmax(x, dim=-1)", "log_softmax(x, dim=-1)", x=(-1.0, 1.0))


def _split_program():
    _, _, ex = optimize_expr("log_softmax(x, dim=-1)", {"x": (-30.0, 30.0)})
    assert "eq" in [n.op for n in ex.program.nodes]
    return ex.program


def test_split_form_is_log_softmax_with_ties_and_a_dominant_entry():
    program = _split_program()
    run = lower(program)
    rows = torch.tensor(
        [
            [3.0, 3.0] + [-1.0] * 14,  # a tie at the max: log(2 + s)
            [5.0] * 16,  # every entry the max: -log 16
            [0.0] + [-20.0] * 15,  # one dominant entry, 1 + s rounds to 1 in f32
            [float(i) for i in range(16)],
        ]
    )
    got = torch.stack([run(r)[0] for r in rows]).double()
    want = torch.log_softmax(rows.double(), -1)
    # within a few f32 ulps of the float64 value everywhere, the dominant entry included
    assert torch.all(torch.abs(got - want) <= 4 * 2.0**-24 * torch.abs(want).clamp_min(2.0**-126)), (got - want)
    assert torch.log_softmax(rows[2], -1)[0] == 0.0 and got[2, 0] < 0  # torch loses it; the split does not
    ref = hnfc.reference(program, [rows[0]]).outputs[0]  # the exact meaning agrees (eq decides ties)
    np.testing.assert_allclose(ref, want[0].numpy(), rtol=1e-12)


def _entropy(x):
    p = torch.softmax(x, -1)
    return -(p * torch.log(p)).sum(-1)


def test_entropy_through_optimize_ends_within_a_bit():
    types = [TensorType((4, 16), "f32")]
    (g,) = hnfc.sample_inputs(types, ((-100.0, 100.0),), 1, mode="value", seed=100)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hnfc.optimize(_entropy, (g,), input_ranges={0: (-100.0, 100.0)})
    assert "log-softmax-split-max" in {r for rw in m.report.rewrites for r in rw.rules}
    program = hnfc.trace(_entropy, (g,))
    after, before = [], []
    for k, mode in enumerate(("value", "bits")):
        for (x,) in hnfc.sample_inputs(types, ((-100.0, 100.0),), 2, mode=mode, seed=7 + k):
            truth = hnfc.reference(program, [x], return_mp=True).mp_outputs[0]
            after.append(hnfc.bits_error(m(x), truth))
            before.append(hnfc.bits_error(_entropy(x), truth))
    assert np.concatenate(before).mean() > 5.0  # the naive entropy is broken on this domain
    assert np.concatenate(after).mean() <= 1.0


def test_moderate_cross_entropy_keeps_log_softmax():
    # logits in +-3: the split gains a few hundredths of a bit at the site for 14 more kernels
    target = torch.tensor([1, 3, 0, 2] * 4)

    def ce(x):
        return torch.nn.functional.cross_entropy(x, target)

    x = torch.rand(16, 10, generator=torch.Generator().manual_seed(0)) * 6 - 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hnfc.optimize(ce, (x,), input_ranges={0: (-3.0, 3.0)})
    assert "eq" not in [n.op for n in m.program.nodes]
    torch.testing.assert_close(m(x), ce(x))
