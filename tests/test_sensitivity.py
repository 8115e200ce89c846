"""Measured sensitivity and the allocation (hnfc/precision/sensitivity.py): the adjoint estimate
against measurement, the budget, hazards from ranges, float64 islands, and `select` meeting the
target on inputs the estimate never saw."""

from __future__ import annotations

import math

import numpy as np
import torch

import hnfc
from hnfc import analysis, precision
from hnfc.foundation.config import Config
from hnfc.ir import casts
from hnfc.precision import sensitivity as sn
from hnfc.runtime import observe, verification_inputs
from tests.corpus import build


def _setup(fn, inputs, ranges=None, samples=2, **opts):
    program = hnfc.trace(fn, inputs)
    cfg = Config.from_options(samples=samples, **opts)
    sets = verification_inputs(program, list(inputs), ranges or {}, cfg)
    rng = analysis.ranges(program, ranges or {}, observed=observe(program, sets), margin=cfg.margin)
    return program, cfg, sets, rng


def _chain(x, w1, w2):
    h = torch.tanh(x @ w1)
    return torch.softmax(h @ w2, -1) * 3.0 + h.sum(-1, keepdim=True)


def _chain_inputs():
    g = torch.Generator().manual_seed(3)
    return torch.randn(16, 64, generator=g), torch.randn(64, 64, generator=g) / 8, torch.randn(64, 64, generator=g) / 4


def test_probe_program_runs_in_float64_and_matches_the_program():
    inputs = _chain_inputs()
    p = hnfc.trace(_chain, inputs)
    probe, sites = sn.probe_program(p)
    assert sites and all(s.arg is None or s.value == p.nodes[s.node].args[s.arg] for s in sites)
    assert all(probe.nodes[o].type.dtype == "f64" for o in probe.outputs)
    zeros = [torch.zeros(tuple(probe.nodes[i].type.shape), dtype=torch.float64) for i in probe.inputs[len(p.inputs):]]
    (y,) = hnfc.lower(probe)(*[x.double() for x in inputs], *zeros)
    assert torch.allclose(y, _chain(*[x.double() for x in inputs]), rtol=1e-12, atol=1e-12)


def test_estimate_agrees_with_measurement_node_by_node():
    """Lower one compute node at a time to bf16: the first-order estimate of the output error
    should be within a factor 4 of the measured one for most nodes (rounding errors are random:
    an estimate of their spread, not a bound)."""
    inputs = _chain_inputs()
    p, _, sets, _ = _setup(_chain, inputs, samples=2)
    sens = sn.sensitivities(p, sets, probes=8)
    truth = precision.truths(p, sets)
    compute = [i for i in range(len(p.nodes)) if casts.is_compute(p, i)]
    own = {i: p.nodes[i].type.dtype for i in compute}
    close = total = 0
    for i in compute:
        pred = float(sn.predicted_errors(p, sens, {**own, i: "bf16"})[0])
        base = float(sn.predicted_errors(p, sens, own)[0])
        mixed, _ = casts.with_dtypes(p, {i: "bf16"})
        got = max(precision.measure(mixed, sets, truth))
        if got < 1e-6 and pred < 1e-6:
            continue  # (both negligible: nothing to compare)
        total += 1
        close += abs(math.log2(max(pred, base) / got)) <= 2.0
    assert total >= 5 and close / total >= 0.7, (close, total)


def test_allocation_stays_within_its_budget_and_lowers_products_first():
    inputs = _chain_inputs()
    p, cfg, sets, rng = _setup(_chain, inputs, target=1e-2, dtypes=["bf16", "f32"])
    sens = sn.sensitivities(p, sets)
    flops = {i: precision.node_flops(p, i) for i in range(len(p.nodes)) if casts.is_compute(p, i)}
    fits = sn.fits_check(p, rng, 1e-2)
    for budget in (3e-3, 1e-2, 3e-2):
        for aware in (True, False):
            alloc = sn.allocate(p, sens, ["bf16", "f32"], budget, fits, flops, cast_aware=aware)
            assert max(alloc.predicted) <= budget * (1 + 1e-9)
    tight = sn.allocate(p, sens, ["bf16", "f32"], 1e-9, fits, flops)
    assert all(d == "f32" for d in tight.dtypes.values())  # nothing fits a budget below f32's own error...
    loose = sn.allocate(p, sens, ["bf16", "f32"], 0.5, fits, flops, cast_aware=False)
    assert all(d == "bf16" for d in loose.dtypes.values())  # ...and everything fits a loose one
    mid = sn.allocate(p, sens, ["bf16", "f32"], 3e-3, fits, flops)
    mm = [i for i in mid.dtypes if p.nodes[i].op in sn.PRODUCTS]
    low_pointwise = [i for i, d in mid.dtypes.items() if d == "bf16" and i not in mm]
    if low_pointwise:  # a pointwise node went low only when every product affordable did too
        assert all(mid.dtypes[i] == "bf16" or not (sn.predicted_errors(p, sens, {**mid.dtypes, i: "bf16"}) <= 3e-3).all() for i in mm)


