"""A classifier head written without the numerically stable forms.

Every line is something real code does: a variance as E[x^2] - E[x]^2, softplus as
log(1 + exp(h)), a softmax without max subtraction, and log of that softmax. `make_model()`
and `example_inputs()` are the factory pair the CLI and the README's main job use.
"""

from __future__ import annotations

import torch
from torch import nn


class NaiveHead(nn.Module):
    def __init__(self, width: int = 16, classes: int = 8) -> None:
        super().__init__()
        self.proj = nn.Linear(width, width)
        self.out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        mean = h.mean(-1, keepdim=True)
        var = (h * h).mean(-1, keepdim=True) - mean * mean
        h = (h - mean) / torch.sqrt(var + 1e-5)
        h = torch.log(1 + torch.exp(h))
        logits = self.out(h) * 8.0
        probs = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
        return torch.log(probs)


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return NaiveHead().eval()


def example_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    return (torch.randn(4, 16, generator=g) * 3 + 20,)
