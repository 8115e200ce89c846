"""The stability suite: small programs written the naive way, with the input range that hurts.

Each case is a function of one tensor, the range its input takes, and the rule family that
should fix it. Tests use a few rows of each; bench/ runs them all in float32 and bfloat16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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
)


def case(name: str) -> Case:
    for c in CASES:
        if c.name == name:
            return c
    raise KeyError(f"no stability case {name!r}; known: {[c.name for c in CASES]}")