def test_range_hazard_refuses_fp16_in_the_allocation():
    def f(x):
        return torch.exp(x) * 0.001

    x = torch.linspace(0.0, 12.0, 32)  # exp reaches 1.6e5 > 65504: fp16 overflows, bf16 holds it
    p, cfg, sets, rng = _setup(f, (x,), {0: (0.0, 12.0)})
    sens = sn.sensitivities(p, sets)
    flops = {i: precision.node_flops(p, i) for i in range(len(p.nodes)) if casts.is_compute(p, i)}
    exp_node = next(i for i in flops if p.nodes[i].op == "exp")
    fits = sn.fits_check(p, rng, 0.05)
    assert not fits(exp_node, "f16") and fits(exp_node, "bf16")
    # (cast kernels not counted: a lone exp between float32 values would not pay for its casts)
    alloc = sn.allocate(p, sens, ["f16", "f32"], 0.05, fits, flops, cast_aware=False)
    assert alloc.dtypes[exp_node] == "f32"
    alloc = sn.allocate(p, sens, ["bf16", "f16", "f32"], 0.05, fits, flops, cast_aware=False)
    assert alloc.dtypes[exp_node] == "bf16"


def _sandwich(x, w1, w2):
    h = x @ w1
    return (torch.tanh(h) * h) @ w2


def test_the_other_ops_stage_counts_cast_kernels():
    """With room in the budget, a pointwise chain between two bf16 products goes bf16 whole (each
    step moves or removes a cast), while a lone pointwise op between float32 values stays: in
    bf16 it would cost a cast on each side and save nothing. Not counting casts lowers both."""
    g = torch.Generator().manual_seed(4)
    inputs = (torch.randn(8, 32, generator=g), torch.randn(32, 32, generator=g) / 6, torch.randn(32, 32, generator=g) / 6)
    p, cfg, sets, rng = _setup(_sandwich, inputs, dtypes=["bf16", "f32"])
    sens = sn.sensitivities(p, sets)
    flops = {i: precision.node_flops(p, i) for i in range(len(p.nodes)) if casts.is_compute(p, i)}
    fits = sn.fits_check(p, rng, 0.5)
    alloc = sn.allocate(p, sens, ["bf16", "f32"], 0.5, fits, flops)
    assert all(d == "bf16" for d in alloc.dtypes.values()), alloc.dtypes
    mixed, _ = casts.with_dtypes(p, alloc.dtypes)
    assert sum(1 for n in mixed.nodes if n.op == "to") == 4  # x, w1, w2 in; the output back

    def lone(x):
        return torch.exp(x) * 0.001

    x = torch.linspace(0.0, 3.0, 64)
    p, cfg, sets, rng = _setup(lone, (x,), {0: (0.0, 3.0)})
    sens = sn.sensitivities(p, sets)
    flops = {i: precision.node_flops(p, i) for i in range(len(p.nodes)) if casts.is_compute(p, i)}
    fits = sn.fits_check(p, rng, 0.5)
    aware = sn.allocate(p, sens, ["bf16", "f32"], 0.5, fits, flops)
    blind = sn.allocate(p, sens, ["bf16", "f32"], 0.5, fits, flops, cast_aware=False)
    assert all(d == "f32" for d in aware.dtypes.values()), aware.dtypes
    assert all(d == "bf16" for d in blind.dtypes.values()), blind.dtypes
    e = next(i for i in flops if p.nodes[i].op == "exp")
    assert sn.cast_cost(p, p.users(), aware.dtypes, e, "bf16") > 0


