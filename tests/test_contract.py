"""The input contract (hnfc/frontend/contract.py), checked before any work: a model that cannot take its
example inputs is an error (never an optimized module or a written .pt2); the op table's type
rules refuse mixed-dtype matrix products as torch's kernels do, so `hnfc.trace` does too;
non-finite examples are refused; a model hnfc cannot trace but that runs still runs unchanged."""

from __future__ import annotations

import pytest
import torch

import hnfc
from hnfc.frontend.contract import InputError, check_examples
from hnfc.ir import Builder
from hnfc.foundation.types import TensorType


def test_trace_refuses_a_float32_linear_on_float64_input():
    m = torch.nn.Linear(16, 4)
    x = torch.randn(4, 16, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        m(x)  # torch itself refuses: the trace must not accept what cannot run
    with pytest.raises(hnfc.FrontendError, match="addmm.*mixed dtypes f32 and f64"):
        hnfc.trace(m, (x,))
    hnfc.trace(m, (x.float(),))


@pytest.mark.parametrize("op, shapes", [("mm", [(3, 4), (4, 5)]), ("matmul", [(3, 4), (4, 5)]), ("bmm", [(2, 3, 4), (2, 4, 5)]),
                                        ("addmm", [(5,), (3, 4), (4, 5)]), ("linear", [(3, 4), (5, 4), (5,)])])
def test_every_matrix_product_type_rule_refuses_mixed_float_dtypes(op, shapes):
    for odd in range(len(shapes)):  # any one operand (the bias included) in another dtype
        b = Builder()
        args = [b.add("input", (), {"name": f"a{k}"}, TensorType(s, "f64" if k == odd else "f32")) for k, s in enumerate(shapes)]
        with pytest.raises(Exception, match="mixed dtypes"):
            b.add(op, args)
    b = Builder()
    args = [b.add("input", (), {"name": f"a{k}"}, TensorType(s, "f64")) for k, s in enumerate(shapes)]
    assert b.nodes[b.add(op, args)].type.dtype == "f64"


def test_optimize_raises_for_inputs_the_model_cannot_take():
    m = torch.nn.Linear(16, 4)
    with pytest.raises(InputError, match="cannot run on these inputs.*same dtype"):
        hnfc.optimize(m, (torch.randn(4, 16, dtype=torch.float64),))
    with pytest.raises(InputError, match="cannot run on these inputs.*4x17"):
        hnfc.optimize(m, (torch.randn(4, 17),))
    with pytest.raises(InputError, match="cannot run"):
        hnfc.save(m, "never-written.pt2", (torch.randn(4, 17),))


def test_non_finite_examples_are_refused():
    with pytest.raises(InputError, match=r"example input #0 has 1 non-finite"):
        hnfc.optimize(torch.nn.Tanh(), (torch.tensor([1.0, float("nan")]),))
    with pytest.raises(InputError, match="'x' has 2 non-finite"):
        check_examples((torch.tensor([float("inf"), -float("inf")]),), names=["x"])
    check_examples((torch.arange(3), torch.randn(2)))


def test_a_model_that_runs_but_does_not_trace_still_runs_unchanged():
    def data_dependent(x):
        return x * 2 if x.sum() > 0 else x
    x = torch.ones(3)
    with pytest.warns(hnfc.HnfcWarning, match="could not trace"):
        m = hnfc.optimize(data_dependent, (x,))
    assert torch.equal(m(x), x * 2)


class _DropoutSoftplus(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.drop = torch.nn.Linear(8, 8), torch.nn.Dropout(0.5)

    def forward(self, x):
        return torch.log(1 + torch.exp(self.drop(self.lin(x)) * 30))  # a hand-written softplus to rewrite


def test_random_ops_in_train_mode_are_not_measured_whole():
    from hnfc.frontend.contract import random_ops

    m = _DropoutSoftplus()
    x = torch.randn(4, 8)
    found = random_ops(hnfc.trace(m.train(), (x,)))
    assert found and "bernoulli" in found[0]
    with pytest.warns(hnfc.HnfcWarning, match="draws random numbers"):
        opt = hnfc.optimize(m, (x,), samples=1)
    assert opt.report.rewrites and opt.report.outputs == []  # verified locally; whole outputs not compared
    assert any("not measured" in w and "model.eval()" in w for w in opt.report.warnings)
    assert random_ops(hnfc.trace(m.eval(), (x,))) == []
    evaluated = hnfc.optimize(m, (x,), samples=1).report
    assert evaluated.outputs and not any("random" in w for w in evaluated.warnings)
