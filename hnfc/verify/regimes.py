"""Regimes: piecewise candidates chosen by range, with series expansions where the error concentrates.

In: a program (the verified one), the input sets it is judged on, a time limit, known leaf ranges.
Out: the program with some small univariate subexpressions replaced by `where` chains over their
leaf, each branch a candidate equivalent on its range (the original subexpression, or a truncated
series from hnfc/rewrites/series.py used only inside the interval where its truncation error was
measured below the rounding), and a `Regime` record per replacement.

Where the search goes (localization, hnfc/verify/localize.py): only sites whose worst node has a
mean local error of at least `MIN_LOCAL_BITS`; the candidate roots are that node and the nodes on
its way up to the site's root. Split points (Herbie's regime inference): the leaf values sorted
and grouped into bins, a dynamic program picks a candidate per run of bins minimizing the summed
error plus a penalty per split, and each split is refined by bisection over the floats between the
two bins, on the exact error of the two candidates at the midpoint.

A wider candidate (`Wider`): the same subexpression computed in a wider float dtype of the
program's device menu (float64 for float32, float32 for bfloat16/float16: the cheapest one with at
least twice the site's significand), its leaf cast up, constants at their exact value, the result
cast back to the site's dtype at the candidate root. It removes what no rewrite in the site's own
dtype can: an intermediate's rounding amplified by a later node's condition number (erfc at large
arguments). It competes in the same inference and the same judgement as the series, and a
replacement that uses it must gain `WIDE_GAIN_BITS` (more than `MIN_GAIN_BITS`: every element then
pays for two casts and a slower elementwise kernel, float64 is slow on most GPUs).

Safety of the untaken branch (value and gradient): branch k reads clamp(x, a_k, b_k), its own
interval, so it is never evaluated where it may produce NaN or inf (a pole, the series far from
its point); clamp's gradient is 0 outside, and `where` passes 0 to the branch not taken.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from hnfc.foundation.dtypes import DTYPES, to_torch
from hnfc.foundation.types import TensorType
from hnfc.ir.expr import format_expr
from hnfc.ir.program import Builder, Program, live_subprogram
from hnfc.numerics.metric import bits_error, from_ordinal, ordinal
from hnfc.numerics.reference import reference
from hnfc.rewrites import series
from hnfc.runtime.run import runner
from hnfc.verify import localize

MIN_LOCAL_BITS = 1.0  # a site is searched when one of its nodes loses this much on exact inputs
MIN_GAIN_BITS = 0.5  # a replacement must lower the site root's mean error by this much
BINS = 48
SPLIT_PENALTY = 1.0  # bits per point of one bin that a split must gain
MAX_ROOTS = 4  # candidate subexpression roots per site
BISECT_STEPS = 24  # halvings of the float (ordinal) interval between two bins: ~2^-14 relative even across binades
WIDE_GAIN_BITS = 1.0  # ... and by this much when it computes some of the site in a wider dtype
FORBIDDEN = 1e9  # error of a candidate where it may not be used (finite: sums stay comparable)


@dataclass
class Regime:
    root: int  # the replaced value (ids of the program the stage received)
    before: str
    after: str
    segments: list  # (lo, hi, candidate name)
    before_mean: float
    after_mean: float
    before_max: float
    after_max: float
    wider: str | None = None  # the dtype of a wider candidate some segment uses


@dataclass(frozen=True)
class Wider:
    """The original subexpression computed in `dtype` (wider than the site's), rounded back once."""

    dtype: str
    lo: float = -math.inf  # usable on every leaf value (the series' interval fields, for _refine)
    hi: float = math.inf

    @property
    def name(self) -> str:
        return f"in {DTYPES[self.dtype].torch_name}"


def wider_dtype(dtype: str, menu) -> str | None:
    """The cheapest float dtype of `menu` with at least twice `dtype`'s significand bits (its
    rounding stays below `dtype`'s even after a condition number up to 2^p), or None."""
    need = 2 * DTYPES[dtype].mantissa
    fits = [d for d in menu if DTYPES[d].is_float and DTYPES[d].mantissa >= need]
    return min(fits, key=lambda d: (DTYPES[d].bits, DTYPES[d].mantissa)) if fits else None


# ---------------------------------------------------------------------------------------------
# Regime inference


def infer(xs: np.ndarray, errors: np.ndarray, allowed: np.ndarray | None = None, bins: int = BINS, penalty: float = SPLIT_PENALTY) -> list[tuple[int, int, int]]:
    """Segments (first point, end point, candidate) over points sorted by `xs`: errors[c, i] is
    candidate c's error at point i; allowed[c, i] False forbids c there. Minimizes the summed error
    plus `penalty` x (points per bin) per split, over runs of whole bins."""
    k, n = errors.shape
    if allowed is not None:
        errors = np.where(allowed, errors, FORBIDDEN)
    edges = np.unique(np.linspace(0, n, min(bins, n) + 1).astype(int))
    cost = np.stack([errors[:, a:b].sum(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)  # (k, m)
    m = cost.shape[1]
    split = penalty * n / m
    best = np.full((m + 1,), np.inf)
    best[0] = 0.0
    choice: list[tuple[int, int] | None] = [None] * (m + 1)
    prefix = np.concatenate([np.zeros((k, 1)), np.cumsum(cost, axis=1)], axis=1)
    for j in range(1, m + 1):
        for i in range(j):
            seg = prefix[:, j] - prefix[:, i]
            c = int(np.argmin(seg))
            v = best[i] + seg[c] + (split if i else 0.0)
            if v < best[j]:
                best[j], choice[j] = v, (i, c)
    out, j = [], m
    while j > 0:
        i, c = choice[j]
        out.append((int(edges[i]), int(edges[j]), c))
        j = i
    out.reverse()
    merged: list[tuple[int, int, int]] = []
    for a, b, c in out:
        if merged and merged[-1][2] == c:
            merged[-1] = (merged[-1][0], b, c)
        else:
            merged.append((a, b, c))
    return merged


def _bisect(lo: float, hi: float, left_better, dtype: str) -> float:
    """A split between lo (left candidate chosen) and hi (right chosen): bisection over the floats."""
    a, b = int(ordinal(np.array([lo]), dtype)[0]), int(ordinal(np.array([hi]), dtype)[0])
    for _ in range(BISECT_STEPS):
        if b - a <= 1:
            break
        mid = (a + b) // 2
        if left_better(float(from_ordinal(np.array([mid]), dtype)[0])):
            a = mid
        else:
            b = mid
    return float(from_ordinal(np.array([b]), dtype)[0])


# ---------------------------------------------------------------------------------------------
# Building candidates


def _candidate(program: Program, s: int, leaf: int, e, b: Builder, x: int, dtype: str) -> int:
    """Value of candidate `e` (None: the original subexpression at s; a `Wider`: the original in
    its dtype, cast back) over x in builder b."""
    if isinstance(e, Wider):  # constants take e.dtype: the reference reads their exact value too
        return b.add("to", [_replay(program, s, leaf, b, b.add("to", [x], {"dtype": e.dtype}), e.dtype)], {"dtype": dtype})
    if e is not None:
        return series.build(b, e, x, dtype)
    return _replay(program, s, leaf, b, x)


def _replay(program: Program, s: int, leaf: int, b: Builder, x: int, const_dtype: str | None = None) -> int:
    """The subexpression at s rebuilt in b on x for its leaf (constants in `const_dtype` if given)."""
    m = {leaf: x}
    for j in sorted(localize._deps(program, s, leaf)):
        nd = program.nodes[j]
        if nd.op == "const":
            m[j] = b.add("const", (), {**nd.attr, "dtype": const_dtype}) if const_dtype else b.add("const", (), nd.attr, nd.type)
        else:
            m[j] = b.add(nd.op, [m[a] for a in nd.args], nd.attr)
    return m[s]


def piecewise(program: Program, s: int, leaf: int, segments, b: Builder, x: int, dtype: str) -> int:
    """where(x < b_0, c_0(clamp(x, ., b_0)), where(x < b_1, c_1(clamp(x, b_0, b_1)), ... c_m(clamp(x, b_{m-1}, .))))."""
    bounds = [hi for _, hi, _ in segments[:-1]]
    vals = []
    for k, (_, _, e) in enumerate(segments):
        lo = bounds[k - 1] if k > 0 else None
        hi = bounds[k] if k < len(bounds) else None
        xk = x if lo is None and hi is None else b.add("clamp", [x], {"min": lo, "max": hi})
        vals.append(_candidate(program, s, leaf, e, b, xk, dtype))
    acc = vals[-1]
    for k in range(len(bounds) - 1, -1, -1):
        acc = b.add("where", [b.add("lt", [x], {"other": bounds[k]}), vals[k], acc])
    return acc


def _splice(program: Program, repl: dict) -> Program:
    """The program with each value s in `repl` ({s: (leaf, segments, dtype)}) piecewise."""
    b = Builder()
    m: dict[int, int] = {}
    for i, nd in enumerate(program.nodes):
        if i in repl:
            leaf, segments, dtype = repl[i]
            m[i] = piecewise(program, i, leaf, segments, b, m[leaf], dtype)
        else:
            m[i] = b.add(nd.op, [None if a is None else m[a] for a in nd.args], nd.attr, nd.type)
    return live_subprogram(b.build([m[o] for o in program.outputs], program.params, program.meta))


# ---------------------------------------------------------------------------------------------
# The search on one site


def _errors(sub_truth, outs) -> np.ndarray:
    return np.stack([bits_error(o, sub_truth) for o in outs])


def _site(program: Program, site, bits: int, deadline: float, wide: str | None = None):
    """The best replacement at this site: (value replaced, segments, before bits, after bits) or None.
    `wide`: the dtype of a wider candidate (None: not offered)."""
    dtype = site.dtype
    order = sorted(site.local, key=lambda j: -site.local[j])
    worst = order[0]
    roots = [j for j in site.nodes if worst in localize._deps(program, j, site.leaf)][:MAX_ROOTS]
    pts = site.xs  # the localization's points and exact values serve the search too
    n = pts.numel()
    root_prog = localize.subprogram(program, site, [site.root], n)
    root_truth = site.truth[site.root]
    keep = ~np.isnan(np.asarray(root_truth, dtype=np.float64))
    before = bits_error(runner(root_prog)([pts])[0], root_truth)[keep]
    best = None
    lo, hi = float(pts.min()), float(pts.max())
    for s in roots:
        if time.perf_counter() > deadline:
            break
        try:
            exps = series.expansions(program, s, site.leaf, lo, hi, bits, deadline=deadline)
        except Exception:  # noqa: BLE001 -- sympy raises many kinds; no expansion here, others may work
            exps = []
        wider = [Wider(wide)] if wide is not None else []
        if not exps and not wider:
            continue
        cands = [None, *exps, *wider]
        b = Builder()
        x = b.input("x", TensorType((n,), dtype))
        outs = [_candidate(program, s, site.leaf, e, b, x, dtype) for e in cands]
        cand_prog = b.build(outs)
        with torch.no_grad():
            vals = runner(cand_prog)([pts])
        truth = site.truth[s]
        err = _errors(truth, vals)
        p = pts.double().numpy()  # (bfloat16 has no numpy dtype; float64 holds every value)
        allowed = np.stack([np.ones(n, bool)] + [(p >= e.lo) & (p <= e.hi) for e in cands[1:]])
        # with the wider candidate first; where that misses its larger gain, without it
        for use in ([len(cands), len(cands) - len(wider)] if wider and exps else [len(cands)]):
            segs = infer(p, err[:use], allowed[:use])
            if len(segs) == 1 and segs[0][2] == 0:
                break
            segments = _refine(segs, p, cands[:use], err, program, site, s, dtype)
            new = _splice(root_prog, {_map_root(program, site, root_prog, s): (0, segments, dtype)})
            after_raw = bits_error(runner(new)([pts])[0], root_truth)[keep]
            widened = any(isinstance(e, Wider) for _, _, e in segments)
            gain = WIDE_GAIN_BITS if widened else MIN_GAIN_BITS
            if after_raw.mean() <= before.mean() - gain and after_raw.max() <= before.max() + 1.0:
                if best is None or after_raw.mean() < best[3].mean():
                    best = (s, segments, before, after_raw)
                break
            if not widened:
                break
    return best


def _map_root(program: Program, site, root_prog: Program, s: int) -> int:
    """The id of value s inside the site's subprogram (built in the same order, hash-consed)."""
    sub = localize.subprogram(program, site, [site.root, s], root_prog.nodes[root_prog.inputs[0]].type.shape[0])
    return sub.outputs[1]


def _refine(segs, p, cands, err, program, site, s, dtype):
    """Segments with split points as leaf values: bisection between the bins where the choice
    changes (on the exact error of both candidates), kept inside each series' measured interval."""
    one = localize.subprogram(program, site, [s], 1)

    def left_better(v: float, left, right) -> bool:  # one reference call per midpoint
        t = torch.tensor([v], dtype=to_torch(dtype))
        truth = reference(one, [t]).outputs[0]
        b = Builder()
        x = b.input("x", TensorType((1,), dtype))
        prog = b.build([_candidate(program, s, site.leaf, c, b, x, dtype) for c in (left, right)])
        el, er = (float(bits_error(o, truth)[0]) for o in runner(prog)([t]))
        return el <= er

    out = []
    bounds = []
    for (a0, b0, c0), (a1, b1, c1) in zip(segs[:-1], segs[1:]):
        lo, hi = float(p[b0 - 1]), float(p[a1])
        left, right = cands[c0], cands[c1]
        split = _bisect(lo, hi, lambda v: left_better(v, left, right), dtype) if hi > lo else hi
        for c in (left, right):  # a series only inside its measured interval
            if c is not None:
                split = min(max(split, c.lo), c.hi) if c.hi != math.inf else max(split, c.lo)
        bounds.append(split)
    lo_b = [-math.inf] + bounds
    hi_b = bounds + [math.inf]
    for (a, b_, c), l, h in zip(segs, lo_b, hi_b):
        out.append((l, h, cands[c]))
    # a series segment reaching past its interval: the original takes over outside
    fixed = []
    for l, h, e in out:
        if e is None:
            fixed.append((l, h, e))
            continue
        if l < e.lo:
            fixed.append((l, e.lo, None))
        fixed.append((max(l, e.lo), min(h, e.hi), e))
        if h > e.hi:
            fixed.append((e.hi, h, None))
    merged = []
    for l, h, e in fixed:
        if h <= l and not (l == h == math.inf):
            continue
        if merged and merged[-1][2] is e:
            merged[-1] = (merged[-1][0], h, e)
        else:
            merged.append((l, h, e))
    return merged



# ---------------------------------------------------------------------------------------------
# The stage


def improve(program: Program, input_sets, *, time_limit: float = 15.0, max_sites: int = 8, seed: int = 0, spans=None,
            menu=()) -> tuple[Program, list[Regime], list[str]]:
    """Search the sites with high local error; returns the new program, the records, notes.
    `spans` (value id -> (lo, hi), finite) gives leaf ranges already known (the pipeline's range
    analysis); the others are observed on the input sets (one run per set). `menu`: the float
    dtypes the program's device offers (a wider candidate is built only from these; empty: none)."""
    deadline = time.perf_counter() + time_limit
    records: list[Regime] = []
    notes: list[str] = []
    found = localize.sites(program)
    spans = {k: v for k, v in (spans or {}).items() if all(np.isfinite(v))}
    missing = [s.leaf for s in found if s.leaf not in spans]
    spans.update(localize.leaf_ranges(program, missing, input_sets))
    # one localization per distinct function (the same activation in every layer), on the hull
    # of its sites' leaf ranges; each site of a function that loses bits is then searched
    groups: dict[tuple, list] = {}
    for site in found:
        if site.leaf in spans and spans[site.leaf][0] < spans[site.leaf][1]:
            groups.setdefault(localize.shape_key(program, site), []).append(site)
    measured = []
    for members in list(groups.values())[:max_sites]:  # distinct functions, largest first
        if time.perf_counter() > deadline:
            notes.append("series/regimes: time limit reached while localizing")
            break
        lo = min(spans[s.leaf][0] for s in members)
        hi = max(spans[s.leaf][1] for s in members)
        first = members[0]
        localize.local_errors(program, first, localize.leaf_values(lo, hi, first.dtype, seed))
        if max(first.local.values()) < MIN_LOCAL_BITS or first.root_bits < MIN_LOCAL_BITS:
            continue
        for site in members:
            if site is not first or len(members) > 1:  # its own range
                localize.local_errors(program, site, localize.leaf_values(*spans[site.leaf], site.dtype, seed))
            if max(site.local.values()) >= MIN_LOCAL_BITS and site.root_bits >= MIN_LOCAL_BITS:
                measured.append(site)
    measured.sort(key=lambda st: -max(st.local.values()))
    replaced: dict[int, tuple] = {}
    for site in measured:
        if time.perf_counter() > deadline:
            notes.append("series/regimes: time limit reached")
            break
        got = _site(program, site, DTYPES[site.dtype].mantissa, deadline, wider_dtype(site.dtype, menu))
        if got is None:
            continue
        s, segments, before, after = got
        replaced[s] = (site.leaf, segments, site.dtype)
        records.append(Regime(s, format_expr(program, s), _describe(segments), [(l, h, "original" if e is None else e.name) for l, h, e in segments],
                              float(before.mean()), float(after.mean()), float(before.max()), float(after.max()),
                              next((e.dtype for _, _, e in segments if isinstance(e, Wider)), None)))
    if not replaced:
        return program, records, notes
    return _splice(program, replaced), records, notes


def _describe(segments) -> str:
    if len(segments) == 1 and isinstance(segments[0][2], Wider):
        return f"the same, computed {segments[0][2].name} (leaf cast up, result cast back)"
    parts = []
    for l, h, e in segments:
        name = "original" if e is None else e.name if isinstance(e, Wider) else f"{e.name} ({len(e.coefs)} terms)"
        parts.append(f"[{l:.4g}, {h:.4g}): {name}")
    return "where(" + "; ".join(parts) + ")"
