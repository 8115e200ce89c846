"""Real-size models for the benchmarks (random weights, no download): transformers configs at the
shapes users run. GPT-2 small (12 layers, width 768, 12 heads, vocabulary 50257, sequence 128) and
a LLaMA-shaped model (8 layers, width 1024, 16 heads with 4 key/value heads: grouped-query
attention, SwiGLU width 2816, vocabulary 32000, sequence 128). Eval mode, no KV cache.

Imported as `models` by the scripts in bench/ (bench/ is not a package).
"""

from __future__ import annotations

import torch

SEED = 0


def gpt2_small(layers: int = 12, seq: int = 128, batch: int = 1):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEED)
    cfg = GPT2Config(n_layer=layers, n_embd=768, n_head=12, n_positions=1024, vocab_size=50257, use_cache=False)
    cfg._attn_implementation = "sdpa"
    model = GPT2LMHeadModel(cfg).eval()
    return model, (torch.randint(0, cfg.vocab_size, (batch, seq)),)


def llama_shaped(layers: int = 8, seq: int = 128, batch: int = 1):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    cfg = LlamaConfig(hidden_size=1024, intermediate_size=2816, num_hidden_layers=layers, num_attention_heads=16,
                      num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, use_cache=False)
    cfg._attn_implementation = "sdpa"
    model = LlamaForCausalLM(cfg).eval()
    return model, (torch.randint(0, cfg.vocab_size, (batch, seq)),)


MODELS = {"gpt2_small": gpt2_small, "llama_shaped": llama_shaped}
