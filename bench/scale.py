"""Optimizer scaling on GPT-2-shaped graphs: time and e-graph size for 1, 6, 12 and 24 layers;
the reference (the judge) on a GPT-2 block; hnfc.optimize against the batch size.

    .venv/bin/python bench/scale.py [--quick] [--pure] [--out bench/results]

Builds transformers' GPT2Model at width 768 (12 heads, random weights, sequence 8), traces it,
takes ranges from one run, and times the e-graph stage (regions, saturation, extraction) alone.
Reports the 24-to-12-layer time ratio measured in the same run (goal ≤ 2.2, and ≤ 10 s at 12).

Reference: one GPT-2 block (1 layer, width 768, sequence 4) evaluated by the tiered reference
(float64 / long double enclosures, mpmath only for the undecided) and, with --pure, by the pure
mpmath path (~5 CPU minutes), on the same input; the outputs must be identical (goal: ≥ 50x faster).
Batch: hnfc.optimize (verification on) on nn.Linear(16, 16) + a hand-written log-softmax at
4x16 and 200000x16, after one warm-up call (goal: the large one within 2x, or 1 s, of the small).
Whole model: hnfc.optimize (every stage, verification on) on GPT-2 small as users run it
(bench/models.py: width 768, sequence 128, vocabulary 50257) at 12 and 24 layers, with the verdict
cache cold (a fresh directory) and then warm (goal: 12 layers <= 10 s, 24 <= 2.2x of 12).
"""

from __future__ import annotations

import platform
import time

import torch

from hnfc import analysis
from hnfc.foundation.config import Config
from hnfc.egraph import Limits, optimize_regions
from hnfc.frontend.tracing import trace
from hnfc.rewrites import library
from hnfc.rewrites.compile import compile_rules
from hnfc.runtime import observe

from _common import arguments, write_results


def gpt2(layers: int, width: int):
    import transformers

    cfg = transformers.GPT2Config(n_layer=layers, n_embd=width, n_head=12, vocab_size=1000, n_positions=64, use_cache=False)
    torch.manual_seed(0)
    return transformers.GPT2Model(cfg).eval(), (torch.randint(0, 1000, (1, 8)),)


def run(layer_counts, width: int) -> dict:
    cfg = Config()
    rules = compile_rules(library())
    rows = []
    for layers in layer_counts:
        model, inputs = gpt2(layers, width)
        program = trace(model, inputs)
        ranges = analysis.ranges(program, {}, observed=observe(program, [list(inputs)]))
        start = time.perf_counter()
        _, regions = optimize_regions(program, ranges, rules, Limits(max_nodes=cfg.max_nodes), cfg.region_nodes)
        seconds = time.perf_counter() - start
        fresh = [r for r in regions if not r.reused]
        rows.append(
            {
                "layers": layers,
                "ir_nodes": len(program.nodes),
                "seconds": seconds,
                "regions": len(regions),
                "reused_regions": len(regions) - len(fresh),
                "enodes": sum(r.saturated.nodes for r in fresh),
                "stop_reasons": sorted({r.saturated.stop_reason for r in fresh}),
            }
        )
        del model
    by = {r["layers"]: r["seconds"] for r in rows}
    ratio = by[max(by)] / by[sorted(by)[-2]] if len(by) > 1 else None
    return {"width": width, "rows": rows, "ratio_last_two": ratio, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"}


def reference_block(seq: int, pure: bool) -> dict:
    import numpy as np

    from hnfc.numerics.reference import reference
    from hnfc.runtime.run import flat

    model, _ = gpt2(1, 768)
    ids = torch.randint(0, 1000, (1, seq), generator=torch.Generator().manual_seed(1))
    program = flat(trace(model, (ids,)))
    start = time.perf_counter()
    tiered = reference(program, [ids], rounding="dtype")
    row = {"seq": seq, "tiered_seconds": time.perf_counter() - start, "tiers": tiered.tiers, "escalated": tiered.escalated}
    if pure:
        start = time.perf_counter()
        exact = reference(program, [ids], rounding="dtype", tiered=False)
        row["pure_seconds"] = time.perf_counter() - start
        row["identical"] = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(tiered.outputs, exact.outputs))
        row["speedup"] = row["pure_seconds"] / row["tiered_seconds"]
    return row


class _LinearLogSoftmax(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 16)

    def forward(self, x):
        y = self.lin(x)
        return y - torch.log(torch.exp(y).sum(-1, keepdim=True))


