"""A shared corpus of small models for tests: hand-written modules, torch.nn blocks and
transformers models from tiny configs with random weights (nothing is downloaded).

`CASES` maps a name to a `Case`; `case.build()` returns `(model, example_inputs)`, freshly
constructed and seeded, so every call gives the same weights and inputs. Import is cheap:
transformers is imported only when a transformers case is built.

    from tests.corpus import CASES, build
    model, inputs = build("gpt2_sdpa")
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

SEED = 0

# ---------------------------------------------------------------------------------------------
# Hand-written modules


class MLP(nn.Module):
    def __init__(self, d_in: int = 8, hidden: int = 16, d_out: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, d_out)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        h = torch.tanh(self.fc2(h))
        return self.fc3(h)


class SmallCNN(nn.Module):
    """conv -> relu -> max pool -> conv -> gelu -> adaptive avg pool -> linear."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.fc = nn.Linear(6 * 2 * 2, classes)

    def forward(self, x):
        h = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        h = F.gelu(self.conv2(h))
        h = F.adaptive_avg_pool2d(h, 2)
        return self.fc(torch.flatten(h, 1))


class BatchNormCNN(nn.Module):
    """conv -> batch norm -> relu -> mean pool -> linear (batch norm: eval only for hnfc)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.mean(dim=(2, 3)))


class Softmax(nn.Module):
    """The textbook stable softmax, written out."""

    def forward(self, x):
        m = x.max(dim=-1, keepdim=True).values
        e = torch.exp(x - m)
        return e / e.sum(dim=-1, keepdim=True)


class NaiveSoftmax(nn.Module):
    """exp(x) / sum(exp(x)): no max subtraction."""

    def forward(self, x):
        e = torch.exp(x)
        return e / e.sum(-1, keepdim=True)


class LayerNorm(nn.Module):
    """Layer norm from means, with an affine transform."""

    def __init__(self, d: int = 16, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d) * 0.1 + 1)
        self.bias = nn.Parameter(torch.randn(d) * 0.1)
        self.eps = eps

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias


class Attention(nn.Module):
    """Single-block multi-head self-attention written with matmul and softmax, causal mask."""

    def __init__(self, d: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        mask = torch.tril(torch.ones(t, t, dtype=torch.bool, device=x.device))
        att = att.masked_fill(~mask, float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.proj(y)


class MHA(nn.Module):
    """nn.MultiheadAttention used as self-attention; returns the output and averaged weights."""

    def __init__(self, d: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=0.1, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=True)


# ---------------------------------------------------------------------------------------------
# transformers models (tiny configs, random weights)


def _gpt2(attn: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2, use_cache=False,
        resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1, bos_token_id=0, eos_token_id=0,
    )
    cfg._attn_implementation = attn
    model = GPT2LMHeadModel(cfg)
    ids = torch.randint(0, cfg.vocab_size, (2, 8))
    return model, (ids,)


def _bert():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=16, type_vocab_size=2, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
    )
    cfg._attn_implementation = "eager"
    model = BertModel(cfg)
    ids = torch.randint(0, cfg.vocab_size, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 6:] = 0
    return model, (ids, mask)


def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32, use_cache=False,
    )
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg)
    ids = torch.randint(0, cfg.vocab_size, (2, 8))
    return model, (ids,)


def _t5():
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.1,
        use_cache=False, decoder_start_token_id=0, pad_token_id=0,
    )
    model = Seq2Seq(T5ForConditionalGeneration(cfg))
    ids = torch.randint(1, cfg.vocab_size, (2, 6))
    dec = torch.randint(1, cfg.vocab_size, (2, 5))
    return model, (ids, dec)


class Seq2Seq(nn.Module):
    """Positional tensor arguments for an encoder-decoder (hnfc traces tensor inputs only)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, decoder_input_ids):
        return self.model(input_ids=input_ids, decoder_input_ids=decoder_input_ids).logits


# ---------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], tuple[nn.Module, tuple]]
    train: bool = True  # train mode is meaningful and traceable (dropout, no buffer updates)
    transformers: bool = False
    float_inputs: bool = True  # has float inputs to differentiate (the language models take ids)

    def build(self, *, train: bool = False) -> tuple[nn.Module, tuple]:
        torch.manual_seed(SEED)
        model, inputs = self.make()
        model.train(train)
        return model, inputs


def _module(cls, *shape, scale=1.0, **kw):
    def make():
        model = cls(**kw)
        return model, (torch.randn(*shape) * scale,)

    return make


def _tel():
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.1, batch_first=True)
    return layer, (torch.randn(2, 5, 16),)


def _tel_norm_first():
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.1, batch_first=True, norm_first=True, activation="gelu")
    return layer, (torch.randn(2, 5, 16),)


def _bn_cnn():
    model = BatchNormCNN()
    with torch.no_grad():  # non-trivial running statistics
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model, (torch.randn(2, 3, 6, 6),)


CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("mlp", _module(MLP, 4, 8)),
        Case("cnn", _module(SmallCNN, 2, 3, 8, 8)),
        Case("bn_cnn", _bn_cnn, train=False),  # train-mode batch norm updates buffers: refused
        Case("softmax", _module(Softmax, 3, 7, scale=4.0)),
        Case("naive_softmax", _module(NaiveSoftmax, 3, 7, scale=4.0)),
        Case("layer_norm", _module(LayerNorm, 3, 16, scale=2.0)),
        Case("attention", _module(Attention, 2, 5, 16)),
        Case("transformer_encoder_layer", _tel),
        Case("transformer_encoder_layer_norm_first", _tel_norm_first),
        Case("multihead_attention", _module(MHA, 2, 5, 16)),
        Case("gpt2_eager", lambda: _gpt2("eager"), transformers=True, float_inputs=False),
        Case("gpt2_sdpa", lambda: _gpt2("sdpa"), transformers=True, float_inputs=False),
        Case("bert", _bert, transformers=True, float_inputs=False),
        Case("llama", _llama, transformers=True, float_inputs=False),
        Case("t5", _t5, transformers=True, float_inputs=False),
    )
}


def build(name: str, *, train: bool = False) -> tuple[nn.Module, tuple]:
    return CASES[name].build(train=train)
