"""The stability suite: small programs written the naive way, with the input range that hurts.

Each case is a function of one tensor, the range its input takes, and the rule family that
should fix it. Tests use a few rows of each; bench/ runs them all in float32 and bfloat16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import math

import torch


@dataclass(frozen=True)
class Case:
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    lo: float
    hi: float
    family: str
    shape: tuple[int, ...] = (4, 16)

    def example(self, dtype: torch.dtype = torch.float32, seed: int = 0, rows: int | None = None) -> torch.Tensor:
        shape = (rows or self.shape[0],) + self.shape[1:]
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(shape, generator=g, dtype=torch.float64) * (self.hi - self.lo) + self.lo).to(dtype)


def naive_softmax(x):
    e = torch.exp(x)
    return e / e.sum(-1, keepdim=True)


def layer_norm_naive(x):
    """Layer norm over the last dim with the one-pass variance E[x²] - E[x]²."""
    m = x.mean(-1, keepdim=True)
    v = (x * x).mean(-1, keepdim=True) - m * m
    return (x - m) / torch.sqrt(v + 1e-5)


def attention_naive(x):
    """softmax(x xᵀ / √d) x with a hand-written softmax (no max subtraction)."""
    e = torch.exp(x @ x.transpose(-1, -2) / math.sqrt(x.shape[-1]))
    return (e / e.sum(-1, keepdim=True)) @ x


def bce_on_sigmoid(z, y=0.3):
    """Binary cross-entropy of sigmoid(z) against a soft label y, from probabilities."""
    p = torch.sigmoid(z)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p))


def tanh_from_exp(x):
    return (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x))


def gelu_tanh_naive(x):
    """The tanh-form GELU as GPT-2 / HF NewGELU write it: 1 + tanh(z) cancels for z << 0."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


MASK = torch.arange(16) >= 12  # the last 4 keys of a 16-wide row are masked out


def masked_attention_row(x):
    """One attention row, masked with -1e9 the way HF models do, softmax written by hand."""
    e = torch.exp(x + torch.where(MASK, -1e9, 0.0).to(x.dtype))
    return e / e.sum(-1, keepdim=True)


KEEP = (~MASK).float()  # the same mask as 1 = attend, 0 = masked (HF's attention_mask)


def additive_mask_attention_row(x):
    """One attention row, masked HF-style with (1 - m) * finfo(float32).min, softmax by hand.
    In bfloat16 the constant is not representable (it rounds to -inf): hnfc/precision/legalize.py."""
    e = torch.exp(x + (1 - KEEP.to(x.dtype)) * torch.finfo(torch.float32).min)
    return e / e.sum(-1, keepdim=True)


CASES: tuple[Case, ...] = (
    Case("softmax-naive-scale1", naive_softmax, -1.0, 1.0, "softmax"),
    Case("softmax-naive-scale10", naive_softmax, -10.0, 10.0, "softmax"),
    Case("softmax-naive-scale100", naive_softmax, -100.0, 100.0, "softmax"),
    Case("log-of-softmax", lambda x: torch.log(torch.softmax(x, -1)), -100.0, 100.0, "softmax"),
    Case("logsumexp-naive", lambda x: torch.log(torch.exp(x).sum(-1)), -100.0, 100.0, "softmax"),
    Case("log-1-plus-exp", lambda x: torch.log(1 + torch.exp(x)), -40.0, 40.0, "log-exp"),
    Case("log-of-sigmoid", lambda x: torch.log(torch.sigmoid(x)), -40.0, 40.0, "log-exp"),
    Case("sigmoid-by-hand", lambda x: 1 / (1 + torch.exp(-x)), -40.0, 40.0, "log-exp"),
    Case("exp-minus-1", lambda x: torch.exp(x) - 1, -1e-3, 1e-3, "log-exp"),
    Case("log-1-plus-x", lambda x: torch.log(1 + x), 1e-8, 1e-3, "log-exp"),
    Case("layer-norm-naive-var", layer_norm_naive, -0.5, 2.5, "statistics"),
    Case("attention-naive-large-logits", attention_naive, -10.0, 10.0, "softmax"),
    Case("bce-on-sigmoid", bce_on_sigmoid, -40.0, 40.0, "losses"),
    Case("sqrt-x-plus-1-minus-sqrt-x", lambda x: torch.sqrt(x + 1) - torch.sqrt(x), 0.0, 1e6, "cancellation"),
    Case("recip-x-plus-1-minus-recip-x", lambda x: 1 / (x + 1) - 1 / x, 1.0, 1e4, "cancellation"),
    Case("tanh-from-exp", tanh_from_exp, -20.0, 20.0, "cancellation"),
    Case("gelu-tanh-naive", gelu_tanh_naive, -5.0, 5.0, "cancellation"),
    Case("masked-attention-row-1e9", masked_attention_row, -100.0, 100.0, "softmax"),
    Case("logaddexp-naive", lambda x: torch.log(torch.exp(x[0]) + torch.exp(x[1])), -100.0, 100.0, "log-exp"),
    Case("log-1-minus-exp", lambda x: torch.log(1 - torch.exp(-x)), 1e-6, 1e-2, "cancellation"),
    Case("softmax-two-way", lambda x: torch.exp(x[0]) / (torch.exp(x[0]) + torch.exp(x[1])), -100.0, 100.0, "log-exp"),
    Case("additive-mask-attention-row-f32-min", additive_mask_attention_row, -100.0, 100.0, "softmax"),
)


def case(name: str) -> Case:
    for c in CASES:
        if c.name == name:
            return c
    raise KeyError(f"no stability case {name!r}; known: {[c.name for c in CASES]}")
