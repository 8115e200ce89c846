"""Bits of error, float formats as ordered sets, and input sampling.

In: computed results (torch tensors of any float dtype, or numpy arrays), true values (float64
arrays, or object arrays of mpmath numbers from `hnfc.numerics.reference`), input types and domains.
Out: bits of error per element (numpy float64), summaries, and sampled inputs (torch tensors).

Bits of error (DESIGN.md, "Verification"), as in Herbie: with `truth` rounded to the result's
format (round to nearest, ties to even), the error of one element is

    log2(1 + |ord(result) - ord(truth)|)

where `ord` numbers the values of the format in order (sign-magnitude bit pattern made
monotone; -0.0 and +0.0 are the same number, 0). So a correctly rounded result has 0 bits,
the next float 1 bit, three floats away 2 bits. Non-finite values: when the rounded truth or the
result is NaN or infinite, the error is 0 if both are NaN or both the same infinity, else the
format's bit width (16 for bf16/f16, 32 for f32, 64 for f64), which is also the cap. A finite
truth beyond the format's range rounds to infinity, so a finite result there (even the largest
finite float) counts as maximal: the correctly rounded answer is inf.

Rounding is exact and done here, not by torch: torch converts float64 to bfloat16/float16
through float32, rounding twice (1 + 2^-8 + 2^-30 becomes 1.0 instead of 1 + 2^-7).
A float64 truth has itself been rounded once; pass the mpmath values (`reference(...,
return_mp=True).mp_outputs`) to avoid even that double rounding.

Nothing here imports torch at module import.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import mpmath
import numpy as np
from mpmath.libmp import normalize, round_nearest

from hnfc.foundation.dtypes import DTYPES, FLOAT_ORDER, DType
from hnfc.foundation.types import TensorType

# ---------------------------------------------------------------------------------------------
# Float formats


FORMATS: dict[str, DType] = {name: DTYPES[name] for name in FLOAT_ORDER}  # the float dtypes

_NUMPY_NAMES = {"float16": "f16", "float32": "f32", "float64": "f64"}


def format_of(x: Any) -> DType:
    """The float format of a torch tensor, numpy array, torch/numpy dtype or short dtype name."""
    if isinstance(x, DType):
        return x
    if isinstance(x, str):
        name = x
    elif type(x).__module__.startswith("torch"):
        from hnfc.foundation.dtypes import from_torch

        name = from_torch(getattr(x, "dtype", x))
    else:
        dt = np.dtype(getattr(x, "dtype", x))
        name = _NUMPY_NAMES.get(dt.name, dt.name)
    if name not in FORMATS:
        raise ValueError(f"not a float format: {name}")
    return FORMATS[name]


def to_numpy64(x: Any) -> np.ndarray:
    """Values of a torch tensor or array-like as float64 (exact for every float format)."""
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def round_to_format(x: Any, fmt: Any) -> np.ndarray:
    """float64 values rounded to `fmt` (nearest, ties to even; overflow to inf), as float64."""
    fmt = format_of(fmt)
    x = np.asarray(x, dtype=np.float64)
    if fmt.name == "f64":
        return x.copy()
    if fmt.name == "f32":  # the hardware conversion: nearest-even, subnormals, overflow to inf
        with np.errstate(all="ignore"):
            return x.astype(np.float32).astype(np.float64)
    with np.errstate(all="ignore"):
        _, e = np.frexp(x)  # x = m 2^e, 0.5 <= |m| < 1: the leading bit has exponent e - 1
        q = np.maximum(e - 1, fmt.emin) - (fmt.mantissa - 1)  # exponent of one ulp at x
        r = np.ldexp(np.rint(np.ldexp(x, -q)), q)  # both scalings are exact
        return np.where(np.isfinite(r) & (np.abs(r) > fmt.max), np.copysign(np.inf, x), r)


def mpf_to_float(x: Any, fmt: Any = "f64") -> float:
    """One mpmath number rounded to `fmt` (nearest, ties to even), as a Python float."""
    fmt = format_of(fmt)
    if not isinstance(x, mpmath.mpf):
        if isinstance(x, mpmath.mpc):
            raise ValueError(f"complex value {x} where a real is expected")
        x = mpmath.mpf(x)
    sign, man, exp, bc = x._mpf_
    if not man:
        return float(x)  # zero, inf or nan
    e = exp + bc - 1  # exponent of the leading bit
    k = min(fmt.mantissa, e - fmt.qmin + 1)  # significant bits the format keeps at this magnitude
    if k >= 1:
        _, m, ex, _ = normalize(sign, man, exp, bc, k, round_nearest)
        try:
            v = math.ldexp(int(m), ex)
        except OverflowError:
            v = math.inf
        if v > fmt.max:
            v = math.inf
    elif k == 0:  # in [2^(qmin-1), 2^qmin): ties (a power of two, man == 1) go to even, i.e. 0
        v = 0.0 if man == 1 else math.ldexp(1.0, fmt.qmin)
    else:
        v = 0.0
    return -v if sign else v


def round_mp(x: Any, fmt: Any = "f64") -> np.ndarray:
    """An object array of mpmath numbers rounded to `fmt`, as a float64 array."""
    fmt = format_of(fmt)
    x = np.asarray(x, dtype=object)
    with np.errstate(over="ignore", invalid="ignore"):  # flags raised by math.ldexp / float(nan)
        out = np.frompyfunc(lambda v: mpf_to_float(v, fmt), 1, 1)(x)
    return np.asarray(out, dtype=np.float64).reshape(x.shape)


def _bits(x: np.ndarray, fmt: DType) -> np.ndarray:
    """Bit patterns (as uint64) of float64 values representable in `fmt`."""
    if fmt.name == "f64":
        return x.view(np.uint64).copy()
    if fmt.name == "f32":
        return x.astype(np.float32).view(np.uint32).astype(np.uint64)
    if fmt.name == "f16":
        return x.astype(np.float16).view(np.uint16).astype(np.uint64)
    return (x.astype(np.float32).view(np.uint32) >> np.uint32(16)).astype(np.uint64)  # bf16


def _from_bits(b: np.ndarray, fmt: DType) -> np.ndarray:
    b = np.asarray(b, dtype=np.uint64)
    if fmt.name == "f64":
        return b.view(np.float64).copy()
    if fmt.name == "f32":
        return b.astype(np.uint32).view(np.float32).astype(np.float64)
    if fmt.name == "f16":
        return b.astype(np.uint16).view(np.float16).astype(np.float64)
    return (b.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)


def ordinal(x: Any, fmt: Any) -> np.ndarray:
    """Position of each value in `fmt`'s order (int64; 0 for ±0, n for the n-th float above 0).

    The values must be representable in `fmt` (round them first). inf and NaN get positions
    beyond the largest finite float (NaN's depends on its payload).
    """
    fmt = format_of(fmt)
    x = np.array(x, dtype=np.float64)  # a contiguous copy; keeps 0-d arrays 0-d
    b = _bits(x, fmt)
    mag = (b & np.uint64((1 << (fmt.bits - 1)) - 1)).astype(np.int64)
    neg = (b >> np.uint64(fmt.bits - 1)) != 0
    return np.where(neg, -mag, mag)


def from_ordinal(k: Any, fmt: Any) -> np.ndarray:
    """Inverse of `ordinal` (position 0 gives +0.0), as float64."""
    fmt = format_of(fmt)
    k = np.asarray(k, dtype=np.int64)
    mag = np.abs(k).astype(np.uint64)
    sign = np.where(k < 0, np.uint64(1 << (fmt.bits - 1)), np.uint64(0))
    return _from_bits(mag | sign, fmt)


def ulp_distance(a: Any, b: Any, fmt: Any) -> np.ndarray:
    """Number of steps between values representable in `fmt` (uint64; -0 and +0 are 0 apart)."""
    fmt = format_of(fmt)
    oa, ob = ordinal(a, fmt), ordinal(b, fmt)
    ua, ub = np.abs(oa).astype(np.uint64), np.abs(ob).astype(np.uint64)
    same_side = (oa >= 0) == (ob >= 0)
    # computed in uint64: for float64 the difference of two int64 positions can overflow int64
    diff = np.maximum(ua, ub) - np.minimum(ua, ub)
    return np.where(same_side | (oa == 0) | (ob == 0), diff, ua + ub)


# ---------------------------------------------------------------------------------------------
# Bits of error


def bits_error(result: Any, truth: Any) -> np.ndarray:
    """Bits of error of each element of `result` against `truth`, in result's format (float64).

    result: torch tensor (float64/float32/float16/bfloat16) or numpy float array.
    truth: float64 array-like, torch tensor, or object array of mpmath numbers (exact rounding);
    broadcast to result's shape. See the module docstring for the definition.
    """
    if not type(result).__module__.startswith("torch"):
        result = np.asarray(result)
    fmt = format_of(result)
    r = to_numpy64(result)
    t_raw = to_numpy64(truth) if type(truth).__module__.startswith("torch") else np.asarray(truth)
    if t_raw.dtype == object:
        t = round_mp(t_raw, fmt)
    else:
        t = round_to_format(t_raw.astype(np.float64), fmt)
    t = np.broadcast_to(t, r.shape)
    finite = np.isfinite(r) & np.isfinite(t)
    rf, tf = np.where(finite, r, 0.0), np.where(finite, t, 0.0)
    d = ulp_distance(rf, tf, fmt).astype(np.float64)
    with np.errstate(all="ignore"):
        bits = np.minimum(np.log2(1.0 + d), float(fmt.bits))
    same = (np.isnan(r) & np.isnan(t)) | (r == t)
    return np.where(finite, bits, np.where(same, 0.0, float(fmt.bits)))


def error_summary(results: Any, truths: Any) -> dict[str, float]:
    """Mean and max bits of error over all elements of all outputs.

    results: a sequence of tensors/arrays (or a single one); truths: the matching sequence of
    true values, or a `hnfc.numerics.reference.Reference` (its exact mpmath outputs are used when kept).
    Returns {"mean": ..., "max": ..., "elements": ...} (mean and max are 0.0 when empty).
    """
    if hasattr(truths, "outputs"):
        truths = truths.mp_outputs if getattr(truths, "mp_outputs", None) is not None else truths.outputs
    if not isinstance(results, (list, tuple)):
        results, truths = [results], [truths]
    if len(results) != len(truths):
        raise ValueError(f"{len(results)} results but {len(truths)} true values")
    errs = [bits_error(r, t).ravel() for r, t in zip(results, truths)]
    allv = np.concatenate(errs) if errs else np.zeros(0)
    if allv.size == 0:
        return {"mean": 0.0, "max": 0.0, "elements": 0}
    return {"mean": float(allv.mean()), "max": float(allv.max()), "elements": int(allv.size)}


# ---------------------------------------------------------------------------------------------
# Sampling

DEFAULT_FLOAT_DOMAIN = (-1.0, 1.0)
DEFAULT_INT_DOMAIN = (0, 10)
MODES = ("value", "bits")


def representable_bounds(lo: float, hi: float, fmt: Any) -> tuple[float, float]:
    """The smallest and largest values of `fmt` inside [lo, hi]; ValueError if there is none."""
    fmt = format_of(fmt)
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ValueError(f"bad domain ({lo}, {hi})")
    rlo, rhi = (float(v) for v in round_to_format(np.array([lo, hi]), fmt))
    if rlo < lo:
        rlo = float(from_ordinal(ordinal(rlo, fmt) + 1, fmt))
    if rhi > hi:
        rhi = float(from_ordinal(ordinal(rhi, fmt) - 1, fmt))
    if rlo > rhi:
        raise ValueError(f"no {fmt.name} value lies in [{lo}, {hi}]")
    return rlo, rhi


def _sample_float(rng, shape, lo, hi, fmt: DType, mode: str) -> np.ndarray:
    if mode == "value":
        lo, hi = max(lo, -fmt.max), min(hi, fmt.max)  # infinite bounds: the finite range
    rlo, rhi = representable_bounds(lo, hi, fmt)
    if mode == "bits":
        k = rng.integers(ordinal(rlo, fmt), ordinal(rhi, fmt), size=shape, endpoint=True, dtype=np.int64)
        return from_ordinal(k, fmt)
    if np.isfinite(rhi - rlo):
        u = rng.uniform(rlo, rhi, size=shape)
    else:  # the whole float64 range: its width overflows
        u = 2.0 * rng.uniform(rlo / 2, rhi / 2, size=shape)
    return np.clip(round_to_format(u, fmt), rlo, rhi)


def _sample_int(rng, shape, lo, hi, dtype: str) -> np.ndarray:
    if dtype == "bool":
        lims = (0, 1)
    else:
        info = np.iinfo(DTYPES[dtype].torch_name)
        lims = (int(info.min), int(info.max))
    ilo = max(math.ceil(lo) if math.isfinite(lo) else lims[0], lims[0])
    ihi = min(math.floor(hi) if math.isfinite(hi) else lims[1], lims[1])
    if ilo > ihi:
        raise ValueError(f"no {dtype} value lies in [{lo}, {hi}]")
    return rng.integers(ilo, ihi, size=shape, endpoint=True, dtype=np.int64)


def _to_torch(arr: np.ndarray, dtype: str):
    import torch

    from hnfc.foundation.dtypes import to_torch

    if DTYPES[dtype].kind == "float":
        # exact: the values are representable in `dtype`
        src = arr.astype(np.float32) if dtype in ("f32", "bf16") else arr.astype(np.float16) if dtype == "f16" else arr
        return torch.from_numpy(np.ascontiguousarray(src)).to(to_torch(dtype))
    if dtype == "bool":
        return torch.from_numpy(np.ascontiguousarray(arr != 0))
    return torch.from_numpy(np.ascontiguousarray(arr)).to(to_torch(dtype))


def sample_inputs(
    types: Sequence[TensorType],
    domains: Sequence[tuple[float, float] | None] | None,
    n: int,
    *,
    mode: str = "value",
    seed: int = 0,
) -> list[list[Any]]:
    """`n` samples of inputs of the given types, each a list of torch tensors (one per type).

    domains: one (lo, hi) per type, or None for the default: (-1, 1) for floats, (0, 10) for
    integers, (0, 1) for bool. Values are representable in the dtype and lie in [lo, hi].
    mode "value": uniform in value over [lo, hi] (then rounded to the dtype; infinite bounds
    mean the dtype's finite range). mode "bits": uniform over the dtype's floats in [lo, hi] by
    position in their order, so each binade gets its share (finds tiny and huge magnitudes).
    Integer and bool inputs are uniform integers in the domain in both modes.
    Deterministic for a given seed.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    types = list(types)
    domains = list(domains) if domains is not None else [None] * len(types)
    if len(domains) != len(types):
        raise ValueError(f"{len(types)} input types but {len(domains)} domains")
    rng = np.random.default_rng(seed)
    per_input = []
    for i, (t, dom) in enumerate(zip(types, domains)):
        if not isinstance(t, TensorType):
            raise ValueError(f"input {i}: cannot sample a value of type {t}")
        if t.is_symbolic:
            raise ValueError(f"input {i}: shape {t} is symbolic; give concrete sizes to sample")
        kind = DTYPES[t.dtype].kind
        shape = (n, *t.shape)
        if kind == "float":
            lo, hi = dom if dom is not None else DEFAULT_FLOAT_DOMAIN
            arr = _sample_float(rng, shape, float(lo), float(hi), FORMATS[t.dtype], mode)
        elif kind in ("int", "bool"):
            lo, hi = dom if dom is not None else ((0, 1) if kind == "bool" else DEFAULT_INT_DOMAIN)
            arr = _sample_int(rng, shape, float(lo), float(hi), t.dtype)
        else:
            raise ValueError(f"input {i}: cannot sample dtype {t.dtype}")
        per_input.append(_to_torch(arr, t.dtype))
    return [[x[s].clone() for x in per_input] for s in range(n)]


def sample_program_inputs(
    program: Any,
    n: int,
    input_ranges: Mapping[int | str, tuple[float, float]] | None = None,
    *,
    mode: str = "value",
    seed: int = 0,
) -> list[list[Any]]:
    """`sample_inputs` for a program's inputs; `input_ranges` keys are positions or names."""
    types = [program.nodes[i].type for i in program.inputs]
    names = list(program.input_names)
    ranges = dict(input_ranges or {})
    unknown = [k for k in ranges if not (k in names or (isinstance(k, int) and 0 <= k < len(names)))]
    if unknown:
        raise ValueError(f"input_ranges names no program input: {unknown} (inputs: {names})")
    domains = [ranges.get(i, ranges.get(name)) for i, name in enumerate(names)]
    return sample_inputs(types, domains, n, mode=mode, seed=seed)