def test_site_values_of_parameters_are_converted_once():
    lin = torch.nn.Linear(6, 5)
    g = torch.Generator().manual_seed(2)
    x1, x2 = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    p = hnfc.trace(lin, (x1,))
    _, sites = sn.probe_program(p)
    values = sn._SiteValues(p, sites)
    v1, m1 = values([x1])
    v2, m2 = values([x2])
    fixed = [k for k, s in enumerate(sites) if values.fixed[s.value]]
    assert fixed and len(fixed) < len(sites)  # the weight and bias as read; not x or the result
    assert all(v1[k] is v2[k] for k in fixed)
    assert all(not torch.equal(v1[k], v2[k]) for k in range(len(sites)) if k not in fixed)
    assert all(v.dtype == torch.float64 for v in v1) and not any(m1) and not any(m2)
    masked, _ = values([torch.full((3, 6), -math.inf)])
    assert any(not bool(torch.isfinite(v).all()) for v in masked)


def test_a_site_that_needs_more_than_float32_gets_float64():
    def centre(x):
        return x - x.mean(-1, keepdim=True)

    g = torch.Generator().manual_seed(5)
    x = 3e5 + torch.randn(4, 256, generator=g)  # x − mean loses ~19 bits to cancellation in float32
    ranges = {0: (3e5 - 4.0, 3e5 + 4.0)}
    gm = hnfc.optimize(centre, (x,), input_ranges=ranges, target=1e-5, dtypes=["bf16", "f32", "f64"], samples=2)
    r = gm.report
    assert r.precision["met"], r
    assert any(e["dtype"] == "f64" for e in r.dtypes.values()), r.dtypes
    program = hnfc.trace(centre, (x,))
    fresh = verification_inputs(program, [x], ranges, Config(samples=2, seed=99))[1:]
    truth = precision.truths(program, fresh)
    for s, t in zip(fresh, truth):
        assert precision.normwise_error(gm(*s), t[0]) <= 1e-5
        assert precision.normwise_error(centre(*s), t[0]) > 1e-5  # float32 alone cannot


def test_select_meets_the_target_on_inputs_the_estimate_never_saw():
    model, inputs = build("mlp")
    gm = hnfc.optimize(model, inputs, target=1e-2, dtypes=["bf16", "f32"], samples=4)
    r = gm.report
    assert r.precision["met"] and r.low_precision_share > 0.5, r
    assert len(r.precision["predicted"]) == len(r.precision["errors"])
    program = hnfc.trace(model, inputs)
    fresh = verification_inputs(program, list(inputs), {}, Config(samples=2, seed=77))[1:]
    truth = precision.truths(program, fresh)
    for s, t in zip(fresh, truth):
        with torch.no_grad():
            assert precision.normwise_error(gm(*s), t[0]) <= 1e-2


def test_float64_stands_in_for_the_reference_beyond_its_budget():
    inputs = _chain_inputs()
    p = hnfc.trace(_chain, inputs)
    exact, how = precision.reference_truths(p, [list(inputs)], 10**12)
    assert how == "mpmath"
    approx, how = precision.reference_truths(p, [list(inputs)], 1)
    assert how == "float64"
    assert np.allclose(exact[0][0], approx[0][0], rtol=1e-12, atol=1e-12)


def test_fused_bf16_kernels_round_once_on_cpu():
    """The model's assumption for softmax, norms and reductions in bf16: torch's CPU kernel
    accumulates in float32 and rounds the result once, so its error is the input's and the
    result's rounding (within one bf16 ulp of float32-then-round; a float32-free kernel would be
    off by many ulps on a 768-wide row)."""
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(64, 768, generator=g) * 3 + 10).bfloat16()
    kernels = {
        "softmax": lambda z: torch.softmax(z, -1),
        "layer_norm": lambda z: torch.nn.functional.layer_norm(z, (768,)),
        "rms_norm": lambda z: torch.nn.functional.rms_norm(z, (768,)),
        "sum": lambda z: z.sum(-1),
        "mean": lambda z: z.mean(-1),
        "var": lambda z: z.var(-1),
    }
    for name, f in kernels.items():
        low = f(x).float()
        once = f(x.float()).bfloat16().float()
        ulp = once.abs().clamp_min(torch.finfo(torch.float32).tiny) * 2.0**-7
        assert ((low - once).abs() <= ulp).all(), name
