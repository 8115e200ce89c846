"""Issue 14's model: Linear → log(1 + exp) → Linear → a hand-written softmax cross-entropy, inputs
declared in ±1000. The softplus overflows in the original, so every value after it was observed
broken (inf/NaN); the rewrite of the cross-entropy must still be found and judged, and the result
must be finite and accurate on the declared range, through hnfc.optimize and backend="hnf"."""

from __future__ import annotations

import warnings

import torch

import hnfc


class SoftplusCE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(8, 16)
        self.l2 = torch.nn.Linear(16, 5)

    def forward(self, x):
        h = torch.log(1 + torch.exp(self.l1(x)))
        z = self.l2(h)
        p = torch.exp(z) / torch.exp(z).sum(-1, keepdim=True)
        return -torch.log(p[:, 0]).mean()


def _model_and_inputs():
    torch.manual_seed(0)
    m = SoftplusCE()
    xs = [(torch.rand(4, 8) * 2 - 1) * 1000 for _ in range(4)]
    return m, xs


def _truth(m, x):
    # float64 with a stable softplus and log_softmax: the real value (the f64 naive model overflows too)
    md = SoftplusCE().double()
    md.load_state_dict(m.state_dict())
    h = torch.nn.functional.softplus(md.l1(x.double()))
    return -torch.log_softmax(md.l2(h), -1)[:, 0].mean()


def test_optimize_fixes_softplus_and_cross_entropy():
    m, xs = _model_and_inputs()
    assert not torch.isfinite(m(xs[0]))  # the naive model breaks inside its declared range
    gm = hnfc.optimize(m, (xs[0],), input_ranges={0: (-1000.0, 1000.0)})
    rules = {r for rw in gm.report.rewrites for r in rw.rules}
    assert "softplus-intro" in rules and "log-of-select" in rules
    assert gm.report.outputs[0].after_mean <= 1.0
    for x in xs:
        y, t = gm(x), _truth(m, x)
        assert torch.isfinite(y) and abs(float(y) - float(t)) <= 1e-4 * abs(float(t))


def test_backend_hnf_fixes_it_too():
    m, xs = _model_and_inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = torch.compile(m, backend="hnf", options={"inductor": False, "input_ranges": {"x": (-1000.0, 1000.0)}})
        for x in xs:
            y, t = c(x), _truth(m, x)
            assert torch.isfinite(y) and abs(float(y) - float(t)) <= 1e-4 * abs(float(t))
