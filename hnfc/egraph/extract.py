"""Extraction: the program of minimal total curvature in a saturated e-graph.

In: a `Saturated` e-graph (classes with types and intervals). Out: a new `Program` and its
predicted cost in bits. Each e-node costs the bits its op loses on its input box
(hnfc.analysis.node_bits: condition number, second-order term, hazards) plus a small per-node
charge, so at equal accuracy fewer nodes win, and an untouched node beats an equal new one.
The cost is a DAG cost, as DESIGN.md asks: a shared value counts once (greedy bottom-up over
sets of classes, iterated to a fixpoint). E-nodes whose type disagrees with their class are
never chosen, except the user's own (typed by tracing), which are always a choice; a node the
cost model cannot price costs +inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hnfc import ops
from hnfc.analysis import is_exact_node, node_bits
from hnfc.foundation.dtypes import DTYPES
from hnfc.egraph.saturate import IDENTITY_OPS, WEAK_SCALAR, Saturated
from hnfc.egraph.session import ENode
from hnfc.ir.program import Builder, Program
from hnfc.foundation.types import TensorType

NODE_BITS = 0.01  # every node costs a little: prefer fewer nodes at equal accuracy
# A node the user did not write must be predicted to gain this much: where the model sees no
# difference, the user's code stays (a fused kernel is not always the more accurate one). Fusion
# rules are the exception: their kernel is the user's computation (Saturated.fused).
NEW_NODE_BITS = 0.1


@dataclass
class Extraction:
    program: Program
    cost: float  # predicted bits lost, summed over the chosen nodes
    chosen: dict[int, ENode]  # e-class -> chosen e-node, for classes the program uses
    new_classes: set[int]  # classes whose chosen e-node is not the input program's
    value_of: dict[int, int]  # e-class -> value id in `program`


class _Extractor:
    def __init__(self, sat: Saturated, keep: frozenset[int] = frozenset(), banned: frozenset[tuple] = frozenset()) -> None:
        self.sat = sat
        self.keep = keep  # classes that must keep the input program's e-node (refused rewrites)
        self.banned = banned  # e-nodes (`node_key`) the judge refused: their class chooses another
        self.none_classes = sat.none_classes
        # what depends on the e-graph alone is derived once per e-graph (a refusal re-extracts
        # with other `keep`/`banned`, which only `valid` and `run` read)
        d = sat.derived
        if "classes" not in d:
            d["classes"] = sat.snapshot.classes()
            d["original"] = {(sat.class_of[i], n.op, tuple(self._kid(a) for a in n.args)) for i, n in enumerate(sat.program.nodes)}
            d["values_in"] = {}
            for i, c in sat.class_of.items():
                d["values_in"].setdefault(c, []).append(i)
            d["own"] = {}
        self.classes, self.original, self.values_in, self.own = d["classes"], d["original"], d["values_in"], d["own"]
        if "exact" not in d:
            d["exact"] = self._exact_classes()
        self.exact = d["exact"]

    def _exact_classes(self) -> set[int]:
        """Classes whose value some e-node computes exactly (inputs, parameters, representable
        constants, exact ops of those): their consumers round once, amplifying no error."""
        program, exact = self.sat.program, set(self.none_classes)
        changed = True
        while changed:
            changed = False
            for c, nodes in self.classes.items():
                if c in exact:
                    continue
                for n in nodes:
                    if n.op in ("input", "param"):
                        ok = True
                    elif n.op == "const":
                        orig = program.nodes[int(n.attrs)]
                        ok = is_exact_node("const", orig.attr, [])
                    elif n.op == "$num":
                        t = self.sat.types.get(c)
                        ok = is_exact_node("const", {"value": n.value, "dtype": t.dtype if isinstance(t, TensorType) else "f64"}, [])
                    elif n.op in IDENTITY_OPS or n.op == "none" or not all(k in exact for k in n.children):
                        ok = False
                    else:
                        args, arg_types = self.sat.child_facts(n)
                        ok = is_exact_node(n.op, self.sat.attrs[n.attrs], [True] * len(n.children), self.sat.types.get(c), arg_types)
                    if ok:
                        exact.add(c)
                        changed = True
                        break
        return exact

    def _kid(self, a):
        if a is None:
            return next(iter(self.none_classes), None)
        return self.sat.class_of[a]

    def is_original(self, n: ENode) -> bool:
        if n.op == "$num":
            return any(self.sat.program.nodes[i].op == "const" for i in self.values_in.get(n.cls, ()))
        return (n.cls, n.op, n.children) in self.original

    def is_users(self, n: ENode) -> bool:
        """The user's node, or the user's computation fused into one kernel (a fusion rule)."""
        return self.is_original(n) or (n.cls, n.op) in self.sat.fused

    def valid(self, n: ENode) -> bool:
        if n.cls in self.keep and not self.is_original(n):
            return False
        if node_key(n) in self.banned and not self.is_original(n):
            return False
        if n.op in ("$num", "none") or n.op in IDENTITY_OPS:
            return True
        if self.is_original(n):
            # the user's node has the type tracing gave it: where the op table's inference
            # disagrees (a gap there), the user's code stays rather than leaving no choice
            return True
        want = self.sat.types.get(n.cls)
        try:
            got = ops.OPS[n.op].infer([self.sat.types.get(k) for k in n.children], self.sat.attrs[n.attrs])
        except Exception:
            return False
        return want is None or got == want or (got == WEAK_SCALAR and isinstance(want, TensorType) and want.rank == 0)

    def cost_of(self, n: ENode) -> float:
        key = (n.cls, n.op, n.attrs, n.children)
        if key not in self.own:
            if n.op in ("$num", "none") or n.op in IDENTITY_OPS:
                bits = 0.0
            else:
                args, arg_types = self.sat.child_facts(n)
                exact_args = [k in self.exact for k in n.children]
                try:
                    bits = node_bits(n.op, args, self.sat.attrs[n.attrs], self.sat.intervals.get(n.cls), self.sat.types.get(n.cls), arg_types, exact_args)
                except Exception:  # the cost model cannot price it: never prefer it, never lose the choice
                    bits = math.inf
                bits += NODE_BITS + (0.0 if self.is_users(n) else NEW_NODE_BITS)
            self.own[key] = bits
        return self.own[key]

    def run(self) -> dict[int, tuple[float, ENode, frozenset]]:
        best: dict[int, tuple[float, ENode, frozenset]] = {}
        own: dict[int, float] = {}  # class -> cost_of(best[class] e-node)
        candidates = [(c, n) for c, ns in self.classes.items() for n in ns if self.valid(n)]
        # A candidate's cost reads best[] of its members (its children's members and itself):
        # it is evaluated again only once one of them changed (evaluating it with nothing it reads
        # changed gives the same cost and no update), so the sweeps choose exactly as full ones.
        dirty = [True] * len(candidates)
        readers: dict[int, set[int]] = {}  # class -> candidates whose last evaluation read it
        for _ in range(len(self.classes) + 1):
            changed = False
            for idx, (c, n) in enumerate(candidates):
                if not dirty[idx] or any(k not in best for k in n.children):
                    continue
                dirty[idx] = False
                members: set[int] = set()
                for k in n.children:
                    members |= best[k][2]
                for m in members:
                    readers.setdefault(m, set()).add(idx)
                readers.setdefault(c, set()).add(idx)
                if c in members:
                    continue  # a cycle through this class
                members.add(c)
                cost = self.cost_of(n) + sum(own[m] for m in members if m != c)
                if c not in best or cost < best[c][0] - 1e-12:
                    best[c] = (cost, n, frozenset(members))
                    own[c] = self.cost_of(n)
                    changed = True
                    for j in readers[c]:
                        dirty[j] = True
            if not changed:
                break
        return best


def node_key(n: ENode) -> tuple:
    """An e-node's identity within one saturated e-graph (what `extract` may be told to avoid)."""
    return (n.cls, n.op, n.attrs, n.children)


