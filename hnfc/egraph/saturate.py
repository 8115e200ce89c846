"""Equality saturation of one program under the rule library, with Python-checked unions.

In: a `Program`, its value ranges (one Interval per value), compiled rules, limits.
Out: a `Saturated` e-graph view: e-classes with a type and an interval each, the handle of every
original value, the rewrites accepted, and why saturation stopped.

Schedule (phase-ordered, as measured in DESIGN.md): stability rules to a fixpoint, one bounded
algebra pass, stability again. Every iteration: egglog matches and records candidates; Python
refreshes class types and intervals, accepts a candidate only when both sides have the same type
and the rule's guards hold on the ranges, and then unions. Limits are checked between
iterations (egglog has none of its own, and a failed allocation in egglog aborts the process).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from hnfc import ops
from hnfc.analysis import Interval, floored_where, interval_of_node
from hnfc.foundation.dtypes import DTYPES
from hnfc.egraph.session import ENode, Session, Snapshot, prepared
from hnfc.ir.program import Program
from hnfc.rewrites.compile import FOLD_RULES, PRELUDE, CompiledRule, canonical_attrs, quote
from hnfc.rewrites.dsl import FUSION, Op
from hnfc.foundation.types import TensorType

# kept as they are, by identity: inputs and parameters, and ops hnfc does not model
LEAF_OPS = frozenset(name for name, op in ops.OPS.items() if (op.kind == "leaf" and not op.constant) or op.opaque)
IDENTITY_OPS = LEAF_OPS | {"const"}  # encoded with their value id as attribute string (never merged)
DIM_KEYS = ("dim", "dims", "dim0", "dim1")
FROM_END = frozenset({"dim", "dim0", "dim1"})
WEAK_SCALAR = TensorType((), "f32")  # the type of a constant made by a rule: a Python scalar


@dataclass(frozen=True)
class Limits:
    max_nodes: int = 20_000
    max_iterations: int = 12  # per phase
    time_limit: float = 20.0  # seconds for the whole saturation
    schedule: tuple[tuple[str, int], ...] = (("stability", 0), ("algebra", 1), ("stability", 0))  # 0 = to fixpoint


@dataclass(frozen=True)
class Applied:
    rule: str
    root: int  # e-class the rule rewrote (canonical at the end)
    values: tuple[int, ...]  # original SSA values in that class
    var_classes: tuple[int, ...] = ()  # e-classes the rule's variables matched: the rewrite is an
    # identity in these, so they are where local verification feeds both sides


@dataclass
class Saturated:
    program: Program
    snapshot: Snapshot
    class_of: dict[int, int]  # original value id -> e-class
    types: dict[int, Any]
    intervals: dict[int, Interval]
    attrs: dict[str, dict]  # attribute string -> attributes
    applied: list[Applied]
    stop_reason: str
    iterations: int
    nodes: int
    classes: int
    seconds: float
    none_classes: set[int] = field(default_factory=set)  # the class of omitted optional arguments
    fused: set[tuple[int, str]] = field(default_factory=set)  # (class, op) a "fusion" rule put there:
    # the user's own computation as one kernel, which extraction does not charge as a new node
    # what extraction derives from this e-graph alone (classes, exact classes, e-node costs),
    # kept for the re-extractions after refusals (hnfc/egraph/extract.py)
    derived: dict = field(default_factory=dict, repr=False, compare=False)

    def child_facts(self, n: ENode) -> tuple[list, list]:
        return child_facts(n, self.none_classes, self.intervals, self.types)


def _normalize_attrs(op: str, attrs: Mapping[str, Any], arg_types: Sequence) -> dict:
    """One spelling per axis, so `dim=-1` and `dim=1` on a rank-2 value are one e-node: `dim`,
    `dim0`, `dim1` count from the end (a rule's `dim=(-1,)` then means "the last axis" at any
    rank), `dims` (permute, squeeze) from the front; transpose's two dims in increasing order; a
    reduction's `dim=None` is every axis."""
    first = next((t for t in arg_types if isinstance(t, TensorType)), None)
    if first is None:
        return dict(attrs)
    rank = first.rank + (1 if op == "unsqueeze" else 0)
    out = dict(attrs)
    if not rank:
        return out
    if ops.OPS[op].kind == "reduction" and "dim" in out and out["dim"] is None:
        out["dim"] = tuple(range(rank))  # "all axes", spelled out: sum(x) of a vector is sum over -1
    for key in DIM_KEYS:
        v = out.get(key)
        base = -rank if key in FROM_END else 0
        if isinstance(v, int) and not isinstance(v, bool):
            out[key] = v % rank + base
        elif isinstance(v, tuple) and all(isinstance(d, int) and not isinstance(d, bool) for d in v):
            out[key] = tuple(d % rank + base for d in v)
    if isinstance(out.get("dim0"), int) and isinstance(out.get("dim1"), int) and out["dim0"] > out["dim1"]:
        out["dim0"], out["dim1"] = out["dim1"], out["dim0"]
    return out


