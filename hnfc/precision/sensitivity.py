"""Measured sensitivity: how much each node's rounding reaches each output, and the dtype
allocation that spends an error budget on it (first-order error propagation, as AD-based precision
tuners such as ADAPT do).

In: an IR `Program`, sample input sets, value ranges (only for hazards), the menu and the target.
Out: `Sensitivity` (per node and output: the normwise relative error one unit of relative rounding
causes) and `allocate` (value id -> dtype). Used by `hnfc.precision.assignment.select`, which then
measures the result against the reference and repairs it by promotion.

The model. Run node i in dtype d and it rounds its result, and each float argument it casts, by a
relative error |ε| ≤ u_d = 2^-p_d (p_d significand bits with the implicit one). To first order the
output error is δy = Σ J_v (v ∘ ε_v) over the rounded values v, where J_v is the Jacobian of the
output with respect to v. We get J_vᵀ w for every v at once by one reverse pass: the program run in
float64 with a zero tensor added to every compute node's result and to every float argument a node
reads (the rounding sites), those zeros being autograd leaves. For a Gaussian probe w,
E_w E_ε (wᵀ δy)² = σ² ‖(J_vᵀ w) ∘ v‖² with σ² = u²/3 (ε uniform), the expected ‖δy‖₂²; errors of
independent sites add in squares. ‖δy‖∞ is taken as ‖δy‖₂·√(2 ln n / n) (the largest of n
comparable Gaussian errors), over ‖t‖∞. So per site and output, `rel = √(2 ln n / (3n)) · rms_w
‖(J_vᵀ w) ∘ v‖₂ / ‖y‖∞`, max over input sets, and the site in dtype d contributes u_d · rel.

Hazards (overflow beyond a dtype's max, e.g. fp16's 65504, subnormal underflow) are not first order:
they come from the worst-case value ranges (`fits`), which refuse a dtype outright.

The allocation (`allocate`): start from every node's own dtype; (1) while an output's predicted
error exceeds the budget, raise the largest contributor one step up the menu (float64 for a site
that needs more than float32: `x − mean` on shifted data); (2) greedily lower the node with the
most benefit per unit of squared budget used (benefit: its FLOPs, a matrix product's counting in
full and any other op's at `POINTWISE_WEIGHT`, since on a CPU only products are compute-bound)
while every output stays within budget. The budget is `headroom · target` (headroom < 1 leaves
room for inputs not sampled); lowering a node also removes the cast rounding of users already low.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from hnfc import ops
from hnfc.foundation.dtypes import DTYPES, to_torch
from hnfc.foundation.intervals import Interval
from hnfc.foundation.types import TensorType
from hnfc.ir.casts import PROMOTING as PROMOTING_OPS, REARRANGING, float_tensor, is_compute, widens_exactly
from hnfc.ir.program import Builder, Program
from hnfc.runtime.lowering import lower

POINTWISE_WEIGHT = 0.125  # a memory-bound op gains little from 16-bit storage next to a product
PRODUCTS = frozenset(name for name, op in ops.OPS.items() if op.contraction is not None)
UNKNOWN = 1e100  # the sensitivity of a site whose adjoint is not finite
PASS_THROUGH = ("shape",)  # op kinds whose result is its argument rearranged: no rounding of their own


def _cost_key(name: str) -> tuple[int, int]:
    d = DTYPES[name]
    return (d.bits, d.mantissa)


def unit_roundoff(d: str) -> float:
    return 2.0 ** -DTYPES[d].mantissa


# ---------------------------------------------------------------------------------------------
# The probe program: float64, with a zero leaf at every rounding site


@dataclass(frozen=True)
class Site:
    node: int  # value id in the program assessed
    arg: int | None  # None: the node's result; k: its k-th argument as this node reads it
    value: int  # the value rounded there (the node, or the argument's value id)


def probe_program(program: Program) -> tuple[Program, list[Site]]:
    """`program` in float64 with `+ δ` after every float compute node and on every float argument
    a compute node reads; the δs are extra inputs, after the program's own, in `sites` order."""
    b = Builder()
    new: dict[int, int] = {}
    sites: list[Site] = []
    deltas: list[int] = []
    wide: dict[str, torch.Tensor] = {}

    def f64(v: int) -> int:
        t = b.nodes[v].type
        return b.add("to", [v], {"dtype": "f64"}) if float_tensor(t) and t.dtype != "f64" else v

    def perturbed(v: int, site: Site) -> int:
        d = b.add("input", (), {"name": f"__hnfc_delta{len(sites)}"}, b.nodes[v].type)
        sites.append(site)
        deltas.append(d)
        return b.add("add", [v, d])

    for i, n in enumerate(program.nodes):
        if n.opdef.kind == "leaf":
            name = n.attr.get("name")
            if n.op == "param" and float_tensor(n.type) and isinstance(program.params.get(name), torch.Tensor):
                # a parameter converted once here, not by a cast on every probe run
                wide[name] = program.params[name].detach().to(torch.float64)
                new[i] = b.add(n.op, (), n.attr, n.type.with_dtype("f64"))
            else:
                new[i] = f64(b.add(n.op, (), n.attr, n.type)) if n.op != "const" else b.add(n.op, (), n.attr, n.type)
            continue
        args = [None if a is None else new[a] for a in n.args]
        if is_compute(program, i):
            args = [
                None if a is None else perturbed(args[k], Site(i, k, a)) if float_tensor(program.nodes[a].type) and program.nodes[a].op != "const" else args[k]
                for k, a in enumerate(n.args)
            ]
            try:
                v = b.add(n.op, args, n.attr)
            except Exception:
                v = None
            if v is None or b.nodes[v].type != n.type.with_dtype("f64"):
                raise ValueError(f"%{i} = {n.op}: cannot be run in float64 for the sensitivity probe")
            new[i] = perturbed(v, Site(i, None, i))
            continue
        if n.op == "to" and float_tensor(n.type) and float_tensor(program.nodes[n.args[0]].type):
            new[i] = args[0]  # a float cast: the probe keeps float64 (the rounding is the node's own)
            continue
        if n.opdef.kind == "shape" and float_tensor(n.type):
            try:
                v = b.add(n.op, args, n.attr)
            except Exception:
                v = None
            if v is not None and b.nodes[v].type.shape == n.type.shape:
                new[i] = v
                continue
        # anything else runs in its own dtypes: float arguments cast to what it expects
        cast = [None if a is None or not float_tensor(program.nodes[n.args[k]].type) else program.nodes[n.args[k]].type.dtype for k, a in enumerate(args)]
        args = [a if c is None or b.nodes[a].type.dtype == c else b.add("to", [a], {"dtype": c}) for a, c in zip(args, cast)]
        v = b.add(n.op, args, n.attr, n.type)
        new[i] = f64(v) if float_tensor(n.type) else v
    outs = [new[o] for o in program.outputs]
    meta = {k: v for k, v in program.meta.items() if k not in ("in_spec", "out_spec")}
    probe = b.build(outs, {**program.params, **wide}, meta)
    return probe, sites


