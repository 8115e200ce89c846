"""Verification: run programs in torch, measure them against the mpmath reference.

In: the original program, a candidate (equal over the reals), input sets; for local checks, the
e-graph stage's `Change` records (hnfc.egraph.changes). Out: bits of error per output before and
after (mean and max over all elements and input sets), and whether each output may take the
candidate; per rewrite, the same on its neighbourhood (`local_checks`). Verification is the judge,
the cost model only the guide: what measures worse than the original (beyond the configured
tolerance) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from hnfc.egraph.changes import Change
from hnfc.foundation.config import Config
from hnfc.foundation.types import TensorType
from hnfc.ir.program import Builder, IRError, Program
from hnfc.numerics.metric import bits_error
from hnfc.numerics.reference import reference
from hnfc.runtime.run import flat, runner


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


def measure(original: Program, candidate: Program, input_sets, config: Config) -> list[OutputError]:
    """Bits of error of both programs' outputs against the reference of the original."""
    errs_before: list[list[np.ndarray]] = [[] for _ in original.outputs]
    errs_after: list[list[np.ndarray]] = [[] for _ in original.outputs]
    run_original, run_candidate = runner(original), runner(candidate)
    for inputs in input_sets:
        truth = reference(flat(original), inputs).outputs
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


def _cut_value(value: torch.Tensor, out_shape: tuple, cuts: dict[int, int]) -> torch.Tensor:
    """The leading rows of a captured value, as `_cut_shape` cuts its type."""
    return value[tuple(slice(0, n) for n in _cut_shape(tuple(value.shape), out_shape, cuts))]


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


def local_checks(program: Program, changes: Sequence[Change], input_sets, config: Config) -> list[LocalCheck]:
    """Measure every rewrite on its neighbourhood, fed with the original program's values; one
    check per change, in order."""
    sites = [ch for ch in changes if not ch.skipped]
    needed = sorted({v for s in sites for v in s.frontier})
    capture = runner(flat(program, needed)) if needed else None
    captured = [dict(zip(needed, capture(inputs))) if needed else {} for inputs in input_sets]
    return [_local_check(ch, captured, len(input_sets), config) for ch in changes]


def _local_check(s: Change, captured: list[dict], n_sets: int, config: Config) -> LocalCheck:
    if s.skipped:
        return LocalCheck(s.region, s.key, s.cls, (), 0.0, 0.0, 0.0, 0.0, False, s.skipped)
    old, new, cuts = s.old, s.new, {}
    budget = config.max_reference_ops // max(n_sets, 1)
    if reference_cost(old) > budget:
        fewer = fewer_rows(old, new, budget)
        if fewer is None:
            return LocalCheck(s.region, s.key, s.cls, s.values, 0.0, 0.0, 0.0, 0.0, False, "too large for the reference")
        old, new, cuts = fewer
    out_shape = s.old.nodes[s.old.outputs[0]].type.shape
    sets = [[_cut_value(cap[v], out_shape, cuts) for v in s.frontier] for cap in captured]
    (m,) = measure(old, new, sets, config)
    return LocalCheck(s.region, s.key, s.cls, s.values, m.before_mean, m.before_max, m.after_mean, m.after_max, m.accepted, "" if m.accepted else "measured worse")
