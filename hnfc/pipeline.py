"""`hnfc.optimize`: trace -> ranges -> saturate -> extract -> verify -> lower.

In: a module or function and example inputs (or an IR program), input ranges, rules, options.
Out: a `torch.fx.GraphModule` called like the original, with `.report` (hnfc.report.Report) and
`.program` (the optimized IR). If any stage after tracing fails, the original program is lowered
instead and a warning says why; if tracing itself fails, the original model is returned wrapped,
with the reason in its report. The optimizer never breaks the user's model.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Iterable, Mapping, Sequence

import torch

from hnfc import analysis, precision
from hnfc.config import Config
from hnfc.egraph import Limits, optimize_regions
from hnfc.egraph.regions import refuse
from hnfc.frontend import FrontendError, trace
from hnfc.ir.program import Builder, Program, live_subprogram
from hnfc.legalize import legalize
from hnfc.lowering import lower
from hnfc.ir.expr import format_expr
from hnfc.report import Report, Rewrite
from hnfc.rewrites.compile import compile_rules
from hnfc.rewrites.dsl import Rule, check_unique
from hnfc.verify import local_checks, measure_bounded, observe, verification_inputs


class HnfcWarning(UserWarning):
    """hnfc kept (part of) the original program; the message says why."""


class Unoptimized(torch.nn.Module):
    """The user's model, unchanged, with the report that says why hnfc could not optimize it."""

    def __init__(self, model, report: Report) -> None:
        super().__init__()
        self.model = model
        self.report = report

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)


def select_rules(rules, config: Config) -> tuple[Rule, ...]:
    """hnfc's library plus the user's packs (anything hnfc.rewrites.packs.resolve accepts)."""
    from hnfc.rewrites.builtin import RULES
    from hnfc.rewrites.packs import resolve

    chosen = tuple(RULES) + (resolve(rules) if rules is not None else ())
    if config.families is not None:
        wanted = set(config.families) | {"algebra"}
        chosen = tuple(r for r in chosen if (r.tags[:1] or ("",))[0] in wanted)
    return check_unique(chosen)


def _input_positions(program: Program, input_ranges: Mapping | None) -> dict[int, tuple[float, float]]:
    out: dict[int, tuple[float, float]] = {}
    names = program.input_names
    for key, rng in (input_ranges or {}).items():
        pos = names.index(key) if isinstance(key, str) and key in names else key
        if not isinstance(pos, int) or not 0 <= pos < len(names):
            raise ValueError(f"input_ranges: no input {key!r} (inputs are {list(names)} or positions 0..{len(names) - 1})")
        lo, hi = rng
        if not lo <= hi:
            raise ValueError(f"input_ranges[{key!r}] = {rng}: lower bound above upper bound")
        out[pos] = (float(lo), float(hi))
    return out


def merge_outputs(original: Program, candidate: Program, accept: Sequence[bool]) -> Program:
    """Outputs from `candidate` where accepted, from `original` elsewhere (one program)."""
    b = Builder()
    shared = [b.add("input", (), original.nodes[i].attr, original.nodes[i].type) for i in original.inputs]
    maps: list[dict[int, int]] = []
    for prog in (candidate, original):
        m: dict[int, int] = dict(zip(prog.inputs, shared))  # both programs read the same inputs
        for i, n in enumerate(prog.nodes):
            if i not in m:
                m[i] = b.add(n.op, [None if a is None else m[a] for a in n.args], n.attr, n.type)
        maps.append(m)
    outs = [maps[0][c] if ok else maps[1][o] for c, o, ok in zip(candidate.outputs, original.outputs, accept)]
    return live_subprogram(b.build(outs, original.params, original.meta))


