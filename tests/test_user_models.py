"""The models users have (issue 16): transformers models in their default configuration return
ModelOutputs holding key/value caches; train-mode batch norm mutates buffers; models branch on
tensor values. hnfc.optimize and lint handle the first (the cache is dropped with a note), and say
clearly what to do about the others; the backend optimizes per graph between branches."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import hnfc
from hnfc.lint import lint
from hnfc.pipeline import HnfcWarning


def _default(name):
    """transformers models from tiny configs with every other setting at its default (use_cache=True)."""
    from transformers import AutoModel, BertConfig, GPT2Config, LlamaConfig, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    if name == "gpt2":
        cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32, bos_token_id=0, eos_token_id=0)
        return AutoModel.from_config(cfg).eval(), (torch.randint(0, 100, (2, 8)),), "DynamicCache"
    if name == "llama":  # grouped-query attention: 4 query heads, 2 key/value heads
        cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=0)
        return AutoModel.from_config(cfg).eval(), (torch.randint(0, 64, (2, 8)),), "DynamicCache"
    if name == "t5":
        cfg = T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                       decoder_start_token_id=0, pad_token_id=0)
        return _Seq2Seq(T5ForConditionalGeneration(cfg)).eval(), (torch.randint(1, 64, (2, 6)), torch.randint(1, 64, (2, 5))), "EncoderDecoderCache"
    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=16)
    return AutoModel.from_config(cfg).eval(), (torch.randint(0, 64, (2, 8)),), None


class _Seq2Seq(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, decoder_input_ids):
        return self.model(input_ids=input_ids, decoder_input_ids=decoder_input_ids)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2", "llama", "t5", "bert"])
def test_default_transformers_models_optimize_with_their_cache_dropped(name):
    model, inputs, cache = _default(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = hnfc.optimize(model, inputs)
    notes = [str(w.message) for w in caught if issubclass(w.category, HnfcWarning)]
    if cache is None:
        assert not notes, notes
    else:
        assert len(notes) == 1 and cache in notes[0] and "None" in notes[0], notes
        assert m.report.warnings[0] == notes[0]
    assert isinstance(m, torch.fx.GraphModule)  # traced and optimized, not the unchanged model
    with torch.no_grad():
        out, ref = m(*inputs), model(*inputs)
    assert type(out) is type(ref)
    for key in ref.keys():
        if isinstance(ref[key], torch.Tensor):
            torch.testing.assert_close(out[key], ref[key], rtol=1e-4, atol=1e-5)
        else:
            assert out.get(key) is None, key  # the cache
    if name == "gpt2":
        assert lint(model, inputs).findings is not None  # lint runs (it raised on the cache before)


def test_train_mode_batch_norm_says_what_to_do():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).train()
    x = torch.randn(2, 3, 6, 6)
    with pytest.warns(HnfcWarning, match=r"mutates parameter/buffer .* batch norm in training mode updates its running statistics.*model\.eval\(\).*backend='hnf'"):
        m = hnfc.optimize(model, (x,))
    torch.testing.assert_close(m(x), model(x))  # the user's model runs unchanged
    m = hnfc.optimize(model.eval(), (x,))  # and eval mode optimizes
    assert isinstance(m, torch.fx.GraphModule)


class _Branchy(nn.Module):
    def forward(self, x):
        y = torch.log(1 + torch.exp(x))
        if y.sum() > 0:  # data-dependent: a graph break under torch.compile
            return torch.log(1 + torch.exp(y * 2))
        return y - 1


def test_data_dependent_branch_says_what_to_do_and_the_backend_optimizes_each_graph():
    x = torch.linspace(-50, 50, 16)
    with pytest.warns(HnfcWarning, match=r"branches on a tensor's values.*backend='hnf'.*torch\.where or torch\.cond"):
        hnfc.optimize(_Branchy(), (x,))
    from hnfc.backend import hnf_backend

    record = []

    def backend(gm, example_inputs, **kw):
        out = hnf_backend(gm, example_inputs, **kw)
        record.append(out)
        return out

    torch._dynamo.reset()
    try:
        compiled = torch.compile(_Branchy(), backend=backend, options={"inductor": False, "input_ranges": {"x": (-50.0, 50.0)}})
        with warnings.catch_warnings():
            warnings.simplefilter("error", HnfcWarning)
            out = compiled(x)
    finally:
        torch._dynamo.reset()
    assert len(record) == 2 and all("softplus-intro" in {r for rw in g.report.rewrites for r in rw.rules} for g in record)
    ref = torch.nn.functional.softplus(torch.nn.functional.softplus(x.double()) * 2)
    assert torch.isfinite(out).all() and not torch.isfinite(_Branchy()(x)).all()
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6)