def _is_float_const(node) -> bool:
    return node.op == "const" and DTYPES[node.attr["dtype"]].is_float and isinstance(node.attr["value"], (int, float)) and not isinstance(node.attr["value"], bool)


def _setup(rules: Sequence[CompiledRule]) -> tuple:
    """The texts a saturation session starts from (`session.prepared`): declarations, folding, rules."""
    return (PRELUDE + "\n".join(r.declarations for r in rules), FOLD_RULES, [v.text for r in rules for v in r.variants])


class _Driver:
    def __init__(self, program: Program, ranges: Sequence[Interval | None], rules: Sequence[CompiledRule], limits: Limits, session: Session, start: float) -> None:
        self.program = program
        self.rules = rules
        self.limits = limits
        self.start = start
        self.session = session
        self.attrs: dict[str, dict] = {"": {}}
        self.attrs_by_op: dict[str, set[str]] = {}
        for r in rules:
            for op, text in r.literal_attrs:
                self._register(op, text, None)
        self.attr_rows_done: set[tuple] = set()
        self.next_handle = len(program.nodes)
        self.value_type: dict[int, Any] = {}
        self.value_interval: dict[int, Interval | None] = {}
        self.original_enodes: set[tuple] = set()
        self.interval_memo: dict[tuple, Interval | None] = {}  # `_node_interval`'s results by their inputs
        self._encode(ranges)

    # -- encoding ---------------------------------------------------------------------------

    def _register(self, op: str, text: str, attrs: dict | None) -> None:
        if text not in self.attrs:
            if attrs is None:  # a literal string from a rule's right side: parse it back
                attrs = _parse_attr_string(op, text)
            self.attrs[text] = attrs
        self.attrs_by_op.setdefault(op, set()).add(text)

    def _encode(self, ranges) -> None:
        lines = []
        for i, n in enumerate(self.program.nodes):
            self.value_type[i] = n.type
            self.value_interval[i] = ranges[i] if i < len(ranges) else None
            kids = ["(App0 \"none\" \"\")" if a is None else f"(Id {a})" for a in n.args]
            if n.op in LEAF_OPS or (n.op == "const" and not _is_float_const(n)):
                text = str(i)  # identity: never merged with anything else
                op = n.op if n.op in LEAF_OPS else "const"
            elif n.op == "const":
                lines.append(f"(set (Id {i}) (Num {float(n.attr['value'])!r}))")
                continue
            else:
                op = n.op
                attrs = _normalize_attrs(op, n.attr, [self.program.nodes[a].type if a is not None else None for a in n.args])
                text = canonical_attrs(op, attrs) if ops.OPS[op].attrs else ""
                self._register(op, text, ops.full_attrs(ops.OPS[op], attrs))
            lines.append(f"(set (Id {i}) {_app(op, text, kids)})")
        self.session.run_lines(lines)

    # -- per-iteration work -----------------------------------------------------------------

    def populate_attr_relations(self) -> None:
        lines = []
        for r in self.rules:
            for v in r.variants:
                if v.attr_relation is None:
                    continue
                choices = [sorted(self.attrs_by_op.get(op, ())) for op, _ in v.lhs_slots]
                choices += [sorted(self.constants)] * len(v.const_slots)
                for combo in itertools.product(*choices):
                    key = (v.attr_relation, combo)
                    if key in self.attr_rows_done:
                        continue
                    self.attr_rows_done.add(key)
                    strings, consts = combo[: len(v.lhs_slots)], combo[len(v.lhs_slots) :]
                    out = v.rhs_attr_strings([self.attrs[s] for s in strings], consts)
                    if out is None:
                        continue
                    for (op, _), text in zip(v.rhs_slots, out):
                        self._register(op, text, None)
                    cols = [quote(s) for s in strings] + [repr(float(c)) for c in consts] + [quote(s) for s in out]
                    lines.append(f"({v.attr_relation} {' '.join(cols)})")
        self.session.run_lines(lines)

    def refresh(self) -> tuple[Snapshot, dict[int, Any], dict[int, Interval], dict[int, list[ENode]]]:
        relations = tuple(r.relation for r in self.rules) + ("Cand_fold",)
        snap = self.session.snapshot(relations)
        classes = snap.classes()
        handle_of = {}
        for h, c in snap.handles.items():
            handle_of.setdefault(c, h)
        self._assign_handles(classes, handle_of)
        for n in snap.enodes:
            if n.op not in ("$num", "none") and n.op not in IDENTITY_OPS and n.attrs not in self.attrs:
                self._register(n.op, n.attrs, None)
        self.none_classes = {c for c, nodes in classes.items() if any(n.op == "none" for n in nodes)}
        self.constants = {n.value for n in snap.enodes if n.op == "$num" and math.isfinite(n.value)}
        types = self._types(snap, classes)
        intervals = self._intervals(snap, classes, types)
        self.handle_of = handle_of
        return snap, types, intervals, classes

    def _assign_handles(self, classes, handle_of) -> None:
        """Give every e-class an `Id` handle, so Python can name it in unions."""
        lines = []
        pending = [c for c in classes if c not in handle_of]
        while pending:
            progress = []
            for c in pending:
                for n in classes[c]:
                    if all(k in handle_of for k in n.children):
                        h = self.next_handle
                        self.next_handle += 1
                        handle_of[c] = h
                        lines.append(f"(set (Id {h}) {_enode_text(n, handle_of)})")
                        progress.append(c)
                        break
            if not progress:
                break
            pending = [c for c in pending if c not in handle_of]
        self.session.run_lines(lines)

    def _types(self, snap: Snapshot, classes) -> dict[int, Any]:
        types: dict[int, Any] = {}
        for h, c in snap.handles.items():
            if h < len(self.program.nodes):
                types.setdefault(c, self.value_type[h])
        for _ in range(len(classes) + 1):
            changed = False
            for c, nodes in classes.items():
                if c in types:
                    continue
                for n in nodes:
                    t = self._infer(n, types)
                    if t is not None:
                        types[c] = t
                        changed = True
                        break
            if not changed:
                break
        return types

    def _infer(self, n: ENode, types: dict[int, Any]):
        if n.op == "$num":
            return WEAK_SCALAR
        if n.op == "none":
            return None
        kid_types = [types.get(k) for k in n.children]
        opdef = ops.OPS.get(n.op)
        if opdef is None or opdef.infer is None or any(t is None and k not in self.none_classes for k, t in zip(n.children, kid_types)):
            return None
        try:
            return opdef.infer(kid_types, self.attrs[n.attrs])
        except Exception:
            return None

    def child_facts(self, n: ENode, iv, types) -> tuple[list, list]:
        return child_facts(n, self.none_classes, iv, types)

    def _intervals(self, snap: Snapshot, classes, types) -> dict[int, Interval]:
        self.types_now = types
        self.classes_now = classes
        iv: dict[int, Interval] = {}
        for h, c in snap.handles.items():
            if h < len(self.program.nodes) and self.value_interval.get(h) is not None:
                iv[c] = self.value_interval[h] if c not in iv else _meet(iv[c], self.value_interval[h])
        # a few sweeps: new classes get ranges, merged classes tighten; more while a class gets
        # its first range or its first finite bound (a rule's right side deeper than the sweeps,
        # met in an order that visits a node before its arguments, would otherwise keep the
        # whole line its unranged arguments gave it on the first sweep)
        for sweep in range(len(classes) + 1):
            fresh = False
            for c, nodes in classes.items():
                for n in nodes:
                    got = self._node_interval(n, iv, types.get(c))
                    if got is not None:
                        old = iv.get(c)
                        iv[c] = got if old is None else _meet(old, got)
                        fresh = fresh or old is None or _bounds_finite(iv[c]) > _bounds_finite(old)
            if sweep >= 2 and not fresh:
                break
        return iv

    def _node_interval(self, n: ENode, iv, out_type):
        if n.op == "$num":
            return Interval(n.value, n.value)
        if n.op in IDENTITY_OPS or n.op == "none":
            return None
        args, arg_types = self.child_facts(n, iv, self.types_now)
        relation = self._relation(n)
        # The same e-node on the same facts gives the same interval: most of them, in the sweeps
        # of one refresh and across iterations (most of the sweeps). Bounds of 0 keyed with their
        # sign, which == does not see and a division does.
        key = (n.op, n.attrs, out_type, relation, tuple(arg_types), tuple(None if a is None else (a.lo, a.hi) if a.lo and a.hi else (a.lo, a.hi, math.copysign(1.0, a.lo), math.copysign(1.0, a.hi)) for a in args))
        if key in self.interval_memo:
            return self.interval_memo[key]
        try:
            got = interval_of_node(n.op, args, self.attrs[n.attrs], out_type, arg_types)
            if got is not None and relation == ("unit",):
                got = got.intersect(Interval(-1.0, 1.0)) or got
            elif relation is not None and relation[0] == "floor" and args[1] is not None and args[2] is not None:
                got = floored_where(args[1], args[2], relation[1])
        except Exception:
            got = None
        self.interval_memo[key] = got
        return got

    # Relations interval arithmetic cannot see, from the e-nodes around a node: a scaled norm's
    # x / where(M < c, 1, M) with M = amax(|x|, keepdim): |x_i| <= M, and the divisor is >= c.

    def _holds(self, c: int, op: str, test=lambda e: True) -> bool:
        return any(e.op == op and test(e) for e in self.classes_now.get(c, ()))

    def _is_own_max(self, m: int, a: int) -> bool:
        """Class m holds amax(abs(a), keepdim=True): no |a_i| exceeds the entry of m it broadcasts against."""
        return self._holds(m, "amax", lambda e: bool(self.attrs[e.attrs].get("keepdim")) and self._holds(e.children[0], "abs", lambda f: f.children[0] == a))

    def _floor(self, w: ENode) -> tuple[int, float] | None:
        """where(lt(b, other=c), a, b) -> (b's class, c), else None."""
        if w.op != "where" or len(w.children) != 3:
            return None
        cond, _, b = w.children
        for e in self.classes_now.get(cond, ()):
            if e.op == "lt" and e.children == (b,):
                return b, float(self.attrs[e.attrs]["other"])
        return None

    def _relation(self, n: ENode) -> tuple | None:
        """("floor", c) for where(b < c, a, b); ("unit",) for a division whose |result| <= 1."""
        if n.op == "where":
            floor = self._floor(n)
            return None if floor is None else ("floor", floor[1])
        if n.op == "div" and len(n.children) == 2:
            a, d = n.children
            if self._is_own_max(d, a):
                return ("unit",)
            for w in self.classes_now.get(d, ()):
                floor = self._floor(w)
                # replaced below c by a constant k >= c: there |a_i| <= M < c <= k
                if floor is not None and self._is_own_max(floor[0], a) and self._holds(w.children[1], "$num", lambda e: e.value >= floor[1]):
                    return ("unit",)
        return None

    def process_candidates(self, snap: Snapshot, types, intervals, seen_applied: set) -> tuple[list[str], list[Applied]]:
        unions: list[str] = []
        applied: list[Applied] = []
        rules = [(r.relation, r.rule.name, r.rule.when, r.var_names) for r in self.rules] + [("Cand_fold", "const-fold", (), ())]
        for relation, name, guards, var_names in rules:
            for row in snap.rows.get(relation, ()):
                root, rhs, *bound = row
                if root == rhs or (name, root, rhs) in seen_applied:
                    continue
                if not _types_agree(types.get(root), types.get(rhs)):
                    continue
                env = dict(zip(var_names, bound))
                if not all(g.holds(intervals.get(env[g.var]), types.get(env[g.var])) for g in guards):
                    continue
                if root not in self.handle_of or rhs not in self.handle_of or any(v not in self.handle_of for v in bound):
                    continue
                seen_applied.add((name, root, rhs))
                unions.append(f"(union (Id {self.handle_of[root]}) (Id {self.handle_of[rhs]}))")
                # by handle: class ids change as classes merge, handles do not
                applied.append(Applied(name, self.handle_of[root], (), tuple(self.handle_of[v] for v in bound)))
        return unions, applied


