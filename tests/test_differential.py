"""Differential test of the optimizer itself (issue 16): random well-typed programs over the op
table (elementwise, reductions, matmuls; float32 and bfloat16), built with hnfc.ir.Builder, go
through hnfc.optimize. Properties: it never crashes (no exception, no "optimizer failed"
fallback), the result runs and has the original's output types, and measured error (hnfc.verify
against the mpmath reference, on the verification inputs) is never worse than the original's
beyond the configured tolerance.

Programs grow from the inputs by steps that keep every value in a domain where the reference is
defined (log and sqrt take positive arguments, division a positive denominator), so NaN in the
original never stands in for an optimizer bug. The budget is fixed (derandomized, max_examples,
deadline) so the test runs in CI in well under a minute and draws the same programs everywhere.
"""

from __future__ import annotations

import warnings

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hnfc
from hnfc.runtime import verification_inputs
from hnfc.verify import measure
from hnfc.foundation.config import Config
from hnfc.ir import Builder, TensorType
from hnfc.pipeline import HnfcWarning

ROWS, COLS = 3, 5
DOMAINS = [(-4.0, 4.0), (-30.0, 30.0), (0.5, 60.0)]
TORCH = {"f32": torch.float32, "bf16": torch.bfloat16}

# steps: (name, arity); each returns a new value of the same shape [ROWS, COLS] or [ROWS, 1]
UNARY = ["exp_shift", "log_pos", "sqrt_pos", "tanh", "neg", "sigmoid", "softplus_naive", "square", "abs"]
BINARY = ["add", "sub", "mul", "div_pos"]
REDUCE = ["sum", "mean", "amax", "logsumexp_naive", "softmax_naive", "var_naive"]


def _build(spec, dtype: str):
    """A program from a drawn spec: (n_inputs, steps, outputs)."""
    n_inputs, steps, n_out = spec
    b = Builder()
    t = TensorType((ROWS, COLS), dtype)
    vals = [b.input(f"x{i}", t) for i in range(n_inputs)]
    w = b.input("w", TensorType((COLS, COLS), dtype))
    one = b.const(1.0, dtype)

    def pos(v):  # a positive value from v: 1 + v*v
        return b.add("add", (b.add("mul", (v, v)), one))

    for kind, i, j in steps:
        a, c = vals[i % len(vals)], vals[j % len(vals)]
        if kind == "exp_shift":  # exp of a bounded value: tanh keeps exp finite in every dtype
            v = b.add("exp", (b.add("tanh", (a,)),))
        elif kind == "log_pos":
            v = b.add("log", (pos(a),))
        elif kind == "sqrt_pos":
            v = b.add("sqrt", (pos(a),))
        elif kind == "softplus_naive":
            v = b.add("log", (b.add("add", (one, b.add("exp", (a,)))),))
        elif kind in ("tanh", "neg", "sigmoid", "square", "abs"):
            v = b.add(kind, (a,))
        elif kind == "div_pos":
            v = b.add("div", (a, pos(c)))
        elif kind in BINARY:
            v = b.add(kind, (a, c))
        elif kind == "matmul":
            if b.type_of(a).shape != (ROWS, COLS):
                continue
            v = b.add("mm", (a, w))
        elif kind in ("sum", "mean", "amax"):
            v = b.add(kind, (a,), {"dim": (-1,), "keepdim": True})
        elif kind == "logsumexp_naive":
            v = b.add("log", (b.add("sum", (b.add("exp", (a,)),), {"dim": (-1,), "keepdim": True}),))
        elif kind == "softmax_naive":
            e = b.add("exp", (a,))
            v = b.add("div", (e, b.add("sum", (e,), {"dim": (-1,), "keepdim": True})))
        elif kind == "var_naive":  # E[x^2] - E[x]^2
            m = b.add("mean", (a,), {"dim": (-1,), "keepdim": True})
            v = b.add("sub", (b.add("mean", (b.add("mul", (a, a)),), {"dim": (-1,), "keepdim": True}), b.add("mul", (m, m))))
        else:
            raise AssertionError(kind)
        vals.append(v)
    outs = vals[-n_out:]
    return b.build(outs), n_inputs


_step = st.tuples(st.sampled_from(UNARY + BINARY + REDUCE + ["matmul"]), st.integers(0, 20), st.integers(0, 20))
_spec = st.tuples(st.integers(1, 2), st.lists(_step, min_size=1, max_size=6), st.integers(1, 2))


@settings(max_examples=12, deadline=120_000, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=_spec, dtype=st.sampled_from(["f32", "bf16"]), domain=st.sampled_from(DOMAINS))
def test_random_programs_never_crash_run_and_never_get_worse(spec, dtype, domain):
    program, n_inputs = _build(spec, dtype)
    lo, hi = domain
    g = torch.Generator().manual_seed(0)
    inputs = [(torch.rand(ROWS, COLS, generator=g) * (hi - lo) + lo).to(TORCH[dtype]) for _ in range(n_inputs)]
    inputs.append((torch.randn(COLS, COLS, generator=g) / COLS**0.5).to(TORCH[dtype]))
    ranges = {i: domain for i in range(n_inputs)} | {n_inputs: (-2.0, 2.0)}
    config = Config()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = hnfc.optimize(program, inputs, input_ranges=ranges)
    failed = [str(w.message) for w in caught if issubclass(w.category, HnfcWarning) and "failed" in str(w.message)]
    assert not failed, (failed, str(program))
    out = m(*inputs)
    out = out if isinstance(out, (tuple, list)) else (out,)
    want = [program.nodes[o].type for o in program.outputs]
    assert [(tuple(o.shape), o.dtype) for o in out] == [(t.shape, TORCH[t.dtype]) for t in want]
    sets = verification_inputs(program, inputs, ranges, config)
    for e in measure(program, m.program, sets, config):
        assert e.after_mean <= e.before_mean + config.tolerance_mean_bits and e.after_max <= e.before_max + config.tolerance_max_bits, (
            f"output {e.index}: {e.before_mean:.2f}/{e.before_max:.1f} -> {e.after_mean:.2f}/{e.after_max:.1f} bits\n{program}\n->\n{m.program}"
        )
