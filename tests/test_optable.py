"""The op table, entry by entry (parametrized over hnfc.ops.OPS, so a new op is covered as soon
as it is declared):

- every aten alias names a real torch overload, and its converter reads only arguments that
  overload's schema has (plus the frontend's "$out"/"$device"), returning arguments the op accepts;
- every example's type rule (`infer`) gives the shape and dtype torch produces when the lowered
  one-node program runs;
- torch in float64 and the mpmath reference agree within 3 bits of error (a few ulps) on samples
  from the example's domain, beyond the op's own conditioning at the sample (see the test).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hnfc import ops
from hnfc.foundation.dtypes import DTYPES, from_torch
from hnfc.ir import validate
from hnfc.runtime.lowering import lower, resolve_target
from hnfc.numerics.metric import bits_error, sample_inputs
from hnfc.numerics.reference import reference
from hnfc.foundation.types import TensorType
from tests.conftest import example_program, op_examples

# Ops that need no examples: leaves without a torch meaning of their own, and the structural ops
# whose meaning is another op's (opaque runs any aten call; getitem picks one of its results).
_NO_EXAMPLES = {"input", "param", "opaque", "getitem"}

MAX_BITS_F64 = 3.0  # "a few ulps": log2(1 + 7 ulps)


# ---------------------------------------------------------------------------------------------
# Table shape


def test_table_is_nonempty_and_names_match():
    assert len(ops.OPS) > 30
    for name, op in ops.OPS.items():
        assert op.name == name
        assert op.kind in {"pointwise", "reduction", "nn", "linalg", "shape", "leaf", "other"}, name


@pytest.mark.parametrize("name", sorted(set(ops.OPS) - _NO_EXAMPLES))
def test_every_op_has_examples_and_meaning(name):
    op = ops.OPS[name]
    assert op.examples, f"{name}: add an Example so the table-driven tests cover it"
    assert op.infer is not None and op.emit is not None and op.ref is not None, name
    for ex in op.examples:
        assert op.arity < 0 or len(ex.shapes) == op.arity, f"{name}: example has {len(ex.shapes)} shapes for arity {op.arity}"
        assert ex.domain is None or len(ex.domain) == len(ex.shapes), name
        assert ex.dtypes is None or len(ex.dtypes) == len(ex.shapes), name
        assert set(ex.attrs) <= set(op.attrs), f"{name}: example attrs {sorted(set(ex.attrs) - set(op.attrs))} not declared"
    lo, hi = op.domain
    assert lo < hi, name


# ---------------------------------------------------------------------------------------------
# Aliases


class _Recording(dict):
    """A dict that remembers which keys were read (by [] or get)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.read: set[str] = set()

    def __getitem__(self, k):
        self.read.add(k)
        return super().__getitem__(k)

    def get(self, k, default=None):
        self.read.add(k)
        return super().get(k, default)


_T = TensorType((2, 3), "f32")


def _dummy(arg):
    """A plausible value for a schema argument: tensors as V, the default where there is one."""
    t = str(arg.type)  # "Tensor", "List[int]", "Optional[float]", "List[Optional[Tensor]]"...
    if "Tensor" in t:
        v = ops.V(0, _T)
        return [v, ops.V(1, _T)] if t.startswith("List") else v
    if arg.has_default_value():
        return arg.default_value
    if t.startswith("Optional"):
        return None
    if t.startswith("List"):
        return [0.5] if "float" in t else [2, 3]
    return {"int": 1, "SymInt": 1, "float": 0.5, "bool": False, "number": 2.0, "Scalar": 2.0, "str": "none"}.get(t, None)


ALIASES = sorted(ops.ALIASES.items())


@pytest.mark.parametrize("target", [t for t, _ in ALIASES])
def test_alias_resolves_and_reads_its_schema(target):
    op, alias = ops.ALIASES[target]
    overload = resolve_target(target)
    assert isinstance(overload, torch._ops.OpOverload), f"{target} is not an op overload"
    assert f"aten.{overload.__name__}" == target or str(overload) == target
    schema = overload._schema
    args = _Recording({a.name: _dummy(a) for a in schema.arguments})
    args["$out"] = _T
    args["$device"] = torch.device("cpu")
    allowed = {a.name for a in schema.arguments} | {"$out", "$device"}
    try:
        converted = alias.convert(args)
    except KeyError as e:
        pytest.fail(f"{target} -> {op.name}: converter reads {e} which the schema {schema} does not have")
    assert args.read <= allowed, f"{target}: converter reads {sorted(args.read - allowed)} not in {schema}"
    if alias.output is not None:
        assert len(schema.returns) > alias.output, f"{target}: output {alias.output} of {len(schema.returns)} results"
    if converted is None:  # refused for these argument values; fine
        return
    ir_args, attrs = converted
    assert isinstance(ir_args, list) and isinstance(attrs, dict)
    op.check_call(ir_args, attrs)