def child_facts(n: ENode, none_classes: set[int], intervals: Mapping[int, Interval], types: Mapping[int, Any]) -> tuple[list, list]:
    """Children's intervals and types as the analysis wants them: an omitted optional argument
    is None; a present one of unknown range is the whole line."""
    args, arg_types = [], []
    for k in n.children:
        if k in none_classes:
            args.append(None)
            arg_types.append(None)
        else:
            args.append(intervals.get(k, Interval.whole()))
            arg_types.append(types.get(k))
    return args, arg_types


def _bounds_finite(a: Interval) -> int:
    return math.isfinite(a.lo) + math.isfinite(a.hi)


def _meet(a: Interval, b: Interval) -> Interval:
    """Both are ranges of one value; disjoint only when an observed range was unsound: keep `a`."""
    return a.intersect(b) or a


def _types_agree(root, rhs) -> bool:
    """Same type; a rule's scalar constant stands for any 0-d float value (a Python number)."""
    if root is None or rhs is None:
        return False
    if rhs == WEAK_SCALAR and isinstance(root, TensorType) and root.rank == 0:
        return True
    return root == rhs


def _app(op: str, attrs: str, kids: list[str]) -> str:
    if len(kids) <= 4:
        return f"(App{len(kids)} {quote(op)} {quote(attrs)}{''.join(' ' + k for k in kids)})"
    return f"(AppN {quote(op)} {quote(attrs)} (vec-of {' '.join(kids)}))"


