"""`hnfc.optimize`: trace, then the stages of `STAGES`, then lower.

In: a module or function and example inputs (or an IR program), input ranges, rules, options.
Out: a `torch.fx.GraphModule` called like the original, with `.report` (hnfc.report.records.Report) and
`.program` (the optimized IR). If any stage after tracing fails, the original program is lowered
instead and a warning says why; if tracing itself fails, the original model is returned wrapped,
with the reason in its report. The optimizer never breaks the user's model.

`optimize_program` is the pass list: each stage is a function of the run's state, timed by one
wrapper; the stages return their results and records, and only this module writes the `Report`.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from hnfc import analysis, precision
from hnfc.egraph import Limits, optimize_regions
from hnfc.egraph.changes import Change, changes
from hnfc.egraph.extract import node_key
from hnfc.egraph.regions import refuse
from hnfc.foundation.config import Config
from hnfc.frontend.contract import InputError, cannot_run, check_examples, random_warning
from hnfc.frontend.tracing import FrontendError, trace
from hnfc.ir.program import Builder, Program, live_subprogram, on_device
from hnfc.precision.assignment import runs_on
from hnfc.precision.legalize import legalize
from hnfc.report.records import Report, Rewrite, legalization_rewrite
from hnfc.rewrites.compile import compile_rules
from hnfc.rewrites.dsl import Rule, check_unique
from hnfc.rewrites.gate import checked, trust_note
from hnfc.runtime.lowering import lower
from hnfc.runtime.run import Capture, observe, verification_inputs
from hnfc.verify.cache import Verdicts
from hnfc.verify import regimes
from hnfc.verify.judge import LocalCheck, local_checks, measure_bounded


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
    """hnfc's library plus the user's packs (anything hnfc.rewrites.packs.resolve accepts), each
    user rule checked for soundness unless `config.trust_rules`; `config.families` (the rules'
    first tags) selects among them, and a family no rule has is an error that lists the known ones."""
    from hnfc.rewrites.builtin import RULES

    chosen = tuple(RULES) + (checked(rules, trust=config.trust_rules) if rules is not None else ())
    if config.families is not None:
        known = {r.tags[0] for r in chosen if r.tags}
        unknown = [f for f in config.families if f not in known]
        if unknown:
            raise ValueError(f"unknown rule famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; known families: {', '.join(sorted(known))}")
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


# ---------------------------------------------------------------------------------------------
# The stages


@dataclass
class Run:
    """One run of the pipeline: its inputs, what each stage produced so far, and the report."""

    original: Program
    example_inputs: Sequence[torch.Tensor]
    ranges_in: dict[int, tuple[float, float]]
    rules: Any
    config: Config
    report: Report
    program: Program | None = None  # the current program (each stage may replace it)
    input_sets: list = field(default_factory=list)
    ranges: list = field(default_factory=list)
    ranged: Program | None = None  # the program `ranges` describe
    regions: list = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    kept: list = field(default_factory=list)  # the original's values from the range stage's pass, per input set (`observe`), for the judge


def _ranges(run: Run) -> None:
    # Observed ranges stand in for propagated ones, so they must cover the declared domain,
    # extremes included: observe on the verification inputs, not on the examples alone.
    run.input_sets = verification_inputs(run.original, run.example_inputs, run.ranges_in, run.config)
    _set_ranges(run, run.original, keep=run.config.verify)
    before = analysis.predict(run.original, run.ranges)
    run.report.predicted_bits_before, run.report.predicted_before = before.capped, before.as_dict()


def _set_ranges(run: Run, program: Program, keep: bool = False) -> None:
    """`keep`: the observation pass also keeps values the judge would otherwise run the
    program again to capture (`run.kept`, released by the verify stage)."""
    if run.ranged is not program:
        run.kept = []
        params: dict = {}  # one pass over each parameter for both
        observed = observe(program, run.input_sets, kept=run.kept if keep else None, params=params)
        run.ranges = analysis.ranges(program, run.ranges_in, observed=observed, margin=run.config.margin, params=params)
        run.ranged = program


def _egraph(run: Run) -> None:
    c = run.config
    compiled = compile_rules(select_rules(run.rules, c))
    if c.trust_rules and (note := trust_note(run.rules)):
        run.report.warnings.append(note)
    limits = Limits(max_nodes=c.max_nodes, max_iterations=c.max_iterations, time_limit=c.time_limit)
    stitched, run.regions = optimize_regions(run.original, run.ranges, compiled, limits, c.region_nodes)
    run.program = live_subprogram(stitched)
    run.changes = changes(run.original, run.regions)
    run.report.egraph = _egraph_summary(run.regions)
    run.report.warnings += [r.note for r in run.regions if r.note and not r.reused]  # failure is local: hnfc/egraph/regions.py
    run.report.times["saturate"] = sum(r.saturated.seconds for r in run.regions if not r.reused)


REFUSAL_ROUNDS = 3  # re-extractions after refusals; then a region still refusing keeps the user's code


def _verify(run: Run) -> None:
    """The judge, rewrite by rewrite: each on its neighbourhood, with the original's values.
    Refusing one bans its e-node and re-extracts its region: that class takes its next best
    form (the user's, or another rewrite), and other classes may change: check again. No
    re-extraction reaches the user unjudged; after REFUSAL_ROUNDS a refusing region keeps the
    user's code."""
    kept, run.kept = run.kept, []  # held no longer than this stage
    if not _rewrites(run.changes):
        run.program = run.original
        return
    if not run.config.verify:
        run.report.rewrites = _rewrites(run.changes)
        return
    refused: dict[tuple, set[int]] = {}  # classes that keep the user's node (the last round)
    banned: dict[tuple, set[tuple]] = {}  # refused e-nodes: their classes try their next best
    refused_rewrites: list[Rewrite] = []
    verdicts = Verdicts(run.config)
    # frontier values captured once for every round, starting from those the range stage kept
    capture = Capture(run.original, run.input_sets, kept or None)
    for last in [False] * REFUSAL_ROUNDS + [True]:
        checks = _judge(run, verdicts, capture)
        found = _rewrites(run.changes, checks)
        bad = [(run.regions[k].key, c) for (k, c), ch in checks.items() if not ch.accepted]
        if not bad:
            break
        refused_rewrites += [rw for rw in found if not rw.accepted]
        for (k, c), ch in checks.items():
            if not ch.accepted:
                banned.setdefault(run.regions[k].key, set()).add(node_key(run.regions[k].extraction.chosen[c]))
        if last:  # still refusing after every round: those regions keep the user's code, which needs no judge
            for r in run.regions:
                if r.key in banned:
                    refused[r.key] = set(r.saturated.class_of.values())
        stitched, run.regions = refuse(run.original, run.regions, refused, banned)
        run.program = live_subprogram(stitched)
        run.changes = changes(run.original, run.regions)
        if last:  # what is left was judged (and accepted) in this round
            found = _rewrites(run.changes, checks)
    run.report.rewrites = [rw for rw in found if rw.accepted]
    run.report.rewrites_refused = refused_rewrites
    if not run.report.rewrites:  # every rewrite refused: the user's program, not a re-extraction equal to it
        run.program = run.original
        return
    if not run.config.measure_outputs:
        return  # every rewrite was verified locally; whole outputs were not asked for
    if note := random_warning(run.original):  # train-mode dropout: torch and the reference draw different masks
        warnings.warn(note, HnfcWarning, stacklevel=4)
        run.report.warnings.append(note)
        return
    # whole outputs too, on a bounded sample of rows (for the report, and as a second judge)
    outputs = measure_bounded(run.original, run.program, run.input_sets, run.config)
    if outputs is None:
        run.report.warnings.append("outputs not measured whole (too large for the reference); every rewrite was verified locally")
        return
    run.report.outputs = outputs
    if not all(o.accepted for o in run.report.outputs):
        run.program = merge_outputs(run.original, run.program, [o.accepted for o in run.report.outputs])


def _judge(run: Run, verdicts: Verdicts, capture: Capture | None = None) -> dict[tuple, LocalCheck]:
    """Every change's local check, keyed by (region, class): sites judged before (an identical
    region, an earlier round, an earlier run) from `verdicts`, each other distinct site once."""
    checks: dict[tuple, LocalCheck] = {}
    todo: dict[str, list[Change]] = {}
    for ch in run.changes:
        known = None if ch.skipped else verdicts.get(ch)
        if known is not None:
            checks[(ch.region, ch.cls)] = known
        else:
            todo.setdefault(f"{ch.region}/{ch.cls}" if ch.skipped else verdicts.key(ch), []).append(ch)
    first = [same[0] for same in todo.values()]
    for same, check in zip(todo.values(), local_checks(run.original, first, run.input_sets, run.config, run.ranges, capture)):
        if not same[0].skipped:
            verdicts.put(same[0], check)
        for ch in same:
            checks[(ch.region, ch.cls)] = dataclasses.replace(check, region=ch.region, key=ch.key, cls=ch.cls, values=ch.values)
    return checks


def _series(run: Run) -> bool:
    """Series expansions and regimes where the verified program still loses bits
    (hnfc/verify/regimes.py), then the whole outputs as a second judge: a replacement that makes
    any output worse is dropped (the stage's failure keeps its input program too)."""
    c = run.config
    if not c.series:
        return False
    _set_ranges(run, run.program)  # the explain stage reuses them when nothing changes here
    spans = {i: (iv.lo, iv.hi) for i, iv in enumerate(run.ranges) if hasattr(iv, "lo")}
    menu = precision.menu(c, runs_on(run.program))  # a wider candidate only in a dtype the device has
    new, found, notes = regimes.improve(run.program, run.input_sets, time_limit=c.series_time_limit, seed=c.seed, spans=spans, menu=menu)
    run.report.warnings += notes
    if not found:
        return True
    rewrites = [Rewrite(("series-regimes",) + ((f"wider-{r.wider}",) if r.wider else ()), (r.root,), r.before, r.after, r.before_mean, r.before_max, r.after_mean, r.after_max, True,
                        "measured on the site's leaf values, exact inputs") for r in found]
    if c.measure_outputs and (outs := measure_bounded(run.program, new, run.input_sets, c)) is not None:
        if not all(o.accepted for o in outs):
            run.report.rewrites_refused += [dataclasses.replace(rw, accepted=False, reason="an output got worse") for rw in rewrites]
            return True
        old = {o.index: o for o in run.report.outputs}
        run.report.outputs = [dataclasses.replace(old[o.index], after_mean=o.after_mean, after_max=o.after_max, histogram_after=o.histogram_after) if o.index in old else o for o in outs]
    run.program = new
    run.report.rewrites = run.report.rewrites + rewrites
    return True


def _explain(run: Run) -> None:
    if run.program is run.original:
        run.report.rewrites = []
    _set_ranges(run, run.program)
    after = analysis.predict(run.program, run.ranges)
    run.report.predicted_bits_after, run.report.predicted_after = after.capped, after.as_dict()
    run.report.nodes_after = len(run.program.nodes)


def _precision(run: Run) -> bool:
    if run.config.target is None:
        return False
    res = precision.select(run.program, run.ranges, run.input_sets, run.config)
    for name, value in res.record(run.config, run.program).items():
        setattr(run.report, name, value)
    run.report.warnings.extend(res.warnings)
    run.program = res.program
    return True


def _legalize(run: Run) -> bool:
    """Once every node's dtype is final: constants that overflow it become ±finfo.max."""
    if not run.config.legalize:
        return False
    run.program, notes = legalize(run.program)
    run.report.rewrites = run.report.rewrites + [legalization_rewrite(n) for n in notes]
    return True


def _node_costs(run: Run) -> None:
    """Each node's predicted bits lost in the program that runs (the HTML report's graph)."""
    _set_ranges(run, run.program)
    run.report.node_costs = {f"%{i}": [cond, bits, reason] for i, _, cond, bits, reason in analysis.explain(run.program, run.ranges)}


# (name, stage, what a failure keeps): None = the whole optimization falls back to the original;
# a string = the stage's input program stays, with a warning that says so. A stage that returns
# False was off (not timed).
STAGES: tuple[tuple[str, Callable[[Run], bool | None], str | None], ...] = (
    ("ranges", _ranges, None),
    ("egraph", _egraph, None),
    ("verify", _verify, None),
    ("series", _series, "series/regime candidates not applied"),
    ("explain", _explain, None),
    ("precision", _precision, "dtypes unchanged"),
    ("legalize", _legalize, "constants unchanged"),
    ("node_costs", _node_costs, "no per-node costs in the report"),
)


def optimize_program(program: Program, example_inputs: Sequence[torch.Tensor], *, input_ranges=None, rules=None, config: Config | None = None) -> tuple[Program, Report]:
    """The pipeline on an IR program; returns the verified program and its report.

    A program on another device than the CPU (a model on a GPU) is analysed on a CPU twin, since
    the judge and the references compute with numpy; the result runs on the original device with
    the original parameters."""
    device = torch.device(program.meta.get("device", "cpu"))
    if device.type != "cpu":
        cpu = torch.device("cpu")
        twin = on_device(program, cpu, runs_on=device)  # runs_on: the dtype menu is the device's
        inputs = [x.to(cpu) if isinstance(x, torch.Tensor) else x for x in example_inputs]
        result, report = optimize_program(twin, inputs, input_ranges=input_ranges, rules=rules, config=config)
        return on_device(result, device, program.params), report
    config = config or Config()
    run = Run(program, example_inputs, _input_positions(program, input_ranges), rules, config, Report(nodes_before=len(program.nodes)))
    run.program = program
    for name, stage, on_failure in STAGES:
        start, before, ran = time.perf_counter(), run.program, None
        try:
            ran = stage(run)
        except Exception as e:
            if on_failure is None:
                raise
            run.program = before  # never break the user's model
            msg = f"{name} stage failed ({type(e).__name__}: {e}); {on_failure}"
            warnings.warn(msg, HnfcWarning, stacklevel=2)
            run.report.warnings.append(msg)
        spent = time.perf_counter() - start
        if name == "egraph":  # one stage, two figures: saturation (summed per region) and extraction
            run.report.times["extract"] = spent - run.report.times["saturate"]
        elif ran is not False:
            run.report.times[name] = spent
    return run.program, run.report


def find_rewrites(program: Program, example_inputs: Sequence[torch.Tensor], input_sets: Sequence, ranges: Sequence, *, input_ranges=None, rules=None, config: Config | None = None) -> Report:
    """The egraph and verify stages alone, on the ranges and input sets the caller gives; the
    report's rewrites (verified) and rewrites_refused. For hnfc.lint, which judges on sound
    propagated ranges: no observation pass, none of the stages after verify."""
    run = Run(program, example_inputs, _input_positions(program, input_ranges), rules, config or Config(), Report(nodes_before=len(program.nodes)))
    run.program, run.input_sets, run.ranges, run.ranged = program, [list(s) for s in input_sets], list(ranges), program
    for name, stage in (("egraph", _egraph), ("verify", _verify)):
        start = time.perf_counter()
        stage(run)
        run.report.times[name] = time.perf_counter() - start
    return run.report


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


def _rewrites(found: Sequence[Change], checks: Mapping[tuple, LocalCheck] | None = None) -> list[Rewrite]:
    """The rewrites the extraction kept (changes made by rules), with their local measurements
    when `checks` (keyed by (region index, e-class)) has them."""
    out = []
    for ch in found:
        if not ch.rules or not ch.values:
            continue
        c = (checks or {}).get((ch.region, ch.cls))
        measured = {} if c is None else {
            "before_mean": c.before_mean, "before_max": c.before_max, "after_mean": c.after_mean,
            "after_max": c.after_max, "accepted": c.accepted, "reason": c.reason,
        }
        out.append(Rewrite(ch.rules, ch.values, ch.before, ch.after, **measured))
    return sorted(out, key=lambda rw: rw.values)


def optimize(model_or_fn, example_inputs, *, input_ranges: Mapping[Any, tuple[float, float]] | None = None, rules: Iterable[Rule] | None = None, **options):
    """Optimize a model for accuracy; returns a module called like the original, with `.report`.

    `input_ranges` maps input positions or names to (lo, hi): the values the model will see
    (sampling for verification and the sound part of the range analysis use them). `rules` adds
    rule packs to hnfc's library. Other keyword options are `hnfc.Config` fields.
    """
    config = Config.from_options(options)
    select_rules(rules, config)  # unsound user rules and unknown families: errors, before any work
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    check_examples(example_inputs)  # the input contract, before any work (hnfc/frontend/contract.py)
    start = time.perf_counter()
    try:
        program = model_or_fn if isinstance(model_or_fn, Program) else trace(model_or_fn, example_inputs)
    except FrontendError as e:
        if not isinstance(model_or_fn, Program) and (why := cannot_run(model_or_fn, example_inputs)):
            raise InputError(f"the model cannot run on these inputs: {why}") from None
        warnings.warn(f"hnfc could not trace the model, it runs unchanged: {e}", HnfcWarning, stacklevel=2)
        return Unoptimized(model_or_fn, Report(warnings=[f"trace failed: {e}"]))
    traced = time.perf_counter() - start
    notes = list(program.meta.get("notes", ()))  # what tracing left out (a key/value cache)
    for note in notes:
        warnings.warn(note, HnfcWarning, stacklevel=2)
    flat_inputs = list(torch.utils._pytree.tree_leaves(list(example_inputs)))
    ranges_in = _input_positions(program, input_ranges)  # the user's mistakes are errors, not fallbacks
    try:
        result, report = optimize_program(program, flat_inputs, input_ranges=ranges_in, rules=rules, config=config)
    except Exception as e:  # never break the user's model
        result, report = _fallback(program, e)
    report.times = {"trace": traced, **report.times}
    report.warnings = notes + report.warnings
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
