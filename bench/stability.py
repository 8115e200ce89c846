"""Stability suite benchmark: bits of error before/after hnfc, and how well the cost model predicts.

    .venv/bin/python bench/stability.py [--quick] [--out bench/results]

For every case of hnfc.examples.stability in float32 and bfloat16: optimize the naive program,
then measure both versions against the mpmath reference on fresh inputs (half uniform in value,
half uniform over float bit patterns, inside the case's range). Also: the predicted bits lost
(total curvature) of every program before and after, and its Spearman correlation with the
measured mean bits. Writes JSON and a Markdown table.
"""

from __future__ import annotations

import time

import numpy as np
import torch

import hnfc
from hnfc import analysis
from hnfc.foundation.config import Config
from hnfc.examples.stability import CASES
from hnfc.runtime import flat, observe, verification_inputs
from hnfc.verify import measure

from _common import arguments, fresh_caches, write_results

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def ranks(a) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (predictions tie at the output width, and
    an order-dependent tie break would make the correlation depend on the case order)."""
    a = np.asarray(a, dtype=float)
    order = np.argsort(a, kind="stable")
    r = np.empty(len(a))
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and a[order[j + 1]] == a[order[i]]:
            j += 1
        r[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a, b) -> float:
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def predicted_bits(program, input_sets, lo, hi) -> float:
    ranges = analysis.ranges(program, {0: (lo, hi)}, observed=observe(program, input_sets))
    return analysis.predicted_bits(program, ranges)


def run(quick: bool) -> dict:
    rows = []
    measure_cfg = Config(samples=2 if quick else 8, seed=1234)
    for case in CASES:
        for dname, dtype in DTYPES.items():
            x = case.example(dtype, rows=2 if quick else None)
            t = time.perf_counter()
            gm = hnfc.optimize(case.fn, (x,), input_ranges={0: (case.lo, case.hi)})
            seconds = time.perf_counter() - t
            before, after = hnfc.trace(case.fn, (x,)), gm.program
            input_sets = verification_inputs(before, [x], {0: (case.lo, case.hi)}, measure_cfg)
            check = measure(flat(before), flat(after), input_sets, measure_cfg)[0]
            rows.append(
                {
                    "case": case.name,
                    "dtype": dname,
                    "rules": sorted({r for rw in gm.report.rewrites for r in rw.rules}),
                    "before_mean": check.before_mean,
                    "before_max": check.before_max,
                    "after_mean": check.after_mean,
                    "after_max": check.after_max,
                    "predicted_before": predicted_bits(before, input_sets, case.lo, case.hi),
                    "predicted_after": predicted_bits(after, input_sets, case.lo, case.hi),
                    "seconds": seconds,
                }
            )
    predicted = [r["predicted_before"] for r in rows] + [r["predicted_after"] for r in rows]
    worst = [r["before_max"] for r in rows] + [r["after_max"] for r in rows]
    mean = [r["before_mean"] for r in rows] + [r["after_mean"] for r in rows]
    # The cost is a sup over the input box, a worst-case bound: it ranks the max error.
    return {"rows": rows, "spearman_max": spearman(predicted, worst), "spearman_mean": spearman(predicted, mean), "quick": quick}


def markdown(result: dict) -> str:
    lines = [
        "| case | dtype | before mean / max | after mean / max | predicted before → after | rules |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['case']} | {r['dtype']} | {r['before_mean']:.2f} / {r['before_max']:.0f} | {r['after_mean']:.2f} / {r['after_max']:.0f} "
            f"| {r['predicted_before']:.1f} → {r['predicted_after']:.1f} | {', '.join(r['rules'])} |"
        )
    lines.append("")
    lines.append(
        f"Spearman correlation of predicted bits lost with measured bits of error, over all programs before and after: "
        f"**{result['spearman_max']:.2f}** with the max (what a sup-over-the-box bound predicts), {result['spearman_mean']:.2f} with the mean."
    )
    return "\n".join(lines)


def main() -> None:
    fresh_caches()  # cold times: nothing from earlier runs
    args = arguments(__doc__, "2 rows and 2 samples per case (CI smoke)").parse_args()
    result = run(args.quick)
    md = markdown(result)
    write_results(args.out, "stability", data=result, markdown=md)
    print(md)


if __name__ == "__main__":
    main()