def _enode_text(n: ENode, handle_of: dict[int, int]) -> str:
    if n.op == "$num":
        return f"(Num {n.value!r})"
    kids = [f"(Id {handle_of[k]})" for k in n.children]
    if n.op == "none":
        return '(App0 "none" "")'
    return _app(n.op, n.attrs, kids)


def _parse_attr_string(op: str, text: str) -> dict:
    """Inverse of canonical_attrs (attribute strings the driver did not make itself)."""
    from hnfc.ir.text import _literal  # the text form's literal reader
    import ast

    out = {}
    if text:
        for part in _split_top(text):
            key, value = part.split("=", 1)
            out[key] = _literal(ast.parse(value, mode="eval").body)
    return ops.full_attrs(ops.OPS[op], out)


def _split_top(text: str) -> list[str]:
    parts, depth, cur, in_str = [], 0, [], False
    for ch in text:
        if ch == '"':
            in_str = not in_str
        if not in_str:
            depth += ch in "(["
            depth -= ch in ")]"
            if ch == ";" and depth == 0:
                parts.append("".join(cur))
                cur = []
                continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def saturate(program: Program, ranges: Sequence[Interval | None], rules: Sequence[CompiledRule], limits: Limits = Limits()) -> Saturated:
    start = time.perf_counter()
    with prepared(_setup(rules)) as session:
        return _saturate(_Driver(program, ranges, rules, limits, session, start), program, rules, limits)


