"""Every benchmark in one command, and one Markdown summary the README's tables come from.

    .venv/bin/python bench/run_all.py            # full: writes bench/results/*.json, *.md, SUMMARY.md
    .venv/bin/python bench/run_all.py --quick    # CI smoke: bench/results/quick/ (the full results stay)
    .venv/bin/python bench/run_all.py --quick --only stability,scale --out /tmp/b

Runs bench/stability.py, scale.py, autocast.py, compile.py, heldout.py, series.py and lint.py, each in its own process (each
script stays runnable alone, and compile.py measures every backend in a fresh process anyway),
with the same --quick and --out. Then reads their JSON and Markdown and writes SUMMARY.md and run_all.json:
accuracy (stability suite, float32 and bfloat16, bits of error before/after), the cost model
(predicted vs measured, Spearman), scaling (GPT-2-shaped graphs), compile time and runtime
(hnf vs inductor vs eager, measured side by side in one run), and precision vs torch.autocast.
Absolute times are labelled with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from _common import write_results

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BENCHMARKS = ("stability", "scale", "autocast", "compile", "heldout", "series", "lint")


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


def run_benchmarks(names, quick: bool, out: Path) -> dict[str, dict]:
    """Each benchmark script in a subprocess; returns {name: {seconds, returncode, log}}."""
    status = {}
    for name in names:
        cmd = [sys.executable, str(HERE / f"{name}.py"), "--out", str(out)] + (["--quick"] if quick else [])
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        (log,) = write_results(out, name, log=r.stdout + ("\n--- stderr ---\n" + r.stderr if r.stderr.strip() else ""))
        status[name] = {"seconds": round(seconds, 1), "returncode": r.returncode, "log": log.name}
        print(f"   {'ok' if r.returncode == 0 else 'FAILED (exit %d)' % r.returncode} in {seconds:.0f} s (log: {log})", flush=True)
        if r.returncode != 0:
            print(r.stderr[-3000:], file=sys.stderr)
    return status


def _load(out: Path, stem: str) -> dict | None:
    p = out / f"{stem}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _markdown(out: Path, stem: str) -> str:
    """The Markdown a benchmark wrote (out/STEM.md), without its title."""
    md = (out / f"{stem}.md").read_text()
    return "\n".join(line for line in md.splitlines() if not line.startswith("# ")).strip()


# ---------------------------------------------------------------------------------------------
# SUMMARY.md


def accuracy_table(stab: dict) -> str:
    """Per dtype: mean over cases of mean bits, worst max bits, before -> after, cases improved."""
    lines = [
        "| dtype | cases | mean bits of error, before → after | max bits of error (average over cases), before → after | worst case max, before → after | cases improved (mean) | cases worse (mean) |",
        "|---|---:|---|---|---|---:|---:|",
    ]
    for dtype in sorted({r["dtype"] for r in stab["rows"]}, key=lambda d: d != "float32"):
        rows = [r for r in stab["rows"] if r["dtype"] == dtype]
        n = len(rows)
        bm = sum(r["before_mean"] for r in rows) / n
        am = sum(r["after_mean"] for r in rows) / n
        bx = max(r["before_max"] for r in rows)
        ax = max(r["after_max"] for r in rows)
        bxa = sum(r["before_max"] for r in rows) / n
        axa = sum(r["after_max"] for r in rows) / n
        better = sum(1 for r in rows if r["after_mean"] < r["before_mean"] - 0.05)
        worse = sum(1 for r in rows if r["after_mean"] > r["before_mean"] + 0.05)
        lines.append(f"| {dtype} | {n} | {bm:.2f} → **{am:.2f}** | {bxa:.1f} → **{axa:.1f}** | {bx:.0f} → {ax:.0f} | {better} | {worse} |")
    return "\n".join(lines)


def cost_model_table(stab: dict) -> str:
    lines = ["| case | dtype | predicted bits lost, before → after | measured max bits, before → after | measured mean bits, before → after |", "|---|---|---|---|---|"]
    for r in stab["rows"]:
        lines.append(f"| {r['case']} | {r['dtype']} | {r['predicted_before']:.1f} → {r['predicted_after']:.1f} | {r['before_max']:.0f} → {r['after_max']:.0f} "
                     f"| {r['before_mean']:.2f} → {r['after_mean']:.2f} |")
    return "\n".join(lines)


def summary_markdown(out: Path, names, status: dict, meta: dict, quick: bool) -> str:
    m = meta["machine"]
    mode = "quick mode: CI smoke with fewer rows, samples, layers and models, not the headline numbers" if quick else "full mode"
    cmd = "python bench/run_all.py" + (" --quick" if quick else "")
    lines = [
        "# hnfc benchmarks",
        "",
        f"Generated by `{cmd}` on {meta['date']} ({mode}).",
        "",
        f"Machine: {m['cpu']}, {m['cpu_count']} CPUs, {m['platform']}; Python {m['python']}, torch {m['torch']} "
        f"({m['torch_threads']} threads by default){', CUDA' if m['cuda'] else ', no GPU'}. "
        "Absolute times below are from this machine; ratios were measured side by side in the same run.",
        "",
        "| benchmark | wall time | status |",
        "|---|---:|---|",
    ]
    for name in names:
        s = status.get(name, {})
        ok = "ok" if s.get("returncode") == 0 else f"failed (exit {s.get('returncode')}, see {s.get('log')})"
        lines.append(f"| {name} | {s.get('seconds', 0):.0f} s | {ok} |")

    stab = _load(out, "stability") if "stability" in names else None
    if stab:
        lines += [
            "", "## Accuracy: the stability suite",
            "",
            "Bits of error against the mpmath reference (0 = correctly rounded; 24 = every float32 bit wrong, 8 for bfloat16) "
            "on fresh inputs, half uniform in value and half uniform over float bit patterns, before and after `hnfc.optimize`. "
            "Mean: the average over cases of each case's mean over elements; max: the worst element of any case.",
            "", accuracy_table(stab),
            "", "## Cost model: predicted vs measured",
            "",
            f"Spearman rank correlation of predicted bits lost (total curvature over the input box) with measured bits of error, "
            f"over every program before and after: **{stab['spearman_max']:.2f}** with the max, {stab['spearman_mean']:.2f} with the mean "
            "(goal ≥ 0.8; the prediction is a sup over the box, so it ranks the max).",
            "", cost_model_table(stab),
            "", "<details><summary>Per case: rules applied</summary>", "", _markdown(out, "stability"), "", "</details>",
        ]
    scale = _load(out, "scale") if "scale" in names else None
    if scale:
        lines += [
            "", "## Scaling: GPT-2-shaped graphs",
            "",
            f"transformers' GPT2Model at width {scale['width']}, random weights, sequence 8: traced once, then the e-graph stage "
            "(regions, saturation, extraction) timed alone. Identical layers are optimized once and reused.",
            "", _markdown(out, "scale"),
        ]
    comp = "compile_quick" if quick else "compile"
    if "compile" in names and _load(out, comp):
        lines += ["", "## Compile time and runtime: backend \"hnf\" vs inductor vs eager", "", _markdown(out, comp)]
    if "autocast" in names and _load(out, "autocast"):
        lines += ["", "## Precision: hnfc's per-node dtypes vs torch.autocast", "", _markdown(out, "autocast")]
    held = "heldout_quick" if quick else "heldout"
    if "heldout" in names and _load(out, held):
        lines += ["", "## Held-out-style formulas and deep-learning patterns", "", _markdown(out, held)]
    series = "series_quick" if quick else "series"
    if "series" in names and _load(out, series):
        lines += ["", "## Series expansions and regimes (the series stage off and on)", "", _markdown(out, series)]
    lint = "lint_quick" if quick else "lint"
    if "lint" in names and _load(out, lint):
        lines += ["", "## The linter on real bugs and clean models", "", _markdown(out, lint)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="each benchmark's quick mode (CI smoke); default --out bench/results/quick")
    ap.add_argument("--out", default=None, help="directory for the results (default bench/results, or bench/results/quick with --quick)")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    args = ap.parse_args(argv)
    names = BENCHMARKS if not args.only else tuple(n.strip() for n in args.only.split(",") if n.strip())
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    out = Path(args.out) if args.out else HERE / "results" / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    status = run_benchmarks(names, args.quick, out)
    meta = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "quick": args.quick,
        "benchmarks": list(names),
        "machine": machine(),
        "status": status,
        "seconds": round(time.perf_counter() - start, 1),
    }
    (out / "run_all.json").write_text(json.dumps(meta, indent=2))
    summary = summary_markdown(out, names, status, meta, args.quick)
    (out / "SUMMARY.md").write_text(summary)
    print(f"wrote {out / 'SUMMARY.md'} ({meta['seconds']:.0f} s in all)")
    return 0 if all(s["returncode"] == 0 for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
