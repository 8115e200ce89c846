"""Bits of error, float orders, exact rounding and input sampling (hnfc.numerics.metric)."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hnfc import bits_error, sample_inputs
from hnfc.ir import Builder, TensorType
from hnfc.numerics.metric import (
    FORMATS,
    error_summary,
    sample_program_inputs,
    format_of,
    from_ordinal,
    mpf_to_float,
    ordinal,
    representable_bounds,
    round_mp,
    round_to_format,
    ulp_distance,
)

TORCH = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32, "f64": torch.float64}


def nextafter(x: float, fmt: str, steps: int = 1) -> float:
    return float(from_ordinal(ordinal(x, fmt) + steps, fmt))


# ---------------------------------------------------------------------------------------------
# exact values


@pytest.mark.parametrize("fmt", ["f16", "bf16", "f32", "f64"])
def test_exact_values(fmt):
    dt = TORCH[fmt]
    x = 1.5
    up1, up3 = nextafter(x, fmt, 1), nextafter(x, fmt, 3)
    down2 = nextafter(x, fmt, -2)
    result = torch.tensor([x, up1, up3, down2, -0.0, 0.0], dtype=dt)
    truth = np.array([x, x, x, x, 0.0, -0.0])
    assert bits_error(result, truth).tolist() == [0.0, 1.0, 2.0, math.log2(3), 0.0, 0.0]


@pytest.mark.parametrize("fmt,width", [("f16", 16), ("bf16", 16), ("f32", 32), ("f64", 64)])
def test_non_finite(fmt, width):
    dt = TORCH[fmt]
    inf, nan = math.inf, math.nan
    result = torch.tensor([nan, inf, -inf, 1.0, inf, nan, 1.0, -inf], dtype=dt)
    truth = np.array([1.0, 1.0, 1.0, inf, inf, nan, nan, inf])
    expect = [width, width, width, width, 0.0, 0.0, width, width]
    assert bits_error(result, truth).tolist() == expect


def test_overflowing_truth_is_inf():
    # 1e39 rounds to inf in float32: inf is the correct answer, the largest float is maximal error
    r = torch.tensor([math.inf, 3.4028234663852886e38], dtype=torch.float32)
    assert bits_error(r, np.array([1e39, 1e39])).tolist() == [0.0, 32.0]
    # just below max + half an ulp rounds to max
    big = 3.4028234663852886e38 + 2.0**103 * 0.99
    assert bits_error(torch.tensor([3.4028234663852886e38]), np.array([big])).tolist() == [0.0]


def test_numpy_results_and_cap():
    r = np.array([1.0, -1.0], dtype=np.float32)
    assert bits_error(r, np.array([1.0, 1.0])).tolist()[0] == 0.0
    # +1 to -1: twice 1.0's bit pattern 0x3F800000 floats apart
    assert bits_error(r, np.array([1.0, 1.0]))[1] == math.log2(1 + 2 * 0x3F800000)
    huge = np.array([np.finfo(np.float64).max])
    assert 63.99 < bits_error(-huge, huge)[0] <= 64.0


def test_float64_extremes_do_not_overflow():
    tiny = 5e-324
    assert bits_error(np.array([-tiny]), np.array([tiny]))[0] == math.log2(3)  # -tiny, 0, +tiny: 2 steps
    assert ulp_distance(np.array([-tiny]), np.array([tiny]), "f64")[0] == 2


def test_mp_truth_is_rounded_exactly():
    with mpmath.workprec(200):
        # exactly halfway between 1 and the next bf16 (1 + 2^-7): ties to even give 1
        half = mpmath.mpf(1) + mpmath.mpf(2) ** -8
        above = half + mpmath.mpf(2) ** -100
        truth = np.array([half, above], dtype=object)
    r = torch.tensor([1.0, 1.0 + 2**-7], dtype=torch.bfloat16)
    assert bits_error(r, truth).tolist() == [0.0, 0.0]


def test_round_to_format_avoids_double_rounding():
    # torch rounds float64 -> bfloat16 through float32: 1 + 2^-8 + 2^-30 would become 1.0
    x = np.array([1 + 2**-8 + 2**-30, 1 + 2**-11 + 2**-40])
    assert round_to_format(x[:1], "bf16")[0] == 1 + 2**-7
    assert round_to_format(x[1:], "f16")[0] == 1 + 2**-10
    assert bits_error(torch.tensor([1 + 2**-7], dtype=torch.bfloat16), x[:1])[0] == 0.0


@pytest.mark.parametrize("fmt", ["f16", "bf16", "f32", "f64"])
def test_subnormal_and_overflow_rounding(fmt):
    f = FORMATS[fmt]
    with mpmath.workprec(300):
        smallest = mpmath.mpf(2) ** f.qmin
        big = mpmath.mpf(f.max)
        ulp_max = mpmath.mpf(2) ** (int(mpmath.floor(mpmath.log(big, 2))) - f.mantissa + 1)
        x = [smallest / 2, smallest * 0.75, smallest * 1.5, smallest * 2.5, -smallest * 2.5, big + ulp_max / 2, big + ulp_max / 2.1, -big * 2]
        s = float(smallest)
        expect = [0.0, s, 2 * s, 2 * s, -2 * s, math.inf, f.max, -math.inf]
        assert round_mp(np.array(x, dtype=object), fmt).tolist() == expect
    if fmt != "f64":  # the same in float64
        assert round_to_format(np.array([float(v) for v in x]), fmt).tolist() == expect


finite64 = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=300, deadline=None)
@given(finite64)
def test_rounding_agrees_with_hardware(x):
    a = np.array([x])
    with np.errstate(over="ignore"):
        assert round_to_format(a, "f32")[0] == np.float32(x) or (math.isnan(np.float32(x)))
        assert round_to_format(a, "f16")[0] == float(np.float16(x))
    with mpmath.workprec(64):
        m = mpmath.mpf(x)
    for fmt in ("f16", "bf16", "f32", "f64"):
        assert mpf_to_float(m, fmt) == round_to_format(a, fmt)[0]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["f16", "bf16", "f32", "f64"]), finite64, finite64)
def test_distance_properties(fmt, a, b):
    a, b = round_to_format(np.array([a, b]), fmt)
    if not (np.isfinite(a) and np.isfinite(b)):
        return
    dt = TORCH[fmt]
    d_ab = bits_error(torch.tensor([a], dtype=dt), np.array([b]))[0]
    d_ba = bits_error(torch.tensor([b], dtype=dt), np.array([a]))[0]
    assert d_ab == d_ba  # symmetric
    assert 0 <= d_ab <= FORMATS[fmt].bits
    assert (d_ab == 0) == (a == b)
    # monotone: moving the result one more float away from the truth never lowers the error
    step = 1 if ordinal(a, fmt) >= ordinal(b, fmt) else -1
    further = float(from_ordinal(ordinal(a, fmt) + step, fmt))
    if np.isfinite(further):
        assert bits_error(torch.tensor([further], dtype=dt), np.array([b]))[0] >= d_ab


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["f16", "bf16", "f32", "f64"]), st.integers(-(2**62), 2**62))
def test_ordinal_roundtrip(fmt, k):
    f = FORMATS[fmt]
    inf_pos = int(ordinal(math.inf, fmt))
    k = max(-inf_pos, min(inf_pos, k)) if f.bits == 64 else k % (2 * inf_pos + 1) - inf_pos
    v = from_ordinal(k, fmt)
    assert int(ordinal(v, fmt)) == k
    if k < inf_pos:  # order-preserving
        assert from_ordinal(k + 1, fmt) > v


def test_truth_types():
    r = torch.tensor([1.0, 2.0], dtype=torch.bfloat16)
    assert bits_error(r, torch.tensor([1.0, 2.0], dtype=torch.bfloat16)).tolist() == [0.0, 0.0]
    assert bits_error(r, np.array(2.0)).tolist() == [math.log2(1 + 2**7), 0.0]  # broadcast; 1 to 2: 128 bf16 steps
    assert bits_error([1.0], [1.0]).tolist() == [0.0]  # Python floats are float64


def test_format_of():
    assert format_of(torch.zeros(1, dtype=torch.bfloat16)).name == "bf16"
    assert format_of(np.zeros(1, dtype=np.float16)).name == "f16"
    assert format_of(torch.float32).name == "f32"
    with pytest.raises(ValueError):
        format_of(np.zeros(1, dtype=np.int64))


def test_error_summary():
    r = [torch.tensor([1.0, nextafter(1.0, "f32")]), torch.tensor([2.0])]
    t = [np.array([1.0, 1.0]), np.array([2.0])]
    s = error_summary(r, t)
    assert s["max"] == 1.0 and s["mean"] == pytest.approx(1 / 3)


# ---------------------------------------------------------------------------------------------
# sampling


@pytest.mark.parametrize("mode", ["value", "bits"])
@pytest.mark.parametrize("fmt", ["f16", "bf16", "f32", "f64"])
def test_samples_in_domain_and_representable(mode, fmt):
    lo, hi = 1e-3, 7.3  # neither bound is representable in any of the formats
    types = [TensorType((50,), fmt), TensorType((3, 4), "i64"), TensorType((), fmt), TensorType((8,), "bool")]
    samples = sample_inputs(types, [(lo, hi), (-5, 5), (-2.5, -2.5), None], 20, mode=mode, seed=3)
    assert len(samples) == 20
    for x, i, s, b in samples:
        assert x.dtype == TORCH[fmt] and x.shape == (50,)
        v = x.double().numpy()
        assert (v >= lo).all() and (v <= hi).all()
        assert (round_to_format(v, fmt) == v).all()
        assert i.dtype == torch.int64 and (i >= -5).all() and (i <= 5).all()
        assert s.shape == () and s.item() == -2.5
        assert b.dtype == torch.bool


def test_sampling_deterministic():
    t = [TensorType((10,), "f32")]
    a = sample_inputs(t, None, 3, seed=7)
    b = sample_inputs(t, None, 3, seed=7)
    c = sample_inputs(t, None, 3, seed=8)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    assert all(((s[0] >= -1) & (s[0] <= 1)).all() for s in a)  # default domain


def test_bits_mode_covers_binades():
    t = [TensorType((2000,), "f32")]
    (bits,) = sample_inputs(t, [(1e-8, 1.0)], 1, mode="bits", seed=0)[0]
    (value,) = sample_inputs(t, [(1e-8, 1.0)], 1, mode="value", seed=0)[0]
    assert (bits < 1e-6).float().mean() > 0.2  # 7 of 26 binades lie below 1e-6
    assert (value < 1e-6).float().mean() < 0.01
    assert len(set(np.frexp(bits.double().numpy())[1].tolist())) >= 20


def test_bits_mode_whole_range():
    (x,) = sample_inputs([TensorType((4000,), "f16")], [(-math.inf, math.inf)], 1, mode="bits", seed=1)[0]
    v = x.double().numpy()
    assert not np.isnan(v).any()
    assert (v < 0).mean() == pytest.approx(0.5, abs=0.05)
    (y,) = sample_inputs([TensorType((100,), "f64")], [(-math.inf, math.inf)], 1, mode="value", seed=1)[0]
    assert np.isfinite(y.numpy()).all()


def test_sampling_errors():
    with pytest.raises(ValueError, match="no f16 value"):
        sample_inputs([TensorType((2,), "f16")], [(1.0001, 1.0002)], 1)
    with pytest.raises(ValueError, match="symbolic"):
        sample_inputs([TensorType(("n",), "f32")], None, 1)
    with pytest.raises(ValueError, match="mode"):
        sample_inputs([TensorType((2,), "f32")], None, 1, mode="uniform")
    assert representable_bounds(1.0001, 1.001, "f16") == (1 + 2**-10, 1 + 2**-10)


def test_sample_program_inputs():
    b = Builder()
    x = b.input("x", TensorType((4,), "f32"))
    y = b.input("y", TensorType((4,), "bf16"))
    p = b.build([b.add("add", [x, y])])
    (s,) = sample_program_inputs(p, 1, {"y": (10, 20), 0: (-3, -2)}, mode="bits")
    assert ((s[0] >= -3) & (s[0] <= -2)).all() and ((s[1] >= 10) & (s[1] <= 20)).all()
    assert s[1].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="names no program input"):
        sample_program_inputs(p, 1, {"z": (0, 1)})
