"""The optimization report: what was rewritten, what it measured, what it cost.

In: results of the pipeline stages. Out: a `Report` (printable, and `to_dict()` for JSON).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field



@dataclass(frozen=True)
class Rewrite:
    rules: tuple[str, ...]  # rules whose result the extraction kept here
    values: tuple[int, ...]  # SSA values of the original program it replaces
    before: str
    after: str


@dataclass(frozen=True)
class OutputError:
    index: int
    before_mean: float
    before_max: float
    after_mean: float
    after_max: float
    accepted: bool


@dataclass
class Report:
    rewrites: list[Rewrite] = field(default_factory=list)
    outputs: list[OutputError] = field(default_factory=list)
    predicted_bits_before: float = 0.0
    predicted_bits_after: float = 0.0
    egraph: dict = field(default_factory=dict)  # nodes, classes, iterations, stop_reason
    nodes_before: int = 0
    nodes_after: int = 0
    times: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"hnfc report: {len(self.rewrites)} rewrite(s), {self.nodes_before} -> {self.nodes_after} nodes"]
        for r in self.rewrites:
            where = ",".join(f"%{v}" for v in r.values) or "new value"
            lines.append(f"  [{', '.join(r.rules)}] at {where}: {r.before}  ->  {r.after}")
        if self.outputs:
            lines.append("  bits of error (mean / max), before -> after:")
            for o in self.outputs:
                verdict = "" if o.accepted else "  (refused: worse; original kept)"
                lines.append(f"    output {o.index}: {o.before_mean:.2f} / {o.before_max:.1f} -> {o.after_mean:.2f} / {o.after_max:.1f}{verdict}")
        lines.append(f"  predicted bits lost: {self.predicted_bits_before:.1f} -> {self.predicted_bits_after:.1f}")
        if self.egraph:
            e = self.egraph
            lines.append(f"  e-graph: {e.get('nodes')} e-nodes, {e.get('classes')} classes, {e.get('iterations')} iterations, stopped: {e.get('stop_reason')}")
        if self.times:
            lines.append("  time: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.times.items()))
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)
