"""Compile time (issue 13) without changed answers: the range stage's pass keeps the values the
judge would capture again (`observe(..., kept=...)`, `Capture`), a site refused before any
measurement captures nothing, a heavy program draws one sample set per distribution
(`verification_inputs`), attention without dropout is pure (a captured prefix stops before the
layers after it), and the incremental extractor chooses exactly what full sweeps choose."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import hnfc
import hnfc.pipeline as pipeline
from hnfc import analysis
from hnfc.egraph import Limits, optimize_regions, saturate
from hnfc.egraph.extract import _Extractor
from hnfc.examples.naive import block_inputs, make_block
from hnfc.foundation.config import Config
from hnfc.frontend.tracing import trace
from hnfc.ir.format import format_program
from hnfc.rewrites import library
from hnfc.rewrites.compile import compile_rules
from hnfc.runtime.lowering import lower
from hnfc.runtime.run import HEAVY_ELEMENTS, Capture, _impure, _input_dependent, flat, heavy, observe, runner, verification_inputs


def _mlp():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4), torch.nn.Softplus())
    x = torch.randn(32, 8)
    return trace(model, (x,)), x


def test_kept_values_are_the_values_a_capture_computes_and_the_ranges_do_not_change():
    p, x = _mlp()
    sets = [[x], [x * 3], [x - 2]]
    kept: list = []
    got = observe(p, sets, kept=kept)
    assert got == observe(p, sets)  # keeping changes no range
    assert len(kept) == len(sets)
    varying = _input_dependent(p)
    ids = sorted(kept[0])
    assert ids and all(i in varying for i in ids)
    run = runner(flat(p, ids))
    for store, s in zip(kept, sets):
        for i, v in zip(ids, run(s)):
            assert torch.equal(store[i], v)


def test_a_small_keep_budget_keeps_the_last_values():
    # what is missing must be a prefix of the program: capturing it runs only the early layers
    p, x = _mlp()
    sets = [[x], [x + 1]]
    everything: list = []
    observe(p, sets, kept=everything)
    some: list = []
    observe(p, sets, kept=some, keep_bytes=2 * 32 * 16 * 4)  # room for about one (32, 16) value per set
    assert 0 < len(some[0]) < len(everything[0])
    last = max(everything[0])
    assert last in some[0]
    first_kept = min(some[0])
    computed = [i for i in everything[0] if not p.nodes[i].opdef.same_values]
    assert all(i in some[0] for i in computed if i > first_kept)
    none: list = []
    observe(p, sets, kept=none, keep_bytes=0)
    assert none == []


def test_capture_runs_the_program_once_per_missing_value():
    p, x = _mlp()
    sets = [[x], [x * 2]]
    ids = [i for i in sorted(_input_dependent(p)) if p.nodes[i].op != "input"]
    cap = Capture(p, sets)
    first = cap.get(ids[:2])
    assert cap.runs == len(sets)
    again = cap.get(ids[:2])
    assert cap.runs == len(sets)  # nothing new to capture
    assert all(torch.equal(a[i], b[i]) for a, b in zip(first, again) for i in ids[:2])
    cap.get(ids[:3])
    assert cap.runs == 2 * len(sets)
    kept: list = []
    observe(p, sets, kept=kept)
    seeded = Capture(p, sets, kept)
    got = seeded.get(ids)
    assert seeded.runs == 0  # everything was kept by the observation pass
    fresh = Capture(p, sets).get(ids)
    assert all(torch.equal(a[i], b[i]) for a, b in zip(got, fresh) for i in ids)


def _report(fn, inputs, **options):
    m = hnfc.optimize(fn, inputs, cache=False, **options)
    rws = [(rw.rules, rw.values, rw.after, rw.accepted, rw.reason, rw.before_mean, rw.after_mean, rw.before_max, rw.after_max)
           for rw in m.report.rewrites + m.report.rewrites_refused]
    return format_program(m.program), rws


def test_the_shared_pass_gives_the_verdicts_a_separate_capture_gives(monkeypatch):
    fn = lambda x, y: torch.log(1 + torch.exp(x)) + torch.log(torch.softmax(y, -1)) + torch.sqrt(x * x + 1) - x  # noqa: E731
    inputs = (torch.linspace(-90.0, 90.0, 64), torch.linspace(-80.0, 80.0, 64))
    captures: list[Capture] = []

    class Spy(Capture):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            captures.append(self)

    monkeypatch.setattr(pipeline, "Capture", Spy)
    shared = _report(fn, inputs)
    assert captures and captures[-1].runs == 0  # every frontier came from the range stage's pass
    assert any(r[3] for r in shared[1])  # something was judged and accepted
    real_observe = pipeline.observe
    monkeypatch.setattr(pipeline, "observe", lambda program, sets, kept=None, **kw: real_observe(program, sets, **kw))
    separate = _report(fn, inputs)
    assert captures[-1].runs > 0
    assert shared == separate


def test_a_site_refused_before_measuring_captures_nothing(monkeypatch):
    wanted: list = []
    real_get = Capture.get

    def get(self, values):
        wanted.append(list(values))
        return real_get(self, values)

    monkeypatch.setattr(Capture, "get", get)
    fn = lambda x: torch.log(1 + torch.exp(x))  # noqa: E731
    m = hnfc.optimize(fn, (torch.linspace(-50.0, 50.0, 64),), cache=False, max_reference_ops=0, series=False)
    assert m.report.rewrites_refused and all(rw.reason == "too large for the reference" for rw in m.report.rewrites_refused)
    assert not any(wanted)
    assert not m.report.rewrites


def test_a_heavy_program_draws_one_sample_set_per_distribution():
    side = int((HEAVY_ELEMENTS / 2) ** 0.5) + 8  # input and tanh: over the budget, one row
    x = torch.rand(1, side, side)
    p = trace(lambda x: torch.tanh(x) * 2, (x,))
    assert heavy(p)
    cfg = Config()
    assert len(verification_inputs(p, [x], {}, cfg)) == 1 + 2  # value-uniform and bit-uniform
    assert len(verification_inputs(p, [x], {}, Config(samples=1))) == 1 + 1
    assert len(verification_inputs(p, [x], {}, Config(samples=0))) == 1
    ids = torch.randint(0, 1000, (1, HEAVY_ELEMENTS // 8 + 1000))  # embedding and tanh: 8 floats per id
    emb = torch.nn.Embedding(1000, 4)
    q = trace(lambda i: torch.tanh(emb(i)), (ids,))
    assert heavy(q)
    assert len(verification_inputs(q, [ids], {}, cfg)) == 1 + 1  # integers: one distribution
    params = trace(torch.nn.Linear(side, side), (torch.rand(1, side),))  # parameters cost no pass
    assert not heavy(params)
    small = torch.rand(4, 16)
    light = trace(lambda x: torch.tanh(x) * 2, (small,))
    assert not heavy(light)
    assert len(verification_inputs(light, [small], {}, cfg)) == 1 + cfg.samples
    rows = torch.rand(side * 4, side // 4)  # as large, but rows can be cut: passes stay cheap
    cut = trace(lambda x: torch.tanh(x) * 2, (rows,))
    assert not heavy(cut)
    assert len(verification_inputs(cut, [rows], {}, cfg)) == 1 + cfg.samples


def test_attention_without_dropout_is_pure_and_with_dropout_is_not():
    q = torch.randn(1, 2, 8, 4)
    p = trace(lambda q: F.scaled_dot_product_attention(torch.tanh(q), q, q), (q,))
    gm = lower(flat(p))
    (node,) = [n for n in gm.graph.nodes if "scaled_dot_product_attention" in str(n.target)]
    assert not _impure(node)
    with gm.graph.inserting_after(node):
        drop = gm.graph.call_function(node.target, node.args, {**node.kwargs, "dropout_p": 0.5})
    assert _impure(drop)
    # a value before the attention is captured without running it
    (early,) = [i for i, n in enumerate(p.nodes) if n.op == "tanh"]
    run = runner(flat(p, [early]))
    with _Record() as rec:
        run([q])
    assert not any("scaled_dot_product_attention" in c for c in rec.calls)
    assert any("tanh" in c for c in rec.calls)


class _Record(TorchDispatchMode):
    """The aten ops that run."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append(str(func))
        return func(*args, **(kwargs or {}))