def extract(sat: Saturated, keep: frozenset[int] = frozenset(), banned: frozenset[tuple] = frozenset()) -> Extraction:
    """The cheapest program; classes in `keep` must use the input program's e-node, and no
    class may use a `banned` e-node (`node_key`) other than the input program's own."""
    ex = _Extractor(sat, frozenset(keep), frozenset(banned))
    best = ex.run()
    program = sat.program
    roots = [sat.class_of[o] for o in program.outputs]
    missing = [c for c in roots if c not in best]
    if missing:
        raise RuntimeError(f"no finite program for e-classes {missing}")
    # classes reachable from the outputs through the chosen e-nodes, children first
    order: list[int] = []
    state: dict[int, int] = {}
    for root in roots:
        stack = [(root, False)]
        while stack:
            c, done = stack.pop()
            if done:
                if state.get(c) != 2:
                    state[c] = 2
                    order.append(c)
                continue
            if state.get(c):
                continue
            state[c] = 1
            stack.append((c, True))
            stack.extend((k, False) for k in reversed(best[c][1].children) if not state.get(k))
    chosen = {c: best[c][1] for c in order}
    scalar_dtype = _scalar_dtypes(chosen, sat)
    b = Builder()
    emitted: dict[int, int | None] = {}
    for i in program.inputs:  # every input keeps its position, used or not
        emitted[sat.class_of[i]] = b.add("input", (), program.nodes[i].attr, program.nodes[i].type)
    for c in order:
        if c in emitted:
            continue
        n = chosen[c]
        kids = [emitted[k] for k in n.children]
        if n.op == "none":
            emitted[c] = None
        elif n.op in IDENTITY_OPS:
            orig = program.nodes[int(n.attrs)]
            emitted[c] = b.add(orig.op, kids, orig.attr, orig.type)
        elif n.op == "$num":
            orig = next((program.nodes[i] for i in ex.values_in.get(c, ()) if program.nodes[i].op == "const"), None)
            emitted[c] = b.add("const", (), orig.attr, orig.type) if orig is not None else b.const(n.value, scalar_dtype.get(c, "f32"))
        else:
            t = sat.types.get(c)
            emitted[c] = b.add(n.op, kids, sat.attrs[n.attrs], t if t != WEAK_SCALAR else None)
    new_program = b.build([emitted[c] for c in roots], program.params, program.meta)
    cost = sum(ex.cost_of(chosen[c]) for c in order)
    new_classes = {c for c in order if not ex.is_original(chosen[c])}
    return Extraction(new_program, cost, chosen, new_classes, {c: v for c, v in emitted.items() if v is not None})


def _scalar_dtypes(chosen: dict[int, ENode], sat: Saturated) -> dict[int, str]:
    """A rule-made constant takes the float dtype of the value it is combined with."""
    out: dict[int, str] = {}
    for c, n in chosen.items():
        t = sat.types.get(c)
        if isinstance(t, TensorType) and DTYPES[t.dtype].is_float:
            for k in n.children:
                if chosen.get(k) is not None and chosen[k].op == "$num":
                    out.setdefault(k, t.dtype)
    return out