def optimize_batches(batches) -> list[dict]:
    import hnfc

    torch.manual_seed(0)
    model = _LinearLogSoftmax().eval()
    hnfc.optimize(model, (torch.randn(4, 16),))  # warm-up: imports, tracing machinery
    rows = []
    for n in batches:
        x = torch.randn(n, 16, generator=torch.Generator().manual_seed(2))
        start = time.perf_counter()
        out = hnfc.optimize(model, (x,))
        rows.append({"batch": n, "seconds": time.perf_counter() - start, "times": {k: round(v, 3) for k, v in out.report.times.items()}, "rewrites": len(out.report.rewrites)})
    return rows


def optimize_gpt2_small(layer_counts) -> list[dict]:
    import os
    import tempfile
    import warnings

    import hnfc
    from models import gpt2_small

    rows = []
    for layers in layer_counts:
        model, inputs = gpt2_small(layers=layers)
        with tempfile.TemporaryDirectory() as cache:
            old, os.environ["HNFC_CACHE_DIR"] = os.environ.get("HNFC_CACHE_DIR"), cache
            try:
                for state in ("cold", "warm"):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        start = time.perf_counter()
                        out = hnfc.optimize(model, inputs)
                    rows.append({"layers": layers, "cache": state, "seconds": time.perf_counter() - start,
                                 "times": {k: round(v, 2) for k, v in out.report.times.items()},
                                 "rewrites": len(out.report.rewrites), "refused": len(out.report.rewrites_refused)})
            finally:
                if old is None:
                    os.environ.pop("HNFC_CACHE_DIR", None)
                else:
                    os.environ["HNFC_CACHE_DIR"] = old
        del model
    return rows


def markdown(result: dict) -> str:
    lines = ["| layers | IR nodes | regions (reused) | e-nodes | optimizer seconds |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['layers']} | {r['ir_nodes']} | {r['regions']} ({r['reused_regions']}) | {r['enodes']} | {r['seconds']:.2f} |")
    if result["ratio_last_two"] is not None:
        a, b = result["rows"][-2]["layers"], result["rows"][-1]["layers"]
        lines.append(f"\nTime ratio {b} / {a} layers: **{result['ratio_last_two']:.2f}** (width {result['width']}; {result['machine']})")
    ref = result.get("reference")
    if ref:
        lines += ["", "| reference, GPT-2 block (width 768) | seq | tiered s | pure s | speedup | identical | tiers |", "|---|---|---|---|---|---|---|"]
        pure = f"{ref['pure_seconds']:.1f}" if "pure_seconds" in ref else "-"
        speed = f"{ref['speedup']:.0f}x" if "speedup" in ref else "-"
        lines.append(f"| | {ref['seq']} | {ref['tiered_seconds']:.1f} | {pure} | {speed} | {ref.get('identical', '-')} | {', '.join(ref['tiers'])} |")
    if result.get("gpt2_small"):
        lines += ["", "| hnfc.optimize, GPT-2 small (seq 128, vocabulary 50257) | layers | verdict cache | seconds | ranges | verify | rewrites (refused) |", "|---|---|---|---|---|---|---|"]
        for r in result["gpt2_small"]:
            lines.append(f"| | {r['layers']} | {r['cache']} | {r['seconds']:.1f} | {r['times'].get('ranges', 0):.1f} | {r['times'].get('verify', 0):.1f} | {r['rewrites']} ({r['refused']}) |")
        cold = {r["layers"]: r["seconds"] for r in result["gpt2_small"] if r["cache"] == "cold"}
        if len(cold) > 1:
            a, b = sorted(cold)[-2:]
            lines.append(f"\nWhole optimize, cold cache: {b} / {a} layers **{cold[b] / cold[a]:.2f}**")
    if result.get("batches"):
        lines += ["", "| hnfc.optimize, Linear + log-softmax | batch | seconds | ranges | verify |", "|---|---|---|---|---|"]
        for r in result["batches"]:
            lines.append(f"| | {r['batch']}x16 | {r['seconds']:.2f} | {r['times'].get('ranges', 0):.2f} | {r['times'].get('verify', 0):.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = arguments(__doc__, "1 and 2 layers at width 768 (CI smoke)")
    ap.add_argument("--pure", action="store_true", help="also time the pure mpmath reference on the GPT-2 block (minutes)")
    args = ap.parse_args()
    result = run([1, 2] if args.quick else [1, 6, 12, 24], 768)
    result["reference"] = reference_block(4, args.pure)
    result["batches"] = optimize_batches([4, 200_000])
    result["gpt2_small"] = optimize_gpt2_small([1] if args.quick else [12, 24])
    md = markdown(result)
    write_results(args.out, "scale", data=result, markdown=md)
    print(md)


if __name__ == "__main__":
    main()