# ---------------------------------------------------------------------------------------------
# Sensitivities


@dataclass
class Sensitivity:
    sites: list[Site]
    rel: np.ndarray  # [site, output]: normwise relative output error per unit relative rounding
    outputs: int
    input_sets: int
    probes: int
    by_node: dict[int, list[int]] = field(default_factory=dict)  # node -> its site indices

    def __post_init__(self) -> None:
        for k, s in enumerate(self.sites):
            self.by_node.setdefault(s.node, []).append(k)

    def result(self, i: int) -> np.ndarray:
        """Per output, the relative error of rounding node i's result with u = 1."""
        ks = [k for k in self.by_node.get(i, ()) if self.sites[k].arg is None]
        return self.rel[ks[0]] if ks else np.zeros(self.outputs)

    def argument(self, i: int, arg: int) -> np.ndarray:
        ks = [k for k in self.by_node.get(i, ()) if self.sites[k].arg == arg]
        return self.rel[ks[0]] if ks else np.zeros(self.outputs)


def sensitivities(program: Program, input_sets: Sequence[Sequence[torch.Tensor]], probes: int = 3, seed: int = 0) -> Sensitivity:
    """Per rounding site and float output: rms over Gaussian probes, max over input sets, of
    √(2 ln n/(3n))·‖(J_vᵀ w) ∘ v‖₂ / ‖y‖∞ (module doc)."""
    probe, sites = probe_program(program)
    gm = lower(probe)
    delta_ids = [i for i in probe.inputs][len(program.inputs):]
    outs_float = [float_tensor(program.nodes[o].type) for o in program.outputs]
    rel = np.zeros((len(sites), len(program.outputs)))
    gen = torch.Generator().manual_seed(seed)
    site_values = _SiteValues(program, sites)
    # zero leaves: nothing writes them, so one set of them serves every input set
    deltas = [torch.zeros(tuple(probe.nodes[d].type.shape), dtype=torch.float64, requires_grad=True) for d in delta_ids]
    for inputs in input_sets:
        xs = [x.double() if x.is_floating_point() else x for x in inputs]
        # the values at the sites: run once, then read each site's value by a forward hook-free
        # second program (the site value is the argument or result it perturbs)
        with torch.enable_grad():
            ys = gm(*xs, *deltas)
            ys = list(ys) if isinstance(ys, (tuple, list)) else [ys]
            # which sites hold a non-finite value (an additive mask) is checked once per value,
            # not per probe: on real-width models these tensors are weights of millions
            values, masked = site_values(inputs)
            for k, (y, ok) in enumerate(zip(ys, outs_float)):
                if not ok or not y.requires_grad:
                    continue
                scale = float(y.detach().abs().max())
                n = y.numel()
                if not scale > 0 or not math.isfinite(scale):
                    continue
                spread = math.sqrt(2.0 * math.log(max(n, 2)) / (3.0 * n)) / scale
                acc = np.zeros(len(sites))
                for _ in range(probes):
                    w = torch.randn(y.shape, generator=gen, dtype=torch.float64)
                    grads = torch.autograd.grad((y * w).sum(), deltas, retain_graph=True, allow_unused=True)
                    for s, (g, v) in enumerate(zip(grads, values)):
                        if g is None:
                            continue
                        if masked[s]:  # ±inf (an additive mask) rounds to itself: no error
                            acc[s] += float(torch.where(torch.isfinite(v), g * v, 0.0).square().sum())
                        else:
                            gv = (g * v).reshape(-1)
                            acc[s] += float(torch.dot(gv, gv))
                rel[:, k] = np.maximum(rel[:, k], np.sqrt(acc / probes) * spread)
    # a site whose adjoint is not finite (NaN through a masked softmax, say) is never lowered: a
    # large finite sensitivity, so that budgets still subtract
    return Sensitivity(sites, np.nan_to_num(rel, nan=UNKNOWN, posinf=UNKNOWN), len(program.outputs), len(input_sets), probes)


