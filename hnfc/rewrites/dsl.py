"""The rule DSL: patterns built with the same op builders that build programs, guards, rules.

    x, y = vars("x y")
    rule("log1p-intro", log(1 + x), log1p(x), tags=("log-exp",))
    rule("exp-log", exp(log(x)), x, when=[pos(x)], tags=("log-exp",))
    e, = const_vars("e")  # matches a scalar constant and binds its value
    rule("rms-norm-intro", x / sqrt(mean(x * x, dim=(-1,), keepdim=True) + e), rms_norm(x, eps=e), when=[pos(e)])

In: op names from the op table. Out: immutable `Rule` records, checked when defined (unknown op,
arity, unknown attribute, right-side variable missing from the left, guard on an unbound
variable). Rules compile to egglog (hnfc.rewrites.compile); this module imports neither egglog
nor torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from hnfc import ops


class RuleError(ValueError):
    """A rule that cannot be defined; the message names the rule and the problem."""


# ---------------------------------------------------------------------------------------------
# Patterns


class Pattern:
    """Base of pattern nodes; Python operators build op nodes as in programs."""

    def __add__(self, o):
        return P("add", self, o)

    def __radd__(self, o):
        return P("add", o, self)

    def __sub__(self, o):
        return P("sub", self, o)

    def __rsub__(self, o):
        return P("sub", o, self)

    def __mul__(self, o):
        return P("mul", self, o)

    def __rmul__(self, o):
        return P("mul", o, self)

    def __truediv__(self, o):
        return P("div", self, o)

    def __rtruediv__(self, o):
        return P("div", o, self)

    def __neg__(self):
        return P("neg", self)

    def __pow__(self, p):
        if not isinstance(p, (int, float)):
            raise RuleError("x ** p needs a number p (pow has a scalar exponent)")
        return P("pow", self, exponent=float(p))


@dataclass(frozen=True, eq=True)
class Var(Pattern):
    """A pattern variable: matches any value (any e-class)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=True)
class Const(Pattern):
    """A scalar constant; matches float constants of this value whatever their dtype."""

    value: float

    def __str__(self) -> str:
        return repr(self.value) if self.value != int(self.value) or math.isinf(self.value) else str(int(self.value))


@dataclass(frozen=True, eq=True)
class ConstVar(Pattern):
    """A constant variable: matches a float scalar constant (never a tensor) and binds its value,
    which the right side may use as an operand or as an attribute value (`eps=e`)."""

    name: str

    def __str__(self) -> str:
        return f"#{self.name}"


@dataclass(frozen=True, eq=True)
class AttrVar:
    """An attribute variable: binds an attribute value (a dim, say) on the left side."""

    name: str

    def __repr__(self) -> str:
        return f"${self.name}"


@dataclass(frozen=True, eq=True)
class Op(Pattern):
    op: str
    args: tuple[Pattern | None, ...]
    attrs: tuple[tuple[str, Any], ...] = ()  # only the attributes the pattern constrains

    @property
    def attr(self) -> dict[str, Any]:
        return dict(self.attrs)

    def __str__(self) -> str:
        inner = [str(a) if a is not None else "_" for a in self.args] + [f"{k}={v!r}" for k, v in self.attrs]
        return f"{self.op}({', '.join(inner)})"


def lift(v) -> Pattern | None:
    if isinstance(v, Pattern) or v is None:
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return Const(float(v))
    raise RuleError(f"cannot use {v!r} ({type(v).__name__}) in a pattern")


def P(op: str, *args, **attrs) -> Op:
    """Build a pattern node for any op of the table (what the named builders call)."""
    if op not in ops.OPS:
        raise RuleError(f"unknown op {op!r}")
    opdef = ops.OPS[op]
    if opdef.kind == "leaf" or opdef.opaque:
        raise RuleError(f"op {op!r} cannot appear in a rule")
    nodes = tuple(lift(a) for a in args)
    if opdef.arity >= 0 and len(nodes) != opdef.arity:
        # trailing optional arguments may be left out
        missing = range(len(nodes), opdef.arity)
        if len(nodes) > opdef.arity or not all(i in opdef.optional for i in missing):
            raise RuleError(f"{op} takes {opdef.arity} arguments, got {len(nodes)}")
        nodes += (None,) * (opdef.arity - len(nodes))
    unknown = set(attrs) - set(opdef.attrs)
    if unknown:
        raise RuleError(f"{op} has no attribute {sorted(unknown)[0]!r} (it has {sorted(opdef.attrs) or 'none'})")
    for key, value in attrs.items():
        if not _attr_value_ok(value):
            raise RuleError(f"{op}: attribute {key}={value} must be a literal, an attribute variable or a constant variable (not an expression)")
    return Op(op, nodes, tuple(sorted(attrs.items())))


