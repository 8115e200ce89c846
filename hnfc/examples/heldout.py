"""Held-out-style cases for bench/heldout.py: formulas the rule library was not written against.

Two sets, written for this project from the classic floating-point accuracy literature (Goldberg's
"What every computer scientist should know", Higham's "Accuracy and Stability of Numerical
Algorithms", the expression families Herbie's paper evaluates on) and from deep-learning code as
people write it:
- `SCALAR`: functions of one to three scalar inputs, judged in float64 on a domain where the naive
  form cancels, overflows or hits a pole;
- `DL`: functions of one (rows, width) tensor, judged in float32 and bfloat16.

A case names its inputs' domains; the benchmark samples them uniformly in value and over bit
patterns. Nothing in hnfc reads these cases (they measure it, they do not steer it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

T = torch


@dataclass(frozen=True)
class Formula:
    """A scalar formula: `fn` of len(domains) tensors, each input in its (lo, hi)."""

    name: str
    fn: Callable
    domains: tuple[tuple[float, float], ...]
    family: str


@dataclass(frozen=True)
class Pattern:
    """A deep-learning pattern: `fn` of one tensor of `shape` with values in (lo, hi)."""

    name: str
    fn: Callable
    lo: float
    hi: float
    family: str
    shape: tuple[int, ...] = (4, 16)


def _cbrt(v):
    # torch has no cbrt; the usual spelling is a sign-safe pow on a positive domain
    return T.pow(v, 1.0 / 3.0)


SCALAR: tuple[Formula, ...] = (
    # differences of roots (Goldberg §1.4, Higham ch. 1): conjugates
    Formula("sqrt-x1-minus-sqrt-x", lambda x: T.sqrt(x + 1) - T.sqrt(x), ((1.0, 1e15),), "roots"),
    Formula("inv-sqrt-diff", lambda x: 1 / T.sqrt(x) - 1 / T.sqrt(x + 1), ((1.0, 1e15),), "roots"),
    Formula("rsqrt-diff", lambda x: T.rsqrt(x) - T.rsqrt(x + 1), ((1.0, 1e15),), "roots"),
    Formula("cbrt-diff", lambda x: _cbrt(x + 1) - _cbrt(x), ((1.0, 1e15),), "roots"),
    Formula("sqrt1px-minus-1", lambda x: T.sqrt(1 + x) - 1, ((1e-12, 1.0),), "roots"),
    Formula("one-minus-sqrt1mx", lambda x: 1 - T.sqrt(1 - x), ((1e-12, 0.5),), "roots"),
    Formula("sqrt-xx1-minus-x", lambda x: T.sqrt(x * x + 1) - x, ((1.0, 1e8),), "roots"),
    Formula("x-minus-sqrt-xxm1", lambda x: x - T.sqrt(x * x - 1), ((1.5, 1e8),), "roots"),
    Formula("sqrt-xp1-minus-sqrt-xm1", lambda x: T.sqrt(x + 1) - T.sqrt(x - 1), ((2.0, 1e15),), "roots"),
    Formula("quadratic-plus", lambda a, b, c: (-b + T.sqrt(b * b - 4 * a * c)) / (2 * a), ((0.5, 2.0), (10.0, 1e6), (0.5, 2.0)), "roots"),
    Formula("quadratic-minus-neg-b", lambda a, b, c: (-b - T.sqrt(b * b - 4 * a * c)) / (2 * a), ((0.5, 2.0), (-1e6, -10.0), (0.5, 2.0)), "roots"),
    Formula("hypot-overflow", lambda x, y: T.sqrt(x * x + y * y), ((1e100, 1e200), (1e100, 1e200)), "roots"),
    # logs and exps of sums, products and quotients
    Formula("log-x1-minus-log-x", lambda x: T.log(x + 1) - T.log(x), ((1.0, 1e15),), "log-exp"),
    Formula("log-ratio-x-over-x1", lambda x: T.log(x / (x + 1)), ((1.0, 1e15),), "log-exp"),
    Formula("log-one-minus-x", lambda x: T.log(1 - x), ((1e-12, 0.5),), "log-exp"),
    Formula("log1p-naive", lambda x: T.log(1 + x), ((-0.5, 1e-3),), "log-exp"),
    Formula("expm1-naive", lambda x: T.exp(x) - 1, ((-1e-3, 1e-3),), "log-exp"),
    Formula("expm1-over-x", lambda x: (T.exp(x) - 1) / x, ((1e-12, 1e-2),), "log-exp"),
    Formula("exp-diff", lambda a, b: T.exp(a) - T.exp(b), ((1.0, 2.0), (1.0, 2.0)), "log-exp"),
    Formula("exp-ratio-expm1", lambda x: T.exp(x) / (T.exp(x) - 1), ((1e-10, 30.0),), "log-exp"),
    Formula("log-sum-exp-2", lambda a, b: T.log(T.exp(a) + T.exp(b)), ((-800.0, 800.0), (-800.0, 800.0)), "log-exp"),
    Formula("log-product-overflow", lambda x, y: T.log(x * y), ((1e200, 1e300), (1e200, 1e300)), "log-exp"),
    Formula("log-quotient-underflow", lambda x, y: T.log(x / y), ((1e-300, 1e-200), (1e200, 1e300)), "log-exp"),
    Formula("log-1-minus-exp-neg", lambda x: T.log(1 - T.exp(-x)), ((1e-10, 1e-2),), "log-exp"),
    Formula("softplus-naive", lambda x: T.log(1 + T.exp(x)), ((-700.0, 700.0),), "log-exp"),
    # inverse hyperbolic functions written with logs (Higham §1.14)
    Formula("asinh-by-log", lambda x: T.log(x + T.sqrt(x * x + 1)), ((1e-8, 1e8),), "inverse"),
    Formula("acosh-by-log", lambda x: T.log(x + T.sqrt(x * x - 1)), ((1.5, 1e8),), "inverse"),
    Formula("atanh-by-log", lambda x: 0.5 * T.log((1 + x) / (1 - x)), ((1e-10, 0.5),), "inverse"),
    Formula("log-ratio-1mx-1px", lambda x: T.log((1 - x) / (1 + x)), ((1e-10, 0.5),), "inverse"),
    Formula("atan-x1-minus-atan-x", lambda x: T.atan(x + 1) - T.atan(x), ((1.0, 1e15),), "inverse"),
    Formula("acos-one-minus-x", lambda x: T.acos(1 - x), ((1e-14, 1e-2),), "inverse"),
    # trig and hyperbolic differences
    Formula("sin-diff", lambda x, e: T.sin(x + e) - T.sin(x), ((0.5, 1.5), (1e-12, 1e-6)), "trig"),
    Formula("cos-diff", lambda x, e: T.cos(x + e) - T.cos(x), ((0.5, 1.5), (1e-12, 1e-6)), "trig"),
    Formula("sin-minus-sin", lambda a, b: T.sin(a) - T.sin(b), ((0.5, 0.6), (0.5, 0.6)), "trig"),
    Formula("cos-minus-cos", lambda a, b: T.cos(a) - T.cos(b), ((0.5, 0.6), (0.5, 0.6)), "trig"),
    Formula("one-minus-cos", lambda x: 1 - T.cos(x), ((1e-9, 1e-1),), "trig"),
    Formula("one-minus-cos-over-sin", lambda x: (1 - T.cos(x)) / T.sin(x), ((1e-9, 1e-1),), "trig"),
    Formula("cosh-minus-one", lambda x: T.cosh(x) - 1, ((1e-9, 1e-1),), "trig"),
    Formula("sinh-by-exp", lambda x: (T.exp(x) - T.exp(-x)) / 2, ((1e-9, 1.0),), "trig"),
    Formula("tanh-by-exp", lambda x: (T.exp(x) - T.exp(-x)) / (T.exp(x) + T.exp(-x)), ((1e-9, 1.0),), "trig"),
    # fractions
    Formula("recip-diff", lambda x: 1 / (x + 1) - 1 / x, ((1.0, 1e15),), "fractions"),
    Formula("recip-diff-1mx-1px", lambda x: 1 / (1 - x) - 1 / (1 + x), ((1e-10, 0.5),), "fractions"),
    Formula("square-diff", lambda x: (x + 1) * (x + 1) - x * x, ((1.0, 1e8),), "fractions"),
    Formula("x-over-x2p1", lambda x: x / (x * x + 1), ((1e100, 1e300),), "fractions"),
    # complementary special functions
    Formula("one-minus-erf", lambda x: 1 - T.erf(x), ((0.5, 25.0),), "special"),
    Formula("one-plus-erf", lambda x: 1 + T.erf(x), ((-25.0, -0.5),), "special"),
    Formula("one-minus-sigmoid", lambda x: 1 - T.sigmoid(x), ((0.0, 700.0),), "special"),
    Formula("one-minus-tanh", lambda x: 1 - T.tanh(x), ((0.0, 300.0),), "special"),
    # cancellations with no closed-form fix: the leading terms of a Taylor series cancel exactly
    # (Higham §1.14 and ch. 27 on truncated series; Goldberg §1.4): near 0 only a series helps
    Formula("x-minus-sin", lambda x: x - T.sin(x), ((-1.0, 1.0),), "series"),
    Formula("sinh-minus-x", lambda x: T.sinh(x) - x, ((-1.0, 1.0),), "series"),
    Formula("tan-minus-sin", lambda x: T.tan(x) - T.sin(x), ((-1.0, 1.0),), "series"),
    Formula("expm1-minus-x-over-x2", lambda x: (T.exp(x) - 1 - x) / (x * x), ((-1.0, 1.0),), "series"),
    Formula("one-minus-cos-over-x2", lambda x: (1 - T.cos(x)) / (x * x), ((-1.0, 1.0),), "series"),
    Formula("inv-x-minus-cot", lambda x: 1 / x - 1 / T.tan(x), ((-1.0, 1.0),), "series"),
    Formula("x-minus-log1p", lambda x: x - T.log1p(x), ((-0.5, 1.0),), "series"),
)


def _logsumexp_rows(x):
    return T.log(T.exp(x).sum(-1))


def _gelu_erf(x):
    return 0.5 * x * (1 + T.erf(x / math.sqrt(2.0)))


def _masked_softmax(x):
    keep = T.arange(x.shape[-1]) < x.shape[-1] - 4
    e = T.exp(x) * keep.to(x.dtype)
    return e / e.sum(-1, keepdim=True)


def _masked_fill_softmax(x):
    keep = T.arange(x.shape[-1]) < x.shape[-1] - 4
    return T.softmax(T.where(keep, x, T.tensor(-1e4, dtype=x.dtype)), -1)


def _cross_entropy_by_hand(x):
    # logits rows, target class 0: -log(softmax(x)[0])
    p = T.exp(x) / T.exp(x).sum(-1, keepdim=True)
    return -T.log(p[..., 0])


def _logsumexp_with_max(x):
    m = x.amax(-1, keepdim=True)
    return m.squeeze(-1) + T.log(T.exp(x - m).sum(-1))


def _cosine_similarity(x):
    a, b = x[..., :8], x[..., 8:]
    return (a * b).sum(-1) / (T.sqrt((a * a).sum(-1)) * T.sqrt((b * b).sum(-1)))


def _normalize(x):
    return x / T.sqrt((x * x).sum(-1, keepdim=True))


def _entropy(x):
    p = T.softmax(x, -1)
    return -(p * T.log(p)).sum(-1)


def _kl_by_hand(x):
    p = T.softmax(x, -1)
    q = T.softmax(0.5 * x, -1)
    return (p * (T.log(p) - T.log(q))).sum(-1)


def _mish(x):
    return x * T.tanh(T.log(1 + T.exp(x)))


def _swish_by_hand(x):
    return x / (1 + T.exp(-x))


def _bce_logits_by_hand(x):
    y = 0.25
    return -(y * T.log(1 / (1 + T.exp(-x))) + (1 - y) * T.log(1 - 1 / (1 + T.exp(-x))))


def _log_prod(x):
    return T.log(T.prod(x, -1))


def _geometric_mean(x):
    return T.exp(T.log(x).mean(-1))


def _focal_weight(x):
    p = T.sigmoid(x)
    return (1 - p) * (1 - p) * T.log(p)


DL: tuple[Pattern, ...] = (
    Pattern("logsumexp-rows-near-1000", _logsumexp_rows, 950.0, 1000.0, "softmax"),
    Pattern("logsumexp-rows-negative", _logsumexp_rows, -1000.0, -950.0, "softmax"),
    Pattern("logsumexp-with-max", _logsumexp_with_max, -1000.0, 1000.0, "softmax"),
    Pattern("gelu-erf-negative", _gelu_erf, -10.0, -1.0, "special"),
    Pattern("log-prod", _log_prod, 1e-4, 1e-2, "log-exp"),
    Pattern("masked-softmax-multiply", _masked_softmax, -100.0, 100.0, "softmax"),
    Pattern("masked-fill-softmax", _masked_fill_softmax, -100.0, 100.0, "softmax"),
    Pattern("cross-entropy-by-hand", _cross_entropy_by_hand, -100.0, 100.0, "softmax"),
    Pattern("log-sigmoid-naive", lambda x: T.log(T.sigmoid(x)), -80.0, 80.0, "losses"),
    Pattern("log-sigmoid-by-hand", lambda x: T.log(1 / (1 + T.exp(-x))), -80.0, 80.0, "losses"),
    Pattern("one-minus-sigmoid", lambda x: 1 - T.sigmoid(x), 0.0, 80.0, "losses"),
    Pattern("softplus-naive", lambda x: T.log(1 + T.exp(x)), -80.0, 80.0, "log-exp"),
    Pattern("softplus-log1p", lambda x: T.log1p(T.exp(x)), -80.0, 80.0, "log-exp"),
    Pattern("softplus-beta2", lambda x: 0.5 * T.log(1 + T.exp(2 * x)), -40.0, 40.0, "log-exp"),
    Pattern("swish-by-hand", _swish_by_hand, -80.0, 80.0, "log-exp"),
    Pattern("bce-logits-by-hand", _bce_logits_by_hand, -80.0, 80.0, "losses"),
    Pattern("cosine-similarity", _cosine_similarity, 1e-25, 1e-20, "norms"),
    Pattern("normalize-huge", _normalize, 1e20, 1e25, "norms"),
    Pattern("entropy-softmax", _entropy, -100.0, 100.0, "softmax"),
    Pattern("kl-by-hand", _kl_by_hand, -100.0, 100.0, "softmax"),
    Pattern("mish-naive", _mish, -80.0, 80.0, "log-exp"),
    Pattern("geometric-mean", _geometric_mean, 1e-3, 1e3, "log-exp"),
    Pattern("focal-weight", _focal_weight, -60.0, 60.0, "losses"),
    Pattern("tanh-by-sigmoid", lambda x: 2 * T.sigmoid(2 * x) - 1, -1e-2, 1e-2, "cancellation"),
)
