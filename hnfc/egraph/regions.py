"""Regions: optimize a large program piece by piece, and each distinct piece once.

In: a `Program`, its ranges, rules, limits. Out: the stitched optimized program, with every
region's saturation result (for the report). A region is a run of consecutive nodes in
topological order, cut where the fewest values cross the boundary (in a transformer: the
residual stream between blocks), so a rule rarely needs nodes on both sides. Leaves
(inputs, parameters, constants) belong to no region: each region copies those it uses.
Regions with the same structure, types and (coarsely) the same ranges share one optimization:
the repeated blocks of a transformer are optimized once. Failure is local: a region whose
optimization raises keeps the user's code, and its `RegionResult.note` says which and why.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

from hnfc import ops
from hnfc.analysis import Interval
from hnfc.egraph.extract import Extraction, extract
from hnfc.egraph.saturate import Limits, Saturated, saturate
from hnfc.ir.program import Builder, Program, live_subprogram
from hnfc.rewrites.compile import CompiledRule

LEAVES = frozenset(name for name, op in ops.OPS.items() if op.kind == "leaf")  # copied into each region that uses them


@dataclass(frozen=True)
class Region:
    nodes: tuple[int, ...]  # values computed here
    inputs: tuple[int, ...]  # values computed in earlier regions and used here
    outputs: tuple[int, ...]  # values used after the region or returned by the program


@dataclass
class RegionResult:
    region: Region
    program: Program  # the region as a program (crossing values are its inputs)
    saturated: Saturated
    extraction: Extraction
    reused: bool  # the optimization of an identical earlier region was reused
    value_map: dict[int, int]  # region program value id -> original value id
    source: Program  # the region program the extraction was made for (differs when reused)
    key: tuple = ()  # structure and rounded ranges: regions with one key share one optimization
    note: str = ""  # why this region keeps the user's code (its optimization failed), else ""


def partition(program: Program, max_nodes: int) -> list[Region]:
    inner = [i for i, n in enumerate(program.nodes) if n.op not in LEAVES]
    if not inner:
        return []
    position = {v: k for k, v in enumerate(inner)}
    last_use = {v: position[v] for v in inner}
    for i in inner:
        for a in program.nodes[i].args:
            if a is not None and a in position:
                last_use[a] = max(last_use[a], position[i])
    for o in program.outputs:
        if o in position:
            last_use[o] = len(inner)
    # crossing[k]: values defined before inner[k] and used at or after it
    crossing = [0] * (len(inner) + 1)
    for v, k in position.items():
        if last_use[v] > k:
            crossing[k + 1] += 1
            crossing[last_use[v] + 1 if last_use[v] < len(inner) else len(inner)] -= 1
    for k in range(1, len(crossing)):
        crossing[k] += crossing[k - 1]
    cuts, start = [], 0
    while len(inner) - start > max_nodes:
        window = range(start + max_nodes // 2, start + max_nodes + 1)
        cut = min(window, key=lambda k: (crossing[k], -k))
        cuts.append(cut)
        start = cut
    bounds = [0, *cuts, len(inner)]
    regions = []
    for b in range(len(bounds) - 1):
        members = inner[bounds[b] : bounds[b + 1]]
        inside = set(members)
        ins: list[int] = []
        for i in members:
            for a in program.nodes[i].args:
                if a is not None and a not in inside and program.nodes[a].op not in LEAVES and a not in ins:
                    ins.append(a)
        outs = [v for v in members if last_use[v] >= bounds[b + 1] or v in program.outputs]
        regions.append(Region(tuple(members), tuple(ins), tuple(outs)))
    return regions


def region_program(program: Program, region: Region) -> tuple[Program, dict[int, int]]:
    """The region as a program of its own; also the map from its value ids to the original's."""
    b = Builder()
    env: dict[int, int] = {}
    back: dict[int, int] = {}
    for v in region.inputs:  # values from earlier regions: named by their value id
        env[v] = b.input(f"%{v}", program.nodes[v].type)
        back[env[v]] = v

    def value(a: int) -> int:
        if a not in env:  # a leaf: copied into the region
            n = program.nodes[a]
            env[a] = b.add(n.op, (), n.attr, n.type)
            back[env[a]] = a
        return env[a]

    for i in region.nodes:
        n = program.nodes[i]
        env[i] = b.add(n.op, [None if a is None else value(a) for a in n.args], n.attr, n.type)
        back.setdefault(env[i], i)
    return b.build([env[o] for o in region.outputs], program.params, {}), back


def coarse(iv: Interval | None) -> Interval | None:
    """The interval rounded outward to powers of two (signs and zero kept)."""
    if iv is None:
        return None

    def out(x: float, up: bool) -> float:
        if x == 0 or not math.isfinite(x):
            return x
        m, e = math.frexp(abs(x))  # |x| = m 2^e, 0.5 <= m < 1 (exact, unlike log2 near 2^1024)
        grow = (x > 0) == up  # moving away from zero widens on this side
        if m == 0.5:
            return x  # already a power of two
        k = e if grow else e - 1
        return math.copysign(math.ldexp(1.0, k) if k < 1024 else math.inf, x)

    return Interval(out(iv.lo, False), out(iv.hi, True))


