"""Compile time and steady-state runtime: torch.compile backend "hnf" vs plain inductor vs eager.

For each model (the tiny corpus models of tests/corpus.py and the real-size ones of
bench/models.py: GPT-2 small and a LLaMA-shaped model), eval mode, no_grad inference, CPU, side by
side in one run, each backend measured in its own fresh process (after a throw-away compile that
pays the one-time start-up): eager runtime; inductor's compile time (first call) and runtime; hnf's
(backend="hnf", which rewrites then hands the graph to inductor) compile time and runtime, with
its caches cold (a fresh $HNFC_CACHE_DIR) and then warm (a second fresh process reading the
verdicts and the whole-graph result the first kept: hnfc/graph_cache.py). Inductor's caches are disabled so each compile is cold for both.
Runtime is the median of timed calls after warm-up; peak memory is each process's max RSS.
Ratios: compile hnf / inductor (goal <= 1.3; warm <= 1.05), runtime inductor / hnf as speed (goal >= 0.95),
also from both compiled in one more process (hnf's caches warm) and called in turn ("alternating").

    .venv/bin/python bench/compile.py [--quick] [--models mlp,gpt2_sdpa] [--threads N] [--rounds N] [--out bench/results]

Writes bench/results/compile.json and compile.md (--quick: bench/results/compile_quick.*).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from tests.corpus import CASES  # noqa: E402

from _common import arguments, write_results  # noqa: E402
from models import MODELS  # noqa: E402

FULL = ["mlp", "cnn", "transformer_encoder_layer", "gpt2_sdpa", "bert", "llama", "gpt2_small", "llama_shaped"]
QUICK = ["mlp", "transformer_encoder_layer"]


def _steady(fn, inputs, *, warmup: int, repeat: int) -> float:
    with torch.no_grad():
        for _ in range(warmup):
            fn(*inputs)
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn(*inputs)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _compile(model, inputs, backend: str):
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=False)
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = time.perf_counter()
        out = compiled(*inputs)
        seconds = time.perf_counter() - t
    fallbacks = [str(w.message) for w in caught if w.category.__name__ == "HnfcWarning"]
    return compiled, out, seconds, fallbacks


def _alternating(model, inputs, warmup: int, repeat: int) -> dict:
    """Both compiled modules in this process, called in turn: inductor time / hnf time from
    interleaved calls, so a burst of load hits both sides alike (separate processes measured
    minutes apart do not share it)."""
    ind, _, _, _ = _compile(model, inputs, "inductor")
    hnf, _, _, _ = _compile(model, inputs, "hnf")
    times: dict = {"inductor": [], "hnf": []}
    with torch.no_grad():
        for _ in range(warmup):
            ind(*inputs), hnf(*inputs)
        for _ in range(repeat):
            for side, fn in (("inductor", ind), ("hnf", hnf)):
                t = time.perf_counter()
                fn(*inputs)
                times[side].append(time.perf_counter() - t)
    return {"speed": statistics.median(times["inductor"]) / statistics.median(times["hnf"])}


def _one(name: str, backend: str, warmup: int, repeat: int) -> dict:
    """Measure one backend (or `alternating`: both) on one model in this (fresh) process."""
    for b in ("inductor", "hnf"):  # one-time start-up (imports, worker pool) is not compile time
        _compile(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh()), (torch.randn(2, 3),), b)
    model, inputs = MODELS[name]() if name in MODELS else CASES[name].build()
    if backend == "alternating":
        return _alternating(model, inputs, warmup, repeat)
    if backend == "eager":
        return {"run": _steady(model, inputs, warmup=warmup, repeat=repeat), "peak_mb": _peak_mb()}
    fn, out, seconds, fallbacks = _compile(model, inputs, backend)
    leaves = [t.detach().double().sum().item() for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point()]
    return {"compile": seconds, "run": _steady(fn, inputs, warmup=warmup, repeat=repeat), "fallbacks": fallbacks, "checksum": leaves, "peak_mb": _peak_mb()}


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _isolated(name: str, backend: str, warmup: int, repeat: int, threads: int, cache_dir: str | None = None) -> dict:
    import os
    import subprocess

    cmd = [sys.executable, __file__, "--one", name, backend, "--threads", str(threads), "--warmup", str(warmup), "--repeat", str(repeat)]
    env = {**os.environ, **({"HNFC_CACHE_DIR": cache_dir} if cache_dir else {})}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{name}/{backend} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_model(name: str, *, warmup: int, repeat: int, threads: int = 1, rounds: int = 1) -> dict:
    """Each backend in its own fresh process (no state or in-memory kernel cache shared), in turn;
    with `rounds` > 1 the inductor / hnf cold / hnf warm sequence is repeated (a fresh cache each
    round) and each backend's fastest compile kept: on a shared machine a burst of load in one
    process otherwise decides the ratio."""
    import tempfile

    def best(runs: list[dict]) -> dict:
        return min(runs, key=lambda r: r["compile"])

    e = _isolated(name, "eager", warmup, repeat, threads)
    ind, cold, warm, alternating = [], [], [], []
    for _ in range(rounds):
        ind.append(_isolated(name, "inductor", warmup, repeat, threads))
        with tempfile.TemporaryDirectory() as cache:  # hnf's caches: cold, then warm
            cold.append(_isolated(name, "hnf", warmup, repeat, threads, cache))
            warm.append(_isolated(name, "hnf", warmup, repeat, threads, cache))
            alternating.append(_isolated(name, "alternating", warmup, repeat, threads, cache)["speed"])
    i, h, w = best(ind), best(cold), best(warm)
    eager, ind_compile, ind_run, hnf_compile, hnf_run = e["run"], i["compile"], i["run"], h["compile"], h["run"]
    fallbacks = h["fallbacks"]
    diff = max((abs(a - b) for a, b in zip(h["checksum"], i["checksum"])), default=0.0)
    return {
        "model": name,
        "eager_ms": eager * 1e3,
        "inductor_compile_s": ind_compile,
        "inductor_ms": ind_run * 1e3,
        "hnf_compile_s": hnf_compile,
        "hnf_ms": hnf_run * 1e3,
        "compile_ratio": hnf_compile / ind_compile,  # hnf / inductor, goal <= 1.3
        "hnf_warm_compile_s": w["compile"],
        "warm_compile_ratio": w["compile"] / ind_compile,  # verdict cache warm, goal <= 1.05
        "peak_mb": {"eager": e["peak_mb"], "inductor": i["peak_mb"], "hnf": h["peak_mb"]},
        "speed_ratio": ind_run / hnf_run,  # inductor time / hnf time, goal >= 0.95
        "speed_alternating": statistics.median(alternating),  # the same ratio from interleaved calls in one process
        "speed_vs_eager": eager / hnf_run,
        "output_checksum_diff_hnf_vs_inductor": diff,
        "hnf_fallbacks": fallbacks,
        "compile_s_all_rounds": {"inductor": [r["compile"] for r in ind], "hnf": [r["compile"] for r in cold], "hnf_warm": [r["compile"] for r in warm]},
    }


def markdown(result: dict) -> str:
    meta, summary = result["meta"], result["summary"]
    lines = [
        "# torch.compile: hnf vs inductor vs eager",
        "",
        f"torch {meta['torch']}, {meta['machine']}, {meta['threads']} thread(s), no_grad inference, inductor caches off; "
        f"runtime = median of {meta['repeat']} calls after {meta['warmup']} warm-up calls.",
        "compile ratio = hnf compile / inductor compile (goal <= 1.3); speed = inductor time / hnf time (goal >= 0.95), "
        "from each backend's own process, and alternating: both compiled in one process and called in turn.",
        "",
        "| model | eager ms | inductor compile s | hnf compile s | compile ratio | warm compile ratio | inductor ms | hnf ms | speed | speed alternating | peak MB inductor / hnf | hnf fell back |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["models"]:
        lines.append(f"| {r['model']} | {r['eager_ms']:.3f} | {r['inductor_compile_s']:.2f} | {r['hnf_compile_s']:.2f} | {r['compile_ratio']:.2f} | "
                     f"{r['warm_compile_ratio']:.2f} | {r['inductor_ms']:.3f} | {r['hnf_ms']:.3f} | {r['speed_ratio']:.2f} | {r['speed_alternating']:.2f} | "
                     f"{r['peak_mb']['inductor']:.0f} / {r['peak_mb']['hnf']:.0f} | {'yes' if r['hnf_fallbacks'] else 'no'} |")
    lines += ["", f"geometric means: compile ratio {summary['compile_ratio_geomean']:.2f} (warm {summary['warm_compile_ratio_geomean']:.2f}), speed {summary['speed_ratio_geomean']:.2f}"]
    return "\n".join(lines)


def main() -> None:
    ap = arguments(__doc__, f"models {QUICK}, fewer repeats (writes compile_quick.*, not compile.*)")
    ap.add_argument("--models", default=None, help="comma-separated names: tests/corpus.py cases or bench/models.py models")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="repeat each compile in fresh processes, keep the fastest (a loaded machine)")
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "BACKEND"), help=argparse.SUPPRESS)
    ap.add_argument("--warmup", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch._inductor.config.force_disable_caches = True  # cold compiles for both backends
    warmup, repeat = (3, 20) if args.quick else (10, 100)
    warmup, repeat = args.warmup or warmup, args.repeat or repeat
    if args.one:
        print(json.dumps(_one(args.one[0], args.one[1], warmup, repeat)))
        return
    names = args.models.split(",") if args.models else (QUICK if args.quick else FULL)
    rows = []
    for name in names:
        row = bench_model(name, warmup=warmup, repeat=repeat, threads=args.threads, rounds=args.rounds)
        rows.append(row)
        print(f"{name:28s} compile hnf/inductor {row['compile_ratio']:.2f}x ({row['hnf_compile_s']:.1f}s / {row['inductor_compile_s']:.1f}s)  "
              f"runtime inductor/hnf {row['speed_ratio']:.2f}  ({row['inductor_ms']:.3f} / {row['hnf_ms']:.3f} ms, eager {row['eager_ms']:.3f} ms)", flush=True)
    geo = lambda xs: float(torch.tensor(xs).log().mean().exp())  # noqa: E731
    summary = {
        "compile_ratio_geomean": geo([r["compile_ratio"] for r in rows]),
        "speed_ratio_geomean": geo([r["speed_ratio"] for r in rows]),
        "warm_compile_ratio_geomean": geo([r["warm_compile_ratio"] for r in rows]),
        "goal": {"compile_ratio_max": 1.3, "warm_compile_ratio_max": 1.05, "speed_ratio_min": 0.95},
    }
    meta = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(), "threads": args.threads, "rounds": args.rounds,
            "load_average": os.getloadavg(),
            "quick": args.quick, "warmup": warmup, "repeat": repeat, "note": "inference under no_grad, CPU, inductor caches disabled, each backend in a fresh process"}
    result = {"meta": meta, "summary": summary, "models": rows}
    md = markdown(result)
    write_results(args.out, "compile_quick" if args.quick else "compile", data=result, markdown=md)
    print(md.splitlines()[-1])


if __name__ == "__main__":
    main()
