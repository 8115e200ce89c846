"""What lowering emits for speed (hnfc/runtime/lowering.py): public torch builtins instead of
OpOverload calls, casts as dtype methods, no default keywords, and no pytree for a flat calling
convention; each the same computation as the form it replaces."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

import hnfc
from hnfc.foundation.types import TensorType
from hnfc.ir.program import Builder
from hnfc.numerics.metric import sample_inputs
from hnfc.runtime import lowering
from tests.conftest import example_program, op_examples


class _Dispatched(TorchDispatchMode):
    """The aten overloads a call dispatches, in order."""

    def __init__(self):
        super().__init__()
        self.ops: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func)
        return func(*args, **(kwargs or {}))


def _run(gm, xs):
    mode = _Dispatched()
    with torch.no_grad(), mode:
        out = gm(*xs)
    return out, mode.ops


@pytest.mark.parametrize("op,ex", op_examples())
def test_public_builtins_dispatch_what_the_overloads_do(op, ex, monkeypatch):
    """Every op-table example lowered with public builtins dispatches the same aten overloads, in
    the same order, with the same results, as lowered with the OpOverloads themselves."""
    program, domains = example_program(op, ex, "f32")
    fast = hnfc.lower(program)
    monkeypatch.setattr(lowering, "public_callable", lambda target: None)
    slow = hnfc.lower(program)
    assert not any(n.op == "call_function" and not isinstance(n.target, torch._ops.OpOverload) and n.target is not lowering.operator.getitem for n in slow.graph.nodes)
    types = [program.nodes[i].type for i in program.inputs]
    for xs in sample_inputs(types, domains, 2, seed=5):
        (got, got_ops), (want, want_ops) = _run(fast, xs), _run(slow, xs)
        assert got_ops == want_ops, op.name
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and torch.equal(g.nan_to_num(), w.nan_to_num()), op.name


def test_public_builtins_are_emitted_where_they_exist():
    assert lowering.public_callable(torch.ops.aten.addmm.default) is torch.addmm
    assert lowering.public_callable(torch.ops.aten.gelu.default) is torch._C._nn.gelu
    # random ops keep their overload (hnfc.runtime.run reads dropout_p from its schema)
    assert lowering.public_callable(torch.ops.aten.scaled_dot_product_attention.default) is None
    assert lowering.public_callable(torch.ops.aten._to_copy.default) is None  # no builtin of that name
    # torch.split and torch.norm are Python wrappers: the generated code's `torch.split` would not
    # be the builtin (and opaque calls such as split keep their overload anyway)
    assert lowering.public_callable(torch.ops.aten.split.Tensor) is None
    assert lowering.public_callable(torch.ops.aten.norm.Scalar) is None


def test_default_keywords_are_left_out():
    b = Builder()
    c, x, y = (b.input(n, TensorType((3, 3), "f32")) for n in "cxy")
    plain = b.add("addmm", [c, x, y], {"beta": 1, "alpha": 1})
    scaled = b.add("addmm", [c, x, y], {"beta": 0.5, "alpha": 1})
    gm = hnfc.lower(b.build([plain, scaled]))
    calls = [n for n in gm.graph.nodes if n.target is torch.addmm]
    assert [n.kwargs for n in calls] == [{}, {"beta": 0.5}]
    xs = [torch.randn(3, 3) for _ in range(3)]
    got = gm(*xs)
    assert torch.equal(got[0], torch.addmm(*xs)) and torch.equal(got[1], torch.addmm(*xs, beta=0.5))


@pytest.mark.parametrize("src,dst,method", [("f32", "bf16", "bfloat16"), ("bf16", "f32", "float"), ("f32", "f16", "half"), ("f32", "f64", "double")])
def test_casts_are_dtype_methods(src, dst, method):
    b = Builder()
    x = b.input("x", TensorType((5,), src))
    gm = hnfc.lower(b.build([b.add("to", [x], {"dtype": dst})]))
    assert [n.target for n in gm.graph.nodes if n.op == "call_method"] == [method]
    t = torch.randn(5, dtype=torch.float64).to(getattr(torch, {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64"}[src]))
    (out,) = gm(t)
    assert torch.equal(out, t.to(out.dtype)) and out.dtype == getattr(torch, {"f32": "float32", "bf16": "bfloat16", "f16": "float16", "f64": "float64"}[dst])


class _Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x, y):
        return self.lin(x), y * 2


class _Nested(nn.Module):
    def forward(self, xs):
        return {"s": xs[0] + xs[1]}


def test_flat_calling_convention_has_no_pytree():
    torch.manual_seed(0)
    lin, x = nn.Linear(4, 3), torch.randn(2, 4)
    gm = hnfc.lower(hnfc.trace(lin, (x,)))
    assert "pytree" not in gm.code
    out = gm(x)
    assert isinstance(out, torch.Tensor) and torch.equal(out, lin(x))
    assert torch.equal(gm(input=x), out)  # the argument keeps the model's name
    two, y = _Two(), torch.randn(3)
    gm2 = hnfc.lower(hnfc.trace(two, (x, y)))
    out2 = gm2(x, y)
    assert "pytree" not in gm2.code and isinstance(out2, tuple) and len(out2) == 2
    assert all(torch.equal(a, b) for a, b in zip(out2, two(x, y)))
    # nested arguments or results: pytree as before
    nested = hnfc.lower(hnfc.trace(_Nested(), ([x, x],)))
    assert "pytree" in nested.code and torch.equal(nested([x, x])["s"], x + x)


class _Layers(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, x):
        for k, layer in enumerate(self.layers):
            x = layer(x)
            x = torch.relu(x) if k % 2 == 0 else torch.tanh(x)
        return x


@pytest.mark.parametrize("low", [None, "bf16"])
@pytest.mark.parametrize("sizes,batch", [((8, 16, 16, 4), 4), ((64, 256, 96), 33), ((5, 3), 1)])
def test_addmm_on_a_transposed_weight_is_linear_with_the_same_bits(low, sizes, batch, monkeypatch):
    """addmm(b, x, [to](W^T)) emitted as linear(x, [to](W), b): one call instead of three, the
    same outputs and the same gradients bit for bit as the addmm form."""
    torch.manual_seed(0)
    model, x = _Layers(sizes), torch.randn(batch, sizes[0])
    p = hnfc.trace(model, (x,))
    dtypes = {i: low for i, n in enumerate(p.nodes) if n.op == "addmm"} if low else None
    fast = hnfc.lower(p, dtypes=dtypes)
    monkeypatch.setattr(lowering, "_linear_folds", lambda program, uses: {})
    slow = hnfc.lower(p, dtypes=dtypes)
    assert sum(n.target is torch._C._nn.linear for n in fast.graph.nodes) == len(sizes) - 1
    assert not any(n.target == "transpose" for n in fast.graph.nodes)
    assert all("hnf_dtype" in n.meta["custom"] for n in fast.graph.nodes if n.op in ("call_function", "call_method"))
    for seed in range(3):
        xs = torch.randn(batch, sizes[0], generator=torch.Generator().manual_seed(seed)) * 4
        outs = []
        for gm in (fast, slow):
            gm.zero_grad(set_to_none=True)
            y = gm(xs)
            y.square().sum().backward()
            outs.append((y.detach(), [q.grad.clone() for q in gm.parameters()]))
        (yf, gf), (ys, gs) = outs
        assert torch.equal(yf, ys) and all(torch.equal(a, b) for a, b in zip(gf, gs))


def test_linear_fold_leaves_tied_and_scaled_products_alone():
    b = Builder()
    x = b.input("x", TensorType((3, 4), "f32"))
    w = b.param("w", TensorType((5, 4), "f32"))
    bias = b.param("b", TensorType((5,), "f32"))
    wt = b.add("transpose", [w], {"dim0": 0, "dim1": 1})
    scaled = b.add("addmm", [bias, x, wt], {"beta": 0.5, "alpha": 1})
    p = b.build([scaled], params={"w": torch.randn(5, 4), "b": torch.randn(5)})
    assert not any(n.target is torch._C._nn.linear for n in hnfc.lower(p).graph.nodes)  # beta != 1
    b2 = Builder()
    x = b2.input("x", TensorType((3, 4), "f32"))
    w = b2.param("w", TensorType((5, 4), "f32"))
    bias = b2.param("b", TensorType((5,), "f32"))
    y1 = b2.add("addmm", [bias, x, b2.add("transpose", [w], {"dim0": 0, "dim1": 1})])
    y2 = b2.add("mul", [w, w])  # W read elsewhere (a tied weight): its gradient order stays eager's
    p2 = b2.build([y1, y2], params={"w": torch.randn(5, 4), "b": torch.randn(5)})
    assert not any(n.target is torch._C._nn.linear for n in hnfc.lower(p2).graph.nodes)
