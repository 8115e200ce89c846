"""Verification: run programs in torch, measure them against the mpmath reference.

In: the original program, a candidate (equal over the reals), input sets; for local checks, the
e-graph stage's `Change` records (hnfc.egraph.changes). Out: bits of error per output before and
after (mean and max over all elements and input sets), and whether each output may take the
candidate; per rewrite, the same on its neighbourhood (`local_checks`). Verification is the judge,
the cost model only the guide: what measures worse than the original (beyond the configured
tolerance) is refused, and so is a rewrite without both a measured gain (over the user's node on
any rewrite below it: `Change.base`) and a predicted one (`hnfc.analysis.predict`); one that adds
more than WIDE_NODES nodes must gain WIDE_GAIN_MEAN_BITS on average. A site is fed
the values captured from the original program and points drawn from its input box
(`domain_inputs`: the range analysis's intervals, extremes planted, bit patterns).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from hnfc.analysis import exact_values, predict
from hnfc.analysis import ranges as propagate
from hnfc.egraph.changes import Change
from hnfc.foundation.config import Config
from hnfc.foundation.types import TensorType
from hnfc.ir.program import Builder, IRError, Program
from hnfc.foundation.dtypes import DTYPES
from hnfc.numerics.metric import MODES, bits_error, representable_bounds, sample_inputs
from hnfc.numerics.reference import reference
from hnfc.runtime.run import Capture, flat, runner


def reference_cost(program: Program) -> int:
    """Rough count of mpmath operations one reference evaluation of `program` takes."""
    total = 0
    for n in program.nodes:
        t = n.type
        if not isinstance(t, TensorType) or t.is_symbolic:
            continue
        work = t.numel
        if n.opdef.contraction is not None:
            a = program.nodes[n.args[n.opdef.contraction]].type
            work *= a.shape[-1] if a.rank else 1
            if n.op == "scaled_dot_product_attention":
                work *= 3 * program.nodes[n.args[1]].type.shape[-2]
        elif n.opdef.kind in ("reduction", "nn") and n.args and n.args[0] is not None:
            work = max(work, program.nodes[n.args[0]].type.numel)
        total += work
    return total


@dataclass(frozen=True)
class OutputError:
    index: int
    before_mean: float
    before_max: float
    after_mean: float
    after_max: float
    accepted: bool
    # elements per whole bit of error (buckets 0..64), from verification (bit_histogram)
    histogram_before: tuple[int, ...] | None = None
    histogram_after: tuple[int, ...] | None = None



HISTOGRAM_BUCKETS = 65  # bits of error 0..64 (float64 at most), floored to whole bits


def bit_histogram(bits: np.ndarray) -> tuple[int, ...]:
    """Counts of elements per whole bit of error (bucket k holds k <= bits < k + 1; NaN counts as 64)."""
    b = np.nan_to_num(np.asarray(bits, dtype=float), nan=HISTOGRAM_BUCKETS - 1)
    k = np.clip(np.floor(b), 0, HISTOGRAM_BUCKETS - 1).astype(np.int64)
    return tuple(int(c) for c in np.bincount(k, minlength=HISTOGRAM_BUCKETS))


# The truth of a program on some inputs, kept for the next question about the same expression on
# the same values: a site that is a whole output (a one-line formula) is otherwise evaluated in
# mpmath twice, once by its local check and once by the whole-output measure. Keyed by structure
# (inputs by position, not name: a site's inputs are named f0, f1, ...) and by the inputs' bytes.
TRUTH_MEMO = 16
_truths: OrderedDict = OrderedDict()


def _structure(program: Program) -> tuple[str, ...]:
    """A digest per output of the expression computing it (names of inputs left out)."""
    position = {v: k for k, v in enumerate(program.inputs)}
    h: list[str] = []
    for i, n in enumerate(program.nodes):
        if n.op == "input":
            text = f"in{position[i]}"
        else:
            text = f"{n.op}|{sorted((k, repr(v)) for k, v in n.attr.items())}|{[None if a is None else h[a] for a in n.args]}"
        h.append(hashlib.sha1(f"{text}|{n.type}".encode()).hexdigest())
    return tuple(h[o] for o in program.outputs)


def _digest(x) -> str:
    if not isinstance(x, torch.Tensor):
        return repr(x)
    raw = x.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return f"{x.dtype}{tuple(x.shape)}" + hashlib.sha1(raw).hexdigest()


def _truth(program: Program, inputs, same: Program | None = None) -> list:
    """`reference(program, inputs, rounding="dtype").outputs`, memoized (above); also kept as the
    truth of `same`, a program equal to `program` over the reals (a site's other side)."""
    digests = tuple(_digest(x) for x in inputs)
    key = (_structure(program), digests)
    if key in _truths:
        _truths.move_to_end(key)
        out = _truths[key]
    else:
        out = reference(flat(program), inputs, rounding="dtype").outputs
        _truths[key] = out
    if same is not None:
        _truths[(_structure(same), digests)] = out
    while len(_truths) > TRUTH_MEMO:
        _truths.popitem(last=False)
    return out


def measure(original: Program, candidate: Program, input_sets, config: Config) -> list[OutputError]:
    """Bits of error of both programs' outputs against the reference of the original."""
    errs_before: list[list[np.ndarray]] = [[] for _ in original.outputs]
    errs_after: list[list[np.ndarray]] = [[] for _ in original.outputs]
    run_original, run_candidate = runner(original), runner(candidate)
    for inputs in input_sets:
        # rounded to each output's dtype: what bits_error compares in, and what the vectorized
        # tiers of the reference decide without mpmath
        truth = _truth(original, inputs)
        for k, (a, b, t) in enumerate(zip(run_original(inputs), run_candidate(inputs), truth)):
            if a.is_floating_point():
                errs_before[k].append(bits_error(a, t).ravel())
                errs_after[k].append(bits_error(b, t).ravel())
    out = []
    for k in range(len(original.outputs)):
        if not errs_before[k]:
            out.append(OutputError(k, 0.0, 0.0, 0.0, 0.0, True))
            continue
        before, after = np.concatenate(errs_before[k]), np.concatenate(errs_after[k])
        ok = after.mean() <= before.mean() + config.tolerance_mean_bits and after.max() <= before.max() + config.tolerance_max_bits
        out.append(OutputError(k, float(before.mean()), float(before.max()), float(after.mean()), float(after.max()), bool(ok), bit_histogram(before), bit_histogram(after)))
    return out


# ---------------------------------------------------------------------------------------------
# Local verification: each rewrite on its own neighbourhood (DESIGN.md, "Verification is local").


@dataclass(frozen=True)
class LocalCheck:
    region: int  # index of the region result
    key: tuple  # the region's optimization key (shared by identical regions)
    cls: int  # the e-class rewritten
    values: tuple[int, ...]  # the original program's values it replaces
    before_mean: float
    before_max: float
    after_mean: float
    after_max: float
    accepted: bool
    reason: str = ""


def _cut_shape(shape: tuple, out_shape: tuple, cuts: dict[int, int]) -> tuple:
    """An input's shape with the output's cut axes (counted from the end) cut where it spans them."""
    shape = list(shape)
    for axis, rows in cuts.items():
        if len(shape) >= -axis and shape[axis] == out_shape[axis]:
            shape[axis] = rows
    return tuple(shape)


def _cut_value(value: torch.Tensor, out_shape: tuple, cuts: dict[int, int], rows: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """A captured value cut as `_cut_shape` cuts its type: the leading rows, or where `rows`
    names them (axis counted from the end -> row indices), those rows."""
    if rows is None:
        return value[tuple(slice(0, n) for n in _cut_shape(tuple(value.shape), out_shape, cuts))]
    for axis, idx in rows.items():
        if value.dim() >= -axis and value.shape[axis] == out_shape[axis]:
            value = value.index_select(value.dim() + axis, idx)
    return value


# Bounded verification (issue 13): a site or an output is judged on at most this many reference
# operations per input set (reference_cost), whatever the tensors' sizes; the rows kept include
# those holding each value's extremes. See README ("Verification at scale").
SAMPLE_OPS = 100_000


def pick_rows(values: Sequence[torch.Tensor], out_shape: tuple, cuts: dict[int, int], seed: int = 0) -> dict[int, torch.Tensor]:
    """Which rows to keep along each cut axis: for every value spanning the axis, the rows holding
    its largest and smallest element, its largest and smallest magnitude and its NaN/inf if any
    (the extremes of the domain, where rewrites go wrong), then rows drawn uniformly at random
    (fixed seed) up to the count `cuts` keeps. Sorted indices, one tensor per axis."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[int, torch.Tensor] = {}
    for axis, keep in cuts.items():
        n = out_shape[axis]
        chosen: list[int] = []
        for v in values:
            if not v.is_floating_point() or v.dim() < -axis or v.shape[axis] != n or v.numel() == 0:
                continue
            r = v.detach().movedim(v.dim() + axis, 0).reshape(n, -1)
            lo, hi = torch.aminmax(r, dim=1)  # one pass; NaN rows give NaN here
            if not math.isfinite(float(hi.double().sum()) + float(lo.double().sum())):  # some row holds NaN/inf (or sums overflow)
                bad = ~(torch.isfinite(hi) & torch.isfinite(lo))
                if bad.any():
                    chosen.append(int(bad.nonzero()[0, 0]))
                hi, lo = torch.nan_to_num(hi, 0.0, 0.0, 0.0), torch.nan_to_num(lo, 0.0, 0.0, 0.0)
            mid = torch.minimum(hi.abs(), lo.abs()) * ((hi > 0) & (lo < 0)).logical_not()  # 0 where a row spans 0
            picks = [hi.argmax(), lo.argmin(), torch.maximum(hi.abs(), lo.abs()).argmax(), mid.argmin()]
            chosen += [int(i) for i in picks]
        seen = list(dict.fromkeys(chosen))[:keep]
        if len(seen) < keep:
            taken = torch.zeros(n, dtype=torch.bool)
            taken[seen] = True
            # a random draw, then the first untaken of it (2x keep is plenty unless keep ~ n)
            draw = torch.randint(0, n, (2 * keep + 16,), generator=gen) if keep * 4 < n else torch.randperm(n, generator=gen)
            for i in draw.tolist():
                if not taken[i]:
                    taken[i] = True
                    seen.append(i)
                    if len(seen) == keep:
                        break
            if len(seen) < keep:
                seen += (~taken).nonzero().flatten()[: keep - len(seen)].tolist()
        out[axis] = torch.tensor(sorted(seen), dtype=torch.long)
    return out


def _retyped(program: Program, out_shape: tuple, cuts: dict[int, int]) -> Program | None:
    """The program over cut inputs, every other type inferred again; None where a type cannot
    follow (a reshape to a fixed shape, an op without a type rule)."""
    b, env = Builder(), {}
    try:
        for i, n in enumerate(program.nodes):
            if n.op == "input":
                env[i] = b.add("input", (), n.attr, TensorType(_cut_shape(n.type.shape, out_shape, cuts), n.type.dtype))
            elif n.op in ("param", "const"):
                env[i] = b.add(n.op, (), n.attr, n.type)
            else:
                env[i] = b.add(n.op, [None if a is None else env[a] for a in n.args], n.attr)
    except IRError:
        return None
    return b.build([env[o] for o in program.outputs], program.params)


def fewer_rows(old: Program, new: Program, budget: int) -> tuple[Program, Program, dict[int, int]] | None:
    """Both sides of a site on fewer rows, so one reference run fits in `budget` operations: the
    output's leading axes (never the last) are halved, largest first, in every input that spans
    them. A rewrite is an identity whatever the values, so any rows of the captured values test
    it; both sides must still type with the cut shapes and agree (else that axis stays whole).
    Returns (old, new, cuts: axis counted from the end -> rows kept) or None when nothing fits."""
    out_shape = old.nodes[old.outputs[0]].type.shape
    cuts: dict[int, int] = {}
    whole: set[int] = set()
    while True:
        axes = [a for a in range(-len(out_shape), -1) if a not in whole and cuts.get(a, out_shape[a]) > 1]
        if not axes:
            return None
        axis = max(axes, key=lambda a: cuts.get(a, out_shape[a]))
        trial = {**cuts, axis: cuts.get(axis, out_shape[axis]) // 2}
        sides = [_retyped(p, out_shape, trial) for p in (old, new)]
        want = _cut_shape(out_shape, out_shape, trial)
        if None in sides or any(p.nodes[p.outputs[0]].type.shape != want for p in sides):
            whole.add(axis)
            continue
        cuts = trial
        if reference_cost(sides[0]) <= budget:
            return sides[0], sides[1], cuts


def local_checks(program: Program, changes: Sequence[Change], input_sets, config: Config, ranges: Sequence | None = None, capture: Capture | None = None) -> list[LocalCheck]:
    """Measure every rewrite on its neighbourhood, fed with the original program's values; one
    check per change, in order. `ranges` (an Interval per value of `program`, as the pipeline's
    range analysis gives them): the boxes the cost model predicts a site on; without them, the
    region's e-class intervals. Domain points are drawn from the e-class intervals, what the
    optimizer saw (the same ranges rounded outward to powers of two: a little wider).

    Values are captured only for the sites that will be measured (a site refused before any
    measurement, too large for the reference even on fewer rows, needs none), through `capture`
    when given (kept across the judge's rounds; it must hold `program` and `input_sets`)."""
    if capture is None:
        capture = Capture(program, input_sets)
    elif capture.program is not program or capture.input_sets is not input_sets:
        raise ValueError("local_checks: the capture holds another program or other input sets")
    plans = [_plan(ch, len(input_sets), config) for ch in changes]
    sites = [ch for ch, plan in zip(changes, plans) if not isinstance(plan, LocalCheck)]
    needed = sorted({v for s in sites for v in s.frontier})
    captured = capture.get(needed) if needed else [{} for _ in input_sets]
    exact = exact_values(program) if sites else []
    boxes = [None if ranges is None or ch.skipped else tuple(ranges[v] for v in ch.frontier) for ch in changes]
    try:
        return [plan if isinstance(plan, LocalCheck) else _local_check(ch, captured, len(input_sets), config, exact, box, plan) for ch, plan, box in zip(changes, plans, boxes)]
    finally:
        _RUNNERS.clear()  # lowered sites (and the parameters they hold) live no longer than the checks


# A rewrite must gain (README, "A cost model that explains"): measured, at least this much less
# mean error or this much less error at the worst point, on the same points; predicted, a
# strictly better `Prediction` (hnfc.analysis.predict) of the site on its frontier's ranges.
GAIN_MEAN_BITS = 0.02
GAIN_MAX_BITS = 1.0
# ... and a rewrite that adds more than WIDE_NODES nodes (kernels, in eager mode) must lower the
# site's mean error by WIDE_GAIN_MEAN_BITS, as the regimes stage asks of its piecewise candidates
# (hnfc/verify/regimes.py): log_softmax's split form gains 0.05 bits on moderate logits, where a
# dominant entry loses a few bits at worst, and 8 bits where 1 + s rounds to 1.
WIDE_NODES = 8
WIDE_GAIN_MEAN_BITS = 0.5


def _computed(p: Program) -> int:
    return sum(1 for n in p.nodes if n.op not in ("input", "param", "const"))


def predicted_gain(s: Change, exact: Sequence[bool], box: Sequence | None = None) -> tuple[bool, str, int]:
    """Whether the rewritten side of a site is predicted better than the user's (or, with a
    nested rewrite below it, than the user's node over that rewrite: `Change.base`), the two
    predictions in words, and which side (0: the user's, 1: the rewritten) is predicted better."""
    boxes = {k: (b.lo, b.hi) for k, b in enumerate(box if box is not None else s.frontier_ranges) if b is not None}
    inexact = [not exact[v] if v < len(exact) else True for v in s.frontier]
    before = predict(s.base or s.old, propagate(s.base or s.old, boxes), inexact_inputs=inexact)
    after = predict(s.new, propagate(s.new, boxes), inexact_inputs=inexact)
    old = before if s.base is None else predict(s.old, propagate(s.old, boxes), inexact_inputs=inexact)
    return after.gain_over(before), f"predicted {before} -> {after}", int(after.key() < old.key())


def _plan(s: Change, n_sets: int, config: Config):
    """What the local check of `s` measures: (old, new, base, cuts), both sides cut to fewer
    rows when the whole site exceeds the reference budget; or the check itself when its verdict
    needs no measurement (no site, or too large even on fewer rows)."""
    if s.skipped:
        return LocalCheck(s.region, s.key, s.cls, (), 0.0, 0.0, 0.0, 0.0, False, s.skipped)
    old, new, base, cuts = s.old, s.new, s.base, {}
    n_domain = DOMAIN_SETS if config.samples else 0
    budget = min(config.max_reference_ops // max(n_sets + n_domain, 1), SAMPLE_OPS)
    if reference_cost(old) > budget:
        fewer = fewer_rows(old, new, budget)
        if fewer is None:
            return LocalCheck(s.region, s.key, s.cls, s.values, 0.0, 0.0, 0.0, 0.0, False, "too large for the reference")
        old, new, cuts = fewer
        if base is not None:
            base = _retyped(base, s.old.nodes[s.old.outputs[0]].type.shape, cuts)
    return old, new, base, cuts


def _local_check(s: Change, captured: list[dict], n_sets: int, config: Config, exact: Sequence[bool] = (), box: Sequence | None = None, plan=None) -> LocalCheck:
    plan = _plan(s, n_sets, config) if plan is None else plan
    if isinstance(plan, LocalCheck):
        return plan
    old, new, base, cuts = plan
    n_domain = DOMAIN_SETS if config.samples else 0
    out_shape = s.old.nodes[s.old.outputs[0]].type.shape
    sets = []
    for j, cap in enumerate(captured):
        rows = pick_rows([cap[v] for v in s.frontier], out_shape, cuts, seed=config.seed + j) if cuts else None
        sets.append([_cut_value(cap[v], out_shape, cuts, rows) for v in s.frontier])
    progs = [old, new] + ([base] if base is not None else [])
    # The reference of whichever side is predicted better conditioned: both sides are the same
    # real function on the site's box (its rules passed the soundness check), and mpmath needs
    # far fewer bits for erfc(x) than for 1 - erf(x) at x = 25. Unchecked rules (trust_rules):
    # the user's side, always.
    gain, words, side = predicted_gain(s, exact, box)
    truth_from = 0 if config.trust_rules else side
    bits = _site_bits(progs, sets, defined_only=False, truth_from=truth_from)
    domain = domain_inputs(old, s.frontier_ranges, n_domain, config.seed) if n_domain else []
    if domain:  # points of the input box the original never produced; undefined truths dropped
        bits = [np.concatenate([b, d]) for b, d in zip(bits, _site_bits(progs, domain, defined_only=True, truth_from=truth_from))]
    before, after = bits[0], bits[1]
    ref = bits[2] if base is not None else before
    if not before.size:
        return LocalCheck(s.region, s.key, s.cls, s.values, 0.0, 0.0, 0.0, 0.0, False, "no point to measure")
    reason = ""
    if after.mean() > before.mean() + config.tolerance_mean_bits or after.max() > before.max() + config.tolerance_max_bits:
        reason = "measured worse"
    elif not (after.mean() <= ref.mean() - GAIN_MEAN_BITS or after.max() <= ref.max() - GAIN_MAX_BITS):
        reason = f"no measured gain ({ref.mean():.2f} -> {after.mean():.2f} bits mean{' over the rewrite below it' if base is not None else ''})"
    elif _computed(new) - _computed(base or old) > WIDE_NODES and not after.mean() <= ref.mean() - WIDE_GAIN_MEAN_BITS:
        reason = f"adds {_computed(new) - _computed(base or old)} nodes for {ref.mean() - after.mean():.2f} bits mean (more than {WIDE_NODES} must gain {WIDE_GAIN_MEAN_BITS})"
    elif not gain:
        reason = f"no predicted gain ({words})"
    return LocalCheck(s.region, s.key, s.cls, s.values, float(before.mean()), float(before.max()), float(after.mean()), float(after.max()), not reason, reason)


# Judging on the domain: besides the values captured from the original program, a site is fed
# this many input sets drawn from its frontier's boxes (the range analysis's intervals, which
# propagate the declared input ranges and are not narrowed by observed overflow): one uniform in
# value with each box's extremes planted first, one uniform over bit patterns.
DOMAIN_SETS = 2


# A site's programs are run on its captured values, then on its domain points: lowered once
# (an fx codegen each), kept for the last few programs by identity (weakly: a site program carries
# the model's parameters) until `local_checks` returns.
_RUNNERS: OrderedDict = OrderedDict()
RUNNER_MEMO = 8


def _runner(program: Program):
    held = _RUNNERS.get(id(program))
    if held is None or held[0]() is not program:  # a dead program's id may have been reused
        held = _RUNNERS[id(program)] = (weakref.ref(program), runner(program))
        while len(_RUNNERS) > RUNNER_MEMO:
            _RUNNERS.popitem(last=False)
    else:
        _RUNNERS.move_to_end(id(program))
    return held[1]


def _site_bits(progs: Sequence[Program], sets, defined_only: bool, truth_from: int = 0) -> list[np.ndarray]:
    """Bits of error of each program's (single) output against the reference, over all sets.
    The programs are equal over the reals; the reference is evaluated on `progs[truth_from]`.
    `defined_only`: leave out points where the truth is NaN (outside the real domain)."""
    runs = [_runner(p) for p in progs]
    out: list[list[np.ndarray]] = [[] for _ in progs]
    for inputs in sets:
        truth = _truth(progs[truth_from], inputs, same=progs[0] if truth_from else None)[0]
        keep = ~np.isnan(np.asarray(truth, dtype=np.float64)).ravel() if defined_only else None
        for k, run in enumerate(runs):
            r = run(inputs)[0]
            b = bits_error(r, truth).ravel() if r.is_floating_point() else np.zeros(r.numel())
            out[k].append(b if keep is None else b[keep])
    return [np.concatenate(o) if o else np.zeros(0) for o in out]


def domain_inputs(site: Program, boxes: Sequence, n_sets: int, seed: int) -> list[list[torch.Tensor]]:
    """`n_sets` input sets for a site program drawn from `boxes` (one Interval or None per input;
    None or unbounded ends: the dtype's finite range): alternately uniform in value (each float
    input's first elements set to its box's extremes: both ends, 0, ±1 and ± the smallest normal
    where inside) and uniform over bit patterns. [] where the site's inputs cannot be sampled."""
    types = [site.nodes[i].type for i in site.inputs]
    domains = []
    for t, b in zip(types, list(boxes) + [None] * len(types)):
        if not isinstance(t, TensorType) or t.is_symbolic:
            return []
        d = DTYPES.get(t.dtype)
        if d is None or not d.is_float:
            domains.append(None)
            continue
        lo = -d.max if b is None or not b.lo >= -d.max else b.lo
        hi = d.max if b is None or not b.hi <= d.max else b.hi
        domains.append((lo, hi) if lo <= hi else (-d.max, d.max))
    out = []
    for k in range(n_sets):
        mode = MODES[k % len(MODES)]
        try:
            (drawn,) = sample_inputs(types, domains, 1, mode=mode, seed=seed + 7919 + k)
        except ValueError:  # no value of the dtype in some box
            return []
        if mode == "value":
            drawn = [_plant_extremes(x, dom, t.dtype) for x, dom, t in zip(drawn, domains, types)]
        out.append(drawn)
    return out


def _plant_extremes(x: torch.Tensor, dom, dtype: str) -> torch.Tensor:
    d = DTYPES[dtype]
    if dom is None or not d.is_float or not x.numel():
        return x
    lo, hi = representable_bounds(dom[0], dom[1], dtype)
    picks = [lo, hi] + [v for v in (0.0, 1.0, -1.0, d.tiny, -d.tiny) if lo <= v <= hi]
    flat_x = x.reshape(-1).clone()
    k = min(len(picks), flat_x.numel())
    flat_x[:k] = torch.tensor(picks[:k], dtype=torch.float64).to(x.dtype)
    return flat_x.reshape(x.shape)


def measure_bounded(original: Program, candidate: Program, input_sets, config: Config) -> list[OutputError] | None:
    """`measure` on a bounded sample: each output on at most SAMPLE_OPS reference operations per
    input set. An output too large is measured on rows of it (`fewer_rows` on the pair of whole
    programs: a candidate equals the original over the reals, so any rows test it), the rows kept
    chosen by `pick_rows` from the inputs (extremes first). None when some output can be neither
    measured whole within the configured limit nor cut."""
    n_sets = max(len(input_sets), 1)
    budget = min(config.max_reference_ops // n_sets, SAMPLE_OPS)
    if reference_cost(original) <= budget:
        return measure(original, candidate, input_sets, config)
    out: list[OutputError] = []
    for k, (o, c) in enumerate(zip(original.outputs, candidate.outputs)):
        old, new = flat(original, [o]), flat(candidate, [c])
        fewer = fewer_rows(old, new, budget) if isinstance(old.nodes[o].type, TensorType) and old.nodes[o].type.rank > 1 else None
        if fewer is None:
            if reference_cost(old) * n_sets > config.max_reference_ops:
                return None
            (m,) = measure(old, new, input_sets, config)
        else:
            cut_old, cut_new, cuts = fewer
            out_shape = old.nodes[o].type.shape
            sets = []
            for j, inputs in enumerate(input_sets):
                rows = pick_rows(list(inputs), out_shape, cuts, seed=config.seed + j)
                sets.append([_cut_value(x, out_shape, cuts, rows) for x in inputs])
            (m,) = measure(cut_old, cut_new, sets, config)
        out.append(dataclasses.replace(m, index=k))
    return out
