"""Frontend behaviour at the edges: unknown ops stay opaque and still run, in-place ops,
non-tensor inputs and outputs, grad-mode regions, aliasing, nested arguments, and the
torch.compile backend path (`trace_graph_module`), including symbolic shapes.

Everything that cannot be brought into the IR raises FrontendError with the reason; nothing
crashes with an internal error."""

from __future__ import annotations

import contextlib
import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import _pytree as pytree

import hnfc
from hnfc.frontend.tracing import FrontendError, _compiling, trace, trace_graph_module
from hnfc.ir import parse_program, validate
from hnfc.runtime.lowering import lower
from tests.corpus import CASES


def _round_trip(fn, *inputs, grads: bool = True):
    """Trace, validate, lower; outputs (and input gradients) equal to eager. Returns the program."""
    program = trace(fn, inputs)
    validate(program, need_params=True)
    assert parse_program(str(program)).nodes == program.nodes
    lowered = lower(program)

    def run(f):
        xs = [x.detach().clone().requires_grad_(grads and x.is_floating_point()) for x in inputs]
        torch.manual_seed(7)
        out = f(*xs)
        leaves = [o for o in pytree.tree_leaves(out)]
        diff = [o for o in leaves if o.requires_grad]
        wrt = [x for x in xs if x.requires_grad]
        g = torch.autograd.grad(sum(o.sum() for o in diff), wrt, allow_unused=True) if diff and wrt else ()
        return out, leaves, g

    eo, e, eg = run(fn)
    lo, low, lg = run(lowered)
    assert pytree.tree_structure(eo) == pytree.tree_structure(lo)
    assert all(torch.equal(a, b) for a, b in zip(e, low)) and len(e) == len(low)
    assert len(eg) == len(lg) and all((a is None and b is None) or torch.equal(a, b) for a, b in zip(eg, lg))
    return program


def _opaque_targets(program):
    return {n.attr["target"] for n in program.nodes if n.op == "opaque"}


# ---------------------------------------------------------------------------------------------
# Unknown ops: opaque nodes that run and round-trip


def test_unknown_ops_become_opaque_and_run():
    w = torch.randn(4, 3, 3, 3)

    def f(x):
        h = F.conv2d(x, w, padding=1)
        h = torch.cumsum(h, dim=1)
        h = F.max_pool2d(h, 2)
        return torch.sort(h.flatten(1), dim=-1).values

    p = _round_trip(f, torch.randn(2, 3, 6, 6))
    assert {"aten.convolution.default", "aten.cumsum.default", "aten.sort.default"} <= _opaque_targets(p)


def test_opaque_multi_output_and_tuple_types():
    p = _round_trip(lambda x: torch.max(x, dim=1), torch.randn(3, 5))
    (node,) = [n for n in p.nodes if n.op == "opaque"]
    assert node.attr["target"] == "aten.max.dim" and len(node.type.items) == 2
    assert [p.nodes[o].op for o in p.outputs] == ["getitem", "getitem"]
    assert str(p.nodes[p.outputs[1]].type) == "i64[3]"


def test_random_ops_are_opaque_and_never_merged():
    p = trace(lambda x: x + torch.rand_like(x) - torch.rand_like(x), (torch.randn(3),))
    assert [n.attr["target"] for n in p.nodes if n.op == "opaque"] == ["aten.rand_like.default"] * 2
    _round_trip(lambda x: x + torch.rand_like(x) - torch.rand_like(x), torch.randn(3), grads=False)


def test_opaque_ops_with_odd_arguments():
    def f(x, idx):
        y = x.new_zeros((2, 3), dtype=torch.float64)
        z = torch.index_select(x, 0, idx)
        return y + z.to(torch.float64), x.to(memory_format=torch.contiguous_format).int()

    _round_trip(f, torch.randn(4, 3), torch.tensor([3, 0]))


# ---------------------------------------------------------------------------------------------
# In-place ops


def test_inplace_mutation_of_an_input_is_refused_by_name():
    def f(x, y):
        y.mul_(2)
        return x + y

    with pytest.raises(FrontendError, match=r"mutates input 'y' in place \(aten\.copy_"):
        trace(f, (torch.randn(3), torch.randn(3)))


def test_inplace_mutation_of_a_buffer_is_refused():
    model, inputs = CASES["bn_cnn"].build(train=True)
    with pytest.raises(FrontendError, match=r"mutates parameter/buffer 'bn\.\w+' in place.*model\.eval\(\)"):
        trace(model, inputs)
    model.eval()
    _ = trace(model, inputs)  # fine in eval mode


def test_inplace_ops_on_intermediates_work():
    def f(x):
        y = x * 2
        y.unsqueeze_(0)  # a metadata mutation
        y.add_(1)
        y[0, 0] = 5.0  # index_put / select_scatter
        y[:, :, 1:].mul_(3)  # through a view
        z = F.relu(y, inplace=True)
        return z * x

    _round_trip(f, torch.randn(3, 4))


