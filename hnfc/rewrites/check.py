"""Soundness check of rewrite rules: `hnfc.check_rules(rules)` -> one `RuleCheck` per rule.

A rule `lhs -> rhs when guards` is sound when both sides are the same real number at every
point of the guarded domain where the left side is defined. Two methods, in this order:

1. Symbolic proof (sympy), where it can decide. Patterns of pointwise ops with a sympy meaning
   (arithmetic, exp, expm1, log, log1p, log2, sqrt, rsqrt, pow, tanh, sigmoid, softplus,
   logsigmoid, erf, sin, cos, abs, relu, maximum, minimum, gelu) become sympy expressions over
   real symbols whose assumptions come from the guards (pos -> positive, nonneg -> nonnegative,
   negative -> negative, nonzero -> nonzero, in_range -> the signs its bounds imply). The rule is
   proven when `simplify(lhs - rhs)` is 0. Reductions, softmax, attribute variables, or a sympy
   that is unsure: no proof, no verdict (the sampled check decides).
2. Sampled check against mpmath, always. `samples` points on the guard's domain: half uniform in
   value (over the guard's interval, clipped to [-100, 100] on an unbounded side), half uniform
   over float64 bit patterns of the whole interval (tiny and huge magnitudes), with edge values
   (0, +-1, the bounds, the smallest subnormal, ...) mixed in. Both sides are evaluated with the
   op table's `ref` functions (the same meaning the reference interpreter uses) at 128 and 256
   bits. Rules with reductions or softmax run on rows of length 4 (samples / 4 rows), rules with
   matrix products on 4 x 4 matrices (samples / 16 of them); attribute variables take concrete
   values (dims: the last axis; keepdim: True and False; a shape: (-1,), which any tensor takes;
   numbers: the default and a few others), and so do `dim`/`keepdim` the left side leaves
   unconstrained.
   A constant variable takes a few values inside its guards' domain (a constant is one number
   for the whole tensor, so it is an assignment like an attribute, not a sampled array). A
   variable with a `rank` guard is sampled with exactly that many dims, point by point.

Comparison, point by point, at 256 bits:
- the left side is infinite (or beyond 2^4096 in magnitude, which counts as overflow): the
  point is skipped (a rule may remove an overflow or a pole, never add one);
- the left side is undefined (NaN over the reals: 0/0, log or sqrt of a negative) and the right
  side is not: a counterexample. A rule that gives a value where the real function has none
  needs a guard that excludes those points (x/x -> 1 needs nonzero(x));
- the left side is finite and the right side is NaN or infinite, or
  |lhs - rhs| > 2^-40 * max(|lhs|, |rhs|) + 2^-1074: a candidate. Candidates are re-evaluated
  at 1024, 4096 and 8192 bits and pass as soon as the sides agree. A candidate is a
  counterexample when the sides still differ at 4096 and 8192 bits (enough to add any float64
  values exactly, so cancellation in the evaluation cannot fake a difference) and each side
  agrees with itself across those two precisions.

Status: "proven" (sympy proved it and sampling agrees), "tested" (no counterexample found),
"refused" (a counterexample, recorded in `.counterexample`, or the rule cannot be evaluated).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np

from hnfc import ops
from hnfc.ops.core import obj
from hnfc.rewrites.dsl import AttrVar, Const, ConstVar, Guard, Op, Pattern, Rule, Var, op_nodes, pattern_const_vars, pattern_vars

PRECISIONS = (128, 256)
ESCALATION = (1024, 4096, 8192)  # the last two confirm a counterexample
REL_TOL = 2.0**-40
ABS_TOL = 2.0**-1074
OVERFLOW_MAG = 4096  # |v| >= 2^4096 counts as overflow (inf)
VALUE_BOX = 100.0  # value-uniform sampling on an unbounded side
ROW = 4  # row length for rules with reductions
F64_MAX = float(np.finfo(np.float64).max)
TINY = 5e-324


@dataclass
class RuleCheck:
    """The verdict on one rule.

    status: "proven" | "tested" | "refused".
    counterexample: None unless refused with a point: {"inputs": {var: value (a list for rows)},
      "attrs": {attribute variable: value}, "lhs": value, "rhs": value, "domain": {var: guard
      domain as text}, "precision": bits}.
    detail: one line on how the verdict was reached.
    points: sampled points where the left side was defined (compared).
    """

    rule: Rule
    status: str
    counterexample: dict | None = None
    detail: str = ""
    points: int = 0
    proof: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "refused"

    def __str__(self) -> str:
        return f"{self.rule.name}: {self.status} ({self.detail})"


class _Unevaluable(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Guard domains


@dataclass
class _Domain:
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False
    nonzero: bool = False
    rank: int | None = None  # a `rank` guard: the variable is sampled with exactly this many dims
    guards: list[str] = field(default_factory=list)

    def add(self, g: Guard) -> None:
        self.guards.append(str(g))
        if g.pred == "rank":
            self.rank = int(g.params[0])
        elif g.pred == "pos":
            self._lo(0.0, True)
        elif g.pred == "nonneg":
            self._lo(0.0, False)
        elif g.pred == "neg":
            self._hi(0.0, True)
        elif g.pred == "nonzero":
            self.nonzero = True
        elif g.pred == "in_range":
            self._lo(g.params[0], False)
            self._hi(g.params[1], False)

    def _lo(self, v, is_open):
        if v > self.lo or (v == self.lo and is_open):
            self.lo, self.lo_open = v, is_open

    def _hi(self, v, is_open):
        if v < self.hi or (v == self.hi and is_open):
            self.hi, self.hi_open = v, is_open

    def bounds(self) -> tuple[float, float]:
        """Closed float64 bounds of the interval (open ends moved to the next float)."""
        lo = max(self.lo, -F64_MAX)
        hi = min(self.hi, F64_MAX)
        if self.lo_open:
            lo = float(np.nextafter(lo, math.inf))
        if self.hi_open:
            hi = float(np.nextafter(hi, -math.inf))
        if self.nonzero and lo == 0.0:
            lo = TINY
        if self.nonzero and hi == 0.0:
            hi = -TINY
        return lo, hi

    def value_bounds(self) -> tuple[float, float]:
        lo, hi = self.bounds()
        if not math.isfinite(self.lo):
            lo = min(-VALUE_BOX, hi - VALUE_BOX) if math.isfinite(self.hi) else -VALUE_BOX
        if not math.isfinite(self.hi):
            hi = max(VALUE_BOX, lo + VALUE_BOX) if math.isfinite(self.lo) else VALUE_BOX
        return max(lo, self.bounds()[0]), min(hi, self.bounds()[1])

    def contains(self, v: float) -> bool:
        lo, hi = self.bounds()
        return lo <= v <= hi and not (self.nonzero and v == 0.0)

    def __str__(self) -> str:
        return ", ".join(self.guards) if self.guards else "any real"


def _sample(dom: _Domain, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Half uniform in value, half uniform over float64 bit patterns, edge values mixed in."""
    from hnfc.numerics.metric import from_ordinal, ordinal

    n = int(np.prod(shape))
    half = n // 2
    lo, hi = dom.bounds()
    vlo, vhi = dom.value_bounds()
    value = rng.uniform(vlo, vhi, size=half) if vhi > vlo else np.full(half, vlo)
    k = rng.integers(int(ordinal(lo, "f64")), int(ordinal(hi, "f64")), size=n - half, endpoint=True, dtype=np.int64)
    bits = np.asarray(from_ordinal(k, "f64"), dtype=np.float64)
    out = np.concatenate([value, bits])
    edges = [v for v in (0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, TINY, -TINY, 1e-300, -1e-300, 1e300, -1e300, lo, hi, vlo, vhi) if dom.contains(v)]
    mask = rng.random(n) < 0.15
    if edges and mask.any():
        out[mask] = rng.choice(np.array(edges), size=int(mask.sum()))
    if dom.nonzero:
        out[out == 0.0] = 1.0
    return out.reshape(shape)  # value half first: counterexamples tend to be plain numbers


