"""Rules -> egglog program text, plus what the e-graph driver needs to serve them.

Encoding (shared with hnfc.egraph): one sort `Term` with generic constructors
`(AppK op attrs child...)` for K <= 4 children, `(AppN op attrs (vec-of ...))` beyond, and
`(Num f64)` for float scalar constants. `attrs` is the canonical attribute string of the node.
A constant variable is `(Num ?k_name)`: egglog binds its f64 value.

A rule never unions by itself. It records a candidate `(Cand_<i> root rhs guard-vars...)`; the
driver checks types and guards on the value ranges in Python and only then unions. Attribute
constraints and attribute variables are served by a Python-populated relation
`(Attr_<i> lhs-attrs... rhs-attrs...)`: for every combination of attribute strings present, the
driver asserts the row when the left side's constraints unify and gives the right side's strings.
A right-side attribute that takes a constant variable's value (`eps=e`) adds an f64 column to
that relation, filled with every constant of the e-graph.
Commutative operands are matched in both orders by expanding the pattern.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from hnfc import ops
from hnfc.ir.format import format_value
from hnfc.rewrites.dsl import AttrVar, Const, ConstVar, Op, Pattern, Rule, RuleError, Var, attr_var_names, op_nodes, pattern_const_vars, pattern_vars

COMMUTATIVE = frozenset(name for name, op in ops.OPS.items() if op.commutative)
MAX_FIXED_ARITY = 4

PRELUDE = """
(datatype*
  (Term
    (App0 String String)
    (App1 String String Term)
    (App2 String String Term Term)
    (App3 String String Term Term Term)
    (App4 String String Term Term Term Term)
    (AppN String String TermVec)
    (Num f64))
  (sort TermVec (Vec Term)))
(function Id (i64) Term :no-merge)
(ruleset stability)
(ruleset algebra)
(relation Cand_fold (Term Term))
"""

# Constant folding over f64 scalars: exact enough for constants that were doubles to begin with.
FOLD_RULES = """
(rule ((= ?r (App2 "add" "" (Num ?a) (Num ?b)))) ((Cand_fold ?r (Num (+ ?a ?b)))) :ruleset algebra :name "const-fold-add")
(rule ((= ?r (App2 "sub" "" (Num ?a) (Num ?b)))) ((Cand_fold ?r (Num (- ?a ?b)))) :ruleset algebra :name "const-fold-sub")
(rule ((= ?r (App2 "mul" "" (Num ?a) (Num ?b)))) ((Cand_fold ?r (Num (* ?a ?b)))) :ruleset algebra :name "const-fold-mul")
(rule ((= ?r (App2 "div" "" (Num ?a) (Num ?b))) (!= ?b 0.0)) ((Cand_fold ?r (Num (/ ?a ?b)))) :ruleset algebra :name "const-fold-div")
(rule ((= ?r (App1 "neg" "" (Num ?a)))) ((Cand_fold ?r (Num (neg ?a)))) :ruleset algebra :name "const-fold-neg")
"""


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def canonical_attrs(op: str, attrs: Mapping[str, Any]) -> str:
    """Every declared attribute (defaults filled) as `k=v;k=v`, the e-node's attribute string."""
    full = ops.full_attrs(ops.OPS[op], attrs)
    return ";".join(f"{k}={format_value(v)}" for k, v in full.items())


def num_literal(v: float) -> str:
    text = repr(float(v))
    if text in ("inf", "-inf", "nan"):
        raise RuleError(f"constant {v} cannot appear in a pattern")
    return text


# ---------------------------------------------------------------------------------------------


def unify(spec, actual, bindings: dict[str, Any]) -> bool:
    """Match an attribute pattern (literal, AttrVar, or tuple of those) against a value."""
    if isinstance(spec, AttrVar):
        if spec.name in bindings:
            return bindings[spec.name] == actual
        bindings[spec.name] = actual
        return True
    if isinstance(spec, tuple):
        return isinstance(actual, tuple) and len(actual) == len(spec) and all(unify(s, a, bindings) for s, a in zip(spec, actual))
    if isinstance(spec, bool) or isinstance(actual, bool):
        return spec is actual  # keepdim=True must not match the integer 1
    return spec == actual


def substitute(value, bindings: Mapping[str, Any]):
    if isinstance(value, (AttrVar, ConstVar)):
        return bindings[value.name]
    if isinstance(value, tuple):
        return tuple(substitute(v, bindings) for v in value)
    return value


@dataclass(frozen=True)
class Variant:
    """One operand order of a rule's left side, with its own attribute relation."""

    attr_relation: str | None
    lhs_slots: tuple[tuple[str, tuple], ...]  # (op, constraints) per `?a` variable, in order
    rhs_slots: tuple[tuple[str, tuple], ...]  # (op, attrs with AttrVars/ConstVars) per `?o` variable
    text: str  # the egglog rule command
    const_slots: tuple[str, ...] = ()  # constant variables whose value a right-side attribute takes

    def rhs_attr_strings(self, lhs_attrs: list[Mapping[str, Any]], consts: Sequence[float] = ()) -> list[str] | None:
        """Given the left side's attribute dicts (one per slot) and the values of `const_slots`,
        the right side's strings, or None when the constraints do not unify."""
        bindings: dict[str, Any] = dict(zip(self.const_slots, consts))
        for (op, spec), actual in zip(self.lhs_slots, lhs_attrs):
            for key, value in spec:
                if key not in actual or not unify(value, actual[key], bindings):
                    return None
        return [canonical_attrs(op, {k: substitute(v, bindings) for k, v in attrs}) for op, attrs in self.rhs_slots]


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    index: int
    var_names: tuple[str, ...]  # the left side's variables, then its constant variables, recorded
    # in the candidate after root, rhs
    variants: tuple[Variant, ...]
    literal_attrs: tuple[tuple[str, str], ...]  # (op, attr string) fixed on the right side

    @property
    def relation(self) -> str:
        return f"Cand_{self.index}"

    @property
    def declarations(self) -> str:
        decl = [f"(relation {self.relation} ({' '.join(['Term'] * (2 + len(self.var_names)))}))"]
        for v in self.variants:
            if v.attr_relation:
                cols = ["String"] * len(v.lhs_slots) + ["f64"] * len(v.const_slots) + ["String"] * len(v.rhs_slots)
                decl.append(f"(relation {v.attr_relation} ({' '.join(cols)}))")
        return "\n".join(decl)


