"""The backend's whole-graph cache (hnfc/graph_cache.py): a second compile of the same graph in a
fresh dynamo reads the optimized program from disk (same program, same outputs, no tracing); any
change the result depends on (a parameter's value, an option, grad mode) is another key; a user
function in the graph is never keyed; `cache=False` writes nothing. Each test has its own
$HNFC_CACHE_DIR (tests/conftest.py)."""

from __future__ import annotations

import torch

from hnfc import graph_cache
from hnfc.backend import BackendOptions, hnf_backend, parse_options
from hnfc.examples.naive import example_inputs, make_model


def _compile(model, x, options=None, grad=False):
    record: list = []

    def backend(gm, ex, **kw):
        out = hnf_backend(gm, ex, **kw)
        record.append((gm, list(ex), out))
        return out

    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=True, options={"inductor": False, **(options or {})})
    with torch.set_grad_enabled(grad):
        out = compiled(x)
    torch._dynamo.reset()
    (rec,) = record
    return rec, out


def _entries():
    d = graph_cache.cache_dir()
    return sorted(str(p.relative_to(d)) for p in d.glob("*/*.pkl")) if d.exists() else []


def _full(gm, ex, opts):
    key = graph_cache.graph_key(gm, ex, opts)
    return None if key is None else key.full()


def test_second_compile_is_a_hit_with_the_same_program_and_outputs(monkeypatch):
    model, (x,) = make_model(), example_inputs()
    (_, _, first), out1 = _compile(model, x)
    assert not first.cache_hit and len(_entries()) == 1
    assert first.report.rewrites  # the naive head is rewritten: the entry holds a real result

    import hnfc.frontend.tracing as tracing

    def no_trace(*a, **k):
        raise AssertionError("a hit must not trace")

    monkeypatch.setattr(tracing, "trace_graph_module", no_trace)
    (_, _, second), out2 = _compile(model, x)
    assert second.cache_hit
    assert set(first.report.times) >= {"ranges", "saturate"} and list(second.report.times) == ["graph_cache"]  # what this compile paid
    assert str(second.program) == str(first.program)
    assert [r.rules for r in second.report.rewrites] == [r.rules for r in first.report.rewrites]
    torch.testing.assert_close(out2, out1, rtol=0, atol=0)
    assert torch.isfinite(out2).all()


def test_the_key_covers_parameters_options_and_grad_mode():
    model, (x,) = make_model(), example_inputs()
    (gm, ex, _), _ = _compile(model, x)
    opts = parse_options({"inductor": False})
    key = _full(gm, ex, opts)
    assert key is not None and key == _full(gm, ex, opts)  # deterministic
    with torch.no_grad():  # as the compile above ran, and stored it
        assert graph_cache.graph_key(gm, ex, opts).maybe_stored()
    assert not graph_cache.graph_key(gm, ex, opts).maybe_stored()  # grad mode is part of the structure
    # one element of one parameter (example inputs hold the lifted parameters): same structure,
    # another key
    changed = [t.detach().clone() for t in ex]
    k = max(range(len(changed)), key=lambda i: changed[i].numel())
    changed[k].view(-1)[-1] += 1.0
    changed = [c.requires_grad_(t.requires_grad) for c, t in zip(changed, ex)]
    assert graph_cache.graph_key(gm, changed, opts).structure == graph_cache.graph_key(gm, ex, opts).structure
    assert _full(gm, changed, opts) != key
    assert _full(gm, ex, parse_options({"inductor": False, "samples": 2})) != key
    assert _full(gm, ex, parse_options({"inductor": False, "input_ranges": {"x": (-1.0, 1.0)}})) != key
    assert _full(gm, ex, parse_options({})) != key  # inductor on
    assert not graph_cache.graph_key(gm, ex, parse_options({"samples": 3})).maybe_stored()  # a sure miss, no byte hashed
    with torch.no_grad():
        assert _full(gm, ex, opts) != key  # the test runs with grad enabled


def _user_function(x):
    return x * 2


torch.fx.wrap("_user_function")


class _UsesFunction(torch.nn.Module):
    def forward(self, x):
        return _user_function(x) + 1


def test_a_graph_calling_a_user_function_is_not_keyed():
    gm = torch.fx.symbolic_trace(_UsesFunction())
    assert graph_cache.graph_key(gm, [torch.randn(3)], BackendOptions(config=parse_options({}).config)) is None
    plain = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh()))
    assert graph_cache.graph_key(plain, [torch.randn(2, 3)], BackendOptions(config=parse_options({}).config)) is not None


def test_cache_off_writes_nothing_and_a_corrupt_entry_is_a_miss():
    model, (x,) = make_model(), example_inputs()
    (_, _, first), _ = _compile(model, x, {"cache": False})
    assert not first.cache_hit and _entries() == []
    (_, _, stored), out = _compile(model, x)
    (name,) = _entries()
    (graph_cache.cache_dir() / name).write_bytes(b"not a pickle")
    (_, _, again), out2 = _compile(model, x)
    assert not again.cache_hit  # read as a miss, recomputed, stored again
    torch.testing.assert_close(out2, out, rtol=0, atol=0)
    (_, _, third), _ = _compile(model, x)
    assert third.cache_hit
