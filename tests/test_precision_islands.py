"""No float32 islands between 16-bit ops (hnfc.precision.assignment.without_islands): the op-table
fact `rounds_once` checked against torch's kernels, and the rule's effect (two casts fewer per
island, the same values bit for bit) on assignments and on the precision stage's result."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import hnfc
from hnfc import analysis, ops, precision
from hnfc.foundation.config import Config
from hnfc.foundation.dtypes import DTYPES, holds, to_torch
from hnfc.foundation.types import TensorType
from hnfc.ir import casts
from hnfc.ir.program import Builder
from hnfc.precision.assignment import without_islands
from hnfc.runtime import observe, verification_inputs

LOW = ("bf16", "f16")
# lengths around every vector width torch's CPU kernels use (8 to 64 lanes, loops unrolled 2x):
# elements in a vector body and in a scalar tail land on different paths in the two dtypes
LENGTHS = list(range(1, 70)) + [127, 128, 129, 1000]


def _values(n: int, low: str, gen: torch.Generator) -> torch.Tensor:
    """n values of dtype `low`: edge values first (signed zeros, infinities, NaN, subnormals,
    the largest finite, halfway-prone magnitudes), then random magnitudes over 2^±20."""
    d = DTYPES[low]
    edge = [0.0, -0.0, math.inf, -math.inf, math.nan, 2.0 ** d.qmin, -(2.0 ** d.qmin), d.tiny, d.max, -d.max, 1.0, -1.0, 0.5, 3.0, -2.5]
    x = torch.randn(n, generator=gen, dtype=torch.float64) * torch.exp2(torch.randint(-20, 20, (n,), generator=gen).double())
    k = min(n, len(edge))
    x[:k] = torch.tensor(edge[:k], dtype=torch.float64)
    return x[torch.randperm(n, generator=gen)].to(to_torch(low))


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    nan = torch.isnan(a) & torch.isnan(b)
    return a.dtype == b.dtype and bool((nan | (a.view(torch.int16) == b.view(torch.int16))).all())


def _one_node(op, ex, low: str, n: int, const: float | None):
    """A program applying `op` (attributes from its example `ex`) to rank-1 inputs of length n
    in `low` (bool where the example says so), the last float argument a constant when `const`."""
    b = Builder()
    args, kinds = [], []
    for k, _ in enumerate(ex.shapes):
        dt = ex.dtypes[k] if ex.dtypes is not None else low
        dt = low if DTYPES[dt].is_float else dt
        kinds.append(dt)
    last_float = max(k for k, dt in enumerate(kinds) if DTYPES[dt].is_float)
    for k, dt in enumerate(kinds):
        if const is not None and k == last_float and k > 0:
            args.append(b.const(const, low))
        else:
            args.append(b.input(f"x{k}", TensorType((n,), dt)))
    return b.build([b.add(op.name, args, dict(ex.attrs))])


ROUNDS_ONCE = sorted(name for name, op in ops.OPS.items() if op.rounds_once)


def test_rounds_once_marks_the_ieee_exact_pointwise_ops():
    # exact (neg, abs, relu, where, clamp) or one correctly rounded operation (add, sub, mul,
    # div, sqrt); never a library function (tanh, exp: vector and scalar code paths differ)
    assert {"add", "mul", "relu", "where"} <= set(ROUNDS_ONCE)
    assert not {"tanh", "exp", "sigmoid", "gelu", "rsqrt", "erf"} & set(ROUNDS_ONCE)
    assert all(ops.OPS[n].kind == "pointwise" for n in ROUNDS_ONCE)


@pytest.mark.parametrize("name", ROUNDS_ONCE)
@pytest.mark.parametrize("low", LOW)
def test_rounds_once_ops_compute_float32_rounded(name, low):
    """The fact itself: on 16-bit arguments the 16-bit kernel's result is the float32 kernel's,
    rounded, bit for bit (contiguous and strided, tails included, constants that are values of
    the dtype)."""
    op = ops.OPS[name]
    gen = torch.Generator().manual_seed(0)
    for ex in op.examples:
        consts = [None] + ([0.5, -3.0] if sum(DTYPES[d].is_float for d in (ex.dtypes or ["f32"] * len(ex.shapes))) > 1 else [])
        for const in consts:
            for n in LENGTHS:
                prog = _one_node(op, ex, low, n, const)
                lo, hi = hnfc.lower(prog), hnfc.lower(_one_node(op, ex, "f32", n, const))
                types = [prog.nodes[i].type for i in prog.inputs]
                xs = [_values(n, low, gen) if DTYPES[t.dtype].is_float else torch.rand(n, generator=gen) < 0.5 for t in types]
                for strided in (False, True):
                    args = [torch.stack([x, x], 1)[:, 0] if strided else x for x in xs]
                    (got,) = lo(*args)
                    (want,) = hi(*[x.float() if x.is_floating_point() else x for x in args])
                    assert _same_bits(got, want.to(got.dtype)), (name, low, n, const, strided)


# ---------------------------------------------------------------------------------------------
# The rule


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.c(torch.tanh(self.b(torch.relu(self.a(x)))))


def _products_low(p, low="bf16"):
    return {i: low if n.op in ("addmm", "mm", "matmul", "linear") else n.type.dtype for i, n in enumerate(p.nodes) if casts.is_compute(p, i)}


def _mlp():
    torch.manual_seed(0)
    model, x = _MLP(), torch.randn(4, 8)
    return model, x, hnfc.trace(model, (x,))


@pytest.mark.parametrize("low", LOW)
def test_island_between_16_bit_products_moves_into_16_bits(low):
    _, x, p = _mlp()
    d = _products_low(p, low)
    narrowed = without_islands(p, d)
    relu = next(i for i, n in enumerate(p.nodes) if n.op == "relu")
    tanh = next(i for i, n in enumerate(p.nodes) if n.op == "tanh")
    assert d[relu] == "f32" and narrowed[relu] == low  # addmm -> relu -> addmm, all read in low
    assert narrowed[tanh] == "f32"  # tanh does not round once (library function): kept
    before, _ = casts.with_dtypes(p, d)
    after, _ = casts.with_dtypes(p, narrowed)
    assert sum(n.op == "to" for n in after.nodes) == sum(n.op == "to" for n in before.nodes) - 2
    # no cast up into relu nor down out of it: relu reads the product itself
    r = next(n for n in after.nodes if n.op == "relu")
    assert after.nodes[r.args[0]].op == "addmm" and r.type.dtype == low
    assert without_islands(p, narrowed) == narrowed  # final
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        xs = torch.randn(4, 8, generator=gen) * 10
        assert torch.equal(hnfc.lower(after)(xs)[0], hnfc.lower(before)(xs)[0])


def _chain(op, const=None, out_relu=False, reader_dtype="bf16"):
    """x -> mm(bf16) -> op -> mm(reader_dtype) [-> output], the middle op in f32."""
    b = Builder()
    x = b.input("x", TensorType((4, 4), "f32"))
    w = b.input("w", TensorType((4, 4), "f32"))
    m1 = b.add("mm", [x, w])
    mid = b.add(op, [m1] + ([b.const(const)] if const is not None else []))
    m2 = b.add("mm", [mid, w])
    p = b.build([m2, mid] if out_relu else [m2])
    return p, {m1: "bf16", mid: "f32", m2: reader_dtype}, mid


def test_island_rule_refuses_what_would_change_values():
    p, d, mid = _chain("relu")
    assert without_islands(p, d)[mid] == "bf16"
    p, d, mid = _chain("add", 0.5)  # 0.5 is a bf16 value: same sum
    assert without_islands(p, d)[mid] == "bf16"
    p, d, mid = _chain("add", 0.3)  # torch rounds 0.3 into a bf16 add first
    assert without_islands(p, d)[mid] == "f32"
    p, d, mid = _chain("relu", out_relu=True)  # an output is read in its own dtype
    assert without_islands(p, d)[mid] == "f32"
    p, d, mid = _chain("relu", reader_dtype="f32")  # read in float32: the unrounded value
    assert without_islands(p, d)[mid] == "f32"
    p, d, mid = _chain("exp")  # not rounds_once
    assert without_islands(p, d)[mid] == "f32"


def test_holds_is_exact_membership():
    for v in (0.1, 0.3, 1.0, -1e-3, 2.0**-133, 2.0**-134, 3.0, 65504.0, 65520.0, 2.0**-24, 2.0**-25, 257.0, 256.0, 3.4e38, math.inf, -0.0):
        for low in ("bf16", "f16", "f32"):
            back = torch.tensor(v, dtype=torch.float64).to(to_torch(low)).double().item()
            assert holds(v, low) == (back == v), (v, low)
    assert not holds(math.nan, "bf16") and not holds(True, "bf16")


def test_precision_stage_runs_the_mlp_without_an_island():
    """The stage's result (what the pipeline lowers) has relu in bf16 reading the product, and
    the report's dtype map says so; its measured errors are those of that program."""
    model, x, p = _mlp()
    cfg = Config.from_options(target=5e-2, dtypes=[torch.bfloat16, torch.float32], samples=2)
    sets = verification_inputs(p, [x], {}, cfg)
    rng = analysis.ranges(p, {}, observed=observe(p, sets), margin=cfg.margin)
    res = precision.select(p, rng, sets, cfg)
    relu = next(i for i, n in enumerate(p.nodes) if n.op == "relu")
    products = [i for i, n in enumerate(p.nodes) if n.op == "addmm"]
    assert res.met and all(res.dtypes[i] == "bf16" for i in products[:2])
    assert res.dtypes[relu] == "bf16"
    r = next(n for n in res.program.nodes if n.op == "relu")
    assert r.type.dtype == "bf16" and res.program.nodes[r.args[0]].op == "addmm"
    assert precision.measure(res.program, sets, precision.truths(p, sets)) == res.errors