# ---------------------------------------------------------------------------------------------
# Attributes: concrete values for attribute variables and unconstrained dims


def _structured(rule: Rule) -> bool:
    def walk(p):
        if isinstance(p, Op):
            if ops.OPS[p.op].kind != "pointwise":
                return True
            return any(walk(a) for a in p.args)
        return False

    return walk(rule.lhs) or walk(rule.rhs)


CONST_VALUES = (1e-5, 0.5, 3.0, -0.5, -3.0, 1e-12, 100.0, -100.0, 0.0)


def _const_candidates(dom: _Domain) -> list[float]:
    inside = [v for v in CONST_VALUES if dom.contains(v)]
    return inside[:3] or [sum(dom.value_bounds()) / 2]


def _attr_candidates(rule: Rule, const_domains: dict[str, _Domain]) -> tuple[list[dict[str, Any]], dict[Op, dict[str, list]]]:
    """Assignments (at most 8) of the attribute variables, of the constant variables and of the
    `dim`/`keepdim` the left side leaves free (keyed "<node>.<attr>"), and the free attributes
    per left-side node."""
    cands: dict[str, list] = {n: _const_candidates(dom) for n, dom in const_domains.items()}
    axis = {}

    def number_cands(default):
        out = [default] if default is not None else []
        for v in (2.0, 0.5, 3.0):
            if v not in out:
                out.append(v)
        return out

    def visit(p):
        if not isinstance(p, Op):
            return
        opdef = ops.OPS[p.op]
        for key, value in p.attrs:
            default = opdef.attrs.get(key)
            if isinstance(value, AttrVar) and value.name not in cands:
                if key == "dim":
                    cands[value.name] = [-1] if isinstance(default, int) else [(-1,)]
                elif key == "shape":
                    cands[value.name] = [(-1,)]  # flatten: a shape any tensor takes
                elif isinstance(default, bool) or key == "keepdim":
                    cands[value.name] = [True, False]
                elif isinstance(default, int):
                    cands[value.name] = [default, default + 1]  # counts (normalized_ndim): stay integers
                elif isinstance(default, float):
                    cands[value.name] = number_cands(default)
                else:
                    cands[value.name] = [default]
            elif isinstance(value, tuple):
                for v in value:
                    if isinstance(v, AttrVar) and v.name not in cands:
                        axis[v.name] = -1 - len(axis)
                        cands[v.name] = [axis[v.name]]
        for a in p.args:
            visit(a)

    visit(rule.lhs)
    free: dict[Op, dict[str, list]] = {}

    def visit_free(p):
        if not isinstance(p, Op):
            return
        opdef = ops.OPS[p.op]
        if opdef.kind != "pointwise":
            given = dict(p.attrs)
            fill = {}
            if "dim" in opdef.attrs and "dim" not in given:
                fill["dim"] = [-1] if isinstance(opdef.attrs["dim"], int) else [(-1,)]
            if "keepdim" in opdef.attrs and "keepdim" not in given:
                fill["keepdim"] = [True, False]
            if fill:
                free[p] = fill
        for a in p.args:
            visit_free(a)

    visit_free(rule.lhs)
    names = list(cands)
    slots = [(p, k) for p, f in free.items() for k in f]
    combos = []
    for values in itertools.product(*[cands[n] for n in names], *[free[p][k] for p, k in slots]):
        combos.append(dict(zip(names + [f"{p}.{k}" for p, k in slots], values)))
        if len(combos) >= 8:
            break
    return combos or [{}], free