class _SiteValues:
    """Each site's value (float64) on an input set, from one run of the program returning them
    all (lowered once). Values computed from parameters and constants alone (weights, their
    transposes) are the same on every set: converted, and checked for non-finite entries, once."""

    def __init__(self, program: Program, sites: list[Site]) -> None:
        from hnfc.runtime.run import flat, runner

        self.program, self.sites = program, sites
        self.wanted = sorted({s.value for s in sites})
        self.run = runner(flat(program, self.wanted))
        fixed = [False] * len(program.nodes)
        for i, n in enumerate(program.nodes):
            fixed[i] = n.op != "input" and not n.opdef.opaque and all(a is None or fixed[a] for a in n.args)
        self.fixed = fixed
        self.kept: dict[int, tuple[torch.Tensor, bool]] = {}

    def __call__(self, inputs) -> tuple[list[torch.Tensor], list[bool]]:
        """(values in `sites` order, whether each holds a non-finite entry)."""
        got = dict(zip(self.wanted, self.run(inputs)))
        per_value: dict[int, tuple[torch.Tensor, bool]] = {}
        for v in self.wanted:
            if v in self.kept:
                per_value[v] = self.kept[v]
                continue
            x = got[v].detach().double().broadcast_to(tuple(self.program.nodes[v].type.shape))
            per_value[v] = (x, not bool(torch.isfinite(x).all()))
            if self.fixed[v]:
                self.kept[v] = per_value[v]
        return [per_value[s.value][0] for s in self.sites], [per_value[s.value][1] for s in self.sites]


