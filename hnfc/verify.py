"""Verification: run programs in torch, measure them against the mpmath reference.

In: the original program, a candidate (equal over the reals), input sets. Out: bits of error
per output before and after (mean and max over all elements and input sets), and whether each
output may take the candidate. Verification is the judge, the cost model only the guide: an
output that measures worse than the original (beyond the configured tolerance) is refused.
Also here: `observe`, the value ranges a program shows on example inputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import Sequence

import numpy as np
import torch

from hnfc.config import Config
from hnfc.dtypes import DTYPES
from hnfc.ir.program import Program
from hnfc.lowering import lower
from hnfc.metric import bits_error, sample_inputs
from hnfc.reference import reference
from hnfc.types import TensorType


def flat(program: Program, outputs: Sequence[int] | None = None) -> Program:
    """The same program called with flat tensors and returning a flat tuple."""
    meta = {k: v for k, v in program.meta.items() if k not in ("in_spec", "out_spec")}
    return dataclasses.replace(
        program,
        outputs=tuple(program.outputs if outputs is None else outputs),
        meta=MappingProxyType(meta),
    )


def run(program: Program, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return list(lower(flat(program))(*inputs))


def observe(program: Program, input_sets: Sequence[Sequence[torch.Tensor]]) -> dict[int, tuple[float, float]]:
    """(min, max) of every float value of the program over all input sets (NaNs ignored)."""
    ids = [i for i, n in enumerate(program.nodes) if isinstance(n.type, TensorType) and DTYPES[n.type.dtype].is_float and n.op != "const"]
    out: dict[int, tuple[float, float]] = {}
    if not ids:
        return out
    lowered = lower(flat(program, ids))
    for inputs in input_sets:
        with torch.no_grad():
            values = lowered(*inputs)
        for i, v in zip(ids, values):
            v = v.detach().double()
            v = v[~torch.isnan(v)]
            if v.numel():
                lo, hi = float(v.min()), float(v.max())
                out[i] = (min(lo, out[i][0]), max(hi, out[i][1])) if i in out else (lo, hi)
    return out


@dataclass(frozen=True)
class OutputCheck:
    index: int
    before_mean: float
    before_max: float
    after_mean: float
    after_max: float
    accepted: bool


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
    sets += sample_inputs(types, domains, half, mode="value", seed=config.seed)
    sets += sample_inputs(types, domains, config.samples - half, mode="bits", seed=config.seed + 1)
    return [list(s) for s in sets]


def measure(original: Program, candidate: Program, input_sets, config: Config) -> list[OutputCheck]:
    """Bits of error of both programs' outputs against the reference of the original."""
    errs_before: list[list[np.ndarray]] = [[] for _ in original.outputs]
    errs_after: list[list[np.ndarray]] = [[] for _ in original.outputs]
    for inputs in input_sets:
        truth = reference(flat(original), inputs).outputs
        for k, (a, b, t) in enumerate(zip(run(original, inputs), run(candidate, inputs), truth)):
            if a.is_floating_point():
                errs_before[k].append(bits_error(a, t).ravel())
                errs_after[k].append(bits_error(b, t).ravel())
    out = []
    for k in range(len(original.outputs)):
        if not errs_before[k]:
            out.append(OutputCheck(k, 0.0, 0.0, 0.0, 0.0, True))
            continue
        before, after = np.concatenate(errs_before[k]), np.concatenate(errs_after[k])
        ok = after.mean() <= before.mean() + config.tolerance_mean_bits and after.max() <= before.max() + config.tolerance_max_bits
        out.append(OutputCheck(k, float(before.mean()), float(before.max()), float(after.mean()), float(after.max()), bool(ok)))
    return out