def _concrete(value, binding):
    if isinstance(value, (AttrVar, ConstVar)):
        return binding[value.name]
    if isinstance(value, tuple):
        return tuple(_concrete(v, binding) for v in value)
    return value


def _row_shape(combo: dict) -> tuple[int, ...]:
    axes = [v for v in combo.values() if isinstance(v, int) and not isinstance(v, bool) and v < 0]
    depth = max([-a for a in axes] + [1])
    return (3,) * (depth - 1) + (ROW,)


PRODUCTS = frozenset(name for name, op in ops.OPS.items() if op.contraction is not None and op.kind == "linalg")
MATRIX_ONLY = frozenset({"mm", "addmm"})  # 2-D operands only: evaluated one matrix at a time


def _ops_in(rule: Rule) -> set[str]:
    return {p.op for side in (rule.lhs, rule.rhs) for p in op_nodes(side)}


def _literal_dims_ok(p) -> bool:
    """Batched rows need every literal dim to count from the end (negative)."""
    if not isinstance(p, Op):
        return True
    opdef = ops.OPS[p.op]
    if opdef.kind != "pointwise":
        d = dict(p.attrs).get("dim", "free")
        if d is None:
            return False
        for v in d if isinstance(d, tuple) else (d,):
            if isinstance(v, int) and v >= 0:
                return False
    return all(_literal_dims_ok(a) for a in p.args)


# ---------------------------------------------------------------------------------------------
# Evaluation with the op table's exact meaning