# ---------------------------------------------------------------------------------------------
# The allocation


def _passes_dtype(program: Program, u: int, w: int) -> bool:
    """Whether node u rearranges value w in the dtype w carries (hnfc.ir.casts.with_dtypes): a
    shape op on it, an opaque split of it (`REARRANGING`), a piece of such a split."""
    n = program.nodes[u]
    if not n.args or n.args[0] != w:
        return False
    if n.opdef.kind in PASS_THROUGH and n.op != "cat":
        return True
    if n.op == "opaque":
        return n.attr.get("target") in REARRANGING
    return n.op == "getitem" and program.nodes[w].op == "opaque" and program.nodes[w].attr.get("target") in REARRANGING


def _producer(program: Program, v: int) -> int:
    """The value whose dtype `v` carries: through shape ops (and opaque splits) to the compute
    node or leaf."""
    while program.nodes[v].args and program.nodes[v].args[0] is not None and _passes_dtype(program, v, program.nodes[v].args[0]):
        v = program.nodes[v].args[0]
    return v


def node_benefit(program: Program, i: int, flops: float) -> float:
    return flops if _is_product(program, i) else POINTWISE_WEIGHT * flops


@dataclass(frozen=True)
class Allocation:
    dtypes: dict[int, str]
    predicted: list[float]  # per output: predicted normwise relative error
    raised: list[int]  # nodes raised above their own dtype by step (1)


def predicted_errors(program: Program, sens: Sensitivity, dtypes: Mapping[int, str]) -> np.ndarray:
    """Per output: √(Σ (u·rel)²) over the rounding sites of `dtypes` (module doc)."""
    sq = np.zeros(sens.outputs)
    for i, d in dtypes.items():
        sq += _node_sq(program, sens, dtypes, i, d)
    return np.sqrt(sq)


def _node_sq(program: Program, sens: Sensitivity, dtypes: Mapping[int, str], i: int, d: str) -> np.ndarray:
    """Squared error node i adds in dtype d: its result's rounding, and each float argument's cast
    when that argument comes from a value of another dtype."""
    u = unit_roundoff(d)
    sq = (u * sens.result(i)) ** 2
    for k, a in enumerate(program.nodes[i].args):
        if a is None or not float_tensor(program.nodes[a].type) or program.nodes[a].op == "const":
            continue
        p = _producer(program, a)
        src = dtypes.get(p, program.nodes[p].type.dtype if float_tensor(program.nodes[p].type) else d)
        if _cost_key(src) > _cost_key(d):
            sq = sq + (u * sens.argument(i, k)) ** 2
    return sq


