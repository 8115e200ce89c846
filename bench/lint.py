"""Lint benchmark: detection at the root cause on real bugs, false positives on clean models, time.

Runs `hnfc.lint` on bench/lint_corpus/bugs.py (reproductions of bugs filed in public issue threads,
each checked first to really fail in eager PyTorch on its trigger input) and on
bench/lint_corpus/clean.py (transformers architectures from tiny configs, standard modules and
losses). A bug is detected at its root cause when a failing finding sits on one of its root ops
at a line marked `# root`. A clean model is a false positive when lint fails on it. Also times
`hnfc lint` on GPT-2 small's shape (12 layers, width 768, seq 128), first in the process (cold), with
the machine's load average. Writes bench/results/lint.{json,md}.

    python bench/lint.py [--quick] [--out DIR] [--no-gpt2]
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from lint_corpus.bugs import BUGS  # noqa: E402
from lint_corpus.clean import CLEAN  # noqa: E402


def really_fails(bug) -> str | None:
    """How eager PyTorch fails on the trigger: non-finite output or gradient, or a large error
    against float64 (None: it does not fail, the reproduction is wrong)."""
    xs = [x.clone().requires_grad_(x.is_floating_point()) for x in bug.trigger]
    out = bug.fn(*xs)
    if not torch.isfinite(out).all():
        return "non-finite output"
    diff = [x for x in xs if x.requires_grad]
    if diff and out.requires_grad:
        grads = torch.autograd.grad(out.float().sum(), diff, allow_unused=True)
        if any(g is not None and not torch.isfinite(g).all() for g in grads):
            return "non-finite gradient"
    wide = bug.fn(*[x.detach().double() if x.is_floating_point() else x for x in bug.trigger])
    err = float(((out.detach().double() - wide.double()).abs() / wide.double().abs().clamp_min(1e-30)).max())
    if err > 1e-2:
        return f"relative error {err:.3g} against float64"
    return None


def _at_root(f, bug) -> bool:
    # on a root op at the root line, or naming the root line as where its infinity is written
    return (f.op in bug.root and (f.source is None or "# root" in f.source)) or bool(f.origin and "# root" in f.origin)


def run_bug(bug, lint):
    failure = really_fails(bug)
    t = time.perf_counter()
    try:
        res = lint(bug.fn, bug.example, input_ranges=bug.ranges)
        failing = res.failing
        err = None
    except Exception as e:  # noqa: BLE001 -- a lint error is a miss, recorded
        failing, err = [], f"{type(e).__name__}: {str(e)[:160]}"
    dt = time.perf_counter() - t
    root = [f for f in failing if _at_root(f, bug)]
    return {
        "name": bug.name, "ref": bug.ref, "what": bug.what, "reproduces": failure, "detected": bool(root),
        "any_failing": bool(failing), "seconds": round(dt, 2), "error": err,
        "finding": None if not (root or failing) else _brief((root or failing)[0]),
    }


def _brief(f):
    return {"kind": f.kind, "op": f.op, "reason": f.reason[:240], "source": f.source, "origin": f.origin, "trigger": f.trigger, "fix": (f.fix or "")[:160]}


def run_clean(case, lint):
    t = time.perf_counter()
    try:
        fn, xs, ranges = case.make()
        res = lint(fn, xs, input_ranges=ranges)
        failing, err = res.failing, None
    except Exception as e:  # noqa: BLE001
        failing, err = [], f"{type(e).__name__}: {str(e)[:160]}"
    return {"name": case.name, "false_positive": bool(failing), "error": err, "seconds": round(time.perf_counter() - t, 2),
            "failing": [_brief(f) for f in failing[:3]]}


def gpt2_time():
    import transformers

    from hnfc.lint import lint

    cfg = transformers.GPT2Config(n_embd=768, n_head=12, n_layer=12, vocab_size=50257, n_positions=1024)
    torch.manual_seed(0)
    model = transformers.GPT2Model(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 128))

    def run(input_ids):
        return model(input_ids=input_ids).last_hidden_state

    load = os.getloadavg()[0]  # the machine's load while timing (other processes slow it down)
    t, cpu = time.perf_counter(), time.process_time()
    res = lint(run, (ids,))  # as `hnfc lint` runs it: the defaults
    cpu = time.process_time() - cpu  # CPU seconds of this process (all its threads): what a quiet machine would not add to
    times = {k: round(v, 2) for k, v in res.times.items()}
    return round(time.perf_counter() - t, 2), len(res.failing), dict(times, cpu_seconds=round(cpu, 2), load_average=round(max(load, os.getloadavg()[0]), 2))


def main(argv=None):
    ap = _common.arguments(__doc__, "a few bugs and clean cases, no GPT-2 timing")
    ap.add_argument("--no-gpt2", action="store_true")
    args = ap.parse_args(argv)
    _common.fresh_caches()  # cold times: nothing from earlier runs
    warnings.simplefilter("ignore")
    from hnfc.lint import lint

    bugs = BUGS[:6] if args.quick else BUGS
    clean = CLEAN[:4] if args.quick else CLEAN
    # GPT-2 first: timed cold, as one `hnfc lint` run pays torch's and egglog's first-call costs
    g2 = None if (args.quick or args.no_gpt2) else gpt2_time()
    rb = [run_bug(b, lint) for b in bugs]
    rc = [run_clean(c, lint) for c in clean]
    valid = [r for r in rb if r["reproduces"]]
    det = sum(r["detected"] for r in valid)
    ran = [r for r in rc if r["error"] is None]
    fp = sum(r["false_positive"] for r in ran)
    data = {
        "bugs": len(valid), "bugs_not_reproduced": [r["name"] for r in rb if not r["reproduces"]],
        "detected_at_root": det, "detection_rate": det / max(1, len(valid)),
        "clean": len(ran), "clean_errors": [r["name"] for r in rc if r["error"]], "false_positives": fp, "false_positive_rate": fp / max(1, len(ran)),
        "seconds_bugs": round(sum(r["seconds"] for r in rb), 1), "seconds_clean": round(sum(r["seconds"] for r in rc), 1),
        "gpt2_small_lint_seconds": None if g2 is None else g2[0], "gpt2_small_failing": None if g2 is None else g2[1],
        "gpt2_small_times": None if g2 is None else g2[2],
        "bug_results": rb, "clean_results": rc,
    }
    lines = [
        f"Bugs reproduced: {len(valid)} of {len(rb)}; detected at the root cause: **{det}/{len(valid)} ({100 * data['detection_rate']:.0f}%)**.",
        f"Clean cases run: {len(ran)} (errors: {len(rc) - len(ran)}); false positives: **{fp}/{len(ran)} ({100 * data['false_positive_rate']:.0f}%)**.",
    ]
    if g2 is not None:
        lines.append(f"`lint` on GPT-2 small shape (12 layers, 768, seq 128): **{g2[0]} s** ({g2[1]} failing findings; "
                     f"stages {', '.join(f'{k} {v} s' for k, v in g2[2].items() if k not in ('load_average', 'cpu_seconds'))}; "
                     f"{g2[2]['cpu_seconds']} CPU seconds; load average {g2[2]['load_average']} on {os.cpu_count()} cores).")
    lines += ["", "| bug | thread | reproduces | detected at root | finding |", "|---|---|---|---|---|"]
    for r in rb:
        f = r["finding"] or {}
        lines.append(f"| {r['name']} | {r['ref']} | {r['reproduces'] or 'no'} | {'yes' if r['detected'] else 'no'} | {f.get('kind', '')} {f.get('op', '')} |")
    lines += ["", "| clean case | false positive | first failing finding / error |", "|---|---|---|"]
    for r in rc:
        f = (r["failing"] or [{}])[0]
        lines.append(f"| {r['name']} | {'yes' if r['false_positive'] else 'no'} | {r['error'] or (f.get('kind', '') + ' ' + f.get('op', '') + ': ' + f.get('reason', '')[:80])} |")
    md = "\n".join(lines)
    print(md)
    _common.write_results(args.out, "lint" if not args.quick else "lint_quick", data=data, markdown=md)


if __name__ == "__main__":
    main()