def optimize_program(program: Program, example_inputs: Sequence[torch.Tensor], *, input_ranges=None, rules=None, config: Config | None = None) -> tuple[Program, Report]:
    """The pipeline on an IR program; returns the verified program and its report."""
    config = config or Config()
    report = Report(nodes_before=len(program.nodes))
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        report.times[stage] = report.times.get(stage, 0.0) + now - clock
        clock = now

    ranges_in = _input_positions(program, input_ranges)
    # Observed ranges stand in for propagated ones, so they must cover the declared domain,
    # extremes included: observe on the verification inputs, not on the examples alone.
    input_sets = verification_inputs(program, example_inputs, ranges_in, config)
    ranges = analysis.ranges(program, ranges_in, observed=observe(program, input_sets), margin=config.margin)
    report.predicted_bits_before = analysis.predicted_bits(program, ranges)
    lap("ranges")
    compiled = compile_rules(select_rules(rules, config))
    limits = Limits(max_nodes=config.max_nodes, max_iterations=config.max_iterations, time_limit=config.time_limit)
    stitched, regions = optimize_regions(program, ranges, compiled, limits, config.region_nodes)
    candidate = live_subprogram(stitched)
    report.egraph = _egraph_summary(regions)
    lap("egraph")
    report.times["saturate"] = sum(r.saturated.seconds for r in regions if not r.reused)
    report.times["extract"] = report.times.pop("egraph") - report.times["saturate"]
    rewrites = _rewrites(program, regions)
    if not rewrites:
        report.nodes_after = len(program.nodes)
        report.predicted_bits_after = report.predicted_bits_before
        return _legalized(precision.run_stage(program, ranges, input_sets, config, report), config, report), report  # precision stage (off unless config.target)
    if config.verify:
        # The judge, rewrite by rewrite: each on its neighbourhood, with the original's values.
        # Refusing one re-extracts its region, which may choose differently elsewhere: check again.
        refused: dict[tuple, set[int]] = {}
        refused_rewrites: list[Rewrite] = []
        for _ in range(3):
            checks = {(ch.region, ch.cls): ch for ch in local_checks(program, regions, input_sets, config)}
            found = _rewrites(program, regions, checks)
            bad = [(regions[k].key, c) for (k, c), ch in checks.items() if not ch.accepted]
            if not bad:
                break
            refused_rewrites += [rw for rw in found if not rw.accepted]
            for key, c in bad:
                refused.setdefault(key, set()).add(c)
            stitched, regions = refuse(program, regions, refused)
            candidate = live_subprogram(stitched)
        rewrites = [rw for rw in found if rw.accepted]
        report.rewrites_refused = refused_rewrites
        if not config.measure_outputs:
            pass  # every rewrite was verified locally; whole outputs were not asked for
        elif (out_checks := measure_bounded(program, candidate, input_sets, config)) is not None:
            # measure whole outputs too, on a bounded sample of rows (for the report, and as a second judge)
            report.outputs = out_checks
            if not all(c.accepted for c in out_checks):
                candidate = merge_outputs(program, candidate, [c.accepted for c in out_checks])
        else:
            report.warnings.append("outputs not measured whole (too large for the reference); every rewrite was verified locally")
        lap("verify")
    final_ranges = analysis.ranges(candidate, ranges_in, observed=observe(candidate, input_sets), margin=config.margin)
    report.predicted_bits_after = analysis.predicted_bits(candidate, final_ranges)
    report.rewrites = rewrites if candidate is not program else []
    report.nodes_after = len(candidate.nodes)
    return _legalized(precision.run_stage(candidate, final_ranges, input_sets, config, report), config, report), report  # precision stage (off unless config.target)


def _legalized(program: Program, config: Config, report: Report) -> Program:
    """The last stage, once every node's dtype is final: constants that overflow it become
    ±finfo.max (hnfc/legalize.py), listed with the rewrites. A failure keeps `program`, warned."""
    if not config.legalize:
        return program
    start = time.perf_counter()
    try:
        out, notes = legalize(program)
    except Exception as e:  # never break the user's model
        msg = f"legalization failed ({type(e).__name__}: {e}); constants unchanged"
        warnings.warn(msg, HnfcWarning, stacklevel=3)
        report.warnings.append(msg)
        return program
    report.rewrites = report.rewrites + [n.as_rewrite() for n in notes]
    report.times["legalize"] = time.perf_counter() - start
    return out


