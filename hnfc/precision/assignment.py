"""Precision assignment: a dtype per node from its precision requirement, validated by measurement.

In: an IR `Program`, its value ranges (hnfc.analysis.ranges), a `Config` with `target` (the
normwise relative error every output must meet) and `dtypes` (the menu). Out: the per-node dtype
choice (`assign`), a new program with `to` casts (`with_dtypes`), and, from `select`, the program
that meets the target on the verification inputs with what was promoted and why.

Error measure. For an output y with true value t (hnfc.numerics.reference, mpmath): the normwise relative
error ‖y − t‖∞ / ‖t‖∞ (max over the verification input sets). It is what `target` bounds.

The requirement (DESIGN.md, "Precision assignment"; the HNF bound p ≥ log2(c·κ·D²/ε) in bits).
A node run in dtype d rounds its float arguments and its result to d: a relative error of
u_d = 2^-p_d (p_d: significand bits incl. the implicit one, 8 for bf16, 11 f16, 24 f32, 53 f64).
The node amplifies its arguments' error by its condition number (`own` bits), and every node
between it and an output amplifies it again (`down` bits). So the node needs

    need = log2(1/target) + own + down + margin           bits of significand, p_d ≥ need
    own  = clip(log2 cond, 0, W)                           cond from hnfc.analysis.node_cost
    down = max over users u of (own(u) + down(u))         0 at outputs; shape ops, casts pass it on

cond is the op table's relative condition number over the node's input box (the number that
also drives extraction), with three normwise corrections, because `target` is normwise:
(1) hazards (overflow, domain edges) do not count as bits here: they are range facts, checked
below; (2) for the linear family (add, sub, sum, mean, mm, bmm, matmul, addmm, linear) an
unbounded elementwise cond (a result range that reaches 0: every residual add and matmul) is
replaced by the normwise one, Σ|terms| over |result| from interval magnitudes, with √k for a
k-term contraction (rounding errors of independent terms add like a random walk; Higham & Mary's
probabilistic bound): √k·‖a‖·‖b‖/‖c‖ for a product, (‖a‖+‖b‖)/‖a±b‖ for a sum;
(3) softmax and log_softmax ignore masked entries (inputs below −1e30, an additive attention mask,
whose probabilities are exact zeros): the cond is taken over the unmasked part of the range.

The dtype: the cheapest menu dtype (by storage width, then significand) with p_d ≥ need whose
finite range holds the node's result interval and its float arguments' intervals (fp16's max is
65504; values so small that the dtype's subnormal spacing exceeds target·‖result‖ also refuse it).
A dtype at least as wide as the node's own one always fits (the program already computes there).
Downstream amplification only keeps a node at its original dtype, it never raises it above: a
long chain of interval conds compounds pessimistically, and above-original precision is the
validation loop's call (and the node's own cond's, when own alone needs it: log(1 + x), x ≈ 1e-8).
Only float compute nodes (pointwise, reductions, nn, linalg ops) are assigned; shape ops follow
their argument, inputs, parameters, constants, casts and opaque ops keep their dtype.

Lowering a node to d casts its float arguments to d (`to` nodes, hash-consed, so neighbours of one
dtype share their casts) and, where a user or an output wants another dtype, casts the result back.
A float32 node between 16-bit ones whose op gives the same values in 16 bits (`rounds_once`) runs
in 16 bits instead (`without_islands`): two casts fewer, bit for bit the same result.

Selection (`select`): the dtypes come from measured sensitivity, not from the requirement above
(which stays as the report's explanation, `need_bits`/`own_bits`/`down_bits`, and as the range rule
for promotions): hnfc/precision/sensitivity.py estimates, by adjoints of a float64 run, how much
each node's rounding reaches each output, and allocates the budget 0.9·target, matrix products
first. `select` then measures the mixed program, legalized as the pipeline will run it
(hnfc/precision/legalize.py), on all verification inputs (half of them unseen by the estimate),
calibrates the estimate once, promotes the largest estimated contributors of failing outputs one
menu step (at most `max_promotions` rounds), tries the products still high one at a time by
measurement, and lowers the other ops with what budget the measurement leaves. The truth is the
mpmath reference, or the program in float64 when the reference exceeds `max_reference_ops`. If the
target cannot be met, the best assignment tried is kept when it measures no worse than the
original dtypes, else the original, with a warning.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from hnfc import ops
from hnfc.foundation.config import Config
from hnfc.analysis.curvature import node_cost
from hnfc.foundation.intervals import Interval
from hnfc.foundation.dtypes import DTYPES, dtype_name, holds
from hnfc.ir.casts import float_tensor, is_compute, with_dtypes
from hnfc.ir.program import Program, ancestors
from hnfc.numerics.reference import reference
from hnfc.precision.legalize import legalize
from hnfc.runtime.run import flat, runner
from hnfc.precision import sensitivity as sn
from hnfc.precision.sensitivity import range_fits as _fits
from hnfc.ops.core import full_attrs
from hnfc.foundation.types import TensorType

PRODUCTS = frozenset(name for name, op in ops.OPS.items() if op.contraction is not None and op.kind == "linalg")
LINEAR_FAMILY = frozenset({"add", "sub", "sum", "mean"}) | PRODUCTS
LOW_PRECISION = frozenset({"bf16", "f16"})
MASK = 1e30  # additive attention masks use finfo.min or -inf; logits are never this large
MENUS = {"cpu": ("bf16", "f32", "f64"), "cuda": ("f16", "bf16", "f32", "f64"), "mps": ("f16", "bf16", "f32")}  # MPS has no float64
# Any other device (xpu, xla, hpu, privateuse1): float64 is missing or emulated on many of them
# and float16 kernels vary, so only what they all run (Config.dtypes widens it).
OTHER_DEVICE_MENU = ("bf16", "f32")


# ---------------------------------------------------------------------------------------------
# Menu


def cost_key(name: str) -> tuple[int, int]:
    d = DTYPES[name]
    return (d.bits, d.mantissa)


def runs_on(program) -> Any:
    """The device a program will run on: its own, or, for a CPU twin of a GPU program (analysed
    on the CPU), `meta["runs_on"]`."""
    return program.meta.get("runs_on", program.meta.get("device", "cpu"))


def menu(config: Config, device: Any = "cpu") -> tuple[str, ...]:
    """The configured menu, or the device's default, cheapest first."""
    names = config.dtypes if config.dtypes else MENUS.get(getattr(device, "type", str(device)).split(":")[0], OTHER_DEVICE_MENU)
    return tuple(sorted({dtype_name(n) for n in names}, key=cost_key))