def allocate(
    program: Program,
    sens: Sensitivity,
    dtype_menu: Sequence[str],
    budget: float,
    fits: Callable[[int, str], bool],
    flops: Mapping[int, float],
    *,
    start: Mapping[int, str] | None = None,
    stages: Sequence[str] = ("raise", "products", "others"),
    spent: np.ndarray | None = None,
    cast_aware: bool = True,
) -> Allocation:
    """Value id -> dtype for every float compute node of `program` (module doc). `fits(i, d)`:
    whether node i's ranges allow dtype d (the hazard check); `flops[i]`: its FLOPs. `start`:
    the dtypes to start from (default each node's own); `stages`: which of (1) "raise", (2)
    "products", "others" to run; `spent`: per output, the error already there (e.g. measured)
    in place of the prediction for `start`; `cast_aware`: the other ops' stage counts the cast
    kernels a choice adds or removes (`cast_cost`)."""
    dtype_menu = sorted(dtype_menu, key=_cost_key)
    compute = [i for i in range(len(program.nodes)) if is_compute(program, i)]
    dtypes = {i: (start or {}).get(i, program.nodes[i].type.dtype) for i in compute}
    offset = 0.0 if spent is None else np.asarray(spent, dtype=float) ** 2 - predicted_errors(program, sens, dtypes) ** 2
    users = program.users()
    limit = budget**2

    def total() -> np.ndarray:
        return predicted_errors(program, sens, dtypes) ** 2 + offset

    def affected(i: int) -> set[int]:
        """Nodes whose squared error changes when node i's dtype does: i and its readers."""
        return {i} | {u for u, _ in _readers(program, users, i) if u in dtypes}

    def delta(i: int, d: str) -> np.ndarray:
        trial = {**dtypes, i: d}
        return sum((_node_sq(program, sens, trial, j, trial[j]) - _node_sq(program, sens, dtypes, j, dtypes[j]) for j in affected(i)), np.zeros(sens.outputs))

    # (1) raise the largest contributors while the prediction misses the budget
    raised: list[int] = []
    sq = total()
    for _ in range(len(compute) if "raise" in stages else 0):
        if (sq <= limit).all():
            break
        worst = int(np.argmax(sq - limit))
        best = None
        for i in compute:
            up = [c for c in dtype_menu if _cost_key(c) > _cost_key(dtypes[i]) and fits(i, c)]
            if not up:
                continue
            gain = -delta(i, up[0])[worst]
            if gain > 0 and (best is None or gain > best[0]):
                best = (gain, i, up[0])
        if best is None:
            break
        dtypes[best[1]] = best[2]
        raised.append(best[1])
        sq = total()
    # (2) lower greedily by benefit per unit of squared budget: matrix products first (they are
    # where 16 bits pay on a CPU), then the other ops with what budget is left
    products = {i for i in compute if flops.get(i, 0.0) > 0 and i not in raised and _is_product(program, i)}
    others = {i for i in compute if flops.get(i, 0.0) > 0 and i not in raised and i not in products}
    for stage, candidates in (("products", products), ("others", others)):
        if stage not in stages:
            continue
        casts = (lambda i, d: cast_cost(program, users, dtypes, i, d)) if stage == "others" and cast_aware else None
        sq = _lower(program, sens, dtypes, candidates, dtype_menu, fits, flops, sq, limit, delta, casts)
    return Allocation(dtypes, [float(x) for x in np.sqrt(np.maximum(total(), 0.0))], raised)


def _is_product(program: Program, i: int) -> bool:
    return program.nodes[i].op in PRODUCTS or program.nodes[i].op == "scaled_dot_product_attention"


def _lower(program, sens, dtypes, candidates, dtype_menu, fits, flops, sq, limit, delta, casts=None):
    """Step (2) of `allocate` over `candidates`, in place on `dtypes`; returns the new squared
    errors. `casts(i, d)`: the cost of the cast kernels node i in dtype d adds (negative: removes),
    subtracted from its benefit (the other ops' stage: there a cast costs as much as the op saves)."""
    candidates = set(candidates)
    while True:
        best = None
        for i in candidates:
            for d in dtype_menu:
                if _cost_key(d) >= _cost_key(dtypes[i]) or not fits(i, d):
                    continue
                gain = node_benefit(program, i, flops[i]) * (DTYPES[dtypes[i]].bits - DTYPES[d].bits) / DTYPES[dtypes[i]].bits
                if casts is not None:
                    gain -= casts(i, d)
                if gain <= 0:
                    continue
                dsq = delta(i, d)
                if not (sq + dsq <= limit).all():
                    continue
                use = float(np.max(dsq / limit)) if limit > 0 else math.inf
                score = gain / max(use, 1e-30)
                if best is None or score > best[0]:
                    best = (score, i, d, dsq)
        if best is None:
            break
        _, i, d, dsq = best
        dtypes[i] = d
        sq = sq + dsq
        if not any(_cost_key(c) < _cost_key(d) for c in dtype_menu):
            candidates.discard(i)
    return sq


CAST_KERNEL = 4096.0  # a kernel's fixed cost (call, allocation), in elements of a pointwise pass


