"""Vectorized meanings of pointwise functions, for the reference's enclosure tier.

In: nothing (data). Out: `Slope` values that op entries hold in their `enclosure` field, and the
derivative bounds they name. hnfc/numerics/enclosure.py evaluates such an op as `function` (a
numpy ufunc by name, in the working dtype; or a torch.special function in float64 where numpy has
none, `torch64`), with error bound |f'|max · (argument's error) + the libm rounding, where
|f'|max = `bound(lo, hi)` over the argument's whole enclosure [lo, hi]. Sits in the op layer
(numpy only) so an op's vectorized meaning is part of its one entry.

Contract of `bound(lo, hi)`: numpy arrays (lo <= hi, the working dtype) -> an upper bound on
|f'(t)| for all t in [lo, hi]; +inf (or NaN) where [lo, hi] reaches outside the open set where f
is differentiable. The caller pads [lo, hi] outward and grows the result for rounding in these
formulas (each is a few correctly rounded operations or libm calls: relative error well below
2^-40), so the formulas are written as the exact expressions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Slope:
    function: str  # numpy ufunc name (np.arctan), or "" when `torch64` computes it
    bound: Callable[[np.ndarray, np.ndarray], np.ndarray]  # |f'| over [lo, hi] (module doc)
    torch64: str = ""  # torch.special function name, computed in float64 in every tier


def _min_abs(lo, hi):
    return np.where((lo <= 0) & (hi >= 0), 0, np.minimum(np.abs(lo), np.abs(hi)))


def _max_abs(lo, hi):
    return np.maximum(np.abs(lo), np.abs(hi))


def _inside_unit(lo, hi):
    m = _max_abs(lo, hi)
    return m, (1 - m) * (1 + m)  # 1 - m², without cancellation near 1 (1 - m exact for m >= 1/2)


def atan_slope(lo, hi):  # 1 / (1 + t²)
    m = _min_abs(lo, hi)
    return 1 / (1 + m * m)


def asinh_slope(lo, hi):  # 1 / sqrt(1 + t²)
    m = _min_abs(lo, hi)
    return 1 / np.sqrt(1 + m * m)


def asin_slope(lo, hi):  # 1 / sqrt(1 - t²) (acos: its negative), finite inside (-1, 1)
    m, d = _inside_unit(lo, hi)
    return np.where(m < 1, 1 / np.sqrt(np.where(m < 1, d, 1)), np.inf)


def atanh_slope(lo, hi):  # 1 / (1 - t²), finite inside (-1, 1)
    m, d = _inside_unit(lo, hi)
    return np.where(m < 1, 1 / np.where(m < 1, d, 1), np.inf)


def acosh_slope(lo, hi):  # 1 / sqrt(t² - 1), finite above 1, largest at the lower end
    d = (lo - 1) * (lo + 1)
    return np.where(lo > 1, 1 / np.sqrt(np.where(lo > 1, d, 1)), np.inf)


def erfc_slope(lo, hi):  # (2 / sqrt(pi)) e^(-t²) <= 1.1284 e^(-t²)
    m = _min_abs(lo, hi)
    return 1.1284 * np.exp(-m * m)


def tan_slope(lo, hi):  # 1 + tan² t, on an interval holding no pole (pi/2 + k pi)
    # cos has one sign on the interval when its ends share a sign, neither is near 0 and the
    # interval is shorter than pi (cos's zeros are pi apart)
    c_lo, c_hi = np.cos(lo), np.cos(hi)
    no_pole = (hi - lo < 3) & (c_lo * c_hi > 0) & (np.abs(c_lo) > 1e-6) & (np.abs(c_hi) > 1e-6)
    t = np.maximum(np.abs(np.tan(lo)), np.abs(np.tan(hi)))
    return np.where(no_pole, 1 + t * t, np.inf)


ERFC = Slope("", erfc_slope, torch64="erfc")
TAN = Slope("tan", tan_slope)
ATAN = Slope("arctan", atan_slope)
ASIN = Slope("arcsin", asin_slope)
ACOS = Slope("arccos", asin_slope)
ASINH = Slope("arcsinh", asinh_slope)
ACOSH = Slope("arccosh", acosh_slope)
ATANH = Slope("arctanh", atanh_slope)
