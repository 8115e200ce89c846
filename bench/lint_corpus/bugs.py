"""Minimal reproductions of real numerical bugs, one per issue thread (repo#number).

Each `Bug` gives the function, example inputs, the declared input ranges a user would state, a
`trigger` (inputs inside those ranges on which eager PyTorch really fails: inf/NaN in the output
or the gradient, or a large error against float64; bench/lint.py checks it) and `root`: the ops
at the root cause. Lines marked `# root` are the root cause's source line.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F

F16, BF16 = torch.float16, torch.bfloat16


@dataclasses.dataclass
class Bug:
    name: str
    ref: str  # repo#number of the thread
    fn: Callable
    example: tuple
    ranges: dict
    trigger: tuple
    root: tuple[str, ...]  # op names at the root cause
    what: str


def _r(*shape, dtype=torch.float32, lo=-1.0, hi=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) * (hi - lo) + lo).to(dtype)


# -- gradient-only hazards --------------------------------------------------------------------------


def sqrt_sumsq_norm(x):
    return torch.sqrt((x * x).sum(-1))  # root


def euclid_dist(a, b):
    return torch.sqrt(((a - b) ** 2).sum(-1)).mean()  # root


def where_after_sqrt(x):
    d = torch.sqrt((x**2).sum(-1))  # root
    return torch.where(d > 0.5, d, torch.ones_like(d)).sum()


def tf_norm_grad(x):
    return torch.sqrt(torch.sum(x * x, dim=1))  # root


# -- forward hazards guarded by where (NaN gradient through the unselected branch) --------------------


def where_sqrt_negative(x):
    return torch.where(x > 0, torch.sqrt(x), x).sum()  # root


def where_exp_overflow(a):
    return torch.where(a <= 0, torch.exp(a), 1 + a).sum()  # root


def where_log2_zero(x):
    return torch.where(x > 2, torch.log2(x), 2 * x).sum()  # root


def where_div_zero(x, t):
    y = t * (x / t)  # root
    return torch.where(x >= t, x, y).sum()


def where_exp_clamp(x):
    return torch.where(x <= 10.0, torch.exp(x), torch.ones_like(x)).sum()  # root


# -- log of 0, exp overflow ---------------------------------------------------------------------------


def entropy_masked_logits(logits, mask):
    logits = logits.masked_fill(mask, float("-inf"))
    logp = torch.log_softmax(logits, -1)
    return -(torch.exp(logp) * logp).sum(-1)  # root


def entropy_of_softmax(logits):
    p = torch.softmax(logits, -1)
    return -(p * torch.log(p)).sum(-1)  # root


def ace_loss(logits):
    p = torch.softmax(logits, -1).sum(0) / logits.shape[0]
    return -torch.log(p).mean()  # root


def log_sum_exp_naive(x):
    return torch.log(torch.exp(x).sum(-1))  # root


def softmax_no_shift(x):
    e = torch.exp(x)  # root
    return e / e.sum(-1, keepdim=True)


def gat_scatter_softmax(src):
    out = src.exp()  # root
    return out / out.sum(0, keepdim=True)


def dl4j_softmax(x):
    ex = torch.exp(x)  # root
    return ex / ex.sum(1, keepdim=True)


def flux_logitcrossentropy(o):
    return -torch.log(torch.exp(o) / torch.exp(o).sum(-1, keepdim=True))[..., 0].mean()  # root


def categorical_entropy(p):
    return -(p * torch.log(p)).sum(-1)  # root


def cosine_zero_vector(a, b):
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))  # root


def ood_energy_entropy(logits):
    sm = F.softmax(logits, dim=1)
    return -(sm * sm.log()).sum(1)  # root


# -- masks and reduced precision --------------------------------------------------------------------------


def f16_sentinel_mask(s, m):
    s = s + m * -1e9  # root
    return torch.softmax(s.float(), -1)


def finfo_min_plus_scores(s, m):
    s = s + m * torch.finfo(F16).min  # root
    return torch.softmax(s.float(), -1)


def bf16_two_min_planes(s, causal, pad):
    neg = torch.finfo(BF16).min
    mask = torch.where(causal, neg, 0.0).to(BF16) + torch.where(pad, neg, 0.0).to(BF16)  # root
    return torch.softmax((s + mask).float(), -1)


def f16_rms_variance(x):
    var = x.pow(2).mean(-1, keepdim=True)  # root
    return x * torch.rsqrt(var + 1e-6)


def f16_layernorm_eps(x):
    m = x.mean(-1, keepdim=True)
    var = ((x - m) ** 2).mean(-1, keepdim=True)
    return (x - m) / torch.sqrt(var + 1e-12)  # root


def f16_layernorm_rsqrt(x):
    m = x.mean(-1, keepdim=True)
    v = ((x - m) * (x - m)).mean(-1, keepdim=True)
    return (x - m) * torch.rsqrt(v + 1e-12)  # root


def inf_mask_sign(s, mask):
    s = s.masked_fill(mask, -float("-inf"))  # root
    return torch.softmax(s, -1)


# -- losses on probabilities -----------------------------------------------------------------------------


def bce_on_sigmoid(x, t):
    return F.binary_cross_entropy(torch.sigmoid(x), t)  # root


def _mask(shape, frac_true_rows):
    m = torch.zeros(shape, dtype=torch.bool)
    m[: frac_true_rows] = True
    return m


V = 8
BUGS = [
    Bug("sqrt_sumsq_norm", "pytorch/pytorch#2421", sqrt_sumsq_norm, (_r(4, V),), {0: (-1.0, 1.0)}, (torch.zeros(4, V),), ("sqrt",), "gradient of sqrt(sum x^2) at 0 is NaN"),
    Bug("euclid_dist", "huggingface/sentence-transformers#4033", euclid_dist, (_r(4, V), _r(4, V, seed=1)), {0: (-1.0, 1.0), 1: (-1.0, 1.0)}, (torch.ones(4, V), torch.ones(4, V)), ("sqrt",), "identical embeddings: NaN gradient"),
    Bug("where_after_sqrt", "jax-ml/jax#347", where_after_sqrt, (_r(3, 2),), {0: (-4.0, 4.0)}, (torch.tensor([[1.0, 2], [3, 4], [0, 0]]),), ("sqrt",), "where after sqrt: NaN gradient for the zero row"),
    Bug("tf_norm_grad", "tensorflow/tensorflow#12071", tf_norm_grad, (_r(4, 1),), {0: (-1.0, 1.0)}, (torch.tensor([[1.0], [0.0], [1e-16], [1e-19]]),), ("sqrt",), "norm gradient NaN at 0, inf for tiny values"),
    Bug("where_sqrt_negative", "pytorch/pytorch#187297", where_sqrt_negative, (_r(4),), {0: (-4.0, 4.0)}, (torch.tensor([-1.0, -4.0, 1.0, 2.0]),), ("sqrt",), "NaN gradient from the inactive sqrt branch"),
    Bug("where_exp_overflow", "pytorch/pytorch#68425", where_exp_overflow, (_r(4),), {0: (-100.0, 100.0)}, (torch.full((4,), 100.0),), ("exp",), "exp overflows in the inactive branch: NaN gradient"),
    Bug("where_log2_zero", "pytorch/pytorch#108618", where_log2_zero, (_r(3, lo=0.5, hi=3),), {0: (0.0, 3.0)}, (torch.tensor([0.0, 2.0, 3.0]),), ("log2",), "log2(0) in the inactive branch: NaN gradient"),
    Bug("where_div_zero", "pytorch/pytorch#36923", where_div_zero, (torch.ones(()), torch.tensor(0.5)), {0: (0.0, 2.0), 1: (0.0, 1.0)}, (torch.ones(()), torch.zeros(())), ("div",), "x / t with t = 0 in the inactive branch: NaN gradient"),
    Bug("where_exp_clamp", "pytorch/pytorch#156212", where_exp_clamp, (_r(3),), {0: (-1e10, 1e10)}, (torch.tensor([1.0, 5.0, 1e10]),), ("exp",), "exp(1e10) in the inactive branch: NaN gradient"),
    Bug("entropy_masked_logits", "huggingface/trl#7221", entropy_masked_logits, (_r(2, V, lo=-5, hi=5), _mask((2, V), 1)), {0: (-20.0, 20.0)}, (_r(2, V, lo=-5, hi=5), _mask((2, V), 1)), ("mul",), "exp(logp) * logp = 0 * -inf for masked tokens"),
    Bug("entropy_of_softmax", "kkirchheim/pytorch-ood#84", entropy_of_softmax, (_r(2, V, lo=-5, hi=5),), {0: (-200.0, 200.0)}, (torch.tensor([[200.0] + [-200.0] * (V - 1)] * 2),), ("log",), "softmax underflows to 0: log(0) * 0 = NaN"),
    Bug("ace_loss", "summerlvsong/Aggregation-Cross-Entropy#2", ace_loss, (_r(4, V, lo=-5, hi=5),), {0: (-100.0, 100.0)}, (torch.tensor([[100.0] + [-100.0] * (V - 1)] * 4),), ("log",), "a class no frame predicts: log(0)"),
    Bug("log_sum_exp_naive", "mlberkeley/scae-pytorch#4", log_sum_exp_naive, (_r(2, V),), {0: (-100.0, 100.0)}, (torch.full((2, V), 100.0),), ("exp",), "exp overflows before the log"),
    Bug("softmax_no_shift", "uTensor/uTensor#175", softmax_no_shift, (_r(1, 5),), {0: (-500.0, 500.0)}, (torch.tensor([[-249.9, -424.1, -460.3, 378.1, -292.6]]),), ("exp",), "softmax without max subtraction: inf / inf"),
    Bug("gat_scatter_softmax", "pyg-team/pytorch_geometric#53", gat_scatter_softmax, (_r(6, 2),), {0: (-200.0, 200.0)}, (torch.full((6, 2), 150.0),), ("exp",), "attention coefficients exp overflow"),
    Bug("dl4j_softmax", "deeplearning4j/deeplearning4j#6039", dl4j_softmax, (_r(2, 4),), {0: (-1000.0, 1000.0)}, (torch.full((2, 4), 1000.0),), ("exp",), "softmax of large inputs: NaN"),
    Bug("flux_logitcrossentropy", "FluxML/NNlib.jl#68", flux_logitcrossentropy, (_r(1, 3),), {0: (-500.0, 500.0)}, (torch.tensor([[-431.0, 279.0, 427.0]]),), ("exp",), "log(softmax) by hand overflows"),
    Bug("categorical_entropy", "tensorflow/probability#241", categorical_entropy, (torch.tensor([[0.2, 0.3, 0.5]]),), {0: (0.0, 1.0)}, (torch.tensor([[0.0, 0.5, 0.5]]),), ("log",), "probability 0: 0 * log 0 = NaN"),
    Bug("cosine_zero_vector", "HKUDS/LightRAG#3421", cosine_zero_vector, (_r(2, V), _r(2, V, seed=2)), {0: (-1.0, 1.0), 1: (-1.0, 1.0)}, (torch.zeros(2, V), _r(2, V, seed=2)), ("div",), "cosine of a zero vector: 0 / 0"),
    Bug("ood_energy_entropy", "kkirchheim/pytorch-ood#85", ood_energy_entropy, (_r(2, 5, lo=-3, hi=3),), {0: (-150.0, 150.0)}, (torch.tensor([[150.0, -150.0, 0.0, 0.0, 0.0]] * 2),), ("log",), "entropy detector: log of a softmax that underflows"),
    Bug("f16_sentinel_mask", "ahrefs/ocannl#548", f16_sentinel_mask, (_r(2, 4, dtype=F16), torch.zeros(2, 4, dtype=F16)), {0: (-10.0, 10.0), 1: (0.0, 1.0)}, (_r(2, 4, dtype=F16), torch.ones(2, 4, dtype=F16)), ("mul", "const"), "-1e9 does not fit float16: -inf, fully masked rows NaN"),
    Bug("finfo_min_plus_scores", "huggingface/transformers#17306", finfo_min_plus_scores, (_r(2, 4, dtype=F16), torch.zeros(2, 4, dtype=F16)), {0: (-100.0, 100.0), 1: (0.0, 1.0)}, (torch.full((2, 4), -20.0, dtype=F16), torch.ones(2, 4, dtype=F16)), ("add",), "finfo(f16).min + a negative score = -inf: NaN after softmax"),
    Bug("bf16_two_min_planes", "NVIDIA-NeMo/Automodel#2658", bf16_two_min_planes, (_r(2, 4, dtype=BF16), _mask((2, 4), 0), _mask((2, 4), 0)), {0: (-10.0, 10.0)}, (_r(2, 4, dtype=BF16), torch.ones(2, 4, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool)), ("add",), "two finfo(bf16).min planes sum to -inf: NaN"),
    Bug("f16_rms_variance", "microsoft/onnxruntime#29034", f16_rms_variance, (_r(2, 16, dtype=F16),), {0: (-1000.0, 1000.0)}, (torch.full((2, 16), 600.0, dtype=F16),), ("pow",), "sum of squares overflows float16: output collapses to 0"),
    Bug("f16_layernorm_eps", "deepspeedai/DeepSpeed#581", f16_layernorm_eps, (_r(2, 16, dtype=F16),), {0: (-10.0, 10.0)}, (torch.ones(2, 16, dtype=F16),), ("const", "div"), "eps 1e-12 is 0 in float16: constant rows give 0/0"),
    Bug("f16_layernorm_rsqrt", "tensorflow/tensorflow#24979", f16_layernorm_rsqrt, (_r(2, 16, dtype=F16),), {0: (-10.0, 10.0)}, (torch.ones(2, 16, dtype=F16),), ("const", "rsqrt"), "variance epsilon 1e-12 too small for float16: NaN"),
    Bug("inf_mask_sign", "lucidrains/memory-compressed-attention#2", inf_mask_sign, (_r(2, 4), _mask((2, 4), 1)), {0: (-10.0, 10.0)}, (_r(2, 4), _mask((2, 4), 1)), ("where", "softmax"), "-float('-inf') is +inf: softmax NaN"),
    Bug("bce_on_sigmoid", "pytorch/pytorch#24933", bce_on_sigmoid, (_r(4), torch.rand(4)), {0: (-50.0, 50.0), 1: (0.0, 1.0)}, (torch.full((4,), 40.0), torch.zeros(4)), ("binary_cross_entropy", "sigmoid"), "BCE on sigmoid: log(1 - 1) clamped to -100, loss 100 instead of 40"),
]