def _egraph_summary(regions) -> dict:
    fresh = [r for r in regions if not r.reused]
    reasons: dict[str, int] = {}
    for r in fresh:
        reasons[r.saturated.stop_reason] = reasons.get(r.saturated.stop_reason, 0) + 1
    stop = "saturated" if set(reasons) <= {"saturated"} else "; ".join(f"{k} in {v} region(s)" for k, v in reasons.items())
    return {
        "nodes": sum(r.saturated.nodes for r in fresh),
        "classes": sum(r.saturated.classes for r in fresh),
        "iterations": max((r.saturated.iterations for r in fresh), default=0),
        "stop_reason": stop,
        "regions": len(regions),
        "reused_regions": len(regions) - len(fresh),
    }


def _rewrites(program: Program, regions, checks: Mapping | None = None) -> list[Rewrite]:
    """The rewrites the extraction kept, in the original program's value ids, with their local
    measurements when `checks` (keyed by (region index, e-class)) has them."""
    out = []
    for k, r in enumerate(regions):
        sat, ex = r.saturated, r.extraction
        rules_at: dict[int, list[str]] = {}
        for a in sat.applied:
            if a.root in ex.new_classes and a.rule not in rules_at.setdefault(a.root, []):
                rules_at[a.root].append(a.rule)
        for c, rules in rules_at.items():
            local = sorted(v for v, cls in sat.class_of.items() if cls == c)
            values = tuple(r.value_map[v] for v in local if program.nodes[r.value_map[v]].op not in ("input", "param", "const"))
            if not values:
                continue
            after = format_expr(ex.program, ex.value_of[c], depth=3) if c in ex.value_of else "?"
            ch = (checks or {}).get((k, c))
            measured = {} if ch is None else {
                "before_mean": ch.before_mean, "before_max": ch.before_max, "after_mean": ch.after_mean,
                "after_max": ch.after_max, "accepted": ch.accepted, "reason": ch.reason,
            }
            out.append(Rewrite(tuple(rules), values, format_expr(r.program, local[-1], depth=3), after, **measured))
    return sorted(out, key=lambda rw: rw.values)


def optimize(model_or_fn, example_inputs, *, input_ranges: Mapping[Any, tuple[float, float]] | None = None, rules: Iterable[Rule] | None = None, **options):
    """Optimize a model for accuracy; returns a module called like the original, with `.report`.

    `input_ranges` maps input positions or names to (lo, hi): the values the model will see
    (sampling for verification and the sound part of the range analysis use them). `rules` adds
    rule packs to hnfc's library. Other keyword options are `hnfc.config.Config` fields.
    """
    config = Config.from_options(options)
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    start = time.perf_counter()
    try:
        program = model_or_fn if isinstance(model_or_fn, Program) else trace(model_or_fn, example_inputs)
    except FrontendError as e:
        warnings.warn(f"hnfc could not trace the model, it runs unchanged: {e}", HnfcWarning, stacklevel=2)
        return Unoptimized(model_or_fn, Report(warnings=[f"trace failed: {e}"]))
    traced = time.perf_counter() - start
    flat_inputs = list(torch.utils._pytree.tree_leaves(list(example_inputs)))
    ranges_in = _input_positions(program, input_ranges)  # the user's mistakes are errors, not fallbacks
    try:
        result, report = optimize_program(program, flat_inputs, input_ranges=ranges_in, rules=rules, config=config)
    except Exception as e:  # never break the user's model
        result, report = _fallback(program, e)
    report.times = {"trace": traced, **report.times}
    t = time.perf_counter()
    gm = lower(result)
    report.times["lower"] = time.perf_counter() - t
    gm.report = report
    gm.program = result
    return gm


def _fallback(program: Program, error: Exception) -> tuple[Program, Report]:
    msg = f"optimizer failed ({type(error).__name__}: {error}); the original program runs"
    warnings.warn(msg, HnfcWarning, stacklevel=3)
    return program, Report(nodes_before=len(program.nodes), nodes_after=len(program.nodes), warnings=[msg])