def _variants(p: Pattern | None) -> list[Pattern | None]:
    """All operand orders of commutative ops in `p`."""
    if not isinstance(p, Op):
        return [p]
    arg_choices = [_variants(a) for a in p.args]
    out = []
    for args in itertools.product(*arg_choices):
        out.append(Op(p.op, tuple(args), p.attrs))
        if p.op in COMMUTATIVE and len(args) == 2 and args[0] != args[1]:
            out.append(Op(p.op, (args[1], args[0]), p.attrs))
    unique = []
    for v in out:
        if v not in unique:
            unique.append(v)
    return unique


class _Emitter:
    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.lhs_slots: list[tuple[str, tuple]] = []
        self.rhs_slots: list[tuple[str, tuple]] = []
        self.literal_attrs: list[tuple[str, str, tuple]] = []
        self.fresh = 0

    def app(self, op: str, attr: str, children: list[str]) -> str:
        if len(children) <= MAX_FIXED_ARITY:
            return f"(App{len(children)} {quote(op)} {attr}{''.join(' ' + c for c in children)})"
        return f"(AppN {quote(op)} {attr} (vec-of {' '.join(children)}))"

    @staticmethod
    def leaf(p: Pattern | None) -> str | None:
        """An omitted argument, a variable or a constant (the same on both sides), else None."""
        if p is None:
            return '(App0 "none" "")'
        if isinstance(p, Var):
            return f"?v_{p.name}"
        if isinstance(p, Const):
            return f"(Num {num_literal(p.value)})"
        if isinstance(p, ConstVar):
            return f"(Num ?k_{p.name})"
        return None

    def lhs(self, p: Pattern | None) -> str:
        leaf = self.leaf(p)
        if leaf is not None:
            return leaf
        assert isinstance(p, Op)
        opdef = ops.OPS[p.op]
        if opdef.arity < 0 or opdef.arity > MAX_FIXED_ARITY:
            raise RuleError(f"rule {self.rule.name}: {p.op} (variadic or more than {MAX_FIXED_ARITY} arguments) cannot be matched")
        if not opdef.attrs:
            attr = '""'
        elif p.attrs:
            self.lhs_slots.append((p.op, p.attrs))
            attr = f"?a{len(self.lhs_slots)}"
        else:
            self.fresh += 1
            attr = f"?u{self.fresh}"
        return self.app(p.op, attr, [self.lhs(a) for a in p.args])

    def rhs(self, p: Pattern | None) -> str:
        leaf = self.leaf(p)
        if leaf is not None:
            return leaf
        assert isinstance(p, Op)
        if any(_has_attr_var(v) for _, v in p.attrs):
            self.rhs_slots.append((p.op, p.attrs))
            attr = f"?o{len(self.rhs_slots)}"
        elif ops.OPS[p.op].attrs:
            text = canonical_attrs(p.op, p.attr)
            self.literal_attrs.append((p.op, text, p.attrs))
            attr = quote(text)
        else:
            attr = '""'
        return self.app(p.op, attr, [self.rhs(a) for a in p.args])


def _has_attr_var(v) -> bool:
    return bool(attr_var_names(v, AttrVar) or attr_var_names(v, ConstVar))


def compile_rule(rule: Rule, index: int) -> CompiledRule:
    consts = pattern_const_vars(rule.lhs)
    var_names = tuple(sorted(pattern_vars(rule.lhs))) + tuple(sorted(consts))
    attr_consts = tuple(sorted({n for op in op_nodes(rule.rhs) for _, v in op.attrs for n in attr_var_names(v, ConstVar)}))
    variants = []
    literal: list[tuple[str, str]] = []
    for k, lhs_pattern in enumerate(_variants(rule.lhs)):
        em = _Emitter(rule)
        lhs = em.lhs(lhs_pattern)
        rhs = em.rhs(rule.rhs)
        literal = [(op, text) for op, text, _ in em.literal_attrs]
        query = [f"(= ?root {lhs})"]
        attr_relation = None
        if em.lhs_slots or em.rhs_slots:
            attr_relation = f"Attr_{index}_{k}"
            cols = [f"?a{i + 1}" for i in range(len(em.lhs_slots))] + [f"?k_{c}" for c in attr_consts] + [f"?o{i + 1}" for i in range(len(em.rhs_slots))]
            query.append(f"({attr_relation} {' '.join(cols)})")
        cand = " ".join(["?root", rhs] + [_Emitter.leaf(ConstVar(v) if v in consts else Var(v)) for v in var_names])
        text = f"(rule ({' '.join(query)}) ((Cand_{index} {cand})) :ruleset {rule.phase} :name {quote(f'{rule.name}#{k}')})"
        variants.append(Variant(attr_relation, tuple(em.lhs_slots), tuple(em.rhs_slots), text, attr_consts if attr_relation else ()))
    return CompiledRule(rule, index, var_names, tuple(variants), tuple(literal))


def compile_rules(rules: Iterable[Rule]) -> tuple[CompiledRule, ...]:
    return tuple(compile_rule(r, i) for i, r in enumerate(rules))
