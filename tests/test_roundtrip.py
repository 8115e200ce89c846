"""Round trip of the model corpus (tests/corpus.py): trace -> IR -> lower must reproduce eager:
outputs, and gradients (with respect to parameters and float inputs, of the sum of all float
outputs), in eval mode and, where it means something, in train mode (dropout on).

"Reproduce" is bit for bit where the lowered graph runs the same kernels in the same order, and
otherwise within the variation eager itself shows (`_assert_as_eager`), never one machine's bits:
the traced program shares what eager computes twice (layer_norm's `x - mu`), so autograd sums
the gradient contributions in another order, and which order rounds which way depends on the
CPU's kernel paths. The bound is eager's own rounding error, measured against the same model in
float64 (eval mode; in train mode float64 draws other dropout masks, so only the floor applies),
with a floor of a few ulps of the largest entry. A lowering bug (a wrong op, a lost term, a
swapped operand) is orders of magnitude beyond either.

Where torch legitimately computes something in another order, the test says so and bounds it:
- llama: transformers' sdpa path passes `enable_gqa=True` outside torch.compile but expands the
  KV heads (`repeat_kv`) while compiling, which is what the frontend traces (it runs models with
  torch.compiler's compiling flag, as torch.export does). Forward values agree exactly; the
  backward sums the KV-group gradients in another order. Gradients are compared against eager run
  with the same flag, and against plain eager within the same bound.
- TransformerEncoderLayer in train mode: eager draws the dropout mask of a non-contiguous tensor
  in its memory order (`empty_like` keeps strides); the traced program draws it for a fresh
  contiguous tensor. Same distribution, other mask: the train-mode check runs with p=0 there.
"""

from __future__ import annotations

import contextlib
import copy
import math

import pytest
import torch
from torch.utils import _pytree as pytree

import hnfc
from hnfc.frontend.tracing import _compiling
from hnfc.ir import parse_program, validate
from hnfc.ir.format import format_program
from hnfc.ir.program import Program
from hnfc.runtime.lowering import HnfModule
from tests.corpus import CASES

# name -> why its gradients are compared against eager run as torch.compile would
COMPILE_PATH_GRADS = {"llama": "transformers picks enable_gqa sdpa in eager, repeat_kv while compiling"}
ULPS = 8  # the floor: normwise, in ulps of the tensor's largest entry
EAGER_ERR = 2.0  # how many times eager's own float64-measured error the lowered result may differ
# name -> why train mode runs with dropout p=0
DROPOUT_LAYOUT = {
    "transformer_encoder_layer": "eager draws dropout masks in the memory order of non-contiguous tensors",
    "transformer_encoder_layer_norm_first": "eager draws dropout masks in the memory order of non-contiguous tensors",
}

MODES = [pytest.param(name, train, id=f"{name}-{'train' if train else 'eval'}") for name, c in CASES.items() for train in ((False, True) if c.train else (False,))]


