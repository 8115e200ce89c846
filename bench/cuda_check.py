"""float16 on a CUDA GPU: what hnfc's modules do there (needs a CUDA device; CI has none).

Three checks, each a row of bench/results/cuda_check.{json,md}:
1. `attention_f16`: a float16 model written the naive way, softmax(q·kᵀ) as exp(s) / Σ exp(s), fed
   logits past float16's exp overflow (e^11.1 > 65504). hnfc optimizes it on CPU; its module runs
   on the GPU after `.to("cuda")`, next to the original on the GPU. Bits of error against the
   model in float64 on the same inputs (DESIGN.md's measure: log2 of ulps of the output dtype).
2. `log_softmax_f16`: log(softmax(x)) in float16 with a large spread in a row (the naive form
   gives -inf where the exact value is finite).
3. `cuda_resident` and `compile_cuda`: `hnfc.optimize` and `torch.compile(backend="hnf")` given a
   model (a Linear and a hand-written log-softmax of large logits) and inputs already on the GPU:
   whether the stable form is found and runs there, against the model in float64.

    python bench/cuda_check.py [--out DIR]
"""

from __future__ import annotations

import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import hnfc  # noqa: E402
from hnfc.numerics.metric import bits_error  # noqa: E402

from _common import arguments, fresh_caches, write_results  # noqa: E402


class NaiveAttention(torch.nn.Module):
    def forward(self, q, k, v):
        e = torch.exp(q @ k.transpose(-1, -2))
        return (e / e.sum(-1, keepdim=True)) @ v


class NaiveLogSoftmax(torch.nn.Module):
    def forward(self, x):
        return torch.log(torch.softmax(x, -1))


def _bits(y: torch.Tensor, truth: torch.Tensor) -> tuple[float, float, int]:
    """Mean and max bits of error of `y` against `truth` (float64), and how many entries are not finite."""
    b = np.asarray(bits_error(y.detach().cpu(), truth.detach().cpu().double().numpy()), dtype=np.float64)
    return float(b.mean()), float(b.max()), int((~torch.isfinite(y)).sum())


def _row(name: str, model: torch.nn.Module, cpu_inputs: tuple, ranges: dict, device: str) -> dict:
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gm = hnfc.optimize(model, cpu_inputs, input_ranges=ranges)
    opt_s = time.perf_counter() - t0
    gpu_inputs = tuple(x.to(device) for x in cpu_inputs)
    truth = model.double()(*(x.double() for x in cpu_inputs))
    model.half()
    naive = model.to(device)(*gpu_inputs)
    fixed = gm.to(device)(*gpu_inputs)
    fixed = fixed[0] if isinstance(fixed, (tuple, list)) else fixed
    nb, hb = _bits(naive, truth), _bits(fixed, truth)
    return {
        "check": name, "optimize_s": opt_s, "rewrites": sorted({rule for r in gm.report.rewrites if r.accepted for rule in r.rules}),
        "naive_mean_bits": nb[0], "naive_max_bits": nb[1], "naive_nonfinite": nb[2],
        "hnfc_mean_bits": hb[0], "hnfc_max_bits": hb[1], "hnfc_nonfinite": hb[2],
        "device": str(fixed.device), "dtype": str(fixed.dtype).removeprefix("torch."), "warnings": [str(w.message) for w in caught],
    }


def attention_f16(device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 64, 32, generator=g) for _ in range(3))
    q = q * 2.0  # logits q·kᵀ reach ±60: exp overflows float16 from 11.1
    return _row("attention_f16", NaiveAttention().half(), (q.half(), k.half(), v.half()), {0: (-8.0, 8.0), 1: (-4.0, 4.0), 2: (-4.0, 4.0)}, device)


def log_softmax_f16(device: str) -> dict:
    x = torch.randn(64, 128, generator=torch.Generator().manual_seed(1)) * 8.0
    return _row("log_softmax_f16", NaiveLogSoftmax().half(), (x.half(),), {0: (-40.0, 40.0)}, device)


