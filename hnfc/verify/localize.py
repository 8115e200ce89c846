"""Localization: which nodes lose the bits (Herbie's local error).

In: a program and the input sets it is judged on. Out: `Site`s (small univariate pointwise
subexpressions: every node a pointwise op with a sympy meaning, one non-constant leaf) with, per
node, its local error: the node evaluated in its own dtype on arguments computed exactly (the
reference, rounded to the arguments' dtypes) against the exact value of the node, in bits.
A node with high local error is where the rounding happens; a node whose error only comes from
its inputs has none. The regimes stage (hnfc/verify/regimes.py) spends its search there.

Bounded: sites are found by one pass over the program; at most `max_sites` (largest first) are
measured, each on about `POINTS` values sampled from the range its leaf takes on the input sets
(the judge's own samples of the declared domain; one run of the program per input set gives every
leaf's range at once), so a large model costs a few forward passes and small reference runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hnfc.foundation.dtypes import DTYPES
from hnfc.foundation.types import TensorType
from hnfc.ir.program import Builder, Program
from hnfc.numerics.metric import bits_error, sample_inputs
from hnfc.numerics.reference import reference
from hnfc.rewrites.series import has_meaning
from hnfc.runtime.run import flat, runner

POINTS = 512  # leaf values a site is measured on
MAX_NODES = 16  # nodes in a site


@dataclass
class Site:
    root: int
    leaf: int
    nodes: tuple[int, ...]  # the site's non-constant nodes, topological, root last (leaf excluded)
    dtype: str
    local: dict[int, float] | None = None  # node -> mean local error (bits)
    root_bits: float | None = None  # mean error of the root on exact leaf values
    xs: torch.Tensor | None = None  # the leaf values measured on
    truth: dict[int, np.ndarray] | None = None  # node -> exact values on xs (float64, rounded)


def _float(t) -> bool:
    return isinstance(t, TensorType) and DTYPES[t.dtype].is_float


def sites(program: Program, max_nodes: int = MAX_NODES) -> list[Site]:
    """The maximal univariate pointwise subexpressions with at least two ops."""
    leaves: dict[int, frozenset] = {}
    members: dict[int, frozenset] = {}
    for i, n in enumerate(program.nodes):
        if n.op == "const":
            leaves[i], members[i] = frozenset(), frozenset()
        elif has_meaning(n.op) and _float(n.type) and all(a is not None for a in n.args):
            lv = frozenset().union(*(leaves[a] if a in members else frozenset([a]) for a in n.args))
            mem = frozenset([i]).union(*(members.get(a, frozenset()) for a in n.args))
            leaves[i], members[i] = lv, mem
    ok = {i for i in members if program.nodes[i].op != "const" and len(leaves[i]) == 1 and 2 <= len(members[i]) <= max_nodes}
    ok = {i for i in ok if len({program.nodes[j].type.dtype for j in members[i]} | {program.nodes[next(iter(leaves[i]))].type.dtype}) == 1}
    users = program.users()
    outs = set(program.outputs)
    roots = [i for i in ok if i in outs or not any(u in ok and leaves[u] == leaves[i] for u in users[i])]
    out = []
    for r in sorted(roots, key=lambda i: -len(members[i])):
        nodes = tuple(sorted(j for j in members[r] if program.nodes[j].op != "const"))
        out.append(Site(r, next(iter(leaves[r])), nodes, program.nodes[r].type.dtype))
    return out


def shape_key(program: Program, site: Site) -> tuple:
    """The site's expression with its leaf as a placeholder (with the dtype): sites with equal
    keys (one per layer of a model) compute the same function of their leaf."""
    memo: dict[int, tuple] = {site.leaf: ("x", site.dtype)}

    def go(i: int) -> tuple:
        if i not in memo:
            nd = program.nodes[i]
            memo[i] = (nd.op, repr(nd.attrs), tuple(go(a) for a in nd.args))
        return memo[i]

    return go(site.root)


def leaf_ranges(program: Program, leaves, input_sets) -> dict[int, tuple[float, float]]:
    """(min, max) of the finite values each leaf takes on the input sets (one run per set)."""
    leaves = sorted(set(leaves))
    out: dict[int, tuple[float, float]] = {}
    if not leaves:
        return out
    run = runner(flat(program, leaves))
    for inputs in input_sets:
        for i, v in zip(leaves, run(inputs)):
            v = v.detach().reshape(-1)
            v = v[torch.isfinite(v)]
            if v.numel():
                lo, hi = float(v.min()), float(v.max())
                out[i] = (min(lo, out[i][0]), max(hi, out[i][1])) if i in out else (lo, hi)
    return out


def leaf_values(lo: float, hi: float, dtype: str, seed: int = 0, n: int = POINTS // 2) -> torch.Tensor:
    """Distinct values of [lo, hi]: half uniform in value, half uniform over the dtype's bit
    patterns (each binade its share: tiny magnitudes are where series help), ends included."""
    t = TensorType((n,), dtype)
    parts = [sample_inputs([t], [(lo, hi)], 1, mode=m, seed=seed + k)[0][0] for k, m in enumerate(("value", "bits"))]
    ends = torch.tensor([lo, hi], dtype=parts[0].dtype)
    vals = torch.unique(torch.cat([*parts, ends]))
    return vals[torch.isfinite(vals)]


def subprogram(program: Program, site: Site, outputs, n: int) -> Program:
    """The site as a program of one 1-D input (its leaf, n values), returning `outputs`."""
    b = Builder()
    m = {site.leaf: b.input("x", TensorType((n,), site.dtype))}
    for j in sorted(set().union(*(_deps(program, o, site.leaf) for o in outputs))):
        nd = program.nodes[j]
        if j in m:
            continue
        if nd.op == "const":
            m[j] = b.add("const", (), nd.attr, nd.type)
        else:
            m[j] = b.add(nd.op, [m[a] for a in nd.args], nd.attr)
    return b.build([m[o] for o in outputs])


def _deps(program: Program, root: int, leaf: int) -> set[int]:
    seen, todo = set(), [root]
    while todo:
        i = todo.pop()
        if i in seen or i == leaf:
            continue
        seen.add(i)
        todo += [a for a in program.nodes[i].args if a is not None]
    return seen


def local_errors(program: Program, site: Site, xs: torch.Tensor) -> Site:
    """Fills `site.local` (each node's local error) and `site.root_bits`."""
    n = xs.numel()
    sub = subprogram(program, site, list(site.nodes), n)
    truth = reference(sub, [xs]).outputs  # float64, correctly rounded: each node's exact value
    exact = {site.leaf: xs}
    for j, t in zip(site.nodes, truth):
        exact[j] = torch.from_numpy(np.asarray(t, dtype=np.float64)).to(xs.dtype)
    local = {}
    for j, t in zip(site.nodes, truth):
        nd = program.nodes[j]
        b = Builder()
        args, feed = [], []
        for a in nd.args:
            an = program.nodes[a]
            if an.op == "const":
                args.append(b.add("const", (), an.attr, an.type))
            else:
                args.append(b.input(f"a{len(feed)}", TensorType((n,), site.dtype)))
                feed.append(exact[a])
        one = b.build([b.add(nd.op, args, nd.attr)])
        got = runner(one)(feed)[0]
        bits = bits_error(got, t)
        ok = ~np.isnan(np.asarray(t, dtype=np.float64))
        local[j] = float(bits[ok].mean()) if ok.any() else 0.0
    root_truth = truth[list(site.nodes).index(site.root)]
    got = runner(sub)([xs])[list(site.nodes).index(site.root)]
    ok = ~np.isnan(np.asarray(root_truth, dtype=np.float64))
    site.local, site.xs = local, xs
    site.truth = {j: np.asarray(t, dtype=np.float64) for j, t in zip(site.nodes, truth)}
    site.root_bits = float(bits_error(got, root_truth)[ok].mean()) if ok.any() else 0.0
    return site
