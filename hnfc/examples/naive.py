"""A classifier head written without the numerically stable forms, and inputs where they fail.

Every line is something real code does: raw features standardized with the variance as
E[x^2] - E[x]^2, softplus as log(1 + exp(h)), a sharp softmax (temperature 0.01) without max
subtraction, and log of that softmax. On the documented inputs (`example_inputs()`: raw readings
around 1000 +- 3, as sensor or count features come) the naive forms really fail in float32:
E[x^2] ~ 1e6 leaves the variance (~9) with a few significant bits, and the logits reach the
hundreds, so exp overflows and the output is NaN. `make_model()` and `example_inputs()` are the
factory pair the CLI and the README's main job use.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class NaiveHead(nn.Module):
    def __init__(self, width: int = 16, classes: int = 8, temperature: float = 0.01) -> None:
        super().__init__()
        self.proj = nn.Linear(width, width)
        self.out = nn.Linear(width, classes)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        var = (x * x).mean(-1, keepdim=True) - mean * mean
        h = (x - mean) / torch.sqrt(var + 1e-5)
        h = torch.log(1 + torch.exp(self.proj(h)))
        logits = self.out(h) / self.temperature
        probs = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
        return torch.log(probs)


class NaiveBlock(nn.Module):
    """A pre-norm transformer block written by hand: E[x^2] - E[x]^2 layer norm, attention with
    a softmax that does not subtract the max, GELU in its tanh form."""

    def __init__(self, width: int = 32, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)
        self.g1, self.b1 = nn.Parameter(torch.ones(width)), nn.Parameter(torch.zeros(width))
        self.g2, self.b2 = nn.Parameter(torch.ones(width)), nn.Parameter(torch.zeros(width))

    @staticmethod
    def norm(x, g, b):
        mean = x.mean(-1, keepdim=True)
        var = (x * x).mean(-1, keepdim=True) - mean * mean
        return (x - mean) / torch.sqrt(var + 1e-5) * g + b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        head = width // self.heads
        q, k, v = self.qkv(self.norm(x, self.g1, self.b1)).split(width, -1)
        q, k, v = (t.reshape(batch, seq, self.heads, head).transpose(1, 2) for t in (q, k, v))
        logits = q @ k.transpose(-1, -2) / math.sqrt(head)
        att = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(batch, seq, width))
        h = self.fc1(self.norm(x, self.g2, self.b2))
        h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
        return x + self.fc2(h)


def make_block() -> nn.Module:
    torch.manual_seed(0)
    return NaiveBlock().eval()


def block_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(2)
    return (torch.randn(2, 8, 32, generator=g) * 4,)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return NaiveHead().eval()


def example_inputs() -> tuple[torch.Tensor, ...]:
    """Raw features around 1000 +- 3: where the head's naive forms fail (see the module doc)."""
    g = torch.Generator().manual_seed(1)
    return (torch.randn(4, 16, generator=g) * 3 + 1000,)
