"""The bounded range stage (hnfc/runtime/run.py `observe`, `row_plan`): a program larger than the
budget runs on k rows of its inputs (the rows holding the inputs' extremes included); values that
stay row by row are observed there, within their whole-size ranges; values that combine rows
(a sum or softmax over axis 0, a contraction over the rows) are left to propagation."""

from __future__ import annotations

import torch

from hnfc import analysis
from hnfc.frontend.tracing import trace
from hnfc.runtime.run import observe, row_plan


def _program(fn, *xs):
    return trace(fn, xs)


def _ids(program, op):
    return [i for i, n in enumerate(program.nodes) if n.op == op]


def test_row_local_values_are_observed_on_rows_within_their_whole_ranges():
    torch.manual_seed(0)
    w = torch.randn(16, 16)
    x = torch.randn(20000, 16)
    x[12345, 3] = 40.0  # an extreme in one row: its row must be kept
    p = _program(lambda x: torch.log_softmax(torch.tanh(x @ w) * 3, dim=-1), x)
    plan = row_plan(p, 50_000)
    assert plan is not None
    _, env, cut, k = plan
    assert cut == [0] and 1 < k < 20000
    assert set(env) >= set(range(len(p.nodes)))  # every value stays row-local here
    full = observe(p, [[x]], budget=10**12)
    rows = observe(p, [[x]], budget=50_000)
    assert set(rows) == set(full)
    for i, (lo, hi) in rows.items():
        assert full[i][0] <= lo <= hi <= full[i][1]
    (inp,) = p.inputs
    assert rows[inp] == full[inp] == (float(x.min()), 40.0)


def test_values_that_combine_rows_are_left_to_propagation():
    torch.manual_seed(1)
    x = torch.randn(8000, 8)
    p = _program(lambda x: (torch.exp(x) - torch.exp(x).sum(0, keepdim=True), torch.softmax(x, dim=0), torch.softmax(x, dim=1)), x)
    got = observe(p, [[x]], budget=20_000)
    full = observe(p, [[x]], budget=10**12)
    (sm0, sm1) = _ids(p, "softmax")
    dim0 = sm0 if p.nodes[sm0].attr["dim"] % 2 == 0 else sm1
    dim1 = sm1 if dim0 == sm0 else sm0
    (sums,) = _ids(p, "sum")
    assert dim0 not in got and sums not in got
    assert dim1 in got and full[dim1][0] <= got[dim1][0] <= got[dim1][1] <= full[dim1][1]
    for i in _ids(p, "sub"):  # depends on the sum over the rows: not observed either
        assert i not in got
    # the range analysis still bounds them (soundly propagated from observed arguments)
    rng = analysis.ranges(p, {0: (-6.0, 6.0)}, observed=got)
    assert 0.0 <= rng[dim0].lo and rng[dim0].hi <= 1.0
    assert rng[sums].lo >= 0.0


def test_small_programs_and_a_single_row_are_observed_whole():
    x = torch.randn(1, 128, 32)
    p = _program(lambda x: torch.tanh(x) * 2, x)
    assert row_plan(p, 10) is None  # one row: nothing to cut
    whole = observe(p, [[x]], budget=10)
    assert whole == observe(p, [[x]], budget=10**12)
    y = torch.randn(64, 4)
    q = _program(lambda y: torch.exp(y), y)
    assert observe(q, [[y]]) == observe(q, [[y]], budget=10**12)  # under the default budget


def test_a_contraction_over_the_rows_is_not_row_local():
    torch.manual_seed(2)
    x = torch.randn(5000, 16)
    p = _program(lambda x: (x.t() @ x, torch.relu(x)), x)
    got = observe(p, [[x]], budget=10_000)
    (relu,) = _ids(p, "relu")
    assert relu in got
    for i in _ids(p, "mm") + _ids(p, "matmul"):
        assert i not in got


def test_invariant_values_and_views_get_the_ranges_a_full_scan_gives():
    # parameters and what is computed from them alone are scanned on the first input set only,
    # views (reshape, transpose) copy their argument's range: the result equals scanning every
    # value on every set
    from hnfc.runtime.run import flat, runner

    torch.manual_seed(3)
    lin = torch.nn.Linear(6, 4)

    def f(x):
        h = lin(x).reshape(2, 5, 4).transpose(1, 2)
        return torch.exp(h).sum(-1), lin.weight.t() * 2

    x = torch.randn(10, 6)
    p = trace(f, (x,))
    sets = [[x], [x * 3], [x - 5]]
    got = observe(p, sets)
    ids = [i for i, n in enumerate(p.nodes) if n.op != "const" and n.type.dtype.startswith(("f", "bf"))]
    run = runner(flat(p, ids))
    want: dict = {}
    for s in sets:
        for i, v in zip(ids, run(s)):
            lo, hi = float(v.detach().min()), float(v.detach().max())
            want[i] = (min(lo, want[i][0]), max(hi, want[i][1])) if i in want else (lo, hi)
    assert got == want
    assert any(p.nodes[i].op == "transpose" for i in got) and any(p.nodes[i].op == "param" for i in got)


def test_each_parameter_is_scanned_once_for_observation_and_ranges(monkeypatch):
    """observe hands the parameters' [min, max] to the range analysis (`params`): one pass over
    each (an embedding table is a language model's largest value), the same ranges as two; a
    parameter holding NaN is still observed without its NaNs."""
    import hnfc.analysis.propagate as propagate
    import hnfc.runtime.run as run

    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 4)
    with torch.no_grad():
        lin.bias[1] = float("nan")
    x = torch.randn(5, 8)
    p = _program(lambda x: torch.tanh(lin(x)), x)
    plain_obs = observe(p, [[x], [x * 2]])
    plain = analysis.ranges(p, observed=plain_obs)
    scanned = []
    counting = lambda v, _f=propagate.param_interval: scanned.append(v) or _f(v)  # noqa: E731
    monkeypatch.setattr(run, "param_interval", counting)
    monkeypatch.setattr(propagate, "param_interval", counting)
    params: dict = {}
    obs = observe(p, [[x], [x * 2]], params=params)
    shared = analysis.ranges(p, observed=obs, params=params)
    assert obs == plain_obs and shared == plain
    assert len(scanned) == len(params) == 2  # weight and bias, once each
    bias = next(i for i, n in enumerate(p.nodes) if n.op == "param" and p.params[n.attr["name"]].shape == (4,))
    assert params[p.nodes[bias].attr["name"]] is None and obs[bias] == (min(lin.bias[0].item(), *lin.bias[2:].tolist()), max(lin.bias[0].item(), *lin.bias[2:].tolist()))