def _sanitize(v):
    t = getattr(v, "_mpf_", None)  # (sign, mantissa, exponent, bitcount); mantissa 0: 0/inf/nan
    if t is not None and t[1] and t[2] + t[3] > OVERFLOW_MAG:
        return -mpmath.inf if t[0] else mpmath.inf
    return v


_SANITIZE = np.frompyfunc(_sanitize, 1, 1)


def _evaluate(p: Pattern | None, env: dict[str, np.ndarray], binding: dict, free: dict, cache: dict, cap: bool = True):
    if p is None:
        return None
    if isinstance(p, Var):
        return env[p.name]
    if isinstance(p, Const):
        return obj(mpmath.mpf(p.value))
    if isinstance(p, ConstVar):
        return obj(mpmath.mpf(binding[p.name]))
    key = id(p)
    if key in cache:
        return cache[key]
    opdef = ops.OPS[p.op]
    if opdef.ref is None:
        raise _Unevaluable(f"op {p.op} has no exact meaning (ref)")
    args = [_evaluate(a, env, binding, free, cache, cap) for a in p.args]
    attrs = {k: _concrete(v, binding) for k, v in p.attrs}
    for k in free.get(p, {}):
        attrs[k] = binding[f"{p}.{k}"]
    attrs = ops.full_attrs(opdef, attrs)
    out_type = None
    if opdef.infer is not None:
        from hnfc.foundation.types import TensorType

        arg_types = [None if a is None else TensorType(tuple(np.shape(a)), "f64") for a in args]
        try:
            out_type = opdef.infer(arg_types, attrs)
        except Exception:  # sampled shapes a type rule refuses (a full-row weight): the meaning
            out_type = next((t for t in arg_types if t is not None), None)  # is still elementwise
    try:
        value = obj(opdef.ref(args, attrs, out_type))
    except Exception as e:
        raise _Unevaluable(f"{p.op}: {type(e).__name__}: {e}") from None
    value = obj(_SANITIZE(value)) if cap else value
    cache[key] = value
    return value


def _both_sides(rule: Rule, env, binding, free, prec: int, cap: bool = True):
    """Both sides at `prec` bits; with `cap`, magnitudes beyond 2^4096 count as overflow (inf)."""
    with mpmath.workprec(prec):
        env_mp = {k: obj(np.frompyfunc(mpmath.mpf, 1, 1)(v)) for k, v in env.items()}
        cache: dict = {}
        lhs = _evaluate(rule.lhs, env_mp, binding, free, cache, cap)
        rhs = _evaluate(rule.rhs, env_mp, binding, free, cache, cap)
        return lhs, rhs


def _finite(v) -> bool:
    return isinstance(v, (mpmath.mpf, int, float)) and not isinstance(v, bool) and mpmath.isfinite(v)


def _close(a, b, rel=REL_TOL) -> bool:
    if not (_finite(a) and _finite(b)):
        return (mpmath.isnan(a) and mpmath.isnan(b)) or (not mpmath.isnan(a) and a == b)
    return abs(a - b) <= rel * max(abs(a), abs(b)) + ABS_TOL  # at mpmath's ambient precision


def _isnan(v) -> bool:
    return isinstance(v, (mpmath.mpf, float)) and mpmath.isnan(v)


def _point_verdict(lhs_vals, rhs_vals) -> str:
    """'skip' (left side infinite somewhere), 'ok' or 'bad' for one point (all its elements)."""
    if any(not _finite(v) and not _isnan(v) for v in lhs_vals):
        return "skip"
    for a, b in zip(lhs_vals, rhs_vals):
        if _isnan(a):
            if _finite(b):
                return "bad"  # a value where the real function is undefined: needs a guard
        elif not _finite(b) or not _close(a, b):
            return "bad"
    return "ok"


def _as_float(v):
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return str(v)


def _listify(arr):
    a = np.asarray(arr, dtype=object)
    if a.size == 1:
        return _as_float(a.ravel()[0])
    if a.ndim == 0:
        return _as_float(a[()])
    return [_listify(x) for x in a]


# ---------------------------------------------------------------------------------------------
# Symbolic proof


def _sympy_of(p, sym, sp):
    if isinstance(p, (Var, ConstVar)):
        return sym[p.name]
    if isinstance(p, Const):
        v = p.value
        return sp.Integer(int(v)) if v == int(v) else sp.nsimplify(v, rational=True)
    if not isinstance(p, Op):
        raise _Unevaluable("no sympy meaning")
    attrs = dict(p.attrs)
    if any(isinstance(v, (AttrVar, ConstVar)) for v in attrs.values()):
        raise _Unevaluable("attribute variable")
    return sympy_call(p.op, [_sympy_of(x, sym, sp) for x in p.args], attrs, sp)


