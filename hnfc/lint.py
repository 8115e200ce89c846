"""Lint: where a model loses bits, and what would fix it. Changes nothing.

In: a module or function, example inputs, declared input ranges, options (as `hnfc.optimize`).
Out: a `LintResult` with one `Finding` per node worth a look, most severe first:

- "hazard": the cost model sees a real hazard at the node (overflow of its dtype, log of a range
  reaching 0, division by a range holding 0, underflow into one of those). Always failing.
- "fixable": the optimizer found a verified, more stable form for the node (a rewrite in its
  report); the fix is that rewrite. Failing when its predicted bits lost exceed `max_bits`.
- "candidate": the e-graph found a more stable form but verification on these inputs did not
  measure it better (the report's refused rewrites): the fix is suggested, fails like "fixable"
  (a hand-written log(softmax) is worth fixing even where the samples do not show it).
- "ill-conditioned": the node is predicted to lose more than `max_bits` bits and no rewrite
  helps (typically a sum or matmul whose result can cancel to 0). Listed as a note; failing
  only with `strict=True`.

Ranges are the optimizer's: declared input domains plus values observed on the example and
sampled inputs. Predicted bits are `hnfc.analysis.explain`'s.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

import torch


@dataclasses.dataclass(frozen=True)
class Finding:
    kind: str  # "hazard" | "fixable" | "candidate" | "ill-conditioned"
    value: int  # SSA value id in the traced program
    op: str
    bits: float  # predicted bits lost at the node (>= 1000 for a hazard)
    reason: str
    expr: str  # the node as an expression
    fix: str | None = None  # the suggested change
    rules: tuple[str, ...] = ()


@dataclasses.dataclass
class LintResult:
    findings: list[Finding]
    max_bits: float
    strict: bool
    report: Any = None  # the optimizer's Report (what `hnfc optimize` would do)

    @property
    def failing(self) -> list[Finding]:
        out = []
        for f in self.findings:
            if f.kind == "hazard" or (f.bits > self.max_bits and (f.kind in ("fixable", "candidate") or self.strict)):
                out.append(f)
        return out

    @property
    def ok(self) -> bool:
        return not self.failing

    def to_dict(self) -> dict:
        return {
            "max_bits": self.max_bits,
            "strict": self.strict,
            "ok": self.ok,
            "failing": len(self.failing),
            "findings": [dataclasses.asdict(f) for f in self.findings],
        }


_GENERIC_FIX = {
    "sub": "cancellation: compute the difference in a stable form, or in higher precision",
    "add": "cancellation of mixed-sign terms: reorder or compute in higher precision",
    "sum": "cancellation in a reduction: accumulate in float64, or subtract a mean first",
    "mean": "cancellation in a reduction: accumulate in float64",
    "matmul": "cancellation in a dot product: accumulate in higher precision if it matters",
    "addmm": "cancellation in a dot product: accumulate in higher precision if it matters",
    "mm": "cancellation in a dot product: accumulate in higher precision if it matters",
    "bmm": "cancellation in a dot product: accumulate in higher precision if it matters",
}


def _generic_fix(op: str, hazard: bool, reason: str) -> str:
    if hazard:
        if "overflow" in reason:
            return "overflow: rescale (subtract a max, work in log space) or use a wider dtype"
        return "domain edge: keep the argument away from it (clamp, eps) or use the fused op (log1p, log_softmax, ...)"
    return _GENERIC_FIX.get(op, "ill-conditioned here: narrow the declared input range or compute in higher precision")


def _why(reason: str, rw) -> str:
    parts = [reason] if reason else []
    before, after = getattr(rw, "before_mean", None), getattr(rw, "after_mean", None)
    if before is not None and after is not None:
        parts.append(f"measured {before:.2f} -> {after:.2f} bits (mean) with the fix")
    if not getattr(rw, "accepted", True):
        parts.append("not verified better on these inputs" + (f": {rw.reason}" if getattr(rw, "reason", "") else ""))
    return "; ".join(parts) or "rewrite found"


def lint(model_or_fn, example_inputs, *, input_ranges: Mapping | None = None, rules: Iterable | None = None,
         max_bits: float = 8.0, strict: bool = False, **options) -> LintResult:
    """Find the nodes of `model_or_fn` that lose bits (see the module doc); changes nothing."""
    from hnfc import analysis
    from hnfc.foundation.config import Config
    from hnfc.frontend.contract import check_examples
    from hnfc.frontend.tracing import trace
    from hnfc.rewrites.gate import checked
    from hnfc.ir.expr import format_expr
    from hnfc.pipeline import _input_positions, optimize_program
    from hnfc.runtime import observe, verification_inputs

    config = Config.from_options(options)
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    check_examples(example_inputs)
    rules = checked(rules, trust=config.trust_rules) if rules is not None else None  # unsound user rules: an error
    program = trace(model_or_fn, tuple(example_inputs))
    flat = list(torch.utils._pytree.tree_leaves(list(example_inputs)))
    ranges_in = _input_positions(program, input_ranges)
    sets = verification_inputs(program, flat, ranges_in, config)
    ranges = analysis.ranges(program, ranges_in, observed=observe(program, sets), margin=config.margin)
    _, report = optimize_program(program, flat, input_ranges=ranges_in, rules=rules, config=config)

    fixes: dict[int, Any] = {}
    kinds: dict[int, str] = {}
    for kind, found in (("candidate", getattr(report, "rewrites_refused", ())), ("fixable", report.rewrites)):
        for rw in found:
            kinds[id(rw)] = kind
            for v in rw.values:
                fixes[v] = rw
    findings: list[Finding] = []
    seen_fix: set[int] = set()
    for i, op, cond, bits, reason in analysis.explain(program, ranges):
        hazard = reason.startswith("hazard:")
        rw = fixes.get(i)
        if rw is not None:
            seen_fix.add(id(rw))
            findings.append(Finding("hazard" if hazard else kinds[id(rw)], i, op, bits, _why(reason, rw), format_expr(program, i, depth=3),
                                    f"{rw.before}  ->  {rw.after}", tuple(rw.rules)))
        elif hazard:
            findings.append(Finding("hazard", i, op, bits, reason, format_expr(program, i, depth=3), _generic_fix(op, True, reason)))
        elif bits > max_bits:
            findings.append(Finding("ill-conditioned", i, op, bits, reason, format_expr(program, i, depth=3), _generic_fix(op, False, reason)))
    for rw in [*report.rewrites, *getattr(report, "rewrites_refused", ())]:  # nodes the cost model did not itemize
        if id(rw) not in seen_fix and rw.values:
            v = rw.values[-1]
            findings.append(Finding(kinds[id(rw)], v, program.nodes[v].op, 0.0, _why("", rw), format_expr(program, v, depth=3),
                                    f"{rw.before}  ->  {rw.after}", tuple(rw.rules)))
    order = {"hazard": 0, "fixable": 1, "candidate": 2, "ill-conditioned": 3}
    findings.sort(key=lambda f: (order[f.kind], -f.bits, f.value))
    return LintResult(findings, float(max_bits), strict, report)


__all__ = ["Finding", "LintResult", "lint"]
