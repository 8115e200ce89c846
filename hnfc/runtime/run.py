"""Running IR programs on inputs: the lowered program as a function, observed value ranges, and the
input sets every judge runs on (the examples plus samples inside the declared domains).

In: a `Program` and input tensors. Out: output tensors, per-value (min, max), input sets.
It sits just above lowering, below verify and precision: judging a rewrite means running it.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Sequence

import torch

from hnfc.foundation.config import Config
from hnfc.foundation.dtypes import DTYPES
from hnfc.foundation.types import TensorType
from hnfc.ir.program import Program
from hnfc.numerics.metric import sample_inputs
from hnfc.runtime.lowering import lower


def flat(program: Program, outputs: Sequence[int] | None = None) -> Program:
    """The same program called with flat tensors and returning a flat tuple."""
    meta = {k: v for k, v in program.meta.items() if k not in ("in_spec", "out_spec")}
    return dataclasses.replace(
        program,
        outputs=tuple(program.outputs if outputs is None else outputs),
        meta=MappingProxyType(meta),
    )


def runner(program: Program):
    """The program lowered once, as a function of flat inputs returning a list (no autograd)."""
    lowered = lower(flat(program))

    def run(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        with torch.no_grad():
            return list(lowered(*inputs))

    return run


def observe(program: Program, input_sets: Sequence[Sequence[torch.Tensor]]) -> dict[int, tuple[float, float]]:
    """(min, max) of every float value of the program over all input sets (NaNs ignored)."""
    ids = [i for i, n in enumerate(program.nodes) if isinstance(n.type, TensorType) and DTYPES[n.type.dtype].is_float and n.op != "const"]
    out: dict[int, tuple[float, float]] = {}
    if not ids:
        return out
    run = runner(flat(program, ids))
    for inputs in input_sets:
        for i, v in zip(ids, run(inputs)):
            v = v.detach()
            if not v.numel():
                continue
            lo, hi = (float(t) for t in torch.aminmax(v))  # one pass; NaN if any element is
            if lo != lo or hi != hi:
                v = v[~torch.isnan(v)]
                if not v.numel():
                    continue
                lo, hi = (float(t) for t in torch.aminmax(v))
            out[i] = (min(lo, out[i][0]), max(hi, out[i][1])) if i in out else (lo, hi)
    return out


def input_domains(program: Program, example_inputs: Sequence[torch.Tensor], input_ranges: dict[int, tuple[float, float]]) -> list:
    """The declared range of each input, else the range its example values span."""
    out = []
    for k, x in enumerate(example_inputs):
        if k in input_ranges:
            out.append(tuple(input_ranges[k]))
        elif x.numel() == 0 or x.is_complex():
            out.append(None)
        else:
            lo, hi = float(x.min()), float(x.max())
            out.append((lo - 1, hi + 1) if lo == hi and x.is_floating_point() else (lo, hi))
    return out


def verification_inputs(program: Program, example_inputs, input_ranges, config: Config) -> list[list[torch.Tensor]]:
    types = [program.nodes[i].type for i in program.inputs]
    domains = input_domains(program, example_inputs, input_ranges)
    sets = [list(example_inputs)]
    half = (config.samples + 1) // 2
    # A bounded sample (issue 13): at most SAMPLE_ROWS distinct leading rows are drawn per input,
    # then repeated to the input's size (every element still lies in the declared domain).
    small = [_capped(t) for t in types]
    drawn = sample_inputs(small, domains, half, mode="value", seed=config.seed)
    drawn += sample_inputs(small, domains, config.samples - half, mode="bits", seed=config.seed + 1)
    sets += [[_tiled(x, t) for x, t in zip(s, types)] for s in drawn]
    return [list(s) for s in sets]


SAMPLE_ROWS = 4096  # distinct leading rows drawn per sampled input


def _capped(t: TensorType) -> TensorType:
    if isinstance(t, TensorType) and not t.is_symbolic and t.rank and t.shape[0] > SAMPLE_ROWS:
        return TensorType((SAMPLE_ROWS, *t.shape[1:]), t.dtype)
    return t


def _tiled(x: torch.Tensor, t: TensorType) -> torch.Tensor:
    if not isinstance(t, TensorType) or t.is_symbolic or x.dim() == 0 or x.shape[0] == t.shape[0]:
        return x
    reps = -(-t.shape[0] // x.shape[0])
    return x.repeat(reps, *([1] * (x.dim() - 1)))[: t.shape[0]].contiguous()
