"""The SSA IR: typed nodes in topological order, built through a hash-consing `Builder`.

In: ops from the op table (by name), value ids, attributes. Out: an immutable `Program` whose
value ids are node positions; `str(program)` is the text form (hnfc.ir.text).
Sits between the op table and every analysis; imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from hnfc import ops
from hnfc.ir.format import format_program
from hnfc.foundation.types import TensorType, Type

# Ops that must never be merged with an identical-looking node: their value is not a function of
# their arguments (inputs are distinct by position; opaque ops may be random or stateful).
_UNIQUE_OPS = frozenset({"input", "opaque"})


class IRError(ValueError):
    """A malformed program or node, with the offending value named in the message."""


@dataclass(frozen=True)
class Node:
    op: str
    args: tuple[int | None, ...]
    attrs: tuple[tuple[str, Any], ...]  # every declared attribute, in declaration order
    type: Type

    @property
    def attr(self) -> dict[str, Any]:
        return dict(self.attrs)

    @property
    def opdef(self) -> ops.OpDef:
        return ops.get(self.op)


@dataclass(frozen=True, eq=False)
class Program:
    nodes: tuple[Node, ...]
    outputs: tuple[int, ...]
    # Not part of the text form: parameter values by name, and how to rebuild Python structures
    # around the flat inputs/outputs (pytree specs), the device, the source.
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __reduce__(self):  # read-only views do not pickle; copy.deepcopy(optimized_module) needs this
        return (_program, (self.nodes, self.outputs, dict(self.params), dict(self.meta)))

    @property
    def inputs(self) -> tuple[int, ...]:
        return tuple(i for i, n in enumerate(self.nodes) if n.op == "input")

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self.nodes[i].attr["name"] for i in self.inputs)

    def users(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.nodes]
        for i, n in enumerate(self.nodes):
            for a in n.args:
                if a is not None:
                    out[a].append(i)
        return out

    def __str__(self) -> str:
        return format_program(self)

    def __len__(self) -> int:
        return len(self.nodes)


class Builder:
    """Appends nodes, returning value ids; identical (op, args, attrs, type) share one id."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._index: dict[tuple, int] = {}

    def type_of(self, value: int) -> Type:
        return self.nodes[value].type

    def add(self, op: str, args: Iterable[int | None] = (), attrs: Mapping[str, Any] | None = None, type: Type | None = None) -> int:
        try:
            opdef = ops.get(op)
        except ValueError as e:
            raise IRError(str(e)) from None
        args = tuple(args)
        attrs = dict(attrs or {})
        try:
            opdef.check_call(args, attrs)
        except ValueError as e:
            raise IRError(str(e)) from None
        for a in args:
            if a is not None and not 0 <= a < len(self.nodes):
                raise IRError(f"{op}: argument %{a} is not defined yet")
        full = ops.full_attrs(opdef, attrs)
        if type is None:
            type = self.infer(opdef, args, full)
        node = Node(op, args, tuple(full.items()), type)
        key = (op, args, repr(node.attrs), type)
        if op not in _UNIQUE_OPS and key in self._index:
            return self._index[key]
        self.nodes.append(node)
        self._index[key] = len(self.nodes) - 1
        return len(self.nodes) - 1

    def infer(self, opdef: ops.OpDef, args: tuple, attrs: dict) -> Type:
        if opdef.infer is None:
            raise IRError(f"{opdef.name}: its type cannot be inferred and must be given")
        try:
            return opdef.infer([None if a is None else self.nodes[a].type for a in args], attrs)
        except IRError:
            raise
        except Exception as e:  # a type rule rejecting its arguments
            raise IRError(f"{opdef.name}: cannot type arguments {[str(self.nodes[a].type) for a in args if a is not None]}: {e}") from None

    def input(self, name: str, type: TensorType) -> int:
        return self.add("input", (), {"name": name}, type)

    def param(self, name: str, type: TensorType) -> int:
        return self.add("param", (), {"name": name}, type)

    def const(self, value, dtype: str = "f32") -> int:
        return self.add("const", (), {"value": value, "dtype": dtype})

    def build(self, outputs: Iterable[int], params: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None) -> Program:
        return Program(
            tuple(self.nodes),
            tuple(outputs),
            MappingProxyType(dict(params or {})),
            MappingProxyType(dict(meta or {})),
        )


def _program(nodes, outputs, params, meta) -> Program:
    return Program(nodes, outputs, MappingProxyType(params), MappingProxyType(meta))


def on_device(program: Program, device: Any, params: Mapping[str, Any] | None = None, **meta: Any) -> Program:
    """`program` made to run on `device` (a torch.device): the device its opaque calls name, its
    `meta["device"]`, and its parameters, moved (`.to(device)`), or taken by name from `params`
    where given (so a program analysed on a CPU twin runs on the user's own GPU parameters).
    `meta` entries are added to the program's."""

    def move(v):
        if isinstance(v, tuple):
            return ("$device", str(device)) if len(v) == 2 and v[0] == "$device" else tuple(move(x) for x in v)
        return v

    nodes = tuple(Node(n.op, n.args, tuple((k, move(v)) for k, v in n.attrs), n.type) for n in program.nodes)
    given = params or {}
    moved = {k: given[k] if k in given else v.to(device) if hasattr(v, "to") else v for k, v in program.params.items()}
    return Program(nodes, program.outputs, MappingProxyType(moved), MappingProxyType({**program.meta, "device": device, **meta}))


def ancestors(program: Program, values: Iterable[int]) -> set[int]:
    """`values` and every value they are computed from (one backward sweep: ids are topological)."""
    seen = set(values)
    for i in range(len(program.nodes) - 1, -1, -1):
        if i in seen:
            seen.update(a for a in program.nodes[i].args if a is not None)
    return seen


def last_uses(program: Program) -> list[int]:
    """Per value id, the id of the last node that reads it (len(nodes) for outputs; itself when
    unused): evaluators free a value after its last use."""
    last = list(range(len(program.nodes)))
    for i, n in enumerate(program.nodes):
        for a in n.args:
            if a is not None:
                last[a] = i
    for o in program.outputs:
        last[o] = len(program.nodes)
    return last


def live_subprogram(program: Program) -> Program:
    """The program without nodes no output depends on (inputs are always kept), renumbered."""
    live = ancestors(program, [*program.outputs, *program.inputs])
    remap: dict[int, int] = {}
    b = Builder()
    for i, n in enumerate(program.nodes):
        if i in live:
            remap[i] = b.add(n.op, [None if a is None else remap[a] for a in n.args], n.attr, n.type)
    used = {program.nodes[i].attr["name"] for i in remap if program.nodes[i].op == "param"}
    params = {k: v for k, v in program.params.items() if k in used}
    return b.build([remap[o] for o in program.outputs], params, program.meta)
