"""Held-out-style benchmark: bits of error before/after hnfc on formulas the library was not written for.

    .venv/bin/python bench/heldout.py [--quick] [--out bench/results] [--only NAME,NAME] [--set scalar|dl]

Cases are in hnfc/examples/heldout.py: scalar formulas from the floating-point accuracy literature
(float64) and deep-learning patterns (float32 and bfloat16). For each case and dtype: optimize the
naive program with `input_ranges` = the case's domain (timed), then measure both programs against
the mpmath reference (`hnfc.reference`) on fresh inputs, half uniform in value and half uniform
over the dtype's bit patterns (`hnfc.sample_inputs`), none of which the optimizer saw. Points
where the real result is undefined (NaN) are left out; NaN or inf where the truth is finite count
as the full width (`hnfc.bits_error`). Writes heldout.json and heldout.md.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

import hnfc
from hnfc.examples.heldout import DL, SCALAR
from hnfc.foundation.types import TensorType

from _common import arguments, fresh_caches, write_results

SCALAR_DTYPES = ("float64",)
DL_DTYPES = ("float32", "bfloat16")
TORCH = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
SHORT = {"float64": "f64", "float32": "f32", "bfloat16": "bf16"}
# A few cases for CI (--quick): one per kind of fix (conjugate, log/exp, softmax, special function).
QUICK = ("sqrt-x1-minus-sqrt-x", "log-x1-minus-log-x", "logsumexp-rows-near-1000", "one-minus-sigmoid")


def _samples(types, domains, n_points: int, seed: int):
    """Fresh inputs: one set uniform in value, one uniform over bit patterns (seeds unseen by optimize)."""
    sets = []
    for k, mode in enumerate(("value", "bits")):
        sets += hnfc.sample_inputs(types, domains, n_points, mode=mode, seed=seed + k)
    return sets


def _bits(program, fn, module, inputs) -> tuple[np.ndarray, np.ndarray]:
    """Bits of error of fn and module on inputs, over the points where the truth is defined."""
    ref = hnfc.reference(program, inputs, return_mp=True)
    truth = np.asarray(ref.outputs[0], dtype=np.float64)
    with torch.no_grad():
        before = fn(*inputs)
        after = module(*inputs)
    if isinstance(after, (tuple, list)):
        after = after[0]
    keep = ~np.isnan(truth.reshape(-1))
    b = hnfc.bits_error(before, ref.mp_outputs[0]).reshape(-1)[keep]
    a = hnfc.bits_error(after, ref.mp_outputs[0]).reshape(-1)[keep]
    return b, a


def run_case(name, fn, types, domains, dtype, *, quick: bool, seed: int = 100) -> dict:
    g = hnfc.sample_inputs(types, domains, 1, mode="value", seed=seed)[0]
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = hnfc.optimize(fn, tuple(g), input_ranges={i: d for i, d in enumerate(domains)})
    seconds = time.perf_counter() - t
    program = hnfc.trace(fn, tuple(g))
    before, after = [], []
    for inputs in _samples(types, domains, 1 if quick else 2, seed + 1):
        b, a = _bits(program, fn, module, inputs)
        before.append(b)
        after.append(a)
    b, a = np.concatenate(before), np.concatenate(after)
    return {
        "case": name,
        "dtype": dtype,
        "points": int(b.size),
        "before_mean": float(b.mean()) if b.size else float("nan"),
        "before_max": float(b.max()) if b.size else float("nan"),
        "after_mean": float(a.mean()) if a.size else float("nan"),
        "after_max": float(a.max()) if a.size else float("nan"),
        "rules": sorted({r for rw in module.report.rewrites for r in rw.rules}),
        "seconds": seconds,
    }


def run(quick: bool, only: set[str] | None, which: set[str]) -> dict:
    rows = []
    n = 64 if quick else 256
    picked = (lambda c: c in QUICK) if quick and not only else (lambda c: only is None or c in only)
    if "scalar" in which:
        for f in SCALAR:
            if not picked(f.name):
                continue
            for dt in SCALAR_DTYPES:
                types = [TensorType((n,), SHORT[dt])] * len(f.domains)
                rows.append({**run_case(f.name, f.fn, types, f.domains, dt, quick=quick), "set": "scalar", "family": f.family})
                print(_line(rows[-1]), flush=True)
    if "dl" in which:
        for p in DL:
            if not picked(p.name):
                continue
            for dt in DL_DTYPES:
                types = [TensorType(p.shape, SHORT[dt])]
                rows.append({**run_case(p.name, p.fn, types, ((p.lo, p.hi),), dt, quick=quick), "set": "dl", "family": p.family})
                print(_line(rows[-1]), flush=True)
    return {"rows": rows, "summary": summarize(rows), "quick": quick}


def summarize(rows) -> dict:
    out = {}
    for key in sorted({(r["set"], r["dtype"]) for r in rows}):
        rs = [r for r in rows if (r["set"], r["dtype"]) == key]
        out[f"{key[0]}/{key[1]}"] = {
            "cases": len(rs),
            "before_mean": float(np.mean([r["before_mean"] for r in rs])),
            "after_mean": float(np.mean([r["after_mean"] for r in rs])),
            "at_most_1_bit_after": sum(r["after_mean"] <= 1.0 for r in rs),
            "improved": sum(r["after_mean"] < r["before_mean"] - 0.05 for r in rs),
            "worse": sum(r["after_mean"] > r["before_mean"] + 0.05 for r in rs),
            "max_seconds": max(r["seconds"] for r in rs),
            "mean_seconds": float(np.mean([r["seconds"] for r in rs])),
        }
    return out


def _line(r) -> str:
    return (
        f"| {r['case']} | {r['dtype']} | {r['before_mean']:.2f} / {r['before_max']:.0f} | {r['after_mean']:.2f} / {r['after_max']:.0f} "
        f"| {r['seconds']:.1f} | {', '.join(r['rules'])} |"
    )


def markdown(result: dict) -> str:
    lines = [
        "| set / dtype | cases | mean bits before → after | cases ≤ 1 bit after | improved | worse | seconds per case (mean / max) |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for k, s in result["summary"].items():
        lines.append(
            f"| {k} | {s['cases']} | {s['before_mean']:.2f} → **{s['after_mean']:.2f}** | {s['at_most_1_bit_after']} | {s['improved']} | {s['worse']} "
            f"| {s['mean_seconds']:.1f} / {s['max_seconds']:.1f} |"
        )
    lines += ["", "| case | dtype | before mean / max | after mean / max | optimize s | rules |", "|---|---|---|---|---|---|"]
    lines += [_line(r) for r in result["rows"]]
    return "\n".join(lines)


def main() -> None:
    fresh_caches()  # cold times: nothing from earlier runs
    ap = arguments(__doc__, f"only {', '.join(QUICK)} on fewer points (CI smoke)")
    ap.add_argument("--only", default=None, help="comma-separated case names")
    ap.add_argument("--set", default="scalar,dl", help="scalar, dl or both (default)")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    result = run(args.quick, only, set(args.set.split(",")))
    md = markdown(result)
    write_results(args.out, "heldout" + ("_quick" if args.quick else ""), data=result, markdown=md)
    print(md)


if __name__ == "__main__":
    main()
