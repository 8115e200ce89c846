"""Verdicts of local verification are kept (hnfc/verify/cache.py): identical sites are judged
once in a run, and a second run of the same model reads them from disk instead of measuring."""

from __future__ import annotations

import torch

import hnfc
import hnfc.verify.judge as judge
from hnfc.examples.stability import case


def _counting(monkeypatch):
    calls = []
    real = judge._site_bits

    def counted(progs, sets, defined_only, truth_from=0):
        if not defined_only:  # once per site judged (its domain points are a second call)
            calls.append(str(progs[1]))
        return real(progs, sets, defined_only, truth_from)

    monkeypatch.setattr(judge, "_site_bits", counted)
    return calls


def _log1p_case():
    c = case("log-1-plus-x")
    return c.fn, (c.example(),), {0: (c.lo, c.hi)}


def test_a_second_run_reads_its_verdicts_from_disk(monkeypatch, tmp_path):
    fn, x, ranges = _log1p_case()
    calls = _counting(monkeypatch)
    first = hnfc.optimize(fn, x, input_ranges=ranges, measure_outputs=False)
    assert first.report.rewrites and len(calls) == 1
    assert len(list((tmp_path / "hnfc-cache").glob("*.json"))) == 1
    second = hnfc.optimize(fn, x, input_ranges=ranges, measure_outputs=False)
    assert len(calls) == 1  # nothing measured again
    assert second.report.rewrites == first.report.rewrites  # the same verdict, numbers included
    assert str(second.program) == str(first.program)


def test_cache_off_measures_again_and_writes_nothing(monkeypatch, tmp_path):
    fn, x, ranges = _log1p_case()
    calls = _counting(monkeypatch)
    hnfc.optimize(fn, x, input_ranges=ranges, measure_outputs=False, cache=False)
    hnfc.optimize(fn, x, input_ranges=ranges, measure_outputs=False, cache=False)
    assert len(calls) == 2
    assert not (tmp_path / "hnfc-cache").exists()


def test_a_changed_site_is_judged_again(monkeypatch):
    fn, x, ranges = _log1p_case()
    calls = _counting(monkeypatch)
    hnfc.optimize(fn, x, input_ranges=ranges, measure_outputs=False)
    hnfc.optimize(fn, x, input_ranges={0: (1e-3, 1.0)}, measure_outputs=False)  # other ranges: another key
    assert len(calls) == 2


def test_identical_regions_are_verified_once(monkeypatch):
    def heads(*xs):  # four heads of one structure on inputs of one range: four identical regions
        return tuple(torch.log(1 + torch.exp(x * 2.0)) for x in xs)  # softplus written by hand

    calls = _counting(monkeypatch)
    xs = tuple(torch.linspace(-40, 40, 128).reshape(8, 16) for _ in range(4))
    m = hnfc.optimize(heads, xs, input_ranges={k: (-40.0, 40.0) for k in range(4)}, region_nodes=4, measure_outputs=False)
    assert m.report.egraph["regions"] == 4 and m.report.egraph["reused_regions"] == 3  # one optimization, shared
    fixed = [r for r in m.report.rewrites if "softplus-intro" in r.rules]
    assert len(fixed) == 4 and all(r.accepted and r.after_mean < r.before_mean for r in fixed)  # every head fixed...
    assert len(calls) == 1  # ...and the shared site measured once
