"""The optimization report: what was rewritten, what it measured, what it cost.

In: results of the pipeline stages. Out: a `Report` (printable, and `to_dict()` for JSON).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from hnfc.analysis.curvature import describe_prediction
from hnfc.foundation.dtypes import DTYPES
from hnfc.report.html import render
from hnfc.precision.legalize import RULE as LEGALIZE_RULE
from hnfc.precision.legalize import Legalization
from hnfc.verify.judge import OutputError



@dataclass(frozen=True)
class Rewrite:
    rules: tuple[str, ...]  # rules whose result the extraction kept here
    values: tuple[int, ...]  # SSA values of the original program it replaces (legalize-constant: the node, in the optimized program)
    before: str
    after: str
    # bits of error of this neighbourhood against the reference (local verification)
    before_mean: float | None = None
    before_max: float | None = None
    after_mean: float | None = None
    after_max: float | None = None
    accepted: bool = True
    reason: str = ""


@dataclass
class Report:
    rewrites: list[Rewrite] = field(default_factory=list)
    outputs: list[OutputError] = field(default_factory=list)
    predicted_bits_before: float = 0.0
    predicted_bits_after: float = 0.0
    # the itemized prediction (hnfc.analysis.Prediction.as_dict: hazards, unbounded, bits, outputs)
    predicted_before: dict = field(default_factory=dict)
    predicted_after: dict = field(default_factory=dict)
    egraph: dict = field(default_factory=dict)  # nodes, classes, iterations, stop_reason
    nodes_before: int = 0
    nodes_after: int = 0
    times: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    rewrites_refused: list[Rewrite] = field(default_factory=list)  # found but not applied (see warnings)
    # precision stage (hnfc/precision/assignment.py) -- begin
    dtypes: dict = field(default_factory=dict)  # "%id" -> {op, dtype, original, need_bits, ...}
    low_precision_share: float | None = None  # of FLOPs run in bf16/f16
    promotions: list[dict] = field(default_factory=list)  # {kind, round, value, op, from_dtype, to_dtype, reason}
    precision: dict = field(default_factory=dict)  # target, menu, met, errors, rounds, casts
    # precision stage -- end
    node_costs: dict = field(default_factory=dict)  # "%id" -> [cond, predicted bits lost, reason], program that runs

    def to_dict(self) -> dict:
        return asdict(self)

    def to_html(self, **options) -> str:
        """One self-contained HTML page (hnfc.report.html.render; options: program, title)."""
        return render(self, **options)

    def __str__(self) -> str:
        lines = [f"hnfc report: {len(self.rewrites)} rewrite(s), {self.nodes_before} -> {self.nodes_after} nodes"]
        for r in self.rewrites:
            where = ",".join(f"%{v}" for v in r.values) or "new value"
            bits = f"  ({r.before_mean:.2f} -> {r.after_mean:.2f} bits)" if r.before_mean is not None else ""
            lines.append(f"  [{', '.join(r.rules)}] at {where}: {r.before}  ->  {r.after}{bits}")
        if self.outputs:
            lines.append("  bits of error (mean / max), before -> after:")
            for o in self.outputs:
                verdict = "" if o.accepted else "  (refused: worse; original kept)"
                lines.append(f"    output {o.index}: {o.before_mean:.2f} / {o.before_max:.1f} -> {o.after_mean:.2f} / {o.after_max:.1f}{verdict}")
        if self.predicted_before and self.predicted_after:
            lines.append(f"  predicted: {describe_prediction(self.predicted_before)} -> {describe_prediction(self.predicted_after)}")
        else:
            lines.append(f"  predicted bits lost: {self.predicted_bits_before:.1f} -> {self.predicted_bits_after:.1f}")
        if self.egraph:
            e = self.egraph
            lines.append(f"  e-graph: {e.get('nodes')} e-nodes, {e.get('classes')} classes, {e.get('iterations')} iterations, stopped: {e.get('stop_reason')}")
        if self.precision:
            p = self.precision
            counts: dict[str, int] = {}
            for e in self.dtypes.values():
                counts[e["dtype"]] = counts.get(e["dtype"], 0) + 1
            errs = ", ".join(f"{e:.3g}" for e in p.get("errors", []))
            lines.append(f"  precision: target {p.get('target'):g} {'met' if p.get('met') else 'NOT met'} (measured {errs}); nodes per dtype {counts}; low-precision FLOP share {self.low_precision_share:.1%}; {p.get('casts', 0)} casts")
            for q in self.promotions:
                lines.append(f"    {q['kind']} %{q['value']} {q['op']}: {q['from_dtype']} -> {q['to_dtype']} ({q['reason']})")
        if self.times:
            lines.append("  time: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.times.items()))
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def legalization_rewrite(note: Legalization) -> Rewrite:
    """A legalized constant as a report row (the report's rewrite listing shows it as is)."""
    bound = "min" if note.new < 0 else "max"
    return Rewrite(
        (LEGALIZE_RULE,),
        (note.user,),
        f"{note.op} with {note.source} {note.old!r} (-> {'-' if note.old < 0 else '+'}inf in {note.dtype})",
        f"{note.new!r} (finfo({DTYPES[note.dtype].torch_name}).{bound})",
        reason="dtype legalization (not verified: the constant was not representable)",
    )
