"""Optimizer scaling on GPT-2-shaped graphs: time and e-graph size for 1, 6, 12 and 24 layers.

    .venv/bin/python bench/scale.py [--quick] [--out bench/results]

Builds transformers' GPT2Model at width 768 (12 heads, random weights, sequence 8), traces it,
takes ranges from one run, and times the e-graph stage (regions, saturation, extraction) alone.
Reports the 24-to-12-layer time ratio measured in the same run (goal ≤ 2.2, and ≤ 10 s at 12).
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


def markdown(result: dict) -> str:
    lines = ["| layers | IR nodes | regions (reused) | e-nodes | optimizer seconds |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['layers']} | {r['ir_nodes']} | {r['regions']} ({r['reused_regions']}) | {r['enodes']} | {r['seconds']:.2f} |")
    if result["ratio_last_two"] is not None:
        a, b = result["rows"][-2]["layers"], result["rows"][-1]["layers"]
        lines.append(f"\nTime ratio {b} / {a} layers: **{result['ratio_last_two']:.2f}** (width {result['width']}; {result['machine']})")
    return "\n".join(lines)


def main() -> None:
    args = arguments(__doc__, "1 and 2 layers at width 768 (CI smoke)").parse_args()
    result = run([1, 2] if args.quick else [1, 6, 12, 24], 768)
    md = markdown(result)
    write_results(args.out, "scale", data=result, markdown=md)
    print(md)


if __name__ == "__main__":
    main()