def _signature(sub: Program, sub_ranges: Sequence[Interval | None]) -> tuple:
    """Structure, types and ranges of a region program; which layer's weights does not matter."""
    parts = []
    for i, n in enumerate(sub.nodes):
        attrs = n.attrs if n.op not in ("param", "input") else ()
        iv = sub_ranges[i] if n.op in LEAVES else None
        parts.append((n.op, n.args, repr(attrs), str(n.type), None if iv is None else (iv.lo, iv.hi)))
    return tuple(parts), sub.outputs


def optimize_regions(program: Program, ranges: Sequence[Interval | None], rules: Sequence[CompiledRule], limits: Limits, max_region_nodes: int) -> tuple[Program, list[RegionResult]]:
    results: list[RegionResult] = []
    cache: dict[tuple, tuple[Saturated, Extraction, Program]] = {}
    for region in partition(program, max_region_nodes):
        sub, back = region_program(program, region)
        # The optimizer sees ranges rounded outward, so a region whose rounded ranges match an
        # earlier one's gets exactly that region's result: reuse is the same computation.
        sub_ranges = [coarse(ranges[back[i]]) if back.get(i) is not None and back[i] < len(ranges) else None for i in range(len(sub.nodes))]
        key = _signature(sub, sub_ranges)
        reused = key in cache
        if not reused:
            cache[key] = _optimize_region(sub, sub_ranges, rules, limits)
        sat, ex, source, note = cache[key]
        results.append(RegionResult(region, sub, sat, ex, reused, back, source, key, note))
    return _stitch(program, results), results


def _optimize_region(sub: Program, sub_ranges, rules, limits) -> tuple[Saturated, Extraction, Program, str]:
    """Saturate and extract one region. Failure is local: a region whose optimization fails
    keeps the user's code (saturated with no rules, every class held to its original e-node),
    with a note naming the region and the reason; the other regions are optimized as usual."""
    try:
        sat = saturate(sub, sub_ranges, rules, limits)
        return sat, extract(sat), sub, ""
    except Exception as e:
        why = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
    sat = saturate(sub, sub_ranges, (), limits)  # the user's code, as an e-graph (raises if even that fails)
    ex = extract(sat, frozenset(sat.class_of.values()))
    computed = [n for n in sub.nodes if n.op not in LEAVES]
    what = ", ".join(sorted({n.op for n in computed}))[:120]
    return sat, ex, sub, f"a region of {len(computed)} nodes ({what}) keeps the user's code: its optimization failed ({why})"


def refuse(program: Program, results: list[RegionResult], refused: dict[tuple, set[int]], banned: dict[tuple, set[tuple]] | None = None) -> tuple[Program, list[RegionResult]]:
    """Re-extract the regions whose rewrites at the given e-classes were refused (by key, so
    every region sharing an optimization keeps its original nodes there), and stitch again.
    `banned`: per key, e-nodes (`extract.node_key`) refused by the judge; their classes choose
    their next best e-node instead (the user's, or another rewrite the judge then sees)."""
    banned = banned or {}
    redone: dict[tuple, Extraction] = {}
    out = []
    for r in results:
        if r.key in refused or r.key in banned:
            if r.key not in redone:
                redone[r.key] = extract(r.saturated, frozenset(refused.get(r.key, ())), frozenset(banned.get(r.key, ())))
            r = dataclasses.replace(r, extraction=redone[r.key])
        out.append(r)
    return _stitch(program, out), out


def _stitch(program: Program, results: list[RegionResult]) -> Program:
    b = Builder()
    env: dict[int, int] = {i: b.add("input", (), program.nodes[i].attr, program.nodes[i].type) for i in program.inputs}

    def leaf(v: int) -> int:
        if v not in env:
            n = program.nodes[v]
            env[v] = b.add(n.op, (), n.attr, n.type)
        return env[v]

    for r in results:
        ex_prog = r.extraction.program
        # The extraction may come from an identical earlier region: its inputs line up with
        # this region's by position, its parameters by the position of the param node.
        own_inputs = iter(env[r.value_map[i]] for i in r.program.inputs)
        param_of = {r.source.nodes[i].attr["name"]: r.value_map[i] for i, n in enumerate(r.program.nodes) if n.op == "param"}
        local: dict[int, int] = {}
        for i, n in enumerate(ex_prog.nodes):
            if n.op == "input":
                local[i] = next(own_inputs)
            elif n.op == "param":
                local[i] = leaf(param_of[n.attr["name"]])
            else:
                local[i] = b.add(n.op, [None if a is None else local[a] for a in n.args], n.attr, n.type)
        for v, o in zip(r.region.outputs, ex_prog.outputs):
            env[v] = local[o]
    outs = [env[o] if o in env else leaf(o) for o in program.outputs]
    return live_subprogram(b.build(outs, program.params, program.meta))