def _no_dropout(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(m, torch.nn.MultiheadAttention):
            m.dropout = 0.0


def _run(fn, inputs, params, *, flag: bool = False, seed: int = 1234):
    """Outputs and gradients of sum(float outputs) w.r.t. params and float inputs."""
    xs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    torch.manual_seed(seed)  # the same dropout masks for eager and lowered
    with _compiling() if flag else contextlib.nullcontext():
        out = fn(*xs)
    leaves = [o for o in pytree.tree_leaves(out) if isinstance(o, torch.Tensor)]
    loss = sum(o.sum() for o in leaves if o.is_floating_point() and o.requires_grad)
    wrt = list(params) + [x for x in xs if x.requires_grad]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    return out, [o.detach() for o in leaves], list(grads)


def _float64_run(model, inputs):
    """The same model and inputs in float64: eager's reference for its own rounding error."""
    model64 = copy.deepcopy(model).double()
    xs = [x.double() if x.is_floating_point() else x for x in inputs]
    params = [p for p in model64.parameters() if p.requires_grad]
    _, outs, grads = _run(model64, xs, params)
    return outs, grads


def _ulp(x: torch.Tensor) -> float:
    scale = x.abs().max().item() if x.numel() else 0.0
    if scale == 0 or not math.isfinite(scale):
        return torch.finfo(x.dtype).tiny
    return torch.finfo(x.dtype).eps * 2.0 ** math.floor(math.log2(scale))


def _assert_as_eager(what: str, x, y, ref=None) -> None:
    """y (lowered) reproduces x (eager): bit for bit, or within eager's own variation: the larger
    of ULPS ulps of x's largest entry and EAGER_ERR times eager's error against float64 `ref`."""
    if x is None or y is None:
        assert x is None and y is None, f"{what}: eager {x is not None}, lowered {y is not None}"
        return
    assert x.dtype == y.dtype and x.shape == y.shape, f"{what}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}"
    if torch.equal(x, y) or not x.is_floating_point():
        assert torch.equal(x, y), f"{what} differs"
        return
    same_nonfinite = torch.equal(torch.isfinite(x), torch.isfinite(y)) and torch.equal(x[~torch.isfinite(x)], y[~torch.isfinite(y)])
    assert same_nonfinite, f"{what}: non-finite entries differ"
    fin = torch.isfinite(x)
    diff = (x[fin].double() - y[fin].double()).abs().max().item() if fin.any() else 0.0
    bound = ULPS * _ulp(x[fin])
    eager_err = 0.0
    if ref is not None:
        eager_err = (x[fin].double() - ref[fin].double()).abs().max().item() if fin.any() else 0.0
        bound = max(bound, EAGER_ERR * eager_err)
    assert diff <= bound, f"{what} differs by {diff:.3g} (bound {bound:.3g}: {ULPS} ulps = {ULPS * _ulp(x[fin]):.3g}, eager's own error vs float64 {eager_err:.3g})"


@pytest.mark.parametrize("name,train", MODES)
def test_corpus_round_trip(name, train):
    case = CASES[name]
    model, inputs = case.build(train=train)
    if train and name in DROPOUT_LAYOUT:
        _no_dropout(model)
    program = hnfc.trace(model, inputs)
    validate(program, need_params=True)
    lowered = hnfc.lower(program)

    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad] + [f"input {i}" for i, x in enumerate(inputs) if x.is_floating_point()]
    eager_out, eager, eager_grads = _run(model, inputs, params)
    low_out, low, low_grads = _run(lowered, inputs, params)
    # float64 eager measures eager's own rounding error, where the model draws nothing random
    # (dropout: float64 draws other masks); another seed tells
    _, other, other_grads = _run(model, inputs, params, seed=4321)
    deterministic = all(torch.equal(a, b) for a, b in zip(eager + [g for g in eager_grads if g is not None], other + [g for g in other_grads if g is not None]))
    ref, ref_grads = _float64_run(model, inputs) if deterministic else ([None] * len(eager), [None] * len(eager_grads))

    assert type(low_out) is type(eager_out)
    assert pytree.tree_structure(low_out) == pytree.tree_structure(eager_out)
    assert len(low) == len(eager)
    for i, (x, y, r) in enumerate(zip(eager, low, ref)):
        _assert_as_eager(f"output {i}", x, y, r)
    assert any(g is not None for g in eager_grads)

    if name in COMPILE_PATH_GRADS:
        for n, x, y, r in zip(names, eager_grads, low_grads, ref_grads):
            _assert_as_eager(f"gradient of {n} (plain eager)", x, y, r)
        _, _, eager_grads = _run(model, inputs, params, flag=True)
    for n, x, y, r in zip(names, eager_grads, low_grads, ref_grads):
        _assert_as_eager(f"gradient of {n}", x, y, r)


def test_the_bound_catches_a_wrong_lowering():
    """_assert_as_eager is not a formality: a lowering that changes layer_norm's eps, or adds a
    one-ulp-per-entry bias everywhere, is caught; eager against itself passes."""
    model, inputs = CASES["layer_norm"].build()
    params = [p for p in model.parameters() if p.requires_grad]
    _, (x,), _ = _run(model, inputs, params)
    (ref,), _ = _float64_run(model, inputs)
    _assert_as_eager("eager", x, x.clone(), ref)
    model.eps = 1e-3
    _, (y,), _ = _run(model, inputs, params)
    with pytest.raises(AssertionError, match="differs by"):
        _assert_as_eager("another eps", x, y, ref)
    with pytest.raises(AssertionError, match="differs by"):
        _assert_as_eager("biased", x, x + 64 * _ulp(x), ref)


@pytest.mark.parametrize("name", list(CASES))
def test_corpus_text_round_trip(name):
    """The traced program's text parses back to the same nodes, and the parsed program (given
    the parameters) runs to the same outputs."""
    model, inputs = CASES[name].build()
    program = hnfc.trace(model, inputs)
    text = str(program)
    parsed = parse_program(text)
    assert parsed.nodes == program.nodes and parsed.outputs == program.outputs
    assert str(parsed) == text
    rebuilt = Program(parsed.nodes, parsed.outputs, program.params, program.meta)
    with torch.no_grad():  # (eager itself may take another path under no_grad: compare lowerings)
        a = pytree.tree_leaves(hnfc.lower(program)(*inputs))
        b = pytree.tree_leaves(hnfc.lower(rebuilt)(*inputs))
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)


