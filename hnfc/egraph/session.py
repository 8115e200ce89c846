"""A thin session over egglog's low-level bindings: declare, insert, run, read back.

In: egglog program text (from hnfc.rewrites.compile). Out: `Snapshot`s of the e-graph as plain
Python data (e-classes as ints, e-nodes with op, attribute string and child classes, the `Id`
handles, candidate rows). Inserts go in small batches: egglog 13's parser is quadratic in the
length of one program text.

`prepared(setup)`: a session that has run the setup texts (declarations, rules), kept per thread
and reused through egglog's push/pop, so that each region of a model does not parse hnfc's rule
library again (0.2 s a region).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from egglog import bindings

BATCH = 20  # lines per parse; larger batches get slow (quadratic parser)
TERM_CONSTRUCTORS = ("App0", "App1", "App2", "App3", "App4", "AppN", "Num")


@dataclass(frozen=True)
class ENode:
    cls: int
    op: str  # op name; "$num" for a float constant
    attrs: str  # canonical attribute string (or the constant's repr for "$num")
    children: tuple[int, ...]
    value: float | None = None  # for "$num"


@dataclass
class Snapshot:
    enodes: list[ENode]
    handles: dict[int, int]  # handle (Id key) -> class
    rows: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)  # relation -> class rows

    def classes(self) -> dict[int, list[ENode]]:
        out: dict[int, list[ENode]] = {}
        for n in self.enodes:
            out.setdefault(n.cls, []).append(n)
        return out


class Session:
    def __init__(self, prelude: str) -> None:
        self.eg = bindings.EGraph()
        self.run_text(prelude)

    def run_text(self, text: str):
        return self.eg.run_program(*self.eg.parse_program(text))

    @classmethod
    def from_setup(cls, setup: Sequence[str | Sequence[str]]) -> "Session":
        """A new session: the first text as its prelude, then each text (a list: in batches)."""
        first, *rest = setup
        s = cls(first)
        for part in rest:
            if isinstance(part, str):
                s.run_text(part)
            else:
                s.run_lines(list(part))
        return s

    def run_lines(self, lines: list[str]) -> None:
        for k in range(0, len(lines), BATCH):
            self.run_text("\n".join(lines[k : k + BATCH]))

    def run_ruleset(self, ruleset: str) -> bool:
        """One iteration of `ruleset`; True when it changed the e-graph."""
        out = self.run_text(f"(run {ruleset} 1)")
        return bool(out[0].report.updated)

    def size(self) -> int:
        sizes = dict(self.run_text("(print-size)")[0].sizes)
        return sum(sizes.get(c, 0) for c in TERM_CONSTRUCTORS)

    def snapshot(self, relations: tuple[str, ...]) -> Snapshot:
        eg = self.eg
        frozen = eg.freeze()
        i64, string = eg.value_to_i64, eg.value_to_string
        enodes: list[ENode] = []
        handles: dict[int, int] = {}
        rows: dict[str, list[tuple[int, ...]]] = {r: [] for r in relations}
        for name, fn in frozen.functions.items():
            if name == "Id":
                handles.update((i64(r.inputs[0]), i64(r.output)) for r in fn.rows)
            elif name == "Num":
                for r in fn.rows:
                    v = eg.value_to_f64(r.inputs[0])
                    enodes.append(ENode(i64(r.output), "$num", repr(v), (), v))
            elif name == "AppN":
                for r in fn.rows:
                    kids = tuple(i64(c) for c in eg.value_to_vec(r.inputs[2]))
                    enodes.append(ENode(i64(r.output), string(r.inputs[0]), string(r.inputs[1]), kids))
            elif name in TERM_CONSTRUCTORS:
                for r in fn.rows:
                    enodes.append(ENode(i64(r.output), string(r.inputs[0]), string(r.inputs[1]), tuple(i64(c) for c in r.inputs[2:])))
            elif name in rows:
                rows[name] = [tuple(i64(v) for v in r.inputs) for r in fn.rows]
        return Snapshot(enodes, handles, rows)


_kept = threading.local()  # per thread: an egglog EGraph is not to be shared across threads


@contextmanager
def prepared(setup: Sequence[str | Sequence[str]]) -> Iterator[Session]:
    """A session in the state `Session.from_setup(setup)` leaves, for one use: egglog's `(push)`
    saves that state and `(pop)` on exit restores it whole (e-graph, rules and their schedule),
    so the next use with the same setup starts where a fresh session would, without parsing the
    setup again. The last setup's session is kept per thread; one that failed to pop is dropped."""
    key = tuple(p if isinstance(p, str) else tuple(p) for p in setup)
    held = getattr(_kept, "session", None)
    if held is None or held[0] != key or held[2]:
        held = [key, Session.from_setup(setup), False]
        _kept.session = held
    session = held[1]
    held[2] = True  # in use (a nested use builds its own)
    session.run_text("(push)")
    try:
        yield session
    finally:
        try:
            session.run_text("(pop)")
            held[2] = False
        except Exception:
            _kept.session = None
