"""Numerically sound models and losses, written the way libraries write them (no weights needed):
transformers architectures from tiny configs, standard torch modules and standard losses.

Each `Clean` gives a factory (model or function), example inputs and the declared input ranges a
user would state. A failing lint finding on any of them is a false positive.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclasses.dataclass
class Clean:
    name: str
    make: Callable  # () -> (model_or_fn, example_inputs, ranges)


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _hf(config_name: str, **kw):
    def make():
        import transformers

        cfg = getattr(transformers, config_name)(**kw)
        torch.manual_seed(0)
        model = transformers.AutoModel.from_config(cfg, attn_implementation="eager").eval()
        ids = torch.randint(0, cfg.vocab_size, (1, 8), generator=_g())

        def run(input_ids):
            return model(input_ids=input_ids).last_hidden_state

        return run, (ids,), {}

    return make


_TINY = dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64, vocab_size=100, max_position_embeddings=64)
HF = [
    ("gpt2", "GPT2Config", dict(n_embd=32, n_head=4, n_layer=2, vocab_size=100, n_positions=64)),
    ("bert", "BertConfig", _TINY),
    ("roberta", "RobertaConfig", _TINY),
    ("distilbert", "DistilBertConfig", dict(dim=32, n_heads=4, n_layers=2, hidden_dim=64, vocab_size=100, max_position_embeddings=64)),
    ("albert", "AlbertConfig", dict(_TINY, embedding_size=16)),
    ("electra", "ElectraConfig", dict(_TINY, embedding_size=16)),
    ("llama", "LlamaConfig", dict(_TINY, num_key_value_heads=2)),
    ("mistral", "MistralConfig", dict(_TINY, num_key_value_heads=2)),
    ("qwen2", "Qwen2Config", dict(_TINY, num_key_value_heads=2)),
    ("opt", "OPTConfig", dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, ffn_dim=64, vocab_size=100, max_position_embeddings=64, word_embed_proj_dim=32)),
    ("gpt_neo", "GPTNeoConfig", dict(hidden_size=32, num_heads=4, num_layers=2, vocab_size=100, max_position_embeddings=64, attention_types=[[["global", "local"], 1]])),
    ("bloom", "BloomConfig", dict(hidden_size=32, n_head=4, n_layer=2, vocab_size=100)),
    ("phi", "PhiConfig", _TINY),
]


def mlp():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 10), nn.LogSoftmax(-1)).eval()
    return m, (torch.randn(4, 16, generator=_g()),), {0: (-10.0, 10.0)}


def cnn():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)).eval()
    return m, (torch.randn(2, 3, 8, 8, generator=_g()),), {0: (-3.0, 3.0)}


def encoder_layer():
    torch.manual_seed(0)
    m = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True).eval()
    return m, (torch.randn(2, 6, 32, generator=_g()),), {0: (-5.0, 5.0)}


def layer_norm_mlp():
    torch.manual_seed(0)
    m = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 16), nn.SiLU(), nn.GroupNorm(4, 16)).eval()
    return m, (torch.randn(4, 16, generator=_g()),), {0: (-10.0, 10.0)}


def cross_entropy():
    return (lambda x, y: F.cross_entropy(x, y)), (torch.randn(4, 10, generator=_g()), torch.randint(0, 10, (4,), generator=_g())), {0: (-30.0, 30.0)}


def bce_with_logits():
    return (lambda x, t: F.binary_cross_entropy_with_logits(x, t)), (torch.randn(4, 5, generator=_g()), torch.rand(4, 5, generator=_g())), {0: (-30.0, 30.0), 1: (0.0, 1.0)}


def kl_div():
    def f(x, y):
        return F.kl_div(F.log_softmax(x, -1), F.log_softmax(y, -1), reduction="batchmean", log_target=True)

    return f, (torch.randn(4, 10, generator=_g()), torch.randn(4, 10, generator=_g(1))), {0: (-20.0, 20.0), 1: (-20.0, 20.0)}


def mse_smooth_l1():
    return (lambda x, y: F.mse_loss(x, y) + F.smooth_l1_loss(x, y)), (torch.randn(8, generator=_g()), torch.randn(8, generator=_g(1))), {0: (-100.0, 100.0), 1: (-100.0, 100.0)}


def clip_loss():
    def f(img, txt):
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        logits = img @ txt.t() * 14.3
        labels = torch.arange(img.shape[0])
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2

    return f, (torch.randn(4, 16, generator=_g()), torch.randn(4, 16, generator=_g(1))), {0: (-10.0, 10.0), 1: (-10.0, 10.0)}


def stable_losses():
    def f(x):
        return F.softplus(x).mean() - F.logsigmoid(x).mean() + torch.logsumexp(x, -1).mean()

    return f, (torch.randn(4, 8, generator=_g()),), {0: (-80.0, 80.0)}


def triplet():
    return (lambda a, p, n: F.triplet_margin_loss(a, p, n)), tuple(torch.randn(4, 8, generator=_g(k)) for k in range(3)), {0: (-5.0, 5.0), 1: (-5.0, 5.0), 2: (-5.0, 5.0)}


CLEAN = [Clean(f"hf-{name}", _hf(cfg, **kw)) for name, cfg, kw in HF] + [
    Clean(f.__name__, f) for f in (mlp, cnn, encoder_layer, layer_norm_mlp, cross_entropy, bce_with_logits, kl_div, mse_smooth_l1, clip_loss, stable_losses, triplet)
]