class LinearLogSoftmax(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(64, 64)

    def forward(self, x):
        return torch.log(torch.softmax(self.fc(x) * 100.0, -1))  # float32's exp underflows: log(0)


def _resident(name: str, make, device: str) -> dict:
    """A model and inputs already on `device`, through `make(model, x)`; its output against eager."""
    torch.manual_seed(0)
    model = LinearLogSoftmax().to(device)
    x = torch.randn(8, 64, device=device)
    row: dict = {"check": name}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn = make(model, x)
            y = fn(x)
            y = y[0] if isinstance(y, (tuple, list)) else y
            want = torch.log_softmax(model.fc.double()(x.double()) * 100.0, -1)
            model.float()
            report = getattr(fn, "report", None)
            row.update(ok=bool(torch.isfinite(y).all()), device=str(y.device), max_abs_err=float((y.double() - want).abs().max()),
                       eager_nonfinite=int((~torch.isfinite(model(x))).sum()),
                       rewrites=sorted({rule for r in report.rewrites if r.accepted for rule in r.rules}) if report else None)
        except Exception as e:  # recorded, not hidden: this is what a GPU user would hit
            row.update(ok=False, error=f"{type(e).__name__}: {e}", where=traceback.format_exc(limit=-3))
    row["warnings"] = [str(w.message)[:300] for w in caught if "requires_grad=True to a scalar" not in str(w.message)]
    return row


def cuda_resident(device: str) -> dict:
    """hnfc.optimize on a model and inputs that live on the GPU."""
    return _resident("cuda_resident", lambda m, x: hnfc.optimize(m, (x,)), device)


def compile_cuda(device: str) -> dict:
    """torch.compile(backend="hnf") on a model and inputs that live on the GPU."""
    return _resident("compile_cuda", lambda m, x: torch.compile(m, backend="hnf"), device)


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [f"# float16 on CUDA ({meta['gpu']}, torch {meta['torch']})", "",
             "Bits of error against the model in float64 on the same inputs (mean / max; non-finite entries in brackets).", "",
             "| check | naive on GPU | hnfc on GPU | rewrites | optimize s |", "|---|---:|---:|---|---:|"]
    for r in result["rows"]:
        if "naive_mean_bits" in r:
            lines.append(f"| {r['check']} | {r['naive_mean_bits']:.2f} / {r['naive_max_bits']:.1f} [{r['naive_nonfinite']}] | "
                         f"{r['hnfc_mean_bits']:.2f} / {r['hnfc_max_bits']:.1f} [{r['hnfc_nonfinite']}] | {', '.join(r['rewrites'])} | {r['optimize_s']:.1f} |")
        else:
            state = f"works, max abs error {r['max_abs_err']:.1e} (eager: {r['eager_nonfinite']} non-finite)" if r.get("ok") else "fails: " + r.get("error", "")[:120]
            lines.append(f"| {r['check']} | | {state} | {', '.join(r.get('rewrites') or [])} | |")
    return "\n".join(lines)


def main() -> None:
    fresh_caches()  # cold times: nothing from earlier runs
    ap = arguments(__doc__, "(no quick mode: the checks are small)")
    ap.add_argument("--device", default="cuda", help="cpu runs the same checks here (a dry run of the script)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device here")
    rows = []
    for check in (attention_f16, log_softmax_f16, cuda_resident, compile_cuda):
        try:
            rows.append(check(args.device))
        except Exception as e:
            rows.append({"check": check.__name__, "ok": False, "error": f"{type(e).__name__}: {e}", "where": traceback.format_exc(limit=-4)})
        print(rows[-1], flush=True)
    result = {"meta": {"torch": torch.__version__, "gpu": torch.cuda.get_device_name() if args.device == "cuda" else args.device}, "rows": rows}
    write_results(args.out, "cuda_check", data=result, markdown=markdown(result))


if __name__ == "__main__":
    main()