def sympy_call(op: str, a: list, attrs: dict, sp):
    """The sympy meaning of pointwise `op` on sympy arguments `a` (also hnfc/rewrites/series.py's);
    raises _Unevaluable for an op without one."""
    table = {
        "add": lambda: a[0] + a[1],
        "sub": lambda: a[0] - a[1],
        "mul": lambda: a[0] * a[1],
        "div": lambda: a[0] / a[1],
        "neg": lambda: -a[0],
        "reciprocal": lambda: 1 / a[0],
        "abs": lambda: sp.Abs(a[0]),
        "square": lambda: a[0] ** 2,
        "pow": lambda: a[0] ** sp.nsimplify(attrs.get("exponent", 2.0), rational=True),
        "exp": lambda: sp.exp(a[0]),
        "expm1": lambda: sp.exp(a[0]) - 1,
        "log": lambda: sp.log(a[0]),
        "log1p": lambda: sp.log(1 + a[0]),
        "log2": lambda: sp.log(a[0]) / sp.log(2),
        "sqrt": lambda: sp.sqrt(a[0]),
        "rsqrt": lambda: 1 / sp.sqrt(a[0]),
        "tanh": lambda: sp.tanh(a[0]),
        "sigmoid": lambda: 1 / (1 + sp.exp(-a[0])),
        "logsigmoid": lambda: -sp.log(1 + sp.exp(-a[0])),
        "softplus": lambda: sp.log(1 + sp.exp(_beta(attrs, sp) * a[0])) / _beta(attrs, sp),
        "erf": lambda: sp.erf(a[0]),
        "sin": lambda: sp.sin(a[0]),
        "cos": lambda: sp.cos(a[0]),
        "sinh": lambda: sp.sinh(a[0]),
        "cosh": lambda: sp.cosh(a[0]),
        "hypot": lambda: sp.sqrt(a[0] ** 2 + a[1] ** 2),
        "relu": lambda: sp.Max(a[0], 0),
        "maximum": lambda: sp.Max(a[0], a[1]),
        "minimum": lambda: sp.Min(a[0], a[1]),
        "gelu": lambda: _gelu(a[0], attrs, sp),
    }
    if op not in table:
        raise _Unevaluable(f"{op} has no sympy meaning")
    return table[op]()


def _beta(attrs, sp):
    return sp.nsimplify(attrs.get("beta", 1.0), rational=True)


def _gelu(x, attrs, sp):
    if attrs.get("approximate", "none") != "none":
        raise _Unevaluable("gelu tanh")
    return x / 2 * (1 + sp.erf(x / sp.sqrt(2)))


def _prove(rule: Rule, domains: dict[str, _Domain]) -> str | None:
    """A one-line proof note when sympy shows lhs - rhs == 0 under the guards, else None."""
    try:
        import sympy as sp
    except ImportError:  # pragma: no cover
        return None
    sym = {}
    for name, dom in domains.items():
        assume = {"real": True}
        if dom.lo > 0 or (dom.lo == 0 and dom.lo_open):
            assume["positive"] = True
        elif dom.lo >= 0:
            assume["nonnegative"] = True
        if dom.hi < 0 or (dom.hi == 0 and dom.hi_open):
            assume["negative"] = True
        elif dom.hi <= 0:
            assume["nonpositive"] = True
        if dom.nonzero:
            assume["nonzero"] = True
        try:
            sym[name] = sp.Symbol(name, **assume)
        except Exception:
            return None
    try:
        lhs = _sympy_of(rule.lhs, sym, sp)
        rhs = _sympy_of(rule.rhs, sym, sp)
        diff = lhs - rhs
        if diff == 0:
            return "sympy: lhs - rhs evaluates to 0"
        # cheap normal forms first (exp-rewritten rational functions), simplify only when small
        rational = sp.cancel(sp.together(sp.expand(diff.rewrite(sp.exp))))
        if rational == 0:
            return "sympy: cancel(lhs - rhs, rewritten in exp) == 0"
        if sp.count_ops(diff) > 40:
            return None
        if sp.simplify(diff) == 0:
            return "sympy: simplify(lhs - rhs) == 0"
    except _Unevaluable:
        return None
    except Exception:
        return None
    return None