def _attr_value_ok(value) -> bool:
    if isinstance(value, tuple):
        return all(_attr_value_ok(v) for v in value)
    return isinstance(value, (AttrVar, ConstVar)) or not isinstance(value, Pattern)


def vars(names: str) -> tuple[Var, ...]:
    """`x, y = vars("x y")`"""
    return tuple(Var(n) for n in names.replace(",", " ").split())


def const_vars(names: str) -> tuple[ConstVar, ...]:
    """`e, = const_vars("e")` for scalar constants whose value the right side reuses."""
    return tuple(ConstVar(n) for n in names.replace(",", " ").split())


def attr_vars(names: str) -> tuple[AttrVar, ...]:
    """`d, = attr_vars("d")` for attributes bound on the left and reused on the right."""
    return tuple(AttrVar(n) for n in names.replace(",", " ").split())


def pattern_vars(p: Pattern | None) -> set[str]:
    if isinstance(p, Var):
        return {p.name}
    if isinstance(p, Op):
        return set().union(*(pattern_vars(a) for a in p.args)) if p.args else set()
    return set()


def pattern_const_vars(p: Pattern | None) -> set[str]:
    """Constant variables used as operands or as attribute values anywhere in `p`."""
    if isinstance(p, ConstVar):
        return {p.name}
    if not isinstance(p, Op):
        return set()
    out = {n for _, v in p.attrs for n in attr_var_names(v, ConstVar)}
    for a in p.args:
        out |= pattern_const_vars(a)
    return out


def attr_var_names(value, kind: type = AttrVar) -> set[str]:
    if isinstance(value, kind):
        return {value.name}
    if isinstance(value, tuple):
        return set().union(*(attr_var_names(v, kind) for v in value)) if value else set()
    return set()


def pattern_attr_vars(p: Pattern | None) -> set[str]:
    if not isinstance(p, Op):
        return set()
    out = set().union(*(attr_var_names(v) for _, v in p.attrs)) if p.attrs else set()
    for a in p.args:
        out |= pattern_attr_vars(a)
    return out


# ---------------------------------------------------------------------------------------------
# Guards: named predicates over a variable's value range (an hnfc.analysis Interval).


@dataclass(frozen=True)
class Guard:
    pred: str  # pos | nonneg | nonzero | neg | in_range | rank
    var: str
    params: tuple[float, ...] = ()

    def holds(self, interval, type=None) -> bool:
        """`interval` has .lo and .hi (None = unknown, never satisfies a guard); `type` is the
        value's type, which only `rank` reads."""
        if self.pred == "rank":
            return getattr(type, "rank", None) == self.params[0]
        if interval is None:
            return False
        lo, hi = interval.lo, interval.hi
        if self.pred == "pos":
            return lo > 0
        if self.pred == "nonneg":
            return lo >= 0
        if self.pred == "neg":
            return hi < 0
        if self.pred == "nonzero":
            return lo > 0 or hi < 0
        if self.pred == "in_range":
            return self.params[0] <= lo and hi <= self.params[1]
        raise RuleError(f"unknown guard {self.pred!r}")

    def __str__(self) -> str:
        extra = "".join(f", {p!r}" for p in self.params)
        return f"{self.pred}({self.var}{extra})"


def _guard_var(v) -> str:
    if not isinstance(v, (Var, ConstVar)):
        raise RuleError(f"guards take a pattern variable or a constant variable, got {v!r}")
    return v.name


def pos(x: Var) -> Guard:
    return Guard("pos", _guard_var(x))


def nonneg(x: Var) -> Guard:
    return Guard("nonneg", _guard_var(x))


def negative(x: Var) -> Guard:
    return Guard("neg", _guard_var(x))


def nonzero(x: Var) -> Guard:
    return Guard("nonzero", _guard_var(x))