def test_alias_targets_are_unique_overloads():
    targets = [a.target for op in ops.OPS.values() for a in op.aliases]
    assert len(targets) == len(set(targets))


# ---------------------------------------------------------------------------------------------
# Type rules against torch


def _run_lowered(program, inputs):
    gm = lower(program)
    with torch.no_grad():
        out = gm(*inputs)
    return out[0] if isinstance(out, (tuple, list)) else out


@pytest.mark.parametrize("op,ex", op_examples())
def test_type_rule_matches_torch(op, ex):
    program, domains = example_program(op, ex, "f32")
    validate(program)
    (inputs,) = sample_inputs([program.nodes[i].type for i in program.inputs], domains, 1, seed=1)
    out = _run_lowered(program, inputs)
    want = program.nodes[program.outputs[0]].type
    assert isinstance(out, torch.Tensor)
    got = TensorType(tuple(out.shape), from_torch(out.dtype))
    assert got == want, f"{op.name} {dict(ex.attrs)}: type rule says {want}, torch gives {got}"


# ---------------------------------------------------------------------------------------------
# torch (float64) against the reference


def _sensitivity(program, inputs, truth, seed: int) -> np.ndarray:
    """Bits by which the exact result moves when every float input is perturbed by up to
    PERTURB relative (a few ulps, the size of an algorithm's own rounding): the op's
    conditioning at this point. Max over two random perturbations."""
    rng = np.random.default_rng(seed)
    worst = np.zeros(truth.shape)
    for _ in range(2):
        moved_inputs = [
            x * (1 + torch.from_numpy(rng.uniform(-1.0, 1.0, tuple(x.shape))) * PERTURB) if x.is_floating_point() else x for x in inputs
        ]
        moved = reference(program, moved_inputs).outputs[0]
        worst = np.maximum(worst, bits_error(moved, truth))
    return worst


PERTURB = 2.0**-49  # 16 float64 units of roundoff


@pytest.mark.parametrize("op,ex", op_examples(need_ref=True))
def test_reference_agrees_with_torch_f64(op, ex):
    """torch's float64 result is within MAX_BITS_F64 of the truth, beyond what the op's own
    conditioning at the sample makes unavoidable (a backward-stable kernel's error is about
    the condition number times its rounding; `_sensitivity` measures that from the reference).
    Well-conditioned samples therefore get 3 bits; x - mean in layer_norm near the mean, or a
    dot product that cancels, get what an ulp-level input perturbation costs the exact result.
    A wrong reference (another formula, eps misplaced, a threshold approximation) differs on
    well-conditioned samples too and fails."""
    program, domains = example_program(op, ex, "f64")
    out_type = program.nodes[program.outputs[0]].type
    for seed, mode in ((2, "value"), (3, "bits")):
        (inputs,) = sample_inputs([program.nodes[i].type for i in program.inputs], domains, 1, mode=mode, seed=seed)
        got = _run_lowered(program, inputs)
        ref = reference(program, inputs)
        truth = ref.outputs[0]
        assert ref.converged
        assert tuple(got.shape) == truth.shape
        if DTYPES[out_type.dtype].kind != "float":
            np.testing.assert_array_equal(got.numpy().astype(np.float64), truth, err_msg=f"{op.name}: exact op differs")
            continue
        bits = bits_error(got, truth)
        if bits.max() <= MAX_BITS_F64:
            continue
        excess = bits - _sensitivity(program, inputs, truth, seed)
        worst = int(np.argmax(excess))
        assert excess.max() <= MAX_BITS_F64, (
            f"{op.name} {dict(ex.attrs)} ({mode} samples): {bits.flat[worst]:.1f} bits of error, "
            f"{excess.flat[worst]:.1f} beyond the op's conditioning; "
            f"torch {got.flatten()[worst].item()!r} vs reference {truth.flatten()[worst]!r} "
            f"at inputs {[x.flatten()[worst % x.numel()].item() if x.numel() else None for x in inputs]}"
        )


@pytest.mark.parametrize("op,ex", [p for p in op_examples(need_ref=True) if p.values[0].integral])
def test_integral_ops_map_integers_to_integers(op, ex):
    """`integral` (legalize keeps exact integers exact through these ops): the reference meaning
    of integer-valued arguments is integer-valued."""
    program, domains = example_program(op, ex, "f64")
    (inputs,) = sample_inputs([program.nodes[i].type for i in program.inputs], domains, 1, mode="value", seed=5)
    inputs = [torch.round(x * 7.0) if x.is_floating_point() else x for x in inputs]
    truth = np.asarray(reference(program, inputs).outputs[0], dtype=np.float64)
    np.testing.assert_array_equal(truth, np.round(truth), err_msg=f"{op.name}: an integer argument gave a fraction")
