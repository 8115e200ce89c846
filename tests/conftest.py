"""Shared test setup: the repository root on sys.path (so `hnfc` and `tests.corpus` import
without installing), one torch thread per xdist worker, a seeded RNG and its own verdict cache
for every test, and
helpers that build one-op programs from the op table's examples."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # CI runs two xdist workers on two cores: one thread each


def _quiet_torch_trace() -> None:
    """torch's structured-trace logger `torch.__trace` is always at DEBUG and does not propagate,
    so it logs only where it has handlers (TORCH_TRACE set). pytest (>= 8.4) attaches its capture
    handlers to every non-propagating logger, which switches torch's tracing on in every test and
    prints hundreds of empty `DEBUG torch.__trace` lines under each failure. Unless the user asked
    for a trace: no handlers there, and propagating, so pytest leaves it alone; disabled, so
    nothing it is asked to log reaches the root logger."""
    import logging
    import os

    if os.environ.get("TORCH_TRACE") or os.environ.get("TORCH_COMPILE_DEBUG") == "1":
        return
    trace = logging.getLogger("torch.__trace")
    for h in list(trace.handlers):
        trace.removeHandler(h)
    trace.propagate = True
    trace.disabled = True


_quiet_torch_trace()


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _own_verdict_cache(tmp_path, monkeypatch):
    """Each test its own verdict cache (hnfc/verify/cache.py): no verdict from another test or
    from the user's ~/.cache decides what a test measures; subprocesses inherit it."""
    monkeypatch.setenv("HNFC_CACHE_DIR", str(tmp_path / "hnfc-cache"))


# ---------------------------------------------------------------------------------------------
# One-op programs from the op table's examples (test_optable, test_analysis)


def op_examples(*, need_ref: bool = False):
    """(op, example) pairs for every op in the table that has examples, as pytest params."""
    from hnfc import ops

    out = []
    for op in ops.OPS.values():
        if need_ref and op.ref is None:
            continue
        for k, ex in enumerate(op.examples):
            out.append(pytest.param(op, ex, id=f"{op.name}-{k}"))
    return out


def example_program(op, ex, float_dtype: str):
    """A one-node program applying `op` to fresh inputs shaped as `ex` says (None: omitted).

    Returns (program, domains): one (lo, hi) per program input.
    """
    from hnfc.ir import Builder, TensorType

    b = Builder()
    args, domains = [], []
    for i, shape in enumerate(ex.shapes):
        if shape is None:
            args.append(None)
            continue
        dtype = ex.dtypes[i] if ex.dtypes is not None else float_dtype
        args.append(b.input(f"x{i}", TensorType(tuple(shape), dtype)))
        domains.append(ex.domain[i] if ex.domain is not None else op.domain)
    out = b.add(op.name, args, dict(ex.attrs))
    return b.build([out]), domains
