"""The series/regimes stage on the held-out scalar formulas: bits and time with the stage off and on.

    .venv/bin/python bench/series.py [--quick] [--out bench/results] [--only NAME,NAME] [--all]

Scalar formulas of hnfc/examples/heldout.py, float64. Default: the "series" family and every other
formula still above 1 bit with the stage off; --all: every formula; --quick: the series family,
fewer points. Each is optimized with `series=False` and with the stage on (the default), both
timed, and the naive form and both results are measured against the mpmath reference on fresh
inputs (bench/heldout.py's samples: half uniform in value, half over bit patterns, seeds the
optimizer did not see). The table shows the regime each replacement built. Writes series.json
and series.md (series_quick.* with --quick).
"""

from __future__ import annotations

import time
import warnings

import numpy as np

import hnfc
from hnfc.examples.heldout import SCALAR
from hnfc.foundation.types import TensorType

from _common import arguments, fresh_caches, write_results
from heldout import _bits, _samples


def _optimize(f, g, **options):
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hnfc.optimize(f.fn, tuple(g), input_ranges={i: d for i, d in enumerate(f.domains)}, **options)
    return m, time.perf_counter() - t


def run_case(f, *, quick: bool, skip_below: float | None = None, seed: int = 100) -> dict | None:
    """One formula; None when the stage-off result is at most `skip_below` bits (not a case)."""
    n = 64 if quick else 256
    types = [TensorType((n,), "f64")] * len(f.domains)
    g = hnfc.sample_inputs(types, f.domains, 1, mode="value", seed=seed)[0]
    program = hnfc.trace(f.fn, tuple(g))
    samples = _samples(types, f.domains, 1 if quick else 2, seed + 1)
    off, t_off = _optimize(f, g, series=False)
    pairs = [_bits(program, f.fn, off, inputs) for inputs in samples]
    b, a = (np.concatenate(v) for v in zip(*pairs))
    if skip_below is not None and a.mean() <= skip_below:
        return None
    on, t_on = _optimize(f, g)
    c = np.concatenate([_bits(program, f.fn, on, inputs)[1] for inputs in samples])
    taken = [rw for rw in on.report.rewrites if "series-regimes" in rw.rules]
    return {
        "case": f.name,
        "family": f.family,
        "points": int(b.size),
        "naive_mean": float(b.mean()),
        "off_mean": float(a.mean()),
        "off_max": float(a.max()),
        "on_mean": float(c.mean()),
        "on_max": float(c.max()),
        "seconds_off": t_off,
        "seconds_on": t_on,
        "seconds_stage": on.report.times.get("series", 0.0),
        "regimes": [rw.after for rw in taken],
    }


def markdown(rows, quick: bool) -> str:
    lines = [
        "| case | naive | stage off mean / max | stage on mean / max | optimize s off / on (stage) | regime |",
        "|---|---:|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['naive_mean']:.2f} | {r['off_mean']:.2f} / {r['off_max']:.0f} | **{r['on_mean']:.2f}** / {r['on_max']:.0f} | "
            f"{r['seconds_off']:.1f} / {r['seconds_on']:.1f} ({r['seconds_stage']:.1f}) | {'; '.join(r['regimes'])[:160]} |"
        )
    if rows:
        off = np.mean([r["off_mean"] for r in rows])
        on = np.mean([r["on_mean"] for r in rows])
        worse = sum(r["on_mean"] > r["off_mean"] + 0.05 for r in rows)
        lines.append("")
        lines.append(f"{len(rows)} formulas{' (quick)' if quick else ''}: mean bits {off:.2f} (stage off) → **{on:.2f}** (on); "
                     f"{sum(r['on_mean'] <= 1 for r in rows)} ≤ 1 bit on vs {sum(r['off_mean'] <= 1 for r in rows)} off; {worse} worse; "
                     f"max seconds per formula (on) {max(r['seconds_on'] for r in rows):.1f}")
    return "\n".join(lines)


def main() -> None:
    fresh_caches()  # cold times: nothing from earlier runs
    ap = arguments(__doc__, "the series family only, fewer points")
    ap.add_argument("--only", default=None, help="comma-separated case names")
    ap.add_argument("--all", action="store_true", help="every scalar formula")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    rows = []
    for f in SCALAR:
        if only is not None and f.name not in only:
            continue
        if only is None and args.quick and f.family != "series":
            continue
        skip = 1.0 if only is None and not args.all and not args.quick and f.family != "series" else None
        r = run_case(f, quick=args.quick, skip_below=skip)
        if r is None:
            continue
        rows.append(r)
        print(markdown([r], args.quick).splitlines()[2], flush=True)
    md = markdown(rows, args.quick)
    print(md)
    write_results(args.out, "series_quick" if args.quick else "series", data={"rows": rows, "quick": args.quick}, markdown=md)


if __name__ == "__main__":
    main()