def _saturate(d: _Driver, program: Program, rules: Sequence[CompiledRule], limits: Limits) -> Saturated:
    applied: list[Applied] = []
    seen: set = set()
    stop = "saturated"
    iterations = 0
    snap, types, intervals, classes = d.refresh()
    for phase, max_iters in limits.schedule:
        budget = max_iters or limits.max_iterations
        for _ in range(budget):
            d.populate_attr_relations()
            changed = d.session.run_ruleset(phase)
            iterations += 1
            snap, types, intervals, classes = d.refresh()
            unions, new = d.process_candidates(snap, types, intervals, seen)
            d.session.run_lines(unions)
            applied += new
            size = d.session.size()
            if size > limits.max_nodes:
                stop = f"node limit ({size} > {limits.max_nodes} e-nodes)"
                break
            if time.perf_counter() - d.start > limits.time_limit:
                stop = f"time limit ({limits.time_limit:.1f} s)"
                break
            if not unions and not changed:
                break
        else:
            if max_iters == 0:
                stop = f"iteration limit ({budget} per phase)"
        if stop.startswith(("node", "time")):
            break
    snap, types, intervals, classes = d.refresh()
    class_of = {i: snap.handles[i] for i in range(len(program.nodes))}
    values_in: dict[int, list[int]] = {}
    for i, c in class_of.items():
        values_in.setdefault(c, []).append(i)
    final_applied = []
    fusion = {r.rule.name: r.rule.rhs.op for r in rules if FUSION in r.rule.tags and isinstance(r.rule.rhs, Op)}
    fused = {(snap.handles[a.root], fusion[a.rule]) for a in applied if a.rule in fusion}
    for a in applied:
        c = snap.handles[a.root]
        final_applied.append(Applied(a.rule, c, tuple(values_in.get(c, ())), tuple(snap.handles[h] for h in a.var_classes)))
    return Saturated(
        program=program,
        snapshot=snap,
        class_of=class_of,
        types=types,
        intervals=intervals,
        attrs=d.attrs,
        applied=final_applied,
        stop_reason=stop,
        iterations=iterations,
        nodes=len(snap.enodes),
        classes=len(classes),
        seconds=time.perf_counter() - d.start,
        none_classes=d.none_classes,
        fused=fused,
    )