def test_leftover_inplace_ops_get_their_out_of_place_twin():
    # the sdpa math kernel draws its dropout mask with bernoulli_ on a fresh tensor; rms_norm adds
    # eps in place: functionalization leaves both in the graph
    def f(q):
        return F.scaled_dot_product_attention(q, q, q, dropout_p=0.2), F.rms_norm(q, (8,))

    p = _round_trip(f, torch.randn(1, 2, 4, 8))
    assert "aten.bernoulli.p" in _opaque_targets(p)
    assert not any(t.split(".")[1].endswith("_") for t in _opaque_targets(p))


# ---------------------------------------------------------------------------------------------
# Non-tensor values


@pytest.mark.parametrize(
    "fn,inputs,words",
    [
        (lambda x, k: x * k, (torch.randn(2), 3), "example input 'k' is int 3, not a tensor"),
        (lambda x, k: x, (torch.randn(2), None), "example input 'k' is NoneType"),
        (lambda x, opts: x * opts["scale"], (torch.randn(2), {"scale": 0.5}), "example input 'opts' is float"),
        (lambda x: (x * 2, 3), (torch.randn(2),), "returns non-tensor values (['int'])"),
        (lambda x: (x, None), (torch.randn(2),), "returns non-tensor values (['NoneType'])"),
        (lambda x: x.sum().item(), (torch.randn(2),), "returns non-tensor values"),
        (lambda x: x * 2 if x.sum() > 0 else x, (torch.randn(2),), "branches on a tensor's values"),
    ],
)
def test_non_tensor_values_give_a_clear_error(fn, inputs, words):
    with pytest.raises(FrontendError) as e:
        trace(fn, inputs)
    assert words in str(e.value)
    assert len(str(e.value)) < 600


def test_custom_autograd_functions_are_refused():
    class Round(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.round()

        @staticmethod
        def backward(ctx, g):
            return g

    with pytest.raises(FrontendError, match="tracing failed"):
        trace(lambda x: Round.apply(x), (torch.randn(3),))


# ---------------------------------------------------------------------------------------------
# Gradients, aliasing, nesting, dtypes


def test_no_grad_regions_are_cut_from_autograd():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4))

        def forward(self, x):
            with torch.no_grad():
                scale = self.w.norm()
                shift = x.mean()
            return x * self.w * scale - shift

    model, x = M(), torch.randn(4)
    p = _round_trip(model, x)
    assert sum(n.op == "detach" for n in p.nodes) == 2
    low = lower(p)
    ga = torch.autograd.grad(model(x).sum(), model.w)[0]
    gb = torch.autograd.grad(low(x).sum(), model.w)[0]
    assert torch.equal(ga, gb)


def test_tracing_under_no_grad_still_gives_a_differentiable_program():
    model, inputs = CASES["mlp"].build()
    with torch.no_grad():
        p = trace(model, inputs)
    assert not any(n.op == "detach" for n in p.nodes)
    lower(p)(*inputs).sum().backward()
    assert model.fc1.weight.grad is not None


def test_the_same_tensor_passed_twice_stays_two_inputs():
    x, y = torch.randn(3), torch.randn(3)
    p = trace(lambda a, b: a * 2 + b, (x, x))
    assert p.input_names == ("a", "b") and len(p.inputs) == 2
    assert torch.equal(lower(p)(x, y), x * 2 + y)


def test_outputs_aliasing_inputs_and_each_other():
    _round_trip(lambda x: (x, x.t(), x.view(-1), x[0], x + 1), torch.randn(3, 4))


def test_nested_inputs_and_outputs_keep_their_structure():
    def f(batch, scale):
        a, b = batch["a"], batch["pair"]
        return {"sum": a + b[0], "list": [b[1] * scale, a.exp()]}

    batch = {"a": torch.randn(3), "pair": [torch.randn(3), torch.randn(3)]}
    p = trace(f, (batch, torch.randn(3)))
    assert p.input_names == ("batch_0", "batch_1", "batch_2", "scale")
    low = lower(p)
    out = low(batch, torch.ones(3))
    ref = f(batch, torch.ones(3))
    assert set(out) == {"sum", "list"} and torch.equal(out["sum"], ref["sum"]) and torch.equal(out["list"][0], ref["list"][0])


def test_data_dependent_shapes_stay_symbolic():
    p = _round_trip(lambda x: x[x > 0].exp(), torch.tensor([1.0, -2.0, 3.0, -0.5]))
    assert p.nodes[p.outputs[0]].type.is_symbolic


def test_closed_over_tensors_become_parameters():
    w = torch.randn(3, 3)
    p = _round_trip(lambda x: x @ w + 1, torch.randn(2, 3))
    params = [n for n in p.nodes if n.op == "param"]
    assert len(params) == 1 and torch.equal(p.params[params[0].attr["name"]], w)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_low_and_high_precision_inputs(dtype):
    p = _round_trip(lambda x: (x.float().exp() * 2).to(dtype) + x, torch.randn(3, 4).to(dtype))
    assert p.nodes[p.inputs[0]].type.dtype == {torch.bfloat16: "bf16", torch.float16: "f16", torch.float64: "f64"}[dtype]