# ---------------------------------------------------------------------------------------------
# The check


def check_rule(rule: Rule, *, samples: int = 1000, seed: int = 0) -> RuleCheck:
    """Check one rule (see the module doc)."""
    names = sorted(pattern_vars(rule.lhs))
    domains = {n: _Domain() for n in names + sorted(pattern_const_vars(rule.lhs))}
    for g in rule.when:
        domains[g.var].add(g)
    for n, dom in domains.items():
        lo, hi = dom.bounds()
        if lo > hi or (lo == hi == 0.0 and dom.nonzero):
            return RuleCheck(rule, "refused", None, f"the guards on {n} are contradictory ({dom}): the rule can never apply")
    proof = _prove(rule, domains)
    combos, free = _attr_candidates(rule, {n: d for n, d in domains.items() if n not in names})
    structured = _structured(rule)
    square = bool(_ops_in(rule) & PRODUCTS)  # every variable a ROW x ROW matrix, so products type
    ranked = any(domains[n].rank is not None for n in names)  # per-variable shapes: point by point
    batched = _literal_dims_ok(rule.lhs) and _literal_dims_ok(rule.rhs) and not _ops_in(rule) & MATRIX_ONLY and not ranked
    rng = np.random.default_rng(seed)
    compared = skipped = unconfirmed = 0
    total = 0
    per_combo = max(samples // len(combos), 1)
    for combo in combos:
        if square:
            shape = (max(per_combo // (ROW * ROW), 16), ROW, ROW)
        elif structured:
            rows = max(per_combo // ROW, 16)
            shape = (rows, *_row_shape(combo))
        else:
            shape = (per_combo,)
        env = {n: _sample(domains[n], rng, _ranked_shape(shape, domains[n].rank)) for n in names}
        try:
            if structured and not batched:
                results = [(_both_sides(rule, {n: v[i] for n, v in env.items()}, combo, free, p)) for p in PRECISIONS for i in range(shape[0])]
                hi = results[shape[0]:]
                lhs = [r[0] for r in hi]
                rhs = [r[1] for r in hi]
            else:
                _both_sides(rule, env, combo, free, PRECISIONS[0])  # the lower precision: evaluates, catches errors cheaply
                lhs, rhs = _both_sides(rule, env, combo, free, PRECISIONS[1])
        except _Unevaluable as e:
            return RuleCheck(rule, "refused", None, f"cannot evaluate the rule: {e}")
        npoints = shape[0]
        total += npoints
        for i in range(npoints):
            li = np.asarray(lhs[i] if structured and not batched else _point(lhs, i, npoints, structured), dtype=object).ravel()
            ri = np.asarray(rhs[i] if structured and not batched else _point(rhs, i, npoints, structured), dtype=object).ravel()
            if li.shape != ri.shape and ri.size != 1 and li.size != 1:
                return RuleCheck(rule, "refused", None, f"the sides have different shapes ({li.shape} vs {ri.shape})")
            li, ri = np.broadcast_arrays(li, ri)
            verdict = _point_verdict(li, ri)
            if verdict == "skip":
                skipped += 1
                continue
            compared += 1
            if verdict == "ok":
                continue
            point_env = {n: v[i] if not np.ndim(v) == 0 else v for n, v in env.items()}
            confirmed = _confirm(rule, point_env, combo, free)
            if confirmed == "ok":
                continue
            if confirmed == "unconverged":
                unconfirmed += 1
                continue
            lhs_v, rhs_v, prec = confirmed
            cex = {
                "inputs": {n: _listify(v) for n, v in point_env.items()},
                "attrs": {k: v for k, v in combo.items()},
                "lhs": _listify(lhs_v),
                "rhs": _listify(rhs_v),
                "domain": {n: str(d) for n, d in domains.items()},
                "precision": prec,
            }
            consts = {n: v for n, v in combo.items() if n in domains and n not in names}
            shown = ", ".join(f"{n}={_fmt(v)}" for n, v in {**cex["inputs"], **consts}.items())
            note = " (sympy claimed a proof)" if proof else ""
            return RuleCheck(
                rule, "refused", cex, f"at {shown}: lhs = {_fmt(cex['lhs'])}, rhs = {_fmt(cex['rhs'])}{note}", compared, proof
            )
    if compared == 0:
        return RuleCheck(rule, "refused", None, f"the left side is undefined at all {total} sampled points", 0, proof)
    tail = f"{compared} of {total} points compared at {PRECISIONS[0]}/{PRECISIONS[1]} bits, no counterexample"
    if unconfirmed:
        tail += f" ({unconfirmed} points did not converge by {ESCALATION[-1]} bits)"
    if proof:
        return RuleCheck(rule, "proven", None, f"{proof}; {tail}", compared, proof)
    return RuleCheck(rule, "tested", None, tail, compared, None)


def _ranked_shape(shape: tuple[int, ...], rank: int | None) -> tuple[int, ...]:
    """Points first, then a point's own shape where a guard fixes it: `rank` dims of ROW each
    (square, so an axis mix-up evaluates and shows as a counterexample rather than a shape error)."""
    if rank is None:
        return shape
    return (shape[0],) + (ROW,) * rank


def _point(arr, i, n, structured):
    a = np.asarray(arr, dtype=object)
    if a.ndim == 0:
        return a
    if a.shape[0] == n:
        return a[i]
    return a  # a constant side (broadcast)


def _fmt(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _confirm(rule, point_env, combo, free):
    """Re-evaluate one point at rising precision: "ok" as soon as the sides agree,
    (lhs, rhs, prec) when they still differ at both confirmation precisions with each side
    converged, else "unconverged"."""
    env = {n: np.asarray(v, dtype=np.float64) for n, v in point_env.items()}
    vals = []
    for p in ESCALATION:
        try:
            lhs, rhs = _both_sides(rule, env, combo, free, p)
        except _Unevaluable:
            return "unconverged"
        lhs, rhs = np.broadcast_arrays(np.asarray(lhs, dtype=object).ravel(), np.asarray(rhs, dtype=object).ravel())
        verdict = _point_verdict(lhs, rhs)
        if verdict != "bad":
            return "ok"  # agreement (or an infinite left side) once precision suffices
        if any(_isnan(a) and _finite(b) for a, b in zip(lhs, rhs)):
            # undefined, or inf - inf from the overflow cap? mpmath's exponents do not overflow
            raw, _ = _both_sides(rule, env, combo, free, p, cap=False)
            raw = np.broadcast_to(np.asarray(raw, dtype=object).ravel(), lhs.shape)
            if not any(_isnan(a) for a in raw):
                return "ok"
        vals.append((lhs, rhs))
    (l1, r1), (l2, r2) = vals[-2:]
    if not all(_close(a, b, 2.0**-60) for a, b in zip(l1, l2)):
        return "unconverged"
    if not all(_close(a, b, 2.0**-60) or not _finite(b) for a, b in zip(r1, r2)):
        return "unconverged"
    return l2, r2, ESCALATION[-1]


def check_rules(rules: Any, *, samples: int = 1000, seed: int = 0) -> list[RuleCheck]:
    """Check every rule of a pack (anything `hnfc.rewrites.packs.resolve` accepts)."""
    from hnfc.rewrites.packs import resolve

    return [check_rule(r, samples=samples, seed=seed) for r in resolve(rules)]


def check_pack_cli(spec: Any, *, samples: int = 1000, seed: int = 0, console=None) -> int:
    """`hnfc rules check PACK`: print a table of verdicts; exit code 1 if any rule is refused."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    try:
        results = check_rules(spec, samples=samples, seed=seed)
    except Exception as e:  # a pack that cannot be loaded or defined
        console.print(f"[bold red]error:[/] cannot load rule pack {spec!r}: {e}", soft_wrap=True)
        return 2
    table = Table(title=f"rule check: {spec if isinstance(spec, str) else 'rules'}")
    table.add_column("rule")
    table.add_column("status")
    table.add_column("detail / counterexample", overflow="fold")
    colors = {"proven": "green", "tested": "cyan", "refused": "red"}
    for r in results:
        table.add_row(r.rule.name, f"[{colors[r.status]}]{r.status}[/{colors[r.status]}]", r.detail)
    console.print(table)
    refused = sum(not r.ok for r in results)
    counts = {s: sum(r.status == s for r in results) for s in ("proven", "tested", "refused")}
    console.print(", ".join(f"{v} {k}" for k, v in counts.items()))
    return 1 if refused else 0


__all__ = ["RuleCheck", "check_pack_cli", "check_rule", "check_rules"]
