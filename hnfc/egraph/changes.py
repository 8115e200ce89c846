"""What the e-graph stage changed, decoded once: one `Change` per rewritten e-class.

In: the original program and the region results of `optimize_regions`. Out: `Change` records:
the rules applied there, the original values replaced, the old and new expression as text, and
the site (both sides as small programs over shared frontier values, fed at the classes the rules'
variables matched) that verification measures. Verification and the report read these records;
nothing else looks inside the e-graph's classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from hnfc.ir.expr import format_expr
from hnfc.ir.program import Builder, Program, live_subprogram

MAX_SITE_NODES = 256


@dataclass(frozen=True)
class Change:
    region: int  # index of the region result
    key: tuple  # the region's optimization key (identical regions share it)
    cls: int  # the e-class rewritten (in the region's e-graph)
    rules: tuple[str, ...]  # rules applied at this class whose result the extraction kept
    values: tuple[int, ...]  # the original program's values it replaces (computed ones, not leaves)
    before: str  # the user's expression (depth 3)
    after: str  # the rewritten expression (depth 3)
    old: Program | None = None  # frontier values -> the user's expression (None: `skipped`)
    new: Program | None = None  # frontier values -> the rewritten expression
    frontier: tuple[int, ...] = ()  # original program values feeding both sides, in input order
    skipped: str = ""  # why there is no site to measure
    # The user's node at this class over the *rewritten* classes below it (None when no rewritten
    # class lies below): what the extraction would give if this class alone were refused. `new`
    # must gain over it, not only over `old`, so a rule riding on a nested rewrite's gain (a
    # re-association next to a fixed cancellation) is not taken for it.
    base: Program | None = None
    frontier_ranges: tuple = ()  # per frontier value, its class's Interval (the cost model's input box)


def changes(program: Program, regions) -> list[Change]:
    """Every e-class the extraction changed, over all regions, in region and class order."""
    return [ch for k, r in enumerate(regions) for ch in _region_changes(program, k, r)]


def _region_changes(program: Program, k: int, r) -> list[Change]:
    sat, ex, sub = r.saturated, r.extraction, r.program
    class_of_new = {v: c for c, v in ex.value_of.items()}
    by_class: dict[int, list[int]] = {}
    for v, c in sat.class_of.items():
        by_class.setdefault(c, []).append(v)
    param_name = {r.source.nodes[i].attr["name"]: n.attr["name"] for i, n in enumerate(sub.nodes) if n.op == "param"}
    rules_at: dict[int, list[str]] = {}
    var_classes_at: dict[int, set[int]] = {}
    for a in sat.applied:
        var_classes_at.setdefault(a.root, set()).update(a.var_classes)
        if a.root in ex.new_classes and a.rule not in rules_at.setdefault(a.root, []):
            rules_at[a.root].append(a.rule)
    out = []
    for c in sorted(ex.new_classes):
        olds = [v for v in by_class.get(c, ()) if sub.nodes[v].opdef.kind != "leaf"]
        if not olds or c not in ex.value_of:
            continue
        local = sorted(by_class[c])
        values = tuple(r.value_map[v] for v in local if program.nodes[r.value_map[v]].opdef.kind != "leaf")
        text = dict(region=k, key=r.key, cls=c, rules=tuple(rules_at.get(c, ())), values=values,
                    before=format_expr(sub, local[-1], depth=3), after=format_expr(ex.program, ex.value_of[c], depth=3))
        site = _site(sat, ex, sub, c, olds, by_class, class_of_new, var_classes_at, param_name)
        if isinstance(site, str):
            out.append(Change(**text, skipped=site))
        else:
            old, new, base, frontier_values, boxes = site
            out.append(Change(**text, old=old, new=new, base=base, frontier=tuple(r.value_map[v] for v in frontier_values), frontier_ranges=boxes))
    return out


def _site(sat, ex, sub: Program, c: int, olds: list[int], by_class, class_of_new, var_classes_at, param_name):
    """Both sides of the rewrite at class `c` over shared frontier values, or why there is none.

    A rewrite is an identity in its rules' variables: feed both sides there. Collect the
    variables of every rule applied inside this rewritten expression."""
    stop: set[int] = set()
    seen, stack = set(), [ex.value_of[c]]
    while stack:
        u = stack.pop()
        cu = class_of_new.get(u)
        if u in seen or (u != ex.value_of[c] and cu not in ex.new_classes):
            continue
        seen.add(u)
        stop |= var_classes_at.get(cu, set())
        stack.extend(a for a in ex.program.nodes[u].args if a is not None)
    stop = {k for k in stop if k != c and k in by_class}  # only values the original computes can be fed
    frontier_classes: list[int] = []

    def walk(prog: Program, root: int, class_of) -> set[int]:
        inner, stack = set(), [root]
        while stack and len(inner) <= MAX_SITE_NODES:
            u = stack.pop()
            node, cu = prog.nodes[u], class_of(u)
            if u in inner or (u != root and node.op in ("param", "const")):
                continue  # constants and parameters are copied where used
            if u != root and (cu in stop or node.op == "input"):
                if cu not in frontier_classes:
                    frontier_classes.append(cu)
                continue
            inner.add(u)
            stack.extend(a for a in node.args if a is not None)
        return inner

    old_root = olds[-1]
    for _ in range(4):
        # Frontier values are fed independently, so none may be computed from another
        # (x + 1 and x, each rounded, are no longer one apart): walk through such values.
        frontier_classes.clear()
        new_nodes = walk(ex.program, ex.value_of[c], class_of_new.get)
        old_nodes = walk(sub, old_root, sat.class_of.get)
        # Nor may two be computed from a common value: sqrt(x + 1) and sqrt(x) fed independently
        # break the relation a rewrite like 1 / (sqrt(x + 1) + sqrt(x)) is an identity under.
        anc = {k: _ancestors(sub, by_class[k][0]) for k in frontier_classes}
        dependent = {
            k
            for k in frontier_classes
            for j in frontier_classes
            if j != k and (anc[k] & (anc[j] | set(by_class[j])) or anc[j] & set(by_class[k]))
        }
        if not dependent:
            break
        stop -= dependent
    if len(old_nodes) > MAX_SITE_NODES or len(new_nodes) > MAX_SITE_NODES:
        return "neighbourhood too large to verify"
    frontier_values = [next(v for v in by_class[fc] if v in sat.class_of) for fc in frontier_classes]
    old = _site_program(sub, old_root, old_nodes, sat.class_of.get, frontier_classes, sat.types, {})
    new = _site_program(ex.program, ex.value_of[c], new_nodes, class_of_new.get, frontier_classes, sat.types, param_name)
    # rewritten classes (other than c) that both sides compute: the base takes their new form
    new_by_class = {class_of_new.get(v): v for v in new_nodes}
    swap = {v: new_by_class[sat.class_of[v]] for v in old_nodes
            if v != old_root and sat.class_of.get(v) in new_by_class and sat.class_of[v] in ex.new_classes and sat.class_of[v] != c}
    base = None
    if swap:
        b = Builder()
        inputs = {fc: b.input(f"f{k}", sat.types[fc]) for k, fc in enumerate(frontier_classes)}
        env_new = _emit(b, inputs, ex.program, new_nodes, class_of_new.get, param_name)
        env_old = _emit(b, inputs, sub, old_nodes, sat.class_of.get, {}, {v: env_new[w] for v, w in swap.items()})
        base = live_subprogram(b.build([env_old[old_root]], sub.params))
    boxes = tuple(sat.intervals.get(fc) for fc in frontier_classes)
    return old, new, base, frontier_values, boxes


def _ancestors(prog: Program, value: int) -> set[int]:
    """The values `value` is computed from (transitively), constants and parameters left out:
    those are copied into a site, never fed."""
    seen, stack = set(), list(prog.nodes[value].args)
    while stack:
        a = stack.pop()
        if a is None or a in seen:
            continue
        seen.add(a)
        stack.extend(prog.nodes[a].args)
    return {a for a in seen if prog.nodes[a].op not in ("const", "param")}


def _site_program(prog: Program, root: int, inner: set[int], class_of, frontier_classes: list[int], types, rename: dict[str, str]) -> Program:
    """Frontier values (one input each, in order; a side may not use all) -> one side's expression."""
    b = Builder()
    inputs = {fc: b.input(f"f{k}", types[fc]) for k, fc in enumerate(frontier_classes)}
    env = _emit(b, inputs, prog, inner, class_of, rename)
    return b.build([env[root]], prog.params)


def _emit(b: Builder, inputs: dict, prog: Program, inner: set[int], class_of, rename: dict[str, str], swap: dict[int, int] | None = None) -> dict[int, int]:
    """Emit `inner` (values of `prog`) into `b` over the frontier `inputs`; `swap`: values of
    `prog` to take as given ids of `b` instead. Returns value of `prog` -> id in `b`."""
    env: dict[int, int] = dict(swap or {})

    def leaf(a: int) -> int:  # a parameter or constant, copied (parameters under this region's names)
        n = prog.nodes[a]
        attrs = dict(n.attr)
        if n.op == "param":
            attrs["name"] = rename.get(attrs["name"], attrs["name"])
        return b.add(n.op, (), attrs, n.type)

    for v in sorted(inner):  # node order is topological
        if v in env:
            continue
        n = prog.nodes[v]
        if n.op in ("param", "const"):
            env[v] = leaf(v)
            continue
        args = []
        for a in n.args:
            if a is None:
                args.append(None)
            elif a in env:
                args.append(env[a])
            elif class_of(a) in inputs:
                args.append(inputs[class_of(a)])
            else:
                env[a] = leaf(a)
                args.append(env[a])
        env[v] = b.add(n.op, args, n.attr, n.type)
    return env