# ---------------------------------------------------------------------------------------------
# Nodes and FLOPs


def _numel(t: Any) -> int:
    try:
        return t.numel if isinstance(t, TensorType) else 0
    except ValueError:  # symbolic shape
        return 0


def _contraction(program: Program, i: int) -> int:
    """k: the number of terms each result element sums (1 for elementwise ops)."""
    n = program.nodes[i]
    ts = [None if a is None else program.nodes[a].type for a in n.args]
    try:
        if n.opdef.contraction is not None:
            k = ts[n.opdef.contraction].shape[-1]
        elif n.op in ("sum", "mean", "logsumexp"):
            k = max(1, _numel(ts[0]) // max(1, _numel(n.type)))
        else:
            k = 1
    except (AttributeError, IndexError):
        k = 1
    return int(k) if isinstance(k, int) else 1


def node_flops(program: Program, i: int) -> float:
    """Matrix products 2·m·n·k, attention 4·b·h·s·t·d, reductions and nn ops the input's numel,
    pointwise ops the result's numel; shape ops, casts and leaves 0."""
    n = program.nodes[i]
    kind = n.opdef.kind
    if kind in ("leaf", "shape") or n.op in ("to", "detach", "getitem", "opaque"):
        return 0.0
    if n.op in PRODUCTS:
        return 2.0 * _numel(n.type) * _contraction(program, i)
    if n.op == "scaled_dot_product_attention":
        q, k = (program.nodes[a].type for a in n.args[:2])
        try:
            return 4.0 * _numel(q) * k.shape[-2]
        except (AttributeError, IndexError, TypeError):
            return 0.0
    if kind in ("reduction", "nn"):
        return float(max((_numel(program.nodes[a].type) for a in n.args if a is not None), default=0))
    return float(_numel(n.type))


def flop_share(program: Program, dtypes: Mapping[int, str] | None = None, low: frozenset = LOW_PRECISION) -> tuple[float, float]:
    """(share of FLOPs run in a low-precision dtype, total FLOPs). `dtypes` maps value ids to the
    dtype each node runs in (default: its type's dtype, i.e. a program with casts)."""
    total = low_flops = 0.0
    for i, n in enumerate(program.nodes):
        f = node_flops(program, i)
        if not f:
            continue
        d = (dtypes or {}).get(i, n.type.dtype if isinstance(n.type, TensorType) else "")
        total += f
        if d in low:
            low_flops += f
    return (low_flops / total if total else 0.0), total


# ---------------------------------------------------------------------------------------------
# Requirements


@dataclass(frozen=True)
class Need:
    value: int  # value id in the program assigned
    op: str
    original: str  # the node's own dtype
    own: float  # bits the node itself amplifies its arguments' rounding by
    down: float  # bits the nodes between it and an output amplify its error by
    bits: float  # required significand bits
    dtype: str  # chosen
    reason: str


def _unmasked(program: Program, ranges: Sequence[Interval], v: int) -> Interval:
    iv = ranges[v]
    if iv.lo > -MASK:
        return iv
    n = program.nodes[v]
    if n.op in ("add", "sub") and len(n.args) == 2:
        a, b = (ranges[x] if x is not None else None for x in n.args)
        if a is not None and b is not None:
            if a.lo <= -MASK and a.hi <= 0 and b.lo > -MASK:
                return b
            if b.lo <= -MASK and b.hi <= 0 and a.lo > -MASK:
                return a
    return Interval(max(iv.lo, iv.hi - 104.0), iv.hi)  # below that, exp underflows in every format


def _normwise_cond(program: Program, ranges: Sequence[Interval], i: int, wrt: int | None = None) -> float | None:
    """Normwise relative cond of a linear-family node from interval magnitudes (module doc), for
    all arguments' errors together (`wrt` None) or for argument `wrt`'s alone."""
    n = program.nodes[i]
    out = ranges[i].mag
    if not math.isfinite(out) or out == 0:
        return None
    args = [None if a is None else ranges[a].mag for a in n.args]
    if any(a is not None and not math.isfinite(a) for a in args):
        return None
    k = _contraction(program, i)
    sel = set(range(len(args))) if wrt is None else {wrt}
    if n.op in ("add", "sub"):
        return sum(args[j] for j in sel) / out
    if n.op == "sum":
        return math.sqrt(k) * args[0] / out
    if n.op == "mean":
        return args[0] / (math.sqrt(k) * out)
    prod = None
    if n.op in ("mm", "bmm", "matmul"):
        prod = math.sqrt(k) * args[0] * args[1]
        return prod / out
    if n.op == "addmm":
        bias, prod = abs(n.attr["beta"]) * args[0], abs(n.attr["alpha"]) * math.sqrt(k) * args[1] * args[2]
        return ((bias if 0 in sel else 0.0) + (prod if sel & {1, 2} else 0.0)) / out
    if n.op == "linear":
        bias, prod = (args[2] or 0.0), math.sqrt(k) * args[0] * args[1]
        return ((bias if 2 in sel else 0.0) + (prod if sel & {0, 1} else 0.0)) / out
    return None


def _cond(program: Program, ranges: Sequence[Interval], i: int, wrt: int | None = None) -> tuple[float, str, str | None]:
    """(cond, how, hazard) of node i for all its arguments' errors or for argument `wrt`'s."""
    n = program.nodes[i]
    arg_ivs = [None if a is None else ranges[a] for a in n.args]
    ts = [None if a is None else program.nodes[a].type for a in n.args]
    out_iv = ranges[i]
    if n.op in ("softmax", "log_softmax") and n.args[0] is not None and ranges[n.args[0]].lo <= -MASK:
        arg_ivs = [_unmasked(program, ranges, n.args[0])]
        out_iv = None
    cost = node_cost(n.opdef, arg_ivs, n.attr, out_iv, n.type, ts)
    cond, how = cost.cond, "cond"
    if wrt is not None and n.opdef.cond is not None and n.opdef.kind == "pointwise" and len(n.args) > 1:
        try:
            from hnfc.analysis.propagate import _args

            at = full_attrs(n.opdef, n.attr)
            cond = float(n.opdef.cond(_args(n.opdef, arg_ivs), at, out_iv or ranges[i], n.type, ts, {wrt}))
        except Exception:
            pass
    if n.op in LINEAR_FAMILY and (cond != cond or cond > 1):
        nw = _normwise_cond(program, ranges, i, wrt)
        if nw is not None and not nw >= cond:
            cond, how = nw, "normwise cond"
    if cond != cond:
        cond = math.inf
    return cond, how, cost.hazard


def _log2(c: float, width: int, floor: float) -> float:
    if math.isinf(c):
        return float(width)
    return min(max(math.log2(c) if c > 0 else floor, floor), float(width))


def own_bits(program: Program, ranges: Sequence[Interval], i: int) -> tuple[float, str]:
    """Bits node i amplifies its arguments' relative rounding error by (normwise; module doc)."""
    n = program.nodes[i]
    cond, how, hazard = _cond(program, ranges, i)
    bits = _log2(cond, DTYPES[n.type.dtype].bits, 0.0)
    reason = f"{how} {cond:.3g}" if bits > 0 else ""
    if hazard:
        reason = (reason + "; " if reason else "") + f"hazard left to the range check: {hazard}"
    return bits, reason


def edge_bits(program: Program, ranges: Sequence[Interval], u: int, k: int) -> float:
    """Bits node u amplifies (negative: attenuates) the normwise relative error of its argument k
    by. Shape ops, casts and opaque ops pass it on unchanged."""
    n = program.nodes[u]
    if not is_compute(program, u):
        return 0.0
    cond, _, _ = _cond(program, ranges, u, k)
    return _log2(cond, DTYPES[n.type.dtype].bits, -16.0)


def requirements(program: Program, ranges: Sequence[Interval], config, dtype_menu: Sequence[str] | None = None) -> dict[int, Need]:
    """The requirement and the chosen dtype of every float compute node (a pure function)."""
    target = float(config.target)
    margin = float(config.precision_margin)
    dtype_menu = tuple(sorted(dtype_menu or menu(config, runs_on(program)), key=cost_key))
    users = program.users()
    compute = [i for i in range(len(program.nodes)) if is_compute(program, i)]
    own: dict[int, tuple[float, str]] = {i: own_bits(program, ranges, i) for i in compute}
    down = [0.0] * len(program.nodes)
    is_out = set(program.outputs)
    for i in range(len(program.nodes) - 1, -1, -1):
        best = 0.0 if i in is_out else -math.inf
        for u in set(users[i]):
            if not float_tensor(program.nodes[u].type):
                continue  # an integer or bool result (a comparison) carries no rounding error on
            for k, a in enumerate(program.nodes[u].args):
                if a == i:
                    best = max(best, edge_bits(program, ranges, u, k) + down[u])
        down[i] = best if best > -math.inf else 0.0
    target_bits = math.log2(1.0 / target)
    out: dict[int, Need] = {}
    for i in compute:
        n = program.nodes[i]
        o = n.type.dtype
        ob, why = own[i]
        need = target_bits + ob + down[i] + margin
        ivs = [ranges[i]] + [ranges[a] for a in n.args if a is not None and float_tensor(program.nodes[a].type) and program.nodes[a].op != "const"]
        fitting = [d for d in dtype_menu if all(_fits(iv, d, o, target) for iv in ivs)]
        enough = [d for d in fitting if DTYPES[d].mantissa >= need]
        if enough and (cost_key(enough[0]) <= cost_key(o) or target_bits + ob + margin > DTYPES[o].mantissa):
            choice = enough[0]
        elif not enough and fitting and target_bits + ob + margin > DTYPES[o].mantissa:
            choice = fitting[-1]  # the node itself needs more than any dtype has: the most we have
        else:
            choice = o
        refused = [d for d in dtype_menu if d not in fitting and cost_key(d) < cost_key(choice)]
        reason = why + (f"; range refuses {', '.join(refused)}" if refused else "")
        out[i] = Need(i, n.op, o, ob, down[i], need, choice, reason)
    return out


def assign(program: Program, ranges: Sequence[Interval], config, dtype_menu: Sequence[str] | None = None) -> dict[int, str]:
    """Value id -> dtype for every float compute node."""
    return {i: r.dtype for i, r in requirements(program, ranges, config, dtype_menu).items()}


# ---------------------------------------------------------------------------------------------
# No float32 islands


def final_dtype(program: Program, dtypes: Mapping[int, str]) -> list[str | None]:
    """Per value: the float dtype it holds once `dtypes` is realized (hnfc.ir.casts.with_dtypes):
    its assigned dtype, its argument's for a shape op (they follow it), else its own; None for a
    value that is not a float tensor."""
    out: list[str | None] = []
    for i, n in enumerate(program.nodes):
        if not float_tensor(n.type):
            out.append(None)
        elif i in dtypes and is_compute(program, i):
            out.append(dtypes[i])
        elif n.opdef.kind == "shape" and n.op != "cat" and n.args and n.args[0] is not None and out[n.args[0]] is not None:
            out.append(out[n.args[0]])
        else:
            out.append(n.type.dtype)
    return out


def without_islands(program: Program, dtypes: Mapping[int, str]) -> dict[int, str]:
    """`dtypes` with every float32 island between 16-bit ops moved into the 16-bit dtype, where
    that gives the same values bit for bit.

    An island: a node whose float arguments all hold one 16-bit dtype L, and all of whose readers
    read it in L (compute nodes assigned L, which cast their arguments to L; through shape ops),
    computed in a wider dtype between a cast up and a cast down (`addmm → to(f32) → relu →
    to(bf16) → addmm`). When its op `rounds_once` (the op table: torch's 16-bit kernel computes
    in float32 and rounds once, and IEEE fixes the float32 result), it computes to the same values
    in L, two casts fewer. Its scalar constants and bounds must be values of L (torch rounds a
    scalar into a 16-bit `add` first, `x + 0.3` in bf16: not what float32 computes), and it must
    not be an output (an output is read in its own dtype). Decided against `dtypes` as given, all
    nodes at once: moving one node into L never makes another a reader in L (a node that moves is
    no reader of L before, and its arguments are L already), so the result is final (idempotent).
    """
    fd = final_dtype(program, dtypes)
    users = program.users()
    outputs = set(program.outputs)

    def reads_in(u: int, low: str) -> bool:
        n = program.nodes[u]
        if n.opdef.kind == "shape" and n.op != "cat" and float_tensor(n.type):
            return u not in outputs and all(reads_in(w, low) for w in set(users[u]))
        return is_compute(program, u) and dtypes.get(u) == low and n.type.dtype != low

    out = dict(dtypes)
    for i, d in dtypes.items():
        n = program.nodes[i]
        if not n.opdef.rounds_once or not is_compute(program, i) or d in LOW_PRECISION or i in outputs or not users[i]:
            continue
        floats = [a for a in n.args if a is not None and float_tensor(program.nodes[a].type)]
        lows = {fd[a] for a in floats if not program.nodes[a].opdef.constant}
        if len(lows) != 1 or not lows <= LOW_PRECISION:
            continue
        low = lows.pop()
        # constants it reads (inline scalars, `full`s, numeric attributes such as clamp's bounds)
        consts = [program.nodes[a].attr["value"] for a in floats if program.nodes[a].opdef.constant]
        consts += [v for v in n.attr.values() if isinstance(v, (int, float))]
        if all(holds(v, low) for v in consts) and all(reads_in(u, low) for u in set(users[i])):
            out[i] = low
    return out


# ---------------------------------------------------------------------------------------------
# The transformation


def dtype_map(program: Program, dtypes: Mapping[int, str], needs: Mapping[int, Need] | None = None) -> dict[str, dict]:
    """JSON-ready: "%id" -> {"op", "dtype", and the requirement when known}, over the program
    that was assigned (value ids of the program before casts were inserted)."""
    out = {}
    for i, d in sorted(dtypes.items()):
        entry: dict[str, Any] = {"op": program.nodes[i].op, "dtype": d}
        if needs and i in needs:
            r = needs[i]
            entry.update(original=r.original, need_bits=round(r.bits, 2), own_bits=round(r.own, 2), down_bits=round(r.down, 2))
        out[f"%{i}"] = entry
    return out


# ---------------------------------------------------------------------------------------------
# Measurement and the validation loop


def normwise_error(result: Any, truth: np.ndarray) -> float:
    """‖result − truth‖∞ / ‖truth‖∞ over the finite entries of truth (inf where the result is not
    finite there; 0 for an all-zero truth matched exactly)."""
    y = np.asarray(result.detach().double().cpu().numpy() if hasattr(result, "detach") else result, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    ok = np.isfinite(t)
    if not ok.any():
        return 0.0
    y, t = y[ok], t[ok]
    if not np.isfinite(y).all():
        return math.inf
    scale = float(np.abs(t).max())
    diff = float(np.abs(y - t).max())
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def truths(program: Program, input_sets: Sequence[Sequence[Any]]) -> list[list[np.ndarray]]:
    return [reference(flat(program), inputs).outputs for inputs in input_sets]


def measure(program: Program, input_sets, truth_sets) -> list[float]:
    """Normwise relative error per float output (max over input sets; 0 for integer outputs)."""
    run = runner(program)
    errs = [0.0] * len(program.outputs)
    for inputs, truth in zip(input_sets, truth_sets):
        for k, (y, t) in enumerate(zip(run(inputs), truth)):
            if getattr(y, "is_floating_point", lambda: False)():
                errs[k] = max(errs[k], normwise_error(y, t))
    return errs


@dataclass(frozen=True)
class Promotion:
    round: int
    value: int  # value id in the assigned program
    op: str
    from_dtype: str
    to_dtype: str
    reason: str


@dataclass
class PrecisionResult:
    program: Program  # with casts
    dtypes: dict[int, str]  # value id (program before casts) -> dtype
    needs: dict[int, Need]
    errors: list[float]  # per output, normwise relative, measured on the verification inputs
    met: bool
    share: float  # of FLOPs in a low-precision dtype
    promotions: list[Promotion] = field(default_factory=list)
    rounds: int = 0
    warnings: list[str] = field(default_factory=list)
    demotions: list[Promotion] = field(default_factory=list)  # lowered by measurement after the target was met
    predicted: list[float] = field(default_factory=list)  # per output: the sensitivity model's error for the allocation

    def record(self, config: Config, source: Program) -> dict:
        """What the report shows of this stage (the pipeline puts it in `Report`): the per-node
        dtypes, the low-precision FLOP share, what was promoted or demoted and why, the summary."""
        summary = self.summary(float(config.target), menu(config, runs_on(source)), source)
        moves = [{"kind": "promote", **asdict(p)} for p in self.promotions] + [{"kind": "demote", **asdict(p)} for p in self.demotions]
        return {"dtypes": dtype_map(source, self.dtypes, self.needs), "low_precision_share": self.share, "promotions": moves, "precision": summary}

    def summary(self, target: float, dtype_menu: Sequence[str], source: Program) -> dict:
        return {
            "target": target,
            "menu": list(dtype_menu),
            "met": self.met,
            "errors": self.errors,
            "rounds": self.rounds,
            "low_precision_flop_share": self.share,
            "predicted": self.predicted,
            "casts": sum(1 for n in self.program.nodes if n.op == "to") - sum(1 for n in source.nodes if n.op == "to"),
        }


def _range_ivs(program: Program, ranges, i: int) -> list[Interval]:
    n = program.nodes[i]
    return [ranges[i]] + [ranges[a] for a in n.args if a is not None and float_tensor(program.nodes[a].type) and program.nodes[a].op != "const"]


def _next_up(d: str, dtype_menu: Sequence[str], need: Need, ranges, program: Program, target: float) -> str | None:
    ivs = _range_ivs(program, ranges, need.value)
    for c in dtype_menu:
        if cost_key(c) > cost_key(d) and all(_fits(iv, c, need.original, target) for iv in ivs):
            return c
    return None


HEADROOM = 0.9  # the allocation's budget is HEADROOM·target: room for the estimate's noise and inputs not sampled
DEMOTE_TRIALS = 12  # measured one-at-a-time lowerings after the target is met (largest benefit first)


def reference_truths(program: Program, input_sets, max_ops: int) -> tuple[list[list[np.ndarray]], str]:
    """The true outputs (mpmath, hnfc.numerics.reference) when one evaluation costs at most
    `max_ops` mpmath operations per input set; beyond that the program run in float64 stands in
    (its error, about 1e-16 times the condition, is far below any target a 16- or 32-bit dtype
    can meet). Returns (truths, "mpmath" or "float64")."""
    from hnfc.verify.judge import reference_cost

    if reference_cost(program) * len(input_sets) <= max_ops:
        return truths(program, input_sets), "mpmath"
    comp = {i: "f64" for i in range(len(program.nodes)) if is_compute(program, i)}
    wide, _ = with_dtypes(program, comp)
    # the outputs without their cast back to the program's own dtype
    outs = [wide.nodes[o].args[0] if wide.nodes[o].op == "to" and wide.nodes[wide.nodes[o].args[0]].type.dtype == "f64" else o for o in wide.outputs]
    run = runner(flat(wide, outs))
    out = []
    for inputs in input_sets:
        ys = run(list(inputs))  # `wide` casts each input up where a node reads it; an op outside the table (opaque) runs in its own dtype
        out.append([y.detach().double().numpy() if y.is_floating_point() else y.numpy() for y in ys])
    return out, "float64"


def select(program: Program, ranges: Sequence[Interval], input_sets, config: Config, truth_sets=None) -> PrecisionResult:
    """Allocate from measured sensitivity, measure, promote until every output meets
    `config.target` on the verification inputs, then try lowering what stayed high (module doc)."""
    target = float(config.target)
    dtype_menu = menu(config, runs_on(program))
    needs = requirements(program, ranges, config, dtype_menu)
    warnings: list[str] = []
    if truth_sets is None:
        truth_sets, how = reference_truths(program, input_sets, config.max_reference_ops)
        if how != "mpmath":
            warnings.append("precision: the program is too large for the mpmath reference; float64 results stand in for the truth")
    flops = {i: node_flops(program, i) for i in needs}
    fits = sn.fits_check(program, ranges, target)
    # the estimate uses half of the input sets; measuring uses all, so the other half are inputs
    # the estimate never saw
    est_sets = list(input_sets)[: max(1, (len(input_sets) + 1) // 2)]
    sens = sn.sensitivities(program, est_sets, seed=config.seed)
    budget = HEADROOM * target * 2.0 ** -float(config.precision_margin)  # a margin of m bits: 2^-m of the budget
    # products first, by estimate, then by measurement (repair, demotion); the other ops last,
    # with the budget the measurement leaves
    first_stages = ("raise", "products")
    alloc = sn.allocate(program, sens, dtype_menu, budget, fits, flops, stages=first_stages)
    dtypes = dict(alloc.dtypes)
    for i in needs:
        dtypes.setdefault(i, needs[i].original)

    def runs(mixed: Program) -> Program:
        """What the pipeline will run: `mixed` legalized for its new dtypes (a bound like
        finfo(f32).min moved to bf16 would make torch raise). Only measured: `select` returns
        the unlegalized program, so the pipeline's legalize stage lists the replacements."""
        return legalize(mixed)[0] if config.legalize else mixed

    def measured(d: Mapping[int, str]) -> tuple[Program, list[float]]:
        m, _ = with_dtypes(program, without_islands(program, d))  # as it will run (same values, fewer casts)
        return m, measure(runs(m), input_sets, truth_sets)

    # calibrate: the model's scale per output from one measurement, then allocate once more
    mixed, errors = measured(dtypes)
    pred = sn.predicted_errors(program, sens, dtypes)
    ratio = [e / p if p > 0 and math.isfinite(e) else 1.0 for e, p in zip(errors, pred)]
    if any(abs(math.log2(r)) > 0.5 for r in ratio if r > 0):
        sens.rel = sens.rel * np.array([min(max(r, 1 / 64), 64.0) for r in ratio])[None, :]
        again = dict(sn.allocate(program, sens, dtype_menu, budget, fits, flops, stages=first_stages).dtypes)
        for i in needs:
            again.setdefault(i, needs[i].original)
        if again != dtypes:
            m2, e2 = measured(again)
            if max(e2, default=0.0) <= target or max(e2, default=0.0) <= max(errors, default=0.0):
                dtypes, mixed, errors = again, m2, e2

    promotions: list[Promotion] = []
    best = None
    rounds = 0
    while True:
        worst = max(errors, default=0.0)
        if best is None or worst < best[0] or worst <= target:
            best = (worst, dict(dtypes), mixed, errors)
        failing = [k for k, e in enumerate(errors) if not e <= target]
        if not failing or rounds >= config.max_promotions:
            break
        rounds += 1
        up = ancestors(program, [program.outputs[k] for k in failing])
        scored = []
        for i, d in dtypes.items():
            nxt = _next_up(d, dtype_menu, needs[i], ranges, program, target) if i in up else None
            if nxt is not None:
                contrib = float(np.sqrt(sn._node_sq(program, sens, dtypes, i, d))[failing].max())
                scored.append((contrib, i, d, nxt))
        if not scored:
            break
        top = max(s[0] for s in scored)
        for score, i, d, nxt in sorted(scored, reverse=True):
            if score >= top / 4:
                dtypes[i] = nxt
                promotions.append(Promotion(rounds, i, program.nodes[i].op, d, nxt, f"output error {worst:.3g} > target {target:g}; estimated contribution {score:.3g} in {d}"))
        mixed, errors = measured(dtypes)
    worst, dtypes_best, mixed, errors = best
    met = worst <= target
    demotions: list[Promotion] = []
    if met and config.demote:
        dtypes_best = dict(dtypes_best)
        order = sorted((i for i in dtypes_best if flops[i] and sn._is_product(program, i)), key=lambda i: -flops[i])
        trials = 0
        for i in order:
            d = dtypes_best[i]
            lower = [c for c in dtype_menu if cost_key(c) < cost_key(d) and fits(i, c)]
            if not lower or trials >= DEMOTE_TRIALS:
                continue
            trials += 1
            trial = {**dtypes_best, i: lower[-1]}
            m, e = measured(trial)
            if max(e, default=0.0) <= target:  # measured on every verification set, half of them unseen by the estimate
                demotions.append(Promotion(0, i, program.nodes[i].op, d, lower[-1], f"measured {max(e, default=0.0):.3g} <= target with it lowered"))
                dtypes_best, mixed, errors = trial, m, e
    if met:
        rest = sn.allocate(program, sens, dtype_menu, budget, fits, flops, start=dtypes_best, stages=("others",), spent=errors)
        trial = {**dtypes_best, **rest.dtypes}
        if trial != dtypes_best:
            m, e = measured(trial)
            if max(e, default=0.0) <= target:
                dtypes_best, mixed, errors = trial, m, e
    if not met:
        original = {i: r.original for i, r in needs.items()}
        orig_errors = measure(runs(program), input_sets, truth_sets)
        if max(orig_errors, default=0.0) < worst:
            warnings.append(f"precision target {target:g} not met (best mixed assignment measured {worst:.3g}); original dtypes kept ({max(orig_errors, default=0.0):.3g})")
            dtypes_best, mixed, errors = original, program, orig_errors
        else:
            warnings.append(f"precision target {target:g} not met after {rounds} promotion round(s): measured {worst:.3g}")
    share, _ = flop_share(mixed)
    ran = without_islands(program, dtypes_best) if mixed is not program else dtypes_best  # what `mixed` realizes
    res = PrecisionResult(mixed, ran, needs, errors, met, share, promotions, rounds, warnings, demotions)
    res.predicted = [float(x) for x in sn.predicted_errors(program, sens, dtypes_best)]
    return res