def _full_sweeps(ex: _Extractor) -> dict:
    """The extractor's fixpoint by full sweeps (every candidate every sweep): the reference the
    incremental `_Extractor.run` must equal."""
    best: dict = {}
    candidates = [(c, n) for c, ns in ex.classes.items() for n in ns if ex.valid(n)]
    for _ in range(len(ex.classes) + 1):
        changed = False
        for c, n in candidates:
            if any(k not in best for k in n.children):
                continue
            members: set[int] = set()
            for k in n.children:
                members |= best[k][2]
            if c in members:
                continue
            members.add(c)
            cost = ex.cost_of(n) + sum(ex.cost_of(best[m][1]) for m in members if m != c)
            if c not in best or cost < best[c][0] - 1e-12:
                best[c] = (cost, n, frozenset(members))
                changed = True
        if not changed:
            break
    return best


def test_the_incremental_extractor_chooses_what_full_sweeps_choose():
    rules = compile_rules(library())
    model, x = make_block(), block_inputs()
    p = trace(model, x)
    ranges = analysis.ranges(p, {}, observed=observe(p, [list(x)]))
    _, regions = optimize_regions(p, ranges, rules, Limits(), 200)
    sats = [r.saturated for r in regions if not r.reused]
    for text in ("log(1 + exp(x)) - log(softmax(x, dim=-1))", "sqrt(x * x + 1) - x + exp(x) - 1"):
        from hnfc.ir import TensorType, parse_expr

        e = parse_expr(text, {"x": TensorType((16,), "f32")})
        sats.append(saturate(e, analysis.ranges(e, {0: (-40.0, 40.0)}), rules, Limits()))
    for sat in sats:
        want, got = _full_sweeps(_Extractor(sat)), _Extractor(sat).run()
        assert {c: (v[1], v[2]) for c, v in got.items()} == {c: (v[1], v[2]) for c, v in want.items()}
        assert all(abs(got[c][0] - want[c][0]) <= 1e-9 * max(1.0, abs(want[c][0])) for c in want)