def test_lowered_module_trains_the_original_parameters():
    model, inputs = CASES["mlp"].build(train=True)
    lowered = hnfc.lower(hnfc.trace(model, inputs))
    assert {n for n, _ in lowered.named_parameters()} == {n for n, _ in model.named_parameters()}
    assert all(p is q for p, q in zip(lowered.parameters(), model.parameters()))
    before = model.fc1.weight.detach().clone()
    opt = torch.optim.SGD(lowered.parameters(), lr=0.1)
    lowered(*inputs).sum().backward()
    opt.step()
    assert not torch.equal(model.fc1.weight, before)


def test_lowered_module_moves_its_constants_with_it():
    """`.to(device)` moves the device the graph names for constants and factory calls, not only the
    parameters (a module optimized on CPU must run on a GPU). The meta device stands in for one."""
    program = parse_program(
        """\
%0 = input(name="x") : f32[3]
%1 = const(value=2.0) : f32[]
%2 = exp(%1) : f32[]
%3 = mul(%0, %2) : f32[3]
return %3
"""
    )
    lowered = hnfc.lower(program)
    assert lowered.device == torch.device("cpu")
    moved = lowered.to("meta")
    assert moved is lowered and moved.device == torch.device("meta")
    assert moved(torch.empty(3, device="meta"))[0].device.type == "meta"  # a cpu constant would raise here
    assert all(v == torch.device("meta") for n in moved.graph.nodes for v in n.kwargs.values() if isinstance(v, torch.device))


def test_optimized_module_deep_copies_with_its_report():
    model, inputs = CASES["mlp"].build()
    optimized = hnfc.optimize(model, inputs)
    twin = copy.deepcopy(optimized)
    assert twin.report.rewrites == optimized.report.rewrites and twin.report is not optimized.report
    assert format_program(twin.program) == format_program(optimized.program)
    assert all(p is not q and torch.equal(p, q) for p, q in zip(twin.parameters(), optimized.parameters()))
    assert torch.equal(pytree.tree_leaves(twin(*inputs))[0], pytree.tree_leaves(optimized(*inputs))[0])


def test_lowered_nodes_record_op_and_dtype():
    model, inputs = CASES["layer_norm"].build()
    lowered = hnfc.lower(hnfc.trace(model, inputs))
    calls = [n for n in lowered.graph.nodes if n.op == "call_function"]
    tagged = [n.meta["custom"] for n in calls if "custom" in n.meta]
    assert tagged and all(set(t) == {"hnf_op", "hnf_dtype"} for t in tagged)
    assert {"mean", "sub", "sqrt", "div"} <= {t["hnf_op"] for t in tagged}
    assert {t["hnf_dtype"] for t in tagged} == {"float32"}


def test_constants_in_tensor_positions_are_materialized():
    """Constants are inline Python numbers where torch takes a Scalar (x * 2.0), and 0-d tensors
    of their own dtype where it takes a Tensor (exp(c), expand(c), cat([expand(c), x]))."""
    program = parse_program(
        """\
%0 = input(name="x") : f32[3]
%1 = const(value=2.0) : f32[]
%2 = exp(%1) : f32[]
%3 = expand(%1, shape=(3,)) : f32[3]
%4 = add(%1, %1) : f32[]
%5 = mul(%0, %2) : f32[3]
%6 = cat(%3, %0) : f32[6]
%7 = const(value=True, dtype="bool") : bool[]
%8 = where(%7, %1, %0) : f32[3]
%9 = const(value=3, dtype="i64") : i64[]
%10 = neg(%9) : i64[]
%11 = mul(%0, %1) : f32[3]
return %5, %4, %6, %8, %10, %11, %1
"""
    )
    x = torch.tensor([1.0, -2.0, 0.5])
    two = torch.tensor(2.0)
    want = [x * two.exp(), two + two, torch.cat([two.expand(3), x]), torch.where(torch.tensor(True), two, x), torch.tensor(-3), x * 2.0, two]
    got = hnfc.lower(program)(x)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and torch.equal(g, w)
    code = hnfc.lower(program).code
    assert "torch.mul(x, 2.0)" in code  # inline where torch takes a number


def test_saved_optimized_module_loads_as_itself(tmp_path):
    # torch.save pickles the module; it must come back able to move its device literals
    model, inputs = CASES["mlp"].build()
    optimized = hnfc.optimize(model, inputs)
    torch.save(optimized, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=False)
    assert isinstance(loaded, HnfModule) and loaded.device == optimized.device
    assert loaded.report.rewrites == optimized.report.rewrites
    assert format_program(loaded.program) == format_program(optimized.program)
    assert torch.equal(pytree.tree_leaves(loaded(*inputs))[0], pytree.tree_leaves(optimized(*inputs))[0])
    assert loaded.to("meta").device == torch.device("meta")
