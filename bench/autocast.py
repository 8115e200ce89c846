"""hnfc's per-node dtype assignment against torch.autocast.

For each model (MLP, the naive transformer block, GPT-2 tiny from tests/corpus.py) and each error
target, run on fresh sampled inputs (not the ones the optimizer verified on):

- float32: the model as written (no low precision);
- autocast-cpu-bf16: the model under `torch.autocast("cpu", dtype=torch.bfloat16)`;
- autocast-cuda-f16: under `torch.autocast("cuda", dtype=torch.float16)`, only when a GPU is
  present (skipped otherwise);
- hnfc@target: `hnfc.optimize(model, inputs, target=..., dtypes=[bf16, f32])`.

Error: every output is cast to float32 and compared with the mpmath truth of the original program
(hnfc.numerics.reference): bits of error in float32 terms (hnfc.numerics.metric.bits_error: 0 = correctly rounded,
32 = nothing right), max and mean over all elements of all input sets, and the normwise relative
error max ‖y − t‖∞ / ‖t‖∞ (what hnfc's `target` bounds).

Low-precision FLOP share: FLOPs per node (hnfc.precision.assign.node_flops: matrix products 2·m·n·k,
reductions and nn ops the input's numel, pointwise ops the result's numel) over the traced
program; for autocast the CPU op list puts mm/bmm/matmul/addmm/linear/conv/sdpa in bf16 and the
rest in f32; for hnfc the dtypes it chose (casts count no FLOPs).

Writes bench/results/autocast.json and autocast.md. `--quick`: fewer input sets, one target.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils import _pytree as pytree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import hnfc  # noqa: E402
from hnfc import analysis, precision  # noqa: E402
from hnfc.ir import casts  # noqa: E402
from hnfc.report.records import Report  # noqa: E402
from hnfc.foundation.config import Config  # noqa: E402
from hnfc.examples.naive import block_inputs, make_block  # noqa: E402
from hnfc.precision.legalize import legalize  # noqa: E402
from hnfc.numerics.metric import bits_error  # noqa: E402
from hnfc.runtime import observe, verification_inputs  # noqa: E402
from tests.corpus import build  # noqa: E402

from _common import arguments, write_results  # noqa: E402

AUTOCAST_CPU_LOW = frozenset({"mm", "bmm", "matmul", "addmm", "linear", "scaled_dot_product_attention"})


def models():
    yield "mlp", *build("mlp")
    yield "naive_block", make_block(), block_inputs()
    yield "gpt2_tiny", *build("gpt2_eager")


def float_leaves(out) -> list[torch.Tensor]:
    if hasattr(out, "logits") and not isinstance(out, torch.Tensor):
        out = out.logits
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point()]


def score(outs_per_set, truths) -> dict:
    bits, norm = [], []
    for outs, truth in zip(outs_per_set, truths):
        floats = [t for t in truth if np.asarray(t).dtype.kind == "f"]
        for y, t in zip(outs, floats):
            y = y.detach().float().cpu()
            bits.append(bits_error(y, t).ravel())
            norm.append(precision.normwise_error(y, t))
    b = np.concatenate(bits)
    return {"bits_max": float(b.max()), "bits_mean": float(b.mean()), "normwise": float(max(norm))}


def run_model(fn, sets, autocast: tuple[str, torch.dtype] | None = None, device: str = "cpu"):
    outs = []
    for s in sets:
        s = [x.to(device) for x in s]
        with torch.no_grad():
            if autocast:
                with torch.autocast(autocast[0], dtype=autocast[1]):
                    y = fn(*s)
            else:
                y = fn(*s)
        outs.append(float_leaves(y))
    return outs


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        "# hnfc dtype assignment vs torch.autocast",
        "",
        f"Fresh sampled inputs ({meta['input_sets']} sets per model), outputs cast to float32 and compared with the mpmath truth. "
        "Bits of error in float32 terms (max / mean over elements); normwise = max ‖y − t‖∞/‖t‖∞; "
        "low share = FLOPs run in bf16/f16 (autocast: its CPU op list; hnfc: its chosen dtypes).",
        "",
        "| model | method | bits max | bits mean | normwise | low-precision FLOP share |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['method']} | {r['bits_max']:.1f} | {r['bits_mean']:.2f} | {r['normwise']:.2e} | {r['low_precision_share']:.1%} |")
    if not meta["cuda"]:
        lines += ["", "No GPU here: the CUDA float16 autocast policy was skipped."]
    return "\n".join(lines)


def main() -> None:
    ap = arguments(__doc__, "fewer input sets, one target")
    ap.add_argument("--targets", type=float, nargs="*", default=None)
    args = ap.parse_args()
    targets = args.targets or ([1e-2] if args.quick else [1e-2, 1e-3])
    samples = 2 if args.quick else 4
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    for name, model, inputs in models():
        program = hnfc.trace(model, inputs)
        fresh = verification_inputs(program, list(inputs), {}, Config(samples=samples, seed=1234))[1:]
        t0 = time.perf_counter()
        truths = precision.truths(program, fresh)
        ref_s = time.perf_counter() - t0
        compute = [i for i in range(len(program.nodes)) if casts.is_compute(program, i)]
        ac_share = precision.flop_share(program, {i: "bf16" for i in compute if program.nodes[i].op in AUTOCAST_CPU_LOW})[0]
        _, total = precision.flop_share(program)

        def row(method, outs, share, **extra):
            r = {"model": name, "method": method, **score(outs, truths), "low_precision_share": share, "flops": total, **extra}
            rows.append(r)
            print(f"{name:12s} {method:22s} bits max {r['bits_max']:5.1f} mean {r['bits_mean']:5.2f}  normwise {r['normwise']:.2e}  low share {share:6.1%}", flush=True)

        row("float32", run_model(model, fresh), 0.0)
        row("autocast-cpu-bf16", run_model(model, fresh, ("cpu", torch.bfloat16)), ac_share)
        if torch.cuda.is_available():
            cm = model.to("cuda")
            row("autocast-cuda-f16", run_model(cm, fresh, ("cuda", torch.float16), "cuda"), precision.flop_share(program, {i: "f16" for i in compute if program.nodes[i].op in AUTOCAST_CPU_LOW}, frozenset({"f16"}))[0])
            model.to("cpu")
        for target in targets:
            t0 = time.perf_counter()
            gm = hnfc.optimize(model, inputs, target=target, dtypes=[torch.bfloat16, torch.float32], samples=samples)
            secs = time.perf_counter() - t0
            rep = gm.report
            method = f"hnfc@{target:g}"
            if not rep.precision:  # the optimizer fell back (see its warning): the precision stage alone
                method = f"hnfc-precision-only@{target:g}"
                rep = Report(warnings=list(rep.warnings))
                cfg = Config.from_options(target=target, dtypes=[torch.bfloat16, torch.float32], samples=samples)
                sets = verification_inputs(program, list(inputs), {}, cfg)
                rng = analysis.ranges(program, {}, observed=observe(program, sets), margin=cfg.margin)
                gm = hnfc.lower(legalize(precision.run_stage(program, rng, sets, cfg, rep))[0])  # legalized, as the pipeline runs it
            fallback = any("optimizer failed" in w for w in rep.warnings)
            row(
                method,
                run_model(gm, fresh),
                rep.low_precision_share if rep.low_precision_share is not None else 0.0,
                target=target,
                met_on_verification=rep.precision.get("met"),
                promotions=sum(1 for p in rep.promotions if p["kind"] == "promote"),
                demotions=sum(1 for p in rep.promotions if p["kind"] == "demote"),
                nodes_bf16=sum(1 for e in rep.dtypes.values() if e["dtype"] == "bf16"),
                nodes_assigned=len(rep.dtypes),
                optimize_s=round(secs, 2),
                optimizer_fell_back=fallback,
            )
        print(f"  ({name}: reference {ref_s:.1f}s on {len(fresh)} input sets)", flush=True)
    meta = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "input_sets": samples, "targets": targets, "quick": args.quick}
    result = {"meta": meta, "rows": rows}
    paths = write_results(args.out, "autocast", data=result, markdown=markdown(result))
    print(f"wrote {paths[0]} and {paths[1]}")


if __name__ == "__main__":
    main()