def rank(x: Var, n: int) -> Guard:
    """x has exactly n dims (a rule that holds for vectors only: `e / sum(e)` is a softmax of a
    vector, not of a matrix)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise RuleError(f"rank({x}, {n!r}): the rank is a non-negative integer")
    return Guard("rank", _guard_var(x), (n,))


def in_range(x: Var, lo: float, hi: float) -> Guard:
    if not lo <= hi:
        raise RuleError(f"in_range({x}, {lo}, {hi}): empty range")
    return Guard("in_range", _guard_var(x), (float(lo), float(hi)))


# ---------------------------------------------------------------------------------------------
# Rules

PHASES = ("stability", "algebra")
# A rule tagged "fusion" rewrites the user's computation into one kernel that computes the same
# thing (a hand-written layer norm into layer_norm): extraction takes the kernel unless it is
# predicted worse, where another new node must be predicted better to replace the user's code.
FUSION = "fusion"


@dataclass(frozen=True)
class Rule:
    name: str
    lhs: Op
    rhs: Pattern
    when: tuple[Guard, ...] = ()
    tags: tuple[str, ...] = ()
    doc: str = ""
    source: str = field(default="hnfc", compare=False)  # which pack defined it

    @property
    def phase(self) -> str:
        return "algebra" if "algebra" in self.tags else "stability"

    def __str__(self) -> str:
        guard = f" when {', '.join(map(str, self.when))}" if self.when else ""
        return f"{self.name}: {self.lhs} -> {self.rhs}{guard}"


def rule(name: str, lhs: Pattern, rhs, *, when: Iterable[Guard] = (), tags: Iterable[str] = (), doc: str = "") -> Rule:
    """Define a rewrite `lhs -> rhs`, valid over the reals wherever the guards hold.

    `lhs` and `rhs` may also be zero-argument functions returning the patterns
    (`rule("r", lambda: log(x, y), ...)`): a builder error (unknown op, arity, attribute) is then
    raised naming the rule; built eagerly, it names the op only."""
    if not isinstance(name, str) or not name or name != name.strip() or " " in name:
        raise RuleError(f"rule name {name!r} must be a non-empty kebab-case string")
    try:
        lhs = lhs() if callable(lhs) and not isinstance(lhs, Pattern) else lhs
        rhs = rhs() if callable(rhs) and not isinstance(rhs, Pattern) else rhs
        rhs = lift(rhs)
    except RuleError as e:
        raise RuleError(f"rule {name}: {e}") from None
    if not isinstance(lhs, Op):
        raise RuleError(f"rule {name}: the left side must be an op pattern, not {lhs!r}")
    when = tuple(when)
    lhs_consts = pattern_const_vars(lhs)
    lhs_vars = pattern_vars(lhs) | lhs_consts
    if any(attr_var_names(v, ConstVar) for p in op_nodes(lhs) for _, v in p.attrs):
        raise RuleError(f"rule {name}: a constant variable binds an operand; an attribute on the left side takes an attribute variable (attr_vars)")
    clash = pattern_vars(lhs) & lhs_consts
    if clash:
        raise RuleError(f"rule {name}: {sorted(clash)} names both a pattern variable and a constant variable")
    missing = (pattern_vars(rhs) | pattern_const_vars(rhs)) - lhs_vars
    if missing:
        raise RuleError(f"rule {name}: right side uses {sorted(missing)} which the left side does not bind")
    missing_attrs = pattern_attr_vars(rhs) - pattern_attr_vars(lhs)
    if missing_attrs:
        raise RuleError(f"rule {name}: right side uses attribute variables {sorted(missing_attrs)} not bound on the left")
    for g in when:
        if not isinstance(g, Guard):
            raise RuleError(f"rule {name}: {g!r} is not a guard (use pos, nonneg, nonzero, negative, in_range, rank)")
        if g.var not in lhs_vars:
            raise RuleError(f"rule {name}: guard {g} is on a variable the left side does not bind")
    return Rule(name, lhs, rhs, when, tuple(tags), doc)


def op_nodes(p: Pattern | None):
    """Every op node of a pattern, outermost first."""
    if isinstance(p, Op):
        yield p
        for a in p.args:
            yield from op_nodes(a)


def check_unique(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    rules = tuple(rules)
    seen: dict[str, Rule] = {}
    for r in rules:
        if r.name in seen:
            raise RuleError(f"duplicate rule name {r.name!r} (rule {r.name}: {r.lhs} -> {r.rhs} and {seen[r.name].lhs} -> {seen[r.name].rhs})")
        seen[r.name] = r
    return rules


# ---------------------------------------------------------------------------------------------
# Builders: one per op of the table, named like the op (`log`, `softmax`, `layer_norm`...).


def _builder(name: str):
    def build(*args, **attrs) -> Op:
        return P(name, *args, **attrs)

    build.__name__ = name
    build.__doc__ = f"Pattern builder for `{name}`: {ops.OPS[name].doc}"
    return build


BUILDERS = {name: _builder(name) for name, op in ops.OPS.items() if op.kind != "leaf" and not op.opaque}