def _readers(program: Program, users, v: int) -> list[tuple[int, int]]:
    """(reader, the value it reads) for every node reading v directly or through nodes that pass
    its dtype on (`_passes_dtype`); a reader of -1 marks an output of the program."""
    out, stack, outs = [], [v], set(program.outputs)
    while stack:
        w = stack.pop()
        if w in outs:
            out.append((-1, w))
        for u in set(users[w]):
            if _passes_dtype(program, u, w):
                stack.append(u)
            else:
                out.append((u, w))
    return out


def _cast_kernels(program: Program, users, dtypes: Mapping[int, str], v: int) -> float:
    """The cost of the casts of value v that `dtypes` needs: one per other dtype its readers want
    (hnfc.ir.casts.with_dtypes shares a cast among readers of one dtype), none for a reader that
    torch widens it for (a promoting binary op kept in a wider dtype). Outputs and readers that
    are not assigned a dtype want the value's original one."""
    have = dtypes.get(v, program.nodes[v].type.dtype)
    wanted = set()
    for u, via in _readers(program, users, v):
        want = dtypes.get(u, program.nodes[via].type.dtype)
        if u in dtypes:
            node = program.nodes[u]
            if node.op in PROMOTING_OPS and want == node.type.dtype and node.type.rank > 0 and widens_exactly(have, want):
                continue
        if want != have:
            wanted.add(want)
    t = program.nodes[v].type
    numel = t.numel if isinstance(t, TensorType) and not t.is_symbolic else 0
    return len(wanted) * (POINTWISE_WEIGHT * numel + CAST_KERNEL)


def cast_cost(program: Program, users, dtypes: Mapping[int, str], i: int, d: str) -> float:
    """How much the cast kernels cost more (negative: less) with node i in dtype d than in
    dtypes[i]: the casts of i's result and of the values it reads."""
    vals = {i} | {_producer(program, a) for a in program.nodes[i].args if a is not None and float_tensor(program.nodes[a].type) and program.nodes[a].op != "const"}
    trial = {**dtypes, i: d}
    return sum(_cast_kernels(program, users, trial, v) - _cast_kernels(program, users, dtypes, v) for v in vals)


def range_fits(iv: Interval | None, d: str, own_dtype: str, target: float) -> bool:
    """Whether a value in `iv` is safe in dtype d: below its max (fp16: 65504) and, unless d has
    at least the range of the node's own dtype, not so small that d's subnormal spacing exceeds
    target·|value| (the worst-case range bound: hazards are not first order)."""
    dd, od = DTYPES[d], DTYPES[own_dtype]
    if iv is None or dd.max >= od.max and dd.tiny <= od.tiny:
        return True  # at least the node's own dtype's range
    if not iv.mag < dd.max:
        return False
    spacing = dd.tiny * 2.0 ** (1 - dd.mantissa)  # of subnormals
    return iv.mag == 0 or spacing <= target * iv.mag


MASK = 1e30  # additive attention masks use -inf or finfo.min; no logit is this large


def _additive_mask(iv: Interval) -> bool:
    """A range [-inf or -huge, <= 0]: an additive attention mask, whose masked entries are -inf in
    every dtype (a finite -huge constant is legalized to -finfo.max, hnfc/precision/legalize.py);
    its range is no overflow hazard."""
    return iv.lo <= -MASK and iv.hi <= 0


def fits_check(program: Program, ranges: Sequence[Interval], target: float) -> Callable[[int, str], bool]:
    """`fits(i, d)` from the worst-case ranges of node i's result and its float arguments (the
    dtype's max, and its subnormal spacing: `range_fits`)."""
    fits = range_fits

    def check(i: int, d: str) -> bool:
        n = program.nodes[i]
        ivs = [ranges[i]] + [ranges[a] for a in n.args if a is not None and float_tensor(program.nodes[a].type) and program.nodes[a].op != "const"]
        return all(fits(iv, d, n.type.dtype, target) for iv in ivs if not _additive_mask(iv))

    return check


def torch_dtype(d: str) -> Any:
    return to_torch(d)