def test_integer_and_bool_inputs():
    _round_trip(lambda ids, mask, emb: emb[ids] * mask.unsqueeze(-1), torch.tensor([[1, 0, 2]]), torch.tensor([[True, False, True]]), torch.randn(3, 4))


def test_program_meta_and_input_names():
    model, inputs = CASES["bert"].build()
    p = trace(model, inputs)
    assert p.input_names == ("input_ids", "attention_mask")
    assert p.meta["source"] == "BertModel" and p.meta["device"] == torch.device("cpu")
    assert set(p.params) == {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}


def test_public_names():
    assert hnfc.trace is trace
    importlib.import_module("hnfc.runtime.lowering")

    program = hnfc.trace(lambda x: x.sin(), (torch.randn(2),))
    assert isinstance(hnfc.lower(program), torch.fx.GraphModule)
    assert issubclass(hnfc.FrontendError, RuntimeError)


# ---------------------------------------------------------------------------------------------
# The torch.compile backend path


def _backend(record: list):
    """A test backend: run the lowered program, or the original graph when the frontend refuses."""

    def backend(gm, example_inputs, **kw):
        try:
            program = trace_graph_module(gm, example_inputs)
        except FrontendError as e:
            record.append(e)
            return gm.forward
        record.append(program)
        validate(program, need_params=True)
        lowered = lower(program)
        keep = [i for i, (kind, _) in enumerate(program.meta["graph_inputs"]) if kind == "input"]
        return lambda *args: lowered(*[args[i] for i in keep])

    return backend


@pytest.mark.parametrize("name", ["mlp", "attention", "transformer_encoder_layer", "gpt2_sdpa", "llama"])
def test_backend_path_round_trip(name):
    torch._dynamo.reset()
    model, inputs = CASES[name].build()
    record: list = []
    compiled = torch.compile(model, backend=_backend(record), dynamic=False)
    params = [p for p in model.parameters()]

    def run(fn, flag=False):
        with _compiling() if flag else contextlib.nullcontext():
            out = pytree.tree_leaves(fn(*inputs))
        loss = sum(o.sum() for o in out if o.is_floating_point())
        return out, torch.autograd.grad(loss, params, allow_unused=True)

    eo, eg = run(model, flag=True)  # what dynamo sees: transformers' compile-time code paths
    co, cg = run(compiled)
    assert record and all(not isinstance(r, FrontendError) for r in record), record
    assert all(torch.equal(a, b) for a, b in zip(eo, co)) and len(eo) == len(co)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(eg, cg))
    program = record[0]
    kinds = {kind for kind, _ in program.meta["graph_inputs"]}
    assert kinds == {"param", "input"}
    torch._dynamo.reset()


def test_backend_path_symbolic_shapes_are_refused():
    torch._dynamo.reset()
    record: list = []
    model, inputs = CASES["mlp"].build()
    compiled = torch.compile(model, backend=_backend(record), dynamic=True)
    out = compiled(torch.randn(5, 8))
    assert out.shape == (5, 4)
    assert record and all(isinstance(r, FrontendError) for r in record)
    assert "symbolic shapes are not supported yet" in str(record[0])
    torch._dynamo.reset()


def test_backend_path_input_mutation_and_aliasing():
    torch._dynamo.reset()
    record: list = []

    def mutate(x):
        x.add_(1)
        return x * 2

    x = torch.randn(3)
    out = torch.compile(mutate, backend=_backend(record))(x.clone())
    assert torch.equal(out, (x + 1) * 2)
    assert isinstance(record[-1], FrontendError) and "mutates input 'L_x_' in place" in str(record[-1])

    torch._dynamo.reset()
    record.clear()

    def alias(x):
        return x.t(), x + 1

    a, b = torch.compile(alias, backend=_backend(record))(x.view(3, 1))
    assert not isinstance(record[-1], FrontendError)
    assert torch.equal(a, x.view(1, 3)) and torch.equal(b, x.view(3, 1) + 1)
    torch._dynamo.reset()


def test_trace_graph_module_without_dynamo():
    model = CASES["layer_norm"].build()[0]
    gm = torch.fx.symbolic_trace(model)
    x = torch.randn(3, 16)
    program = trace_graph_module(gm, [x])
    assert program.meta["graph_inputs"] == [("input", "x")]
    out = lower(program)(x)
    assert torch.equal(out[0], model(x))


def test_trace_graph_module_checks_its_arguments():
    gm = torch.fx.symbolic_trace(lambda x, n: x * n)
    with pytest.raises(FrontendError, match="not a tensor"):
        trace_graph_module(gm, [torch.randn(2), 3])
    with pytest.raises(FrontendError, match="2 placeholders but 1 example inputs"):
        trace_graph_module(gm, [torch.randn(2)])
